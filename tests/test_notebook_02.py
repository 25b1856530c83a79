"""Notebook 02 (BERT text encoding), executed by papermill on the smoke profile."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils import artifacts

pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("dataset", ["synthetic", "movielens-100k", "fashion"])
def test_02_text_encoding(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "02")
    metrics = artifacts.read_metrics(artifact_dir)["02_text_encoding"]
    prepared = artifacts.load_prepared(artifact_dir)

    vectors = artifacts.load_features(artifact_dir, "item_text")
    assert vectors.shape == (len(prepared.items), metrics["dim"]) == (len(prepared.items), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # Different items get different vectors (no collapsed or all-zero rows).
    assert len(np.unique(vectors.round(4), axis=0)) > 0.9 * len(vectors)

    # The SavedModel loaded through TF Hub reproduces the in-memory encoder.
    assert metrics["export_min_cosine"] >= 0.9999
    assert (artifacts.model_dir(artifact_dir, "text_encoder") / "saved_model.pb").exists()

    # The embeddings know the category far better than the majority-class floor.
    category = [row for row in metrics["probe"]
                if row["label"] == "category" and row["train examples"] == "all"][0]
    assert category["MiniLM"] > category["majority class"] + 0.3
    # Each regime's MiniLM - TF-IDF difference, with the interval notebook 08 judges it by:
    # the few-shot one over five draws, its values the recorded means.
    intervals = {row["split"]: row for row in metrics["intervals"]}
    assert set(intervals) == {"probe, 5 per class", "probe, all"}
    for regime, mean in (("5 per class", metrics["few_shot_probe_mean"]),
                         ("all", metrics["full_probe_mean"])):
        row = intervals[f"probe, {regime}"]
        assert (row["a"], row["b"], row["metric"]) == ("MiniLM", "TF-IDF", "accuracy")
        assert row["value_a"] == pytest.approx(mean["MiniLM"], abs=5e-4)
        assert row["value_b"] == pytest.approx(mean["TF-IDF"], abs=5e-4)
        assert row["low"] <= row["difference"] <= row["high"] and row["low"] < row["high"]
    assert intervals["probe, 5 per class"]["draws"] == 5 and intervals["probe, all"]["draws"] == 1

    if prepared.queries is not None:
        queries = artifacts.load_features(artifact_dir, "query_text")
        assert queries.shape == (len(prepared.queries), 384) == (metrics["n_queries"], 384)
    else:
        assert metrics["n_queries"] == 0
