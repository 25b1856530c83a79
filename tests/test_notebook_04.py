"""Notebook 04 (TFRS retrieval), executed by papermill on the smoke profile.

Margins (also stated in the notebook's prose):

* every trained candidate model (ID-only, content, fused and the text
  variants, all with the log-Q correction) beats popularity on warm Recall@50
  by ``WARM_MARGIN``; ``content_facts`` (a content tower over the one-hot
  catalogue facts alone) is the reference that measures what the MiniLM text
  adds, not a candidate model (on the synthetic world it is far below
  popularity on warm items and the best model on cold ones);
* the fused model beats ID-only on cold-start Recall@50 (all items ranked) by
  ``COLD_MARGIN`` on the synthetic world (the ID model cannot rank cold items);
* ScaNN keeps at least 90% of brute force's top 10;
* the reloaded serving SavedModel returns the in-memory top 10 (>= 99% overlap;
  eager vs graph rounding may swap items whose scores tie to ~1e-6).
"""

from __future__ import annotations

import math

import pytest

from recsys_utils import artifacts

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]
WARM_MARGIN = 0.01
COLD_MARGIN = 0.1
#: Variants that are references for an ablation, not candidate models.
REFERENCES = {"popularity", "content_facts"}


def _metrics(series_runs, dataset):
    return artifacts.read_metrics(series_runs.upto(dataset, "04"))["04_tfrs_retrieval"]


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_models_beat_popularity_on_warm_items(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    warm = m["warm_recall@50"]
    for name, value in warm.items():
        assert 0.0 <= value <= 1.0 and not math.isnan(value), (name, value)
    popularity = warm["popularity"]
    trained = [v for v in warm if v not in REFERENCES]
    assert {"id", "content", "fused"} <= set(trained), trained
    for variant in trained:
        assert warm[variant] > popularity + WARM_MARGIN, (dataset, variant, warm)
    # The facts-only reference is reported on warm and cold items, for notebook 07's claims.
    assert "content_facts" in warm and "content_facts" in m["cold_recall@50"]


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_cold_start_needs_content(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    cold = m["cold_recall@50"]
    assert cold["id"] == pytest.approx(0.0, abs=0.02)  # all cold items share one untrained row
    margin = COLD_MARGIN if dataset == "synthetic" else 0.02
    assert cold["fused"] > cold["id"] + margin, (dataset, cold)
    assert cold["content"] > cold["id"] + margin, (dataset, cold)


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_scann_and_serving_round_trip(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    assert m["scann"]["recall@10_vs_brute_force"] >= 0.9
    # Eager vs graph rounding can swap near-tied items; the lists must still agree.
    assert m["serving"]["top10_overlap_after_reload"] >= 0.99
    artifact_dir = series_runs.upto(dataset, "04")
    for name in ("retrieval_fused", "query_tower", "item_tower"):
        assert (artifacts.model_dir(artifact_dir, name) / "saved_model.pb").exists(), name
    for name in ("query_tower", "item_tower"):
        assert (artifacts.model_dir(artifact_dir, name) / "calibration.npz").exists(), name


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_tfrs_protocol_only_on_movielens(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    if dataset != "movielens-100k":
        assert m["tfrs_protocol"] is None
        return
    protocol = m["tfrs_protocol"]
    for variant in ("id", "fused"):
        top100 = protocol[variant]["top_100_accuracy"]
        # Far above chance (100 / 1,682 films ~ 0.06) after the tutorial's 3 epochs.
        assert 0.1 < top100 <= 1.0, (variant, top100)
