"""Sentence vectors from a BERT's token states (notebook 02): masked mean pooling
and L2 normalisation, the function ``recsys_utils.text.TextEncoder`` calls.

Generated from ``notebooks/02_text_encoding.ipynb`` (its cells marked ``# @save``):
edit the notebook, then run ``python -m recsys_utils.notebook_code``.
"""
import tensorflow as tf


POOLINGS = ("mean", "cls")


def sentence_vectors(sequence_output: tf.Tensor, padding_mask: tf.Tensor,
                     pooling: str = "mean") -> tf.Tensor:
    """Token states -> one unit-length vector per text.

    ``sequence_output`` ``(batch, tokens, dim)``, any float dtype; ``padding_mask``
    ``(batch, tokens)``, 1/True on real tokens. Returns ``(batch, dim)`` float32 with
    L2 norm 1: the mean over the real tokens (``pooling="mean"``, how the checkpoint was
    trained) or the ``[CLS]`` state (``"cls"``).
    """
    # Pool in float32 even under bf16: summing 128 bf16 values loses digits.
    states = tf.cast(sequence_output, tf.float32)
    if pooling == "cls":
        pooled = states[:, 0, :]
    else:
        # expand_dims rather than [:, :, None]: the TFLite converter rejects the latter.
        mask = tf.expand_dims(tf.cast(padding_mask, tf.float32), -1)  # (batch, tokens, 1)
        # Padding states are zeroed by the mask and not counted; max() spares an empty text 0/0.
        pooled = tf.reduce_sum(states * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
    return tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-12)
