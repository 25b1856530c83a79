"""Training the content model (recsys_utils.content_model): fused vectors, modality weights, input errors."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest

from recsys_utils.content_metrics import content_retrieval_metrics
from recsys_utils.content_model import build_fusion, fit_content_model
from recsys_utils.schema import DataError


@pytest.mark.parametrize("method", [None, "concat", "gated", "attention"])
def test_fit_content_model(content_world, method):
    w = content_world
    modalities = {"text": w["text"]} if method is None else {"text": w["text"], "image": w["image"]}
    masks = {} if method is None else {"image": w["image_present"]}
    model, emb, history = fit_content_model(
        modalities, masks, {"a": w["a"], "b": w["b"]}, method=method, train_idx=w["train"],
        val_idx=w["test"], output_dim=16, epochs=15, batch_size=64, learning_rate=3e-3, seed=0,
        progress=False)
    assert emb.shape == (w["n"], 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert history["loss"][-1] < history["loss"][0] and "val_loss" in history
    metrics = content_retrieval_metrics(emb, w["test"], w["key"])
    assert {"precision@10", "recall@10", "ndcg@10", "n_queries"} <= set(metrics)
    with_image = w["test"][w["image_present"][w["test"]]]
    p_image = content_retrieval_metrics(emb, with_image, w["key"])["precision@10"]
    if method is None:
        assert metrics["precision@10"] < 0.45, metrics   # text alone cannot see attribute b
    else:
        # Fusion recovers a and b wherever the image is there (chance is 1/12).
        assert p_image > 0.85 and metrics["precision@10"] > 0.7, (p_image, metrics)
    if method in ("gated", "attention"):
        weights = model.modality_weights(modalities, masks)
        assert weights.shape == (w["n"], 2)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        assert (weights[~w["image_present"], 1] == 0).all()
    np.testing.assert_allclose(model.embed(modalities, masks), emb, atol=1e-5)


def test_fit_content_model_with_attribute_codes(content_world):
    w = content_world
    model, emb, _ = fit_content_model(
        {"text": w["text"], "attributes": {"c": w["c"]}}, None, {"a": w["a"], "c2": w["c"] % 2},
        method="gated", train_idx=w["train"], output_dim=8, epochs=2, batch_size=128, progress=False)
    assert emb.shape == (w["n"], 8)
    assert model.modality_names == ["text", "attributes"]


def test_fit_content_model_errors(content_world):
    w = content_world
    two = {"text": w["text"], "image": w["image"]}
    with pytest.raises(ValueError, match="exactly one"):
        fit_content_model(two, None, {"a": w["a"]}, method=None, train_idx=w["train"])
    with pytest.raises(ValueError, match="concat, gated, attention"):
        fit_content_model(two, None, {"a": w["a"]}, method="sum", train_idx=w["train"])
    with pytest.raises(DataError, match="both an input"):
        fit_content_model({"attributes": {"a": w["a"]}}, None, {"a": w["a"]}, method=None,
                            train_idx=w["train"])
    with pytest.raises(DataError, match="rows"):
        fit_content_model({"text": w["text"], "image": w["image"][:10]}, None, {"a": w["a"]},
                            method="concat", train_idx=w["train"])


def test_unknown_method_error():
    with pytest.raises(ValueError, match="concat, gated, attention"):
        build_fusion("transformer++", output_dim=8)
