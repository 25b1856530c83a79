"""The contrastive loss notebook 03 writes out (recsys_utils.contrastive), and that the image encoder uses it."""

from __future__ import annotations

import json

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from recsys_utils import images, notebook_code
from recsys_utils.contrastive import contrastive_loss


def unit(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    x = rng.normal(size=shape)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_matches_the_symmetric_cross_entropy_by_hand():
    rng = np.random.default_rng(0)
    v, t, temperature = unit(rng, (5, 4)), unit(rng, (5, 4)), 0.1
    logits = v @ t.T / temperature

    def cross_entropy(z: np.ndarray) -> float:   # target of row i is column i
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - np.diag(z)))

    expected = 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))
    assert float(contrastive_loss(v, t, temperature)) == pytest.approx(expected, rel=1e-5)
    # Symmetric in its two sides.
    assert float(contrastive_loss(t, v, temperature)) == pytest.approx(expected, rel=1e-5)


def test_matched_pairs_score_low_and_shuffled_pairs_high():
    rng = np.random.default_rng(1)
    v = unit(rng, (16, 32))
    assert float(contrastive_loss(v, v)) < 0.05
    assert float(contrastive_loss(v, np.roll(v, 1, axis=0))) > np.log(16)


def test_the_image_encoder_trains_with_it(monkeypatch):
    calls = []

    def spy(image_vectors, text_vectors, temperature=0.05):
        calls.append((tuple(image_vectors.shape), temperature))
        return contrastive_loss(image_vectors, text_vectors, temperature)

    monkeypatch.setattr(images, "contrastive_loss", spy)
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 255, size=(8, 16, 16, 3), dtype=np.uint8)
    encoder, history = images.train_image_encoder(
        pixels, np.ones(8, bool), objective="contrastive", text_embeddings=unit(rng, (8, 6)),
        dim=4, epochs=1, batch_size=4, temperature=0.2, progress=False)
    assert calls and calls[0][1] == 0.2 and len(history["loss"]) == 1
    # One definition: images.py keeps no copy of the loss.
    text = (notebook_code.ROOT / "recsys_utils" / "images.py").read_text(encoding="utf-8")
    assert "tf.transpose(logits)" not in text and "def contrastive_loss" not in text


def test_the_notebook_shows_it():
    path = notebook_code.ROOT / notebook_code.SAVED["recsys_utils/contrastive.py"][0]
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "# @save recsys_utils/contrastive.py" in code and "def contrastive_loss(" in code
