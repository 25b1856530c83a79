"""The fusion layers (serialisable tf-keras): an item's modality vectors in one vector.

A fusion layer's call ``layer(inputs, modality_mask=None, training=None)`` takes ``M``
tensors ``(B, d_m)`` (a list, or a dict ordered by ``modality_names`` / sorted keys) and a
mask ``(B, M)`` (1 present, 0 absent) -> ``(B, output_dim)``. The gated fusion is written
in notebook 03 (``gated_fusion.py``). A missing modality's raw input is zeroed with
``tf.where`` before any computation (even NaN has no effect and gets zero gradient), its
projection replaced by a learned "missing" vector; softmax fusions give it logit
:data:`NEG_LOGIT`, and a row with nothing present uses every modality's missing vector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import tensorflow as tf

#: Softmax logit of absent modalities, as in Keras' masked softmax: exp(-1e9) is exactly
#: 0 in float32 and, unlike -inf, never gives NaN (inf - inf) in the softmax or its gradient.
NEG_LOGIT = -1e9
#: Keras registration package of the layers (``"recsys_utils>ConcatFusion"``...).
PACKAGE = "recsys_utils"


class _ConfigLayer(tf.keras.layers.Layer):
    """A layer whose ``get_config`` adds the constructor arguments named in ``CONFIG``."""

    CONFIG: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **{name: getattr(self, name) for name in self.CONFIG}}


class FusionLayer(_ConfigLayer):
    """Base of every fusion layer: per-modality projection with missing-modality substitution.

    Subclasses may set ``self.projection_width`` (default ``output_dim``) before ``build``
    and call :meth:`project_modalities`.
    """

    CONFIG = ("output_dim", "modality_names", "normalize_projections")

    def __init__(self, output_dim: int, modality_names: Sequence[str] | None = None,
                 normalize_projections: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(output_dim) < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        self.output_dim = int(output_dim)
        self.modality_names = list(modality_names) if modality_names is not None else None
        # LayerNorm per modality puts modalities of very different scales (unit text
        # vectors, fresh attribute embeddings) on an equal footing before mixing.
        self.normalize_projections = bool(normalize_projections)
        self.projection_width = self.output_dim

    def _order(self, inputs: Mapping) -> list[str]:
        names = self.modality_names or sorted(inputs)
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"{self.name}: modalities {missing} missing from the inputs "
                             f"(got {sorted(inputs)})")
        return names

    def _as_list(self, inputs: Any) -> list:
        if isinstance(inputs, Mapping):
            return [inputs[n] for n in self._order(inputs)]
        return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]

    def _normal_weight(self, name: str, shape: tuple) -> tf.Variable:
        return self.add_weight(name=name, shape=shape, trainable=True,
                               initializer=tf.keras.initializers.RandomNormal(stddev=0.02))

    def build(self, input_shape: Any) -> None:
        shapes = self._as_list(input_shape)
        self.num_modalities = len(shapes)
        if self.modality_names is not None and len(self.modality_names) != len(shapes):
            raise ValueError(f"{self.name}: {len(self.modality_names)} modality_names "
                             f"for {len(shapes)} inputs")
        self._names = (self._order(input_shape) if isinstance(input_shape, Mapping)
                       else list(self.modality_names or [f"m{i}" for i in range(len(shapes))]))
        self.projections = [tf.keras.layers.Dense(self.projection_width, name=f"proj_{n}")
                            for n in self._names]
        self.proj_norms = [tf.keras.layers.LayerNormalization(name=f"proj_norm_{n}")
                           for n in self._names if self.normalize_projections]
        for m, shape in enumerate(shapes):
            shape = tf.TensorShape(shape)
            self.projections[m].build(shape)
            if self.proj_norms:
                self.proj_norms[m].build(shape[:-1].concatenate([self.projection_width]))
        self.missing_embeddings = self._normal_weight(
            "missing_embeddings", (self.num_modalities, self.projection_width))
        super().build(input_shape)

    def _mask(self, xs: list, modality_mask: Any) -> tf.Tensor:
        if modality_mask is None:
            return tf.ones((tf.shape(xs[0])[0], len(xs)), dtype=tf.bool)
        mask = tf.convert_to_tensor(modality_mask)
        if mask.dtype != tf.bool:
            mask = tf.cast(mask, tf.float32) > 0.5
        mask.shape.assert_is_compatible_with([None, len(xs)])
        return mask

    def project_modalities(self, inputs: Any, modality_mask: Any
                           ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """-> tokens (B, M, width), present mask (B, M), effective mask (B, M).

        The effective mask is the present mask, except in rows where nothing is
        present: there all (missing-vector) tokens are used.
        """
        xs = [tf.cast(x, self.compute_dtype) for x in self._as_list(inputs)]
        present = self._mask(xs, modality_mask)
        tokens = []
        for m, x in enumerate(xs):
            keep = present[:, m:m + 1]
            # First: an absent slot may hold anything (even NaN); tf.where gives it zero gradient.
            x = tf.where(keep, x, tf.zeros_like(x))
            p = self.projections[m](x)
            if self.proj_norms:
                p = self.proj_norms[m](p)
            missing = tf.cast(self.missing_embeddings[m], p.dtype)[tf.newaxis, :]
            tokens.append(tf.where(keep, p, tf.broadcast_to(missing, tf.shape(p))))
        none_present = tf.logical_not(tf.reduce_any(present, axis=1, keepdims=True))
        return tf.stack(tokens, axis=1), present, tf.logical_or(present, none_present)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ConcatFusion(FusionLayer):
    """Project each modality, substitute missing ones, concatenate, MLP (ReLU
    ``hidden_units``, each followed by ``dropout`` in training) to ``output_dim``.
    ``projection_dim`` is the per-modality projection width (default ``output_dim``)."""

    CONFIG = (*FusionLayer.CONFIG, "hidden_units", "dropout", "projection_dim")

    def __init__(self, output_dim: int, hidden_units: Sequence[int] = (256,), dropout: float = 0.0,
                 projection_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = float(dropout)
        self.projection_dim = int(projection_dim) if projection_dim else None
        self.projection_width = self.projection_dim or self.output_dim
        self.mlp = []
        for i, units in enumerate(self.hidden_units):
            self.mlp.append(tf.keras.layers.Dense(units, activation="relu", name=f"hidden_{i}"))
            if self.dropout > 0:
                self.mlp.append(tf.keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
        self.out = tf.keras.layers.Dense(self.output_dim, name="output")

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        width = self.num_modalities * self.projection_width
        for layer in self.mlp:                 # variables exist before any restore
            if isinstance(layer, tf.keras.layers.Dense):
                layer.build(tf.TensorShape([None, width]))
                width = layer.units
        self.out.build(tf.TensorShape([None, width]))

    def call(self, inputs: Any, modality_mask: Any = None, training: Any = None) -> tf.Tensor:
        tokens, _, _ = self.project_modalities(inputs, modality_mask)
        h = tf.reshape(tokens, (-1, self.num_modalities * self.projection_width))
        for layer in self.mlp:
            h = layer(h, training=training)
        return self.out(h)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttentionFusion(FusionLayer):
    """A learned query token attends over the present modality tokens ``proj_m(x_m) + type_m``
    (absent ones masked out), then residual + LayerNorm, FFN, residual + LayerNorm.

    ``layer(..., return_weights=True)`` also returns the attention weights
    ``(B, M)`` averaged over heads (0 exactly for absent modalities).
    """

    CONFIG = (*FusionLayer.CONFIG, "num_heads", "ffn_multiplier", "dropout")

    def __init__(self, output_dim: int, num_heads: int = 2, ffn_multiplier: int = 2,
                 dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.num_heads = int(num_heads)
        self.ffn_multiplier = int(ffn_multiplier)
        self.dropout = float(dropout)
        self.attention = tf.keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=max(1, self.output_dim // self.num_heads),
            dropout=self.dropout, name="attention")
        self.norm_attention = tf.keras.layers.LayerNormalization(name="norm_attention")
        self.ffn_hidden = tf.keras.layers.Dense(self.ffn_multiplier * self.output_dim,
                                                activation="relu", name="ffn_hidden")
        self.ffn_out = tf.keras.layers.Dense(self.output_dim, name="ffn_out")
        self.ffn_dropout = tf.keras.layers.Dropout(self.dropout, name="ffn_dropout")
        self.norm_ffn = tf.keras.layers.LayerNormalization(name="norm_ffn")

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        d = self.output_dim
        self.type_embeddings = self._normal_weight("type_embeddings", (self.num_modalities, d))
        self.query = self._normal_weight("query", (1, 1, d))
        # Every sub-layer's variables now, not lazily in call: a MultiHeadAttention built on
        # first call is not restored from a SavedModel (reloads used fresh random weights).
        tokens = tf.TensorShape([None, self.num_modalities, d])
        self.attention._build_from_signature(tf.TensorShape([None, 1, d]), tokens, tokens)
        for layer, width in ((self.norm_attention, d), (self.ffn_hidden, d),
                             (self.ffn_out, self.ffn_multiplier * d), (self.norm_ffn, d)):
            layer.build(tf.TensorShape([None, 1, width]))

    def call(self, inputs: Any, modality_mask: Any = None, training: Any = None,
             return_weights: bool = False) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        tokens, _, effective = self.project_modalities(inputs, modality_mask)
        tokens = tokens + self.type_embeddings[tf.newaxis]
        query = tf.tile(tf.cast(self.query, tokens.dtype), [tf.shape(tokens)[0], 1, 1])  # (B, 1, D)
        attended, scores = self.attention(query, tokens, tokens,
                                          attention_mask=effective[:, tf.newaxis, :],
                                          return_attention_scores=True, training=training)
        x = self.norm_attention(query + attended)
        x = self.norm_ffn(x + self.ffn_dropout(self.ffn_out(self.ffn_hidden(x)), training=training))
        fused = x[:, 0, :]
        if return_weights:
            return fused, tf.reduce_mean(scores[:, :, 0, :], axis=1)        # (B, H, 1, M) -> (B, M)
        return fused


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttributeEmbedding(_ConfigLayer):
    """Embeddings of categorical attribute codes: the "attributes" modality.

    ``vocab_sizes``: attribute name -> number of categories; codes outside ``[0, size)``
    (e.g. -1 for missing) share one extra "unknown" row. ``dim``: width per attribute;
    ``combine``: ``"sum"`` -> ``(B, dim)``, ``"concat"`` -> ``(B, dim * A)`` in sorted name
    order. Call: ``layer({name: codes (B,) or (B, 1)})``.
    """

    CONFIG = ("vocab_sizes", "dim", "combine")

    def __init__(self, vocab_sizes: Mapping[str, int], dim: int = 32,
                 combine: Literal["sum", "concat"] = "sum", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if combine not in ("sum", "concat"):
            raise ValueError(f"combine must be 'sum' or 'concat', got {combine!r}")
        if not vocab_sizes:
            raise ValueError("AttributeEmbedding needs at least one attribute")
        self.vocab_sizes = {str(k): int(v) for k, v in sorted(vocab_sizes.items())}
        self.dim = int(dim)
        self.combine = combine
        self.embeddings = {name: tf.keras.layers.Embedding(size + 1, self.dim, name=f"emb_{name}")
                           for name, size in self.vocab_sizes.items()}

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        missing = [n for n in self.vocab_sizes if n not in inputs]
        if missing:
            raise ValueError(f"{self.name}: attribute codes {missing} missing from the inputs")
        parts = []
        for name, size in self.vocab_sizes.items():
            codes = tf.cast(tf.reshape(inputs[name], (-1,)), tf.int32)
            codes = tf.where((codes < 0) | (codes >= size), size, codes)   # unknown row
            parts.append(self.embeddings[name](codes))
        return tf.add_n(parts) if self.combine == "sum" else tf.concat(parts, axis=-1)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ModalityDropout(_ConfigLayer):
    """In training, hide each present modality of a ``(B, M)`` float mask with probability
    ``rate``, keeping at least one: teaches a fusion to cope with missing images or texts."""

    CONFIG = ("rate", "seed")

    def __init__(self, rate: float = 0.1, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed

    def call(self, mask: tf.Tensor, training: Any = None) -> tf.Tensor:
        mask = tf.cast(mask, tf.float32)
        if not training or self.rate <= 0:
            return mask
        keep = tf.cast(tf.random.uniform(tf.shape(mask), seed=self.seed) >= self.rate, tf.float32)
        dropped = mask * keep
        empty = tf.reduce_sum(dropped, axis=1, keepdims=True) < 0.5
        return tf.where(empty, mask, dropped)
