"""The fusion layers (recsys_utils.fusion_layers): shapes, exact masking, gradients, weights, SavedModel."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from recsys_utils import fusion_layers as L
from recsys_utils.content_model import FUSION_METHODS, build_fusion

B, DIMS, OUT = 6, {"text": 24, "image": 16, "attributes": 8}, 12
METHODS = list(FUSION_METHODS)
ORDER = ["text", "image", "attributes"]


def make_inputs(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(B, DIMS[name])).astype(np.float32) for name in ORDER]
    mask = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    return xs, mask


def layer(method: str, **kwargs) -> tf.keras.layers.Layer:
    tf.keras.utils.set_random_seed(0)
    return build_fusion(method, output_dim=OUT, modality_names=ORDER, **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_output_shapes_list_and_dict(method):
    xs, mask = make_inputs()
    fused = layer(method)(xs, modality_mask=mask)
    assert fused.shape == (B, OUT)
    # Dict inputs follow modality_names, whatever the dict order.
    by_name = layer(method)(dict(reversed(list(zip(ORDER, xs)))), modality_mask=mask)
    assert by_name.shape == (B, OUT)
    # No mask = everything present.
    assert layer(method)(xs).shape == (B, OUT)


@pytest.mark.parametrize("method", METHODS)
def test_masked_modality_does_not_contribute(method):
    xs, _ = make_inputs()
    fuse = layer(method)
    mask = np.ones((B, 3), np.float32)
    mask[:, 1] = 0                                   # image masked for every item
    base = fuse(xs, modality_mask=mask).numpy()
    for replacement in (np.zeros_like(xs[1]), 100 * np.random.default_rng(5).normal(size=xs[1].shape)):
        swapped = [xs[0], replacement.astype(np.float32), xs[2]]
        np.testing.assert_allclose(fuse(swapped, modality_mask=mask).numpy(), base, atol=1e-6, rtol=0)
    # NaN in an absent slot does not leak either.
    nan_image = np.full_like(xs[1], np.nan)
    np.testing.assert_allclose(fuse([xs[0], nan_image, xs[2]], modality_mask=mask).numpy(), base, atol=1e-6)
    # ...but the image does matter when present.
    present = fuse(xs, modality_mask=np.ones((B, 3), np.float32)).numpy()
    assert np.abs(present - base).max() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_single_present_modality_and_none_present_are_finite(method):
    xs, _ = make_inputs()
    fuse = layer(method)
    for m in range(3):
        mask = np.zeros((B, 3), np.float32)
        mask[:, m] = 1
        assert np.isfinite(fuse(xs, modality_mask=mask).numpy()).all()
    assert np.isfinite(fuse(xs, modality_mask=np.zeros((B, 3), np.float32)).numpy()).all()


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_present_and_not_masked(method):
    xs, mask = make_inputs()
    fuse = layer(method)
    fuse(xs, modality_mask=np.ones((B, 3), np.float32))       # build
    inputs = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.square(fuse(inputs, modality_mask=np.ones((B, 3), np.float32)) - 1.0))
    kernels = [p.kernel for p in fuse.projections]
    grads = tape.gradient(loss, kernels)
    for name, g in zip(ORDER, grads):
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, f"no gradient to proj_{name}"

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.square(fuse(inputs, modality_mask=mask) - 1.0))
    grads = tape.gradient(loss, inputs)
    for m, g in enumerate(grads):
        g = g.numpy()
        absent = mask[:, m] == 0
        assert (g[absent] == 0).all(), f"masked {ORDER[m]} received gradient"
        assert (np.abs(g[~absent]).sum(axis=1) > 0).all(), f"present {ORDER[m]} received none"


@pytest.mark.parametrize("method", ["gated", "attention"])
def test_modality_weights_sum_to_one_over_present(method):
    xs, mask = make_inputs()
    _, weights = layer(method)(xs, modality_mask=mask, return_weights=True)
    weights = weights.numpy()
    assert weights.shape == (B, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert (weights[mask == 0] == 0).all()
    assert (weights[mask == 1] > 0).all()


def test_concat_hidden_units_and_dropout_config():
    fuse = layer("concat", hidden_units=(32, 16), dropout=0.2)
    xs, mask = make_inputs()
    assert fuse(xs, modality_mask=mask, training=True).shape == (B, OUT)
    config = fuse.get_config()
    assert config["hidden_units"] == [32, 16] and config["dropout"] == 0.2
    clone = L.ConcatFusion.from_config(config)
    assert clone(xs, modality_mask=mask).shape == (B, OUT)


def test_attribute_embedding():
    emb = L.AttributeEmbedding({"colour": 4, "brand": 3}, dim=5)
    codes = {"colour": np.array([0, 3, -1, 7]), "brand": np.array([2, 0, 1, 1])}
    out = emb(codes).numpy()
    assert out.shape == (4, 5)
    # -1 and out-of-range (7) share the "unknown" row.
    unknown = emb.embeddings["colour"].embeddings.numpy()[4]
    brand = emb.embeddings["brand"].embeddings.numpy()
    np.testing.assert_allclose(out[2], unknown + brand[1], atol=1e-6)
    np.testing.assert_allclose(out[3], unknown + brand[1], atol=1e-6)
    concat = L.AttributeEmbedding({"colour": 4, "brand": 3}, dim=5, combine="concat")
    assert concat(codes).shape == (4, 10)



@pytest.mark.parametrize("method", METHODS)
def test_fusion_inside_savedmodel_roundtrip(method, tmp_path):
    tf.keras.utils.set_random_seed(0)
    text = tf.keras.Input((DIMS["text"],), name="text")
    image = tf.keras.Input((DIMS["image"],), name="image")
    colour = tf.keras.Input((), dtype=tf.int32, name="colour")
    mask_in = tf.keras.Input((3,), name="modality_mask")
    attributes = L.AttributeEmbedding({"colour": 4}, dim=DIMS["attributes"])({"colour": colour})
    fused = build_fusion(method, output_dim=OUT, modality_names=ORDER)(
        [text, image, attributes], modality_mask=mask_in)
    model = tf.keras.Model({"text": text, "image": image, "colour": colour, "modality_mask": mask_in}, fused)
    xs, mask = make_inputs()
    feed = {"text": xs[0], "image": xs[1], "colour": np.array([0, 1, 2, 3, -1, 1], np.int32),
            "modality_mask": mask}
    expected = model.predict(feed, verbose=0)
    path = tmp_path / "saved"
    model.save(path)                                      # SavedModel (directory) format
    assert (path / "saved_model.pb").exists()
    reloaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(feed, verbose=0), expected, atol=1e-5)
    assert type(reloaded.layers[-1]).__name__ == type(model.layers[-1]).__name__


def test_every_fusion_derives_from_the_public_base():
    for method in METHODS:
        assert isinstance(layer(method), L.FusionLayer), method


def test_modality_dropout_hides_but_never_all():
    drop = L.ModalityDropout(rate=0.9, seed=0)
    mask = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1]] * 50, np.float32)
    out = drop(mask, training=True).numpy()
    assert ((out == 0) | (mask == 1)).all()                      # never shows an absent modality
    assert (out.sum(axis=1) >= 1).all() and out.sum() < mask.sum()
    np.testing.assert_array_equal(drop(mask, training=False).numpy(), mask)   # identity at inference
