"""Tests of recsys_utils.encoder_export: the SavedModel that tf-keras (Keras 2) loads."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import json
from pathlib import Path

import numpy as np
import pytest

from recsys_utils import bert_checkpoint, encoder_export, text

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder() -> text.TextEncoder:
    return text.load_text_encoder(max_length=128, precision="float32", batch_size=4)


def test_exported_savedmodel_in_tf_keras_reproduces_vectors(encoder, tmp_path):
    import tensorflow as tf
    import tf_keras

    path = encoder_export.export_encoder(encoder, tmp_path / "text_encoder")
    assert (path / "saved_model.pb").exists()
    # The weights are stored once (~90 MB for MiniLM), not twice.
    stored = sum(f.stat().st_size for f in (path / "variables").iterdir())
    weights = (bert_checkpoint.default_checkpoint_dir() / "model.safetensors").stat().st_size
    assert stored < 1.2 * weights
    layer = encoder_export.load_exported(path)
    inputs = tf_keras.Input(shape=(), dtype=tf.string)
    model = tf_keras.Model(inputs, layer(inputs))  # a Keras 2 model around the Keras 3 export
    assert isinstance(model, tf.keras.Model)
    sentences = json.loads(FIXTURE.read_text(encoding="utf-8"))["sentences"]
    exported = model.predict(tf.constant(sentences), verbose=0)
    in_memory = encoder.encode(sentences, progress=False)
    assert exported.shape == in_memory.shape
    assert (exported * in_memory).sum(axis=1).min() >= 0.9999  # unit vectors: cosines


def test_load_exported_rejects_a_non_savedmodel(tmp_path):
    with pytest.raises(bert_checkpoint.CheckpointError, match="saved_model.pb"):
        encoder_export.load_exported(tmp_path)
