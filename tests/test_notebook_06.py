"""Notebook 06 (quantization), executed by papermill on the smoke profile.

Tolerances (also stated in the notebook and in the issue):

* the dynamic-range int8 text encoder keeps cosine >= 0.99 to the float32
  TFLite encoder on every held-out text (measured: worst 0.997-0.998);
* the int8 towers (dynamic-range and full-integer) lose at most 2% relative
  Recall@10 against the float32 towers (measured: 0 to 1.8% loss, one or two
  hits out of several hundred test users; some runs gain);
* dynamic-range int8 files are at least 3.5x smaller than float32 for every
  model (measured 3.6-3.8x). Full-integer files are not held to it: they
  duplicate tables read by two lookups (ranker 2.3-2.8x), see the notebook;
* the dynamic-range ranker's RMSE / AUC is within 1% of float32's.
"""

from __future__ import annotations

import math

import pytest

from recsys_utils import artifacts

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]
MIN_COSINE = 0.99
MAX_RELATIVE_RECALL_LOSS = 0.02
MIN_X_SMALLER = 3.5
RANKER_TOLERANCE = 0.01


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_06_int8_variants_within_tolerance(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "06")
    m = artifacts.read_metrics(artifact_dir)["06_quantization"]
    v = m["variants"]
    # The string-input encoder cannot convert (tensorflow-text ops); the token-id one can.
    assert not m["encoder"]["string_model_converts"]
    assert "FastWordpieceTokenize" in m["encoder"]["string_model_error"]
    assert m["encoder"]["export_min_cosine"] >= 0.9999
    enc = v["text encoder|dynamic_int8"]
    assert enc["ok"] and enc["quality"] >= MIN_COSINE, enc
    assert enc["num_threads"] >= 1 and enc["median_ms"] > 0 and enc["throughput"] > 0
    for model in ("text encoder", "towers", "ranker"):
        assert v[f"{model}|dynamic_int8"]["x_smaller"] >= MIN_X_SMALLER, (model, v[f"{model}|dynamic_int8"])
    for variant in ("dynamic_int8", "full_int8"):
        assert v[f"towers|{variant}"]["ok"], v[f"towers|{variant}"]
        assert m["towers"]["relative_recall_loss"][variant] <= MAX_RELATIVE_RECALL_LOSS, m["towers"]
    assert 0 < m["towers"]["float32_recall@10"] <= 1
    ranker = {k.split("|")[1]: r for k, r in v.items() if k.startswith("ranker|")}
    assert all(r["ok"] and not math.isnan(r["quality"]) for r in ranker.values()), ranker
    reference = ranker["float32"]["quality"]
    assert abs(ranker["dynamic_int8"]["quality"] - reference) <= RANKER_TOLERANCE * reference, ranker
    index = {row["index"]: row for row in m["index"]}
    assert index["int8 scalar"]["recall_at_k"] >= 0.95 and index["int8 scalar"]["x_smaller"] > 3.5
    assert index["scann int8 brute force"]["recall_at_k"] >= 0.95
    assert index["scann AH + reorder"]["recall_at_k"] >= 0.95
