"""Tests of recsys_utils.sentence_pooling (written from notebook 02): token states -> sentence vectors."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import numpy as np
import tensorflow as tf

from recsys_utils.sentence_pooling import sentence_vectors

RNG = np.random.default_rng(0)
STATES = RNG.normal(size=(3, 5, 8)).astype(np.float32)  # (batch, tokens, dim)
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32)


def test_mean_pooling_is_the_normalised_mean_of_the_real_tokens():
    out = sentence_vectors(tf.constant(STATES), tf.constant(MASK)).numpy()
    for row, mask in enumerate(MASK):
        mean = STATES[row, mask == 1].mean(axis=0)
        np.testing.assert_allclose(out[row], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    assert out.shape == (3, 8) and out.dtype == np.float32


def test_padding_states_do_not_count():
    noisy = STATES.copy()
    noisy[MASK == 0] = 1e3  # whatever the backbone leaves at padded positions
    np.testing.assert_array_equal(sentence_vectors(tf.constant(noisy), tf.constant(MASK)).numpy(),
                                  sentence_vectors(tf.constant(STATES), tf.constant(MASK)).numpy())


def test_cls_pooling_takes_the_first_state_and_a_bool_mask_works():
    out = sentence_vectors(tf.constant(STATES), tf.constant(MASK.astype(bool)), "cls").numpy()
    expected = STATES[:, 0] / np.linalg.norm(STATES[:, 0], axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_states_are_pooled_in_float32_and_an_empty_mask_gives_zeros_not_nan():
    out = sentence_vectors(tf.constant(STATES, tf.bfloat16), tf.constant(MASK)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    empty = sentence_vectors(tf.constant(STATES), tf.zeros((3, 5), tf.int32)).numpy()
    assert np.isfinite(empty).all() and not empty.any()
