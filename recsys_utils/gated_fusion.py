"""The gated fusion of notebook 03: a softmax gate weighs an item's projected text,
image and attribute vectors, over the modalities the item has, and sums them.

Generated from ``notebooks/03_multimodal_fusion.ipynb`` (its cells marked ``# @save``):
edit the notebook, then run ``python -m recsys_utils.notebook_code``.
"""
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_utils.fusion_layers import NEG_LOGIT, FusionLayer


@tf.keras.utils.register_keras_serializable(package="recsys_utils")
class GatedFusion(FusionLayer):
    """Softmax-gated sum of the projected modalities, over the ones present.

    Call: ``layer(inputs, modality_mask)`` with ``M`` inputs ``[(B, d_m)]`` (a list, or a
    dict by name) and ``modality_mask`` ``(B, M)`` (1 present, 0 absent) -> ``(B, output_dim)``.
    ``logit_m = b_m (+ w_m . proj_m if input_dependent)``; an absent modality gets logit
    ``NEG_LOGIT``, so its weight is exactly 0 and the present ones' weights sum to 1.
    ``return_weights=True`` also returns the weights ``(B, M)``.
    """

    def __init__(self, output_dim: int, input_dependent: bool = True, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.input_dependent = bool(input_dependent)

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)            # projections, norms, "missing" vectors
        self.gate_bias = self.add_weight(name="gate_bias", shape=(self.num_modalities,),
                                         initializer="zeros", trainable=True)
        if self.input_dependent:
            # One score per modality from its own projection; zeros, so training
            # starts from equal weights.
            self.gate_kernel = self.add_weight(
                name="gate_kernel", shape=(self.num_modalities, self.projection_width),
                initializer="zeros", trainable=True)

    def gate_weights(self, tokens: tf.Tensor, effective: tf.Tensor) -> tf.Tensor:
        """Projections ``(B, M, width)`` and effective mask ``(B, M)`` -> weights ``(B, M)``."""
        logits = tf.broadcast_to(self.gate_bias[tf.newaxis, :], tf.shape(tokens)[:2])
        if self.input_dependent:
            logits = logits + tf.einsum("bmd,md->bm", tokens, self.gate_kernel)
        # Not -inf: exp(-1e9) is exactly 0 in float32 and never makes a NaN gradient.
        absent = tf.fill(tf.shape(logits), tf.constant(NEG_LOGIT, logits.dtype))
        return tf.nn.softmax(tf.where(effective, logits, absent), axis=-1)

    def call(self, inputs: Any, modality_mask: Any = None, training: Any = None,
             return_weights: bool = False) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        tokens, _, effective = self.project_modalities(inputs, modality_mask)  # (B, M, width)
        weights = self.gate_weights(tokens, effective)                          # (B, M)
        fused = tf.einsum("bm,bmd->bd", weights, tokens)                        # (B, width)
        return (fused, weights) if return_weights else fused

    @property
    def prior_weights(self) -> np.ndarray:
        """``softmax(gate_bias)`` ``(M,)``: the learned modality weights before any input term."""
        return tf.nn.softmax(self.gate_bias).numpy()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(input_dependent=self.input_dependent)
        return config
