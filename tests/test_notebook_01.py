"""Notebook 01 (data preparation), executed by papermill on the smoke profile.

Each test runs the notebooks up to the one it checks (once per data set per
session), reads that notebook's metrics file and asserts on the numbers.
Real data sets run when the mirror holds them and are skipped otherwise.
"""

from __future__ import annotations

import pytest

from recsys_utils import artifacts
from recsys_utils.profiles import get_profile

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_01_data_preparation(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "01")
    metrics = artifacts.read_metrics(artifact_dir)["01_data_preparation"]
    prepared = artifacts.load_prepared(artifact_dir)

    assert metrics["dataset"] == dataset == prepared.dataset
    assert metrics["n_interactions"] == len(prepared.interactions) > 0
    splits = metrics["splits"]
    assert splits["train"] == len(prepared.splits["train"])
    assert splits["test"] > 0 and splits["validation"] > 0 and splits["test_cold"] > 0
    # Cold-start items never reach training.
    assert not set(prepared.cold_items) & set(prepared.splits["train"]["item_id"])
    # The data gate passed; its warnings are in the metrics (a list, maybe empty).
    assert isinstance(metrics["warnings"], list)
    # Image paths are stored relative (to the artifact dir for generated images, the data dir
    # for shipped ones), so a copied run directory never reads another run's files.
    paths = prepared.items["image_path"].dropna() if "image_path" in prepared.items else []
    assert not any(str(p).startswith("/") for p in paths)
    # Popularity is long-tailed in every data set we ship.
    assert metrics["top_10pct_items_share"] > 0.25
    assert 0.0 < metrics["density"] < 1.0

    if dataset == "synthetic":
        scale = get_profile("smoke").data
        assert metrics["n_items"] == scale.synthetic_items
        assert metrics["items_with_images"] == metrics["n_items"]
        assert metrics["n_queries"] > 0 and metrics["feedback"] == "event"
        assert artifacts.read_json(artifact_dir / "data" / "dataset.json")["image_root"] == \
            "artifact_dir"
    elif dataset == "movielens-100k":
        assert (metrics["n_interactions"], metrics["n_users"], metrics["n_items"]) == (
            100_000, 943, 1_682)
        assert metrics["items_with_images"] == 0 and metrics["feedback"] == "rating"
    elif dataset == "fashion":
        assert metrics["simulated_interactions"] is True
        assert metrics["n_items"] == get_profile("smoke").data.fashion_items
        # The smoke catalogue is sampled from photographed items first.
        assert metrics["items_with_images"] == metrics["n_items"]
