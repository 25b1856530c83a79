"""The CLIP-style contrastive loss of notebook 03: symmetric in-batch cross-entropy
between paired image and text vectors (the image encoder's contrastive objective).

Generated from ``notebooks/03_multimodal_fusion.ipynb`` (its cells marked ``# @save``):
edit the notebook, then run ``python -m recsys_utils.notebook_code``.
"""
import tensorflow as tf


def contrastive_loss(image_vectors: tf.Tensor, text_vectors: tf.Tensor,
                     temperature: float = 0.05) -> tf.Tensor:
    """CLIP's symmetric in-batch cross-entropy between paired image and text vectors.

    ``image_vectors``, ``text_vectors``: ``(B, d)``, unit length, row ``i`` of both
    describing item ``i``. Returns the scalar mean of the image->text and
    text->image cross-entropies over the ``(B, B)`` cosine / ``temperature`` logits.
    """
    # A low temperature sharpens the softmax: cosines only span [-1, 1].
    logits = (1.0 / temperature) * tf.matmul(image_vectors, text_vectors, transpose_b=True)  # (B, B)
    target = tf.range(tf.shape(logits)[0])             # item i's partner is in column i
    image_to_text = tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits)
    text_to_image = tf.nn.sparse_softmax_cross_entropy_with_logits(target, tf.transpose(logits))
    return 0.5 * (tf.reduce_mean(image_to_text) + tf.reduce_mean(text_to_image))
