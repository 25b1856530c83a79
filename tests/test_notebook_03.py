"""Notebook 03 (multimodal fusion), executed by papermill on the smoke profile.

Runs notebooks 01..03 once per data set per session (``series_runs``), then
checks the metrics file and the feature arrays the later notebooks read.
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils import artifacts

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]
SCORES = ("precision@10", "recall@10", "ndcg@10", "hit_rate@10", "mrr")
#: The claim the notebook states for synthetic: best fusion over best single
#: modality, NDCG@10 on test items. Seen: +0.18, +0.17, +0.13 (seeds 42, 7, 123).
SYNTHETIC_MARGIN = 0.05


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_03_multimodal_fusion(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "03")
    metrics = artifacts.read_metrics(artifact_dir)["03_multimodal_fusion"]
    prepared = artifacts.load_prepared(artifact_dir)
    n = len(prepared.items)

    # Held-out items: every cold-start item plus a seeded share of the others, split in halves
    # into validation items (which choose) and test items (which score).
    assert metrics["n_eval_items"] + metrics["n_train_items"] == n
    assert metrics["n_validation_items"] + metrics["n_test_items"] == metrics["n_eval_items"]
    assert 0 < metrics["n_validation_items"] <= metrics["n_test_items"]
    assert metrics["n_cold_eval_items"] == len(prepared.cold_items) > 0
    # Never a label (or a truth column) among the attribute inputs.
    inputs = set(metrics["task"]["attribute_inputs"])
    assert not inputs & set(metrics["task"]["labels"]) and not inputs & set(prepared.truth_columns)

    models = metrics["models"]
    assert {"text", "attributes", "concat", "gated", "attention"} <= set(models)
    for name, row in models.items():
        for score in SCORES:
            assert 0.0 <= row[score] <= 1.0, (name, score, row)
        assert row["n_queries"] > 0.5 * metrics["n_test_items"], (name, row)
    metric = metrics["metric"]
    # The winners are the best on the validation items; their scores are the test items'.
    chooses = f"validation {metric}"
    fusions = ("concat", "gated", "attention")
    assert metrics["best_fusion"] == max(fusions, key=lambda m: models[m][chooses])
    assert metrics["best_single"] == max((m for m in models if m not in fusions),
                                         key=lambda m: models[m][chooses])
    assert metrics["best_fusion_score"] == models[metrics["best_fusion"]][metric]
    assert metrics["margin_absolute"] == pytest.approx(metrics["best_fusion_score"] - metrics["best_single_score"])
    # Any trained representation beats the weakest modality alone by far on its own task.
    assert metrics["best_fusion_score"] > 0.2
    # The judged differences carry paired intervals over the same held-out items: best fusion
    # vs best single modality, attention vs the better of concatenation and gated fusion.
    rows = {(row["a"], row["b"]): row for row in metrics["intervals"]}
    simpler = max(("concat", "gated"), key=lambda m: models[m][chooses])
    assert set(rows) == {(metrics["best_fusion"], metrics["best_single"]), ("attention", simpler)}
    for (a, b), row in rows.items():
        assert row["split"] == "test" and row["metric"] == metric
        assert row["value_a"] == pytest.approx(models[a][metric])
        assert row["value_b"] == pytest.approx(models[b][metric])
        assert row["n_queries"] == models[a]["n_queries"]
        assert row["low"] <= row["difference"] <= row["high"]

    weights = metrics["modality_weights"]
    for row in ("gated (prior)", "gated (mean)", "attention (mean)"):
        assert sum(weights[row].values()) == pytest.approx(1.0, abs=1e-4), (row, weights[row])

    fused = artifacts.load_features(artifact_dir, "item_fused")
    image = artifacts.load_features(artifact_dir, "item_image")
    present = artifacts.load_features(artifact_dir, "item_image_present")
    assert fused.shape[0] == image.shape[0] == present.shape[0] == n
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-4)
    assert (image[~present] == 0).all()
    assert set(metrics["timings"]) >= {"content_models"}

    if dataset == "movielens-100k":
        # No images: said so, nothing image-related trained, text + attributes fused.
        assert metrics["images"]["present"] == 0 and metrics["image_objective"] is None
        assert "no product images" in metrics["images"]["note"]
        assert "image" not in models and not present.any()
        assert "genres" in metrics["task"]["excluded_attributes"]     # it contains the label
        # The text states the genres; fusing attributes in must not hurt much.
        assert metrics["best_fusion_score"] >= models["text"][metric] - 0.03
        return

    images = metrics["images"]
    assert images["present"] == int(present.sum()) > 0.9 * n
    assert metrics["image_objective"] == images["objective"] in ("supervised", "contrastive")
    scores, chose = images["scores"], images["validation_scores"]
    assert set(scores) == set(chose) == {"random", "supervised", "contrastive"}
    assert chose[images["objective"]] == max(chose["supervised"], chose["contrastive"])
    # The image encoder learned something a random one does not know.
    # Seen: synthetic +0.19..+0.25 (3 seeds), fashion +0.08.
    assert scores[images["objective"]] > scores["random"] + (0.1 if dataset == "synthetic" else 0.04), scores
    assert models["image"][metric] > 0.1

    if dataset == "synthetic":
        # Colour (mostly image) + material (text only): fusion must beat every single modality.
        assert metrics["margin_absolute"] >= SYNTHETIC_MARGIN, (metrics["margin_absolute"], models)
        assert metrics["claim"]["holds"] is True
    else:
        # Fashion names state type and colour: text is strong; fusion must not be worse.
        assert metrics["best_fusion_score"] >= metrics["best_single_score"] - 0.02


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_03_exports_the_encoders_a_new_item_needs(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "03")
    exported = artifacts.read_metrics(artifact_dir)["03_multimodal_fusion"]["item_encoder"]
    root = artifact_dir / exported["path"]
    assert (root / "spec.json").exists() and (root / "fusion" / "saved_model.pb").exists()
    # Images only where the data set has them (MovieLens: text and attributes).
    assert ("image" in exported["modalities"]) == (root / "image").exists()
    assert ("image" in exported["modalities"]) == (dataset != "movielens-100k")
    # Raw fields through the exported encoders give back the written fused vectors.
    assert exported["rebuilt_min_cosine"] > 0.99, exported
