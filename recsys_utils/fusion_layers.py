"""The fusion layers: text, image and attribute vectors of an item in one vector.

Every fusion layer takes ``M`` modality tensors ``[(B, d_m)]`` (a list, or a
dict ordered by ``modality_names`` / sorted keys) and a modality mask
``(B, M)`` (1 present, 0 absent), and returns ``(B, output_dim)``::

    from recsys_utils.content_model import build_fusion
    layer = build_fusion("gated", output_dim=64)
    fused = layer({"text": t, "image": v, "attributes": a}, modality_mask=mask)

This module holds their common base :class:`FusionLayer`, concatenation
(:class:`ConcatFusion`) and attention (:class:`AttentionFusion`); the gated
fusion is written in notebook 03 (``recsys_utils/gated_fusion.py``). Beside
them, the two layers that feed a fusion: :class:`AttributeEmbedding` (the
attributes modality) and :class:`ModalityDropout` (hides modalities in training).

How a missing modality is handled (the same in every layer):

1. its raw input is replaced by zeros with ``tf.where`` *before* any
   computation, so whatever the absent slot holds (zeros, garbage, NaN) has no
   effect on the output and receives exactly zero gradient;
2. its projection is replaced by a learned per-modality "missing" vector, so an
   absent image is a token the model learns the meaning of, not zeros
   pretending to be an image;
3. gated and attention fusion also exclude absent modalities from their
   softmax (logit :data:`NEG_LOGIT`, so the weight underflows to exactly 0). A
   row with no modality present at all falls back to the missing vectors of
   all modalities rather than dividing by zero.

The layers are tf-keras (Keras 2) layers with ``get_config`` and are
registered as serialisable, so they live inside TFRS towers and SavedModels.
Import ``recsys_utils`` before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import tensorflow as tf

#: Added to the softmax logits of absent modalities. Same constant as Keras'
#: masked softmax: exp(-1e9) underflows to exactly 0 in float32, and unlike
#: -inf it never produces NaN (inf - inf) in the softmax or its gradient.
NEG_LOGIT = -1e9
#: Keras registration package of the layers (``"recsys_utils>ConcatFusion"``...).
PACKAGE = "recsys_utils"


# --------------------------------------------------------------------------
# The base: projection and missing modalities
# --------------------------------------------------------------------------
class FusionLayer(tf.keras.layers.Layer):
    """Base of every fusion layer: per-modality projection with missing-modality substitution.

    Subclasses may set ``self.projection_width`` (default ``output_dim``) before
    ``build`` and call :meth:`project_modalities`, which returns the projected
    tokens ``(B, M, width)`` and the present / effective boolean masks ``(B, M)``.
    """

    def __init__(self, output_dim: int, modality_names: Sequence[str] | None = None,
                 normalize_projections: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(output_dim) < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        self.output_dim = int(output_dim)
        self.modality_names = list(modality_names) if modality_names is not None else None
        # LayerNorm per modality puts modalities of very different scales (unit
        # text vectors vs. freshly initialised attribute embeddings) on an equal
        # footing before they are mixed.
        self.normalize_projections = bool(normalize_projections)
        self.projection_width = self.output_dim

    # -- inputs -------------------------------------------------------------
    def _order(self, inputs: Any) -> list[str] | None:
        if isinstance(inputs, Mapping):
            names = self.modality_names or sorted(inputs)
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(f"{self.name}: modalities {missing} missing from the inputs "
                                 f"(got {sorted(inputs)})")
            return names
        return None

    def _as_list(self, inputs: Any) -> list:
        if isinstance(inputs, Mapping):
            return [inputs[n] for n in self._order(inputs)]
        if isinstance(inputs, (list, tuple)):
            return list(inputs)
        return [inputs]

    def build(self, input_shape: Any) -> None:
        shapes = self._as_list(input_shape)
        self.num_modalities = len(shapes)
        if isinstance(input_shape, Mapping):
            self._names = self._order(input_shape)
        elif self.modality_names is None:
            self._names = [f"m{i}" for i in range(len(shapes))]
        else:
            if len(self.modality_names) != len(shapes):
                raise ValueError(f"{self.name}: {len(self.modality_names)} modality_names "
                                 f"for {len(shapes)} inputs")
            self._names = list(self.modality_names)
        self.projections = [tf.keras.layers.Dense(self.projection_width, name=f"proj_{n}")
                            for n in self._names]
        self.proj_norms = ([tf.keras.layers.LayerNormalization(name=f"proj_norm_{n}") for n in self._names]
                           if self.normalize_projections else [])
        for m, shape in enumerate(shapes):
            shape = tf.TensorShape(shape)
            self.projections[m].build(shape)
            if self.proj_norms:
                self.proj_norms[m].build(shape[:-1].concatenate([self.projection_width]))
        self.missing_embeddings = self.add_weight(
            name="missing_embeddings", shape=(self.num_modalities, self.projection_width),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.02), trainable=True)
        super().build(input_shape)

    def _mask(self, xs: list, modality_mask: Any) -> tf.Tensor:
        batch = tf.shape(xs[0])[0]
        if modality_mask is None:
            return tf.ones((batch, len(xs)), dtype=tf.bool)
        mask = tf.convert_to_tensor(modality_mask)
        if mask.dtype != tf.bool:
            mask = tf.cast(mask, tf.float32) > 0.5
        mask.shape.assert_is_compatible_with([None, len(xs)])
        return mask

    def project_modalities(self, inputs: Any, modality_mask: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """-> tokens (B, M, width), present mask (B, M), effective mask (B, M).

        The effective mask equals the present mask except in rows where nothing
        is present; there all (missing-vector) tokens are used.
        """
        xs = [tf.cast(x, self.compute_dtype) for x in self._as_list(inputs)]
        present = self._mask(xs, modality_mask)
        tokens = []
        for m, x in enumerate(xs):
            keep = present[:, m:m + 1]
            # Zero the raw input first: an absent slot may hold anything (even
            # NaN); tf.where also gives it exactly zero gradient.
            x = tf.where(keep, x, tf.zeros_like(x))
            p = self.projections[m](x)
            if self.proj_norms:
                p = self.proj_norms[m](p)
            missing = tf.cast(self.missing_embeddings[m], p.dtype)[tf.newaxis, :]
            tokens.append(tf.where(keep, p, tf.broadcast_to(missing, tf.shape(p))))
        tokens = tf.stack(tokens, axis=1)
        none_present = tf.logical_not(tf.reduce_any(present, axis=1, keepdims=True))
        effective = tf.logical_or(present, none_present)
        return tokens, present, effective

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(output_dim=self.output_dim, modality_names=self.modality_names,
                      normalize_projections=self.normalize_projections)
        return config


# --------------------------------------------------------------------------
# Concatenation and attention (the gated fusion is in notebook 03)
# --------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ConcatFusion(FusionLayer):
    """Project each modality, substitute missing ones, concatenate, MLP.

    Args:
        output_dim: width of the fused vector.
        hidden_units: MLP hidden layer widths (ReLU) after the concatenation.
        dropout: dropout after each hidden layer (training only).
        projection_dim: per-modality projection width (default ``output_dim``).

    Call: ``layer(inputs, modality_mask=None, training=None)`` with inputs a
    list/dict of ``(B, d_m)`` and mask ``(B, M)`` -> ``(B, output_dim)``.
    """

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

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout,
                      projection_dim=self.projection_dim)
        return config


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttentionFusion(FusionLayer):
    """A learned query token attends over the present modality tokens.

    Tokens are ``proj_m(x_m) + type_m`` (learned modality-type embedding);
    absent modalities are left out with MultiHeadAttention's ``attention_mask``.
    Then residual + LayerNorm, a small FFN, residual + LayerNorm.

    ``layer(..., return_weights=True)`` also returns the attention weights
    ``(B, M)`` averaged over heads (0 exactly for absent modalities).
    """

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
        self.type_embeddings = self.add_weight(
            name="type_embeddings", shape=(self.num_modalities, self.output_dim),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.02), trainable=True)
        self.query = self.add_weight(
            name="query", shape=(1, 1, self.output_dim),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.02), trainable=True)
        # Create every sub-layer's variables now, not lazily in call: a
        # MultiHeadAttention built on first call is not restored from a
        # SavedModel (its variables do not exist yet when loading), so
        # reloaded models silently used fresh random attention weights.
        d = self.output_dim
        self.attention._build_from_signature(tf.TensorShape([None, 1, d]),
                                             tf.TensorShape([None, self.num_modalities, d]),
                                             tf.TensorShape([None, self.num_modalities, d]))
        self.norm_attention.build(tf.TensorShape([None, 1, d]))
        self.ffn_hidden.build(tf.TensorShape([None, 1, d]))
        self.ffn_out.build(tf.TensorShape([None, 1, self.ffn_multiplier * d]))
        self.norm_ffn.build(tf.TensorShape([None, 1, d]))

    def call(self, inputs: Any, modality_mask: Any = None, training: Any = None,
             return_weights: bool = False) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        tokens, _, effective = self.project_modalities(inputs, modality_mask)
        tokens = tokens + self.type_embeddings[tf.newaxis]
        batch = tf.shape(tokens)[0]
        query = tf.tile(tf.cast(self.query, tokens.dtype), [batch, 1, 1])      # (B, 1, D)
        attended, scores = self.attention(query, tokens, tokens,
                                          attention_mask=effective[:, tf.newaxis, :],
                                          return_attention_scores=True, training=training)
        x = self.norm_attention(query + attended)
        x = self.norm_ffn(x + self.ffn_dropout(self.ffn_out(self.ffn_hidden(x)), training=training))
        fused = x[:, 0, :]
        if return_weights:
            return fused, tf.reduce_mean(scores[:, :, 0, :], axis=1)        # (B, H, 1, M) -> (B, M)
        return fused

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_heads=self.num_heads, ffn_multiplier=self.ffn_multiplier,
                      dropout=self.dropout)
        return config


# --------------------------------------------------------------------------
# What feeds a fusion: attributes as a modality, modality dropout
# --------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttributeEmbedding(tf.keras.layers.Layer):
    """Embeddings of categorical attribute codes: the "attributes" modality.

    Args:
        vocab_sizes: attribute name -> number of categories. Codes are ints in
            ``[0, size)``; anything else (e.g. -1 for missing) maps to one extra
            "unknown" row per attribute.
        dim: embedding width per attribute.
        combine: ``"sum"`` -> ``(B, dim)``; ``"concat"`` -> ``(B, dim * A)``.

    Call: ``layer({name: codes (B,) or (B, 1)})``. Attributes are processed in
    sorted name order. Price is an attribute too: see
    :func:`recsys_utils.content_comparison.price_bands`.
    """

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

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(vocab_sizes=self.vocab_sizes, dim=self.dim, combine=self.combine)
        return config


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ModalityDropout(tf.keras.layers.Layer):
    """During training, hide each present modality with probability ``rate``.

    At least one originally present modality always stays. Teaches the fusion
    to cope with items whose image (or text) is missing. Identity at inference.
    Input/output: mask ``(B, M)`` float.
    """

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

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
