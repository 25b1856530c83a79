"""The whole series on the bring-your-own csv fixture (``tests/fixtures/csv_good``), smoke profile.

The fixture is a small generated shop (``tests/fixtures/make_csv_good.py``):
320 items, 420 users, about 4,800 events, 40 graded queries, and photos for
most items, one of which is not an image and one of which is missing. The
series runs once (about 4 minutes on 2 CPU cores) without notebook 06, which
reads only the models the series exported, wherever the data came from (the
three data-set series run it); each test reads one notebook's metrics file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from recsys_utils import artifacts

pytestmark = pytest.mark.notebook

CSV_GOOD = Path(__file__).resolve().parent / "fixtures" / "csv_good"


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """The artifact directory of one smoke run on the csv fixture: notebooks 01-05, 07, 08."""
    from recsys_utils.series import run_series

    run_dir = tmp_path_factory.mktemp("csv-series")
    for start, stop in (("01", "05"), ("07", "08")):
        run_series("csv", "smoke", run_dir, data_dir=CSV_GOOD, seed=42, start=start, stop=stop,
                   progress=False)
    return run_dir / "artifacts"


@pytest.fixture(scope="module")
def metrics(csv_run) -> dict[str, dict]:
    return artifacts.read_metrics(csv_run)


def test_csv_01_prepares_with_verified_relative_images(csv_run, metrics):
    m = metrics["01_data_preparation"]
    assert m["dataset"] == "csv" and m["feedback"] == "event"
    assert (m["n_items"], m["n_users"]) == (320, 420) and m["n_interactions"] > 3000
    splits = m["splits"]
    assert splits["validation"] > 100 and splits["test"] > 100 and splits["test_cold"] > 0
    # One photo is a text file, one path names nothing: both recorded, neither used.
    assert (m["unreadable_images"], m["missing_images"]) == (1, 1)
    assert [w["check"] for w in m["warnings"]] == ["bad images"]
    manifest = json.loads((csv_run / "data" / "dataset.json").read_text())
    assert manifest["image_root"] == "data_dir"
    assert {b["item_id"]: b["problem"].split(":")[0] for b in manifest["report"]["bad_images"]} \
        == {"0000": "unreadable", "0002": "missing"}
    items = pd.read_parquet(csv_run / "data" / "items.parquet").set_index("item_id")
    paths = items["image_path"].dropna()
    assert len(paths) == m["items_with_images"] == 249
    assert not any(Path(p).is_absolute() for p in paths) and pd.isna(items.at["0000", "image_path"])


def test_csv_02_encodes_every_item_and_query(metrics):
    m = metrics["02_text_encoding"]
    assert (m["n_items"], m["n_queries"], m["dim"]) == (320, 40, 384)
    assert m["export_min_cosine"] > 0.999
    for probe in ("few_shot_probe_mean", "full_probe_mean"):
        assert 0.3 < m[probe]["MiniLM"] <= 1.0


def test_csv_03_fuses_only_verified_images(metrics):
    m = metrics["03_multimodal_fusion"]
    assert m["images"]["present"] == metrics["01_data_preparation"]["items_with_images"]
    assert m["n_eval_items"] > 0 and m["n_cold_eval_items"] > 0
    assert 0.0 < m["best_fusion_score"] <= 1.0 + 1e-9
    assert set(m["models"]) >= {"text", "image", "attributes", "concat", "gated", "attention"}


def test_csv_04_retrieval_learns_beyond_chance(metrics):
    m = metrics["04_tfrs_retrieval"]
    warm, cold = m["warm_recall@50"], m["cold_recall@50"]
    assert all(0.0 <= v <= 1.0 for v in [*warm.values(), *cold.values()])
    chance = 50 / 320
    assert max(warm[k] for k in ("id", "content", "fused")) > 2 * chance
    # Content reaches cold items, which an id-only model cannot.
    assert cold["fused"] > cold["id"] + 0.1


def test_csv_05_ranking(metrics):
    m = metrics["05_tfrs_ranking"]
    assert m["test"]["n"] > 100 and 0.0 <= m["test"]["auc"] <= 1.0
    assert 0.0 <= m["chain"]["retrieval_ndcg@10"] <= 1.0


def test_csv_07_search_and_08_report(csv_run, metrics):
    m = metrics["07_product_search"]
    assert m["has_queries"] and m["n_queries"] == 40
    assert 0.3 < m["test"]["bm25"]["all"]["ndcg@10"] <= 1.0
    report = metrics["08_evaluation"]
    assert "07_product_search" in report["stages_read"]
    assert "06_quantization" not in report["stages_read"]  # a missing stage is left out
    assert (csv_run.parent / report["report"]["html"]).is_file()


def test_csv_copied_run_reads_its_own_data_dir(csv_run, tmp_path):
    """Image paths are relative: a copied run with the data moved resolves to the new place."""
    from recsys_utils import prepare

    copy = tmp_path / "copy"
    shutil.copytree(csv_run / "data", copy / "data")
    items = prepare.resolve_image_paths(pd.read_parquet(copy / "data" / "items.parquet"), copy,
                                        tmp_path / "elsewhere")
    paths = items["image_path"].dropna()
    assert len(paths) == 249 and all(p.startswith(str(tmp_path / "elsewhere")) for p in paths)


def test_csv_too_small_stops_in_notebook_01_with_the_gate_message(tmp_path):
    """The three-item fixture stops at notebook 01's gate, in seconds, before any model work."""
    import time

    from recsys_utils.series import run_series

    started = time.perf_counter()
    with pytest.raises(Exception) as info:  # the series' wrapper of the notebook's DataError
        run_series("csv", "smoke", tmp_path / "run", data_dir=CSV_GOOD.parent / "csv_tiny",
                   progress=False)
    message = str(info.value)
    assert "items.csv, column 'item_id': 3 item(s)" in message and "at least 50" in message
    assert time.perf_counter() - started < 90
    artifact_dir = tmp_path / "run" / "artifacts"
    assert not (artifact_dir / "data" / "dataset.json").exists()  # nothing a later stage trusts
    assert not (artifact_dir / "metrics" / "01_data_preparation.json").exists()
