"""Multimodal fusion of item features: text, image and attribute vectors.

Every fusion layer takes ``M`` modality tensors ``[(B, d_m)]`` (a list, or a
dict ordered by ``modality_names`` / sorted keys) and a modality mask
``(B, M)`` (1 present, 0 absent), and returns ``(B, output_dim)``::

    from recsys_utils import fusion
    layer = fusion.build_fusion("gated", output_dim=64)
    fused = layer({"text": t, "image": v, "attributes": a}, modality_mask=mask)

How a missing modality is handled (the same in every layer):

1. its raw input is replaced by zeros with ``tf.where`` *before* any
   computation, so whatever the absent slot holds (zeros, garbage, NaN) has no
   effect on the output and receives exactly zero gradient;
2. its projection is replaced by a learned per-modality "missing" vector, so an
   absent image is a token the model learns the meaning of, not zeros
   pretending to be an image;
3. gated and attention fusion also exclude absent modalities from their
   softmax (logit -1e9, so the weight underflows to exactly 0). A row with no
   modality present at all falls back to the missing vectors of all modalities
   rather than dividing by zero.

The layers are tf-keras (Keras 2) layers with ``get_config`` and are
registered as serialisable, so they live inside TFRS towers and SavedModels.

:func:`fit_content_model` trains a fusion (or a single-modality baseline) on
multi-attribute prediction and returns L2-normalised item vectors;
:func:`content_retrieval_metrics` scores them by item-to-item retrieval.
Import ``recsys_utils`` before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse
import tensorflow as tf

from .callbacks import EpochBar
from .schema import DataError

#: Added to the gate logits of absent modalities. Same constant as Keras'
#: masked softmax: exp(-1e9) underflows to exactly 0 in float32, and unlike
#: -inf it never produces NaN (inf - inf) in the softmax or its gradient.
_NEG = -1e9
FUSION_METHODS = ("concat", "gated", "attention")
_PACKAGE = "recsys_utils"


# --------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------
class _FusionBase(tf.keras.layers.Layer):
    """Per-modality projection with missing-modality substitution.

    Subclasses set ``self._proj_width`` before ``build`` and use
    :meth:`_project_all`, which returns the projected tokens ``(B, M, width)``
    and the effective boolean mask ``(B, M)``.
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
        self._proj_width = self.output_dim

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
        self.projections = [tf.keras.layers.Dense(self._proj_width, name=f"proj_{n}")
                            for n in self._names]
        self.proj_norms = ([tf.keras.layers.LayerNormalization(name=f"proj_norm_{n}") for n in self._names]
                           if self.normalize_projections else [])
        for m, shape in enumerate(shapes):
            shape = tf.TensorShape(shape)
            self.projections[m].build(shape)
            if self.proj_norms:
                self.proj_norms[m].build(shape[:-1].concatenate([self._proj_width]))
        self.missing_embeddings = self.add_weight(
            name="missing_embeddings", shape=(self.num_modalities, self._proj_width),
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

    def _project_all(self, inputs: Any, modality_mask: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
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
# Fusion layers
# --------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ConcatFusion(_FusionBase):
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
        self._proj_width = self.projection_dim or self.output_dim
        self.mlp = []
        for i, units in enumerate(self.hidden_units):
            self.mlp.append(tf.keras.layers.Dense(units, activation="relu", name=f"hidden_{i}"))
            if self.dropout > 0:
                self.mlp.append(tf.keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
        self.out = tf.keras.layers.Dense(self.output_dim, name="output")

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        width = self.num_modalities * self._proj_width
        for layer in self.mlp:                 # variables exist before any restore
            if isinstance(layer, tf.keras.layers.Dense):
                layer.build(tf.TensorShape([None, width]))
                width = layer.units
        self.out.build(tf.TensorShape([None, width]))

    def call(self, inputs: Any, modality_mask: Any = None, training: Any = None) -> tf.Tensor:
        tokens, _, _ = self._project_all(inputs, modality_mask)
        h = tf.reshape(tokens, (-1, self.num_modalities * self._proj_width))
        for layer in self.mlp:
            h = layer(h, training=training)
        return self.out(h)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout,
                      projection_dim=self.projection_dim)
        return config


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class GatedFusion(_FusionBase):
    """Softmax-gated sum of per-modality projections, over present modalities.

    ``logit_m = b_m (+ w_m . proj_m if input_dependent)``; absent modalities get
    logit -1e9, so their weight is exactly 0 and the weights of the present ones
    sum to 1. Output ``sum_m weight_m * proj_m`` of width ``output_dim``.

    ``layer(..., return_weights=True)`` also returns the weights ``(B, M)``;
    :attr:`prior_weights` is ``softmax(b)``, the learned input-independent part.
    """

    def __init__(self, output_dim: int, input_dependent: bool = True, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.input_dependent = bool(input_dependent)

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.gate_bias = self.add_weight(name="gate_bias", shape=(self.num_modalities,),
                                         initializer="zeros", trainable=True)
        if self.input_dependent:
            # One scalar score per modality from its own projection; starts at 0
            # so training begins from uniform weights.
            self.gate_kernel = self.add_weight(name="gate_kernel",
                                               shape=(self.num_modalities, self._proj_width),
                                               initializer="zeros", trainable=True)

    def _weights(self, tokens: tf.Tensor, effective: tf.Tensor) -> tf.Tensor:
        logits = tf.broadcast_to(self.gate_bias[tf.newaxis, :], tf.shape(tokens)[:2])
        if self.input_dependent:
            logits = logits + tf.einsum("bmd,md->bm", tokens, self.gate_kernel)
        logits = tf.where(effective, logits, tf.fill(tf.shape(logits), tf.constant(_NEG, logits.dtype)))
        return tf.nn.softmax(logits, axis=-1)

    def call(self, inputs: Any, modality_mask: Any = None, training: Any = None,
             return_weights: bool = False) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        tokens, _, effective = self._project_all(inputs, modality_mask)
        weights = self._weights(tokens, effective)
        fused = tf.einsum("bm,bmd->bd", weights, tokens)
        return (fused, weights) if return_weights else fused

    @property
    def prior_weights(self) -> np.ndarray:
        """``softmax(gate_bias)``: learned modality weights before any input term, (M,)."""
        return tf.nn.softmax(self.gate_bias).numpy()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(input_dependent=self.input_dependent)
        return config


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class AttentionFusion(_FusionBase):
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
        tokens, _, effective = self._project_all(inputs, modality_mask)
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


def build_fusion(method: Literal["concat", "gated", "attention"], **kwargs: Any) -> _FusionBase:
    """A fusion layer by name: ``"concat"``, ``"gated"`` or ``"attention"``.

    Keyword arguments go to the layer (``output_dim`` is required).
    """
    classes = {"concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}
    if method not in classes:
        raise ValueError(f"unknown fusion method {method!r}; valid methods: {', '.join(FUSION_METHODS)}")
    return classes[method](**kwargs)


# --------------------------------------------------------------------------
# Attributes as a modality
# --------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class AttributeEmbedding(tf.keras.layers.Layer):
    """Embeddings of categorical attribute codes: the "attributes" modality.

    Args:
        vocab_sizes: attribute name -> number of categories. Codes are ints in
            ``[0, size)``; anything else (e.g. -1 for missing) maps to one extra
            "unknown" row per attribute.
        dim: embedding width per attribute.
        combine: ``"sum"`` -> ``(B, dim)``; ``"concat"`` -> ``(B, dim * A)``.

    Call: ``layer({name: codes (B,) or (B, 1)})``. Attributes are processed in
    sorted name order. Price is an attribute too: see :func:`price_bands`.
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


def price_bands(prices: Sequence[float] | np.ndarray, n_bands: int = 5) -> np.ndarray:
    """Quantile bands of price as codes ``0..n_bands-1``; missing price -> -1.

    Returns int32 ``(n,)``; use vocabulary size ``n_bands``.
    """
    prices = np.asarray(prices, dtype=np.float64)
    codes = np.full(prices.shape, -1, dtype=np.int32)
    ok = np.isfinite(prices)
    if ok.any():
        edges = np.quantile(prices[ok], np.linspace(0, 1, n_bands + 1)[1:-1])
        codes[ok] = np.searchsorted(edges, prices[ok], side="right")
    return codes


def encode_attributes(items: pd.DataFrame, columns: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Integer codes of categorical item columns, for labels or attribute inputs.

    Returns ``(codes, vocabularies)``: ``codes[col]`` int32 ``(n,)`` with -1 for
    missing values; ``vocabularies[col]`` the sorted category strings.
    """
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise DataError(f"attribute columns {missing} not in the item table "
                        f"(columns: {list(items.columns)})", source="items")
    codes, vocabularies = {}, {}
    for col in columns:
        cat = pd.Categorical(items[col].astype("string"))
        codes[col] = np.asarray(cat.codes, dtype=np.int32)
        vocabularies[col] = [str(c) for c in cat.categories]
    return codes, vocabularies


def combine_keys(*arrays: Sequence[Any]) -> np.ndarray:
    """Row-wise key joining several attribute arrays, e.g. category|colour|material."""
    if not arrays:
        raise ValueError("combine_keys needs at least one array")
    parts = [np.asarray(a).astype(str) for a in arrays]
    out = parts[0].astype(object)
    for p in parts[1:]:
        out = out + "|" + p.astype(object)
    return out.astype(str)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
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


# --------------------------------------------------------------------------
# The content task: predict item attributes from fused features
# --------------------------------------------------------------------------
@dataclasses.dataclass
class ContentModel:
    """What :func:`fit_content_model` trained.

    Attributes:
        encoder: tf-keras model, feed dict -> L2-normalised item vector (B, output_dim).
        classifier: same inputs -> {label: class probabilities}.
        fusion: the fusion layer (``GatedFusion.prior_weights`` etc.).
        modality_names: modality order of the mask columns.
        method: fusion method, or None for a single modality.
    """

    encoder: tf.keras.Model
    classifier: tf.keras.Model
    fusion: tf.keras.layers.Layer
    modality_names: list[str]
    method: str | None
    _weights_model: tf.keras.Model | None = None
    _attribute_keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def feed(self, modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """Model inputs from the same ``modalities`` / ``masks`` given to training."""
        return _feed(modalities, masks, self.modality_names, self._attribute_keys)

    def embed(self, modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None,
              batch_size: int = 1024) -> np.ndarray:
        """L2-normalised item vectors ``(n, output_dim)`` float32."""
        return self.encoder.predict(self.feed(modalities, masks), batch_size=batch_size, verbose=0)

    def modality_weights(self, modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None,
                         batch_size: int = 1024) -> np.ndarray:
        """Per-item modality weights ``(n, M)`` (gated: gate weights; attention:
        head-averaged attention). Columns follow :attr:`modality_names`."""
        if self._weights_model is None:
            raise ValueError(f"method={self.method!r} has no modality weights; "
                             f"only 'gated' and 'attention' do")
        return self._weights_model.predict(self.feed(modalities, masks), batch_size=batch_size, verbose=0)


def _validate_modalities(modalities: Mapping[str, Any], n: int | None = None) -> tuple[int, dict[str, list[str]]]:
    if not modalities:
        raise DataError("no modalities given", source="fit_content_model")
    attribute_keys: dict[str, list[str]] = {}
    for name, value in modalities.items():
        if isinstance(value, Mapping):
            if not value:
                raise DataError(f"modality {name!r}: empty dict of attribute codes", source="modalities")
            attribute_keys[name] = sorted(value)
            arrays = {f"{name}.{k}": np.asarray(v) for k, v in value.items()}
            for key, arr in arrays.items():
                if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                    raise DataError(f"{key}: attribute codes must be a 1-D integer array, "
                                    f"got dtype {arr.dtype} shape {arr.shape}", source="modalities")
        else:
            arr = np.asarray(value)
            if arr.ndim != 2:
                raise DataError(f"modality {name!r} must be (n, d), got shape {arr.shape}", source="modalities")
            if not np.isfinite(arr).all():
                bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
                raise DataError(f"modality {name!r} has non-finite values (first at row {bad}); "
                                f"mark absent rows in `masks` and store zeros", source="modalities")
            arrays = {name: arr}
        for key, arr in arrays.items():
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise DataError(f"{key} has {len(arr)} rows, expected {n}", source="modalities")
    return n, attribute_keys


def _feed(modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None,
          names: list[str], attribute_keys: Mapping[str, list[str]]) -> dict[str, np.ndarray]:
    n, _ = _validate_modalities({k: modalities[k] for k in names})
    masks = masks or {}
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise DataError(f"masks for unknown modalities {unknown}; modalities: {names}", source="masks")
    feed: dict[str, np.ndarray] = {}
    columns = []
    for name in names:
        if name in attribute_keys:
            for key in attribute_keys[name]:
                feed[f"{name}__{key}"] = np.asarray(modalities[name][key], dtype=np.int32)
        else:
            feed[name] = np.asarray(modalities[name], dtype=np.float32)
        mask = np.ones(n, dtype=np.float32) if name not in masks else np.asarray(masks[name]).astype(np.float32)
        if mask.shape != (n,):
            raise DataError(f"mask {name!r} must have shape ({n},), got {mask.shape}", source="masks")
        columns.append(mask)
    feed["modality_mask"] = np.stack(columns, axis=1)
    return feed


def _check_labels(labels: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    if not labels:
        raise DataError("no labels given: the content task predicts at least one attribute", source="labels")
    out = {}
    for name, codes in labels.items():
        codes = np.asarray(codes)
        if codes.shape != (n,) or not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"label {name!r} must be integer codes of shape ({n},), got "
                            f"{codes.dtype} {codes.shape} (see encode_attributes)", source="labels")
        if (codes < 0).all():
            raise DataError(f"label {name!r} is missing (-1) for every item", source="labels")
        out[name] = codes.astype(np.int32)
    return out


def fit_content_model(
    modalities: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    masks: Mapping[str, np.ndarray] | None,
    labels: Mapping[str, np.ndarray],
    *,
    method: Literal["concat", "gated", "attention"] | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None = None,
    output_dim: int = 64,
    attribute_dim: int = 32,
    modality_dropout: float = 0.1,
    epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 42,
    progress: bool = True,
    **fusion_kwargs: Any,
) -> tuple[ContentModel, np.ndarray, dict[str, list[float]]]:
    """Train a fusion on multi-attribute prediction; return item vectors for all items.

    Args:
        modalities: name -> ``(n, d)`` float array (e.g. ``"text"``: MiniLM
            vectors, ``"image"``: :func:`recsys_utils.images.embed_images`), or
            name -> dict of attribute int codes ``(n,)`` (embedded with
            :class:`AttributeEmbedding`, e.g. ``{"brand": ..., "price_band": ...}``).
        masks: name -> ``(n,)`` 1/0 presence; modalities not listed are always
            present. Absent rows may hold anything finite (zeros, typically).
        labels: attribute name -> int codes ``(n,)`` to predict (-1 = unknown,
            ignored in the loss). Must not also be an input attribute code.
        method: ``"concat"``, ``"gated"``, ``"attention"``, or None for a
            single-modality baseline (then ``modalities`` must hold exactly one
            entry; it goes through the same projection + MLP as concat fusion).
        train_idx: rows used for training; val_idx: optional rows for val loss.
        modality_dropout: training-time probability of hiding a present
            modality (never all of them), so the model copes with missing ones.
        fusion_kwargs: passed to the fusion layer (``hidden_units``, ``num_heads``...).

    Returns:
        ``(model, embeddings, history)``: a :class:`ContentModel`; L2-normalised
        fused vectors ``(n, output_dim)`` float32 for ALL items (inference mode,
        true masks); Keras history dict of per-epoch losses.
    """
    if method is not None and method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; valid methods: "
                         f"{', '.join(FUSION_METHODS)}, or None for a single modality")
    names = list(modalities)
    if method is None and len(names) != 1:
        raise ValueError(f"method=None trains a single-modality baseline and needs exactly one "
                         f"modality, got {names}; pick one or choose a fusion method")
    n, attribute_keys = _validate_modalities(modalities)
    labels = _check_labels(labels, n)
    for mod, keys in attribute_keys.items():
        leaked = sorted(set(keys) & set(labels))
        if leaked:
            raise DataError(f"attribute(s) {leaked} are both an input (modality {mod!r}) and a label: "
                            f"the task would be trivial; drop them from one side", source="fit_content_model")
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if train_idx.size == 0 or train_idx.min() < 0 or train_idx.max() >= n:
        raise DataError(f"train_idx must be non-empty row indices in [0, {n})", source="fit_content_model")

    tf.keras.utils.set_random_seed(seed)
    feed = _feed(modalities, masks, names, attribute_keys)

    # Graph: inputs -> (attribute embedding) -> modality dropout -> fusion -> heads.
    inputs: dict[str, tf.keras.Input] = {}
    tensors: dict[str, tf.Tensor] = {}
    for name in names:
        if name in attribute_keys:
            codes = {}
            for key in attribute_keys[name]:
                codes[key] = inputs[f"{name}__{key}"] = tf.keras.Input((), dtype=tf.int32, name=f"{name}__{key}")
            vocab = {key: int(max(modalities[name][key].max(), 0)) + 1 for key in attribute_keys[name]}
            tensors[name] = AttributeEmbedding(vocab, attribute_dim, name=f"attributes_{name}")(codes)
        else:
            tensors[name] = inputs[name] = tf.keras.Input((feed[name].shape[1],), name=name)
    mask_in = inputs["modality_mask"] = tf.keras.Input((len(names),), name="modality_mask")
    train_mask = ModalityDropout(modality_dropout if method else 0.0, seed=seed, name="modality_dropout")(mask_in)
    modality_list = [tensors[name] for name in names]
    if method is None:
        kwargs = {"hidden_units": (256,), **fusion_kwargs}
        fusion = ConcatFusion(output_dim, modality_names=names, name="fusion", **kwargs)
    else:
        fusion = build_fusion(method, output_dim=output_dim, modality_names=names, name="fusion", **fusion_kwargs)
    fused = fusion(modality_list, modality_mask=train_mask)
    embedding = tf.keras.layers.UnitNormalization(name="embedding")(fused)
    heads = {}
    for label, codes in labels.items():
        classes = int(codes.max()) + 1
        heads[label] = tf.keras.layers.Dense(classes, activation="softmax", name=label)(fused)
    classifier = tf.keras.Model(inputs, heads, name="content_classifier")
    encoder = tf.keras.Model(inputs, embedding, name="content_encoder")
    weights_model = None
    if method in ("gated", "attention"):
        _, weights = fusion(modality_list, modality_mask=mask_in, return_weights=True)
        weights_model = tf.keras.Model(inputs, weights, name="modality_weights")

    classifier.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                       loss={k: "sparse_categorical_crossentropy" for k in labels},
                       weighted_metrics=[])   # sample weights only mask unknown labels

    def dataset(idx: np.ndarray, shuffle: bool) -> tf.data.Dataset:
        x = {k: v[idx] for k, v in feed.items()}
        y = {k: np.maximum(v[idx], 0) for k, v in labels.items()}
        w = {k: (v[idx] >= 0).astype(np.float32) for k, v in labels.items()}   # -1: unknown
        ds = tf.data.Dataset.from_tensor_slices((x, y, w))
        if shuffle:
            ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    callbacks = [EpochBar(epochs, f"content model ({method or names[0]})")] if progress else []
    val = dataset(np.asarray(val_idx, dtype=np.int64), False) if val_idx is not None and len(val_idx) else None
    history = classifier.fit(dataset(train_idx, True), validation_data=val, epochs=epochs,
                             verbose=0, callbacks=callbacks)
    model = ContentModel(encoder, classifier, fusion, names, method, weights_model, attribute_keys)
    embeddings = encoder.predict(feed, batch_size=max(batch_size, 1024), verbose=0).astype(np.float32)
    return model, embeddings, {k: [float(v) for v in vs] for k, vs in history.history.items()}


# --------------------------------------------------------------------------
# Evaluation: item-to-item retrieval
# --------------------------------------------------------------------------
def item_retrieval_metrics(embeddings: np.ndarray, query_idx: np.ndarray, relevance_key: np.ndarray,
                           *, candidate_idx: np.ndarray | None = None, k: int = 10) -> dict[str, float]:
    """Item-to-item retrieval: for each query item, the k nearest candidates by
    cosine (self excluded, exact search, ties to the lower index); relevant =
    same ``relevance_key``.

    Ranking and recall/NDCG/hit-rate/MRR come from :mod:`recsys_utils.metrics`
    (one definition for the whole course); ``precision@k`` = hits / k is added
    here. Queries with no relevant candidate are excluded (``n_excluded``).
    """
    from .metrics import brute_force_top_k, retrieval_metrics

    emb = np.asarray(embeddings, dtype=np.float32)
    n = len(emb)
    key = np.asarray(relevance_key)
    if key.shape != (n,):
        raise DataError(f"relevance_key must have shape ({n},) like the embeddings, got {key.shape}",
                        source="retrieval metrics")
    query_idx = np.asarray(query_idx, dtype=np.int64)
    candidates = np.arange(n) if candidate_idx is None else np.asarray(candidate_idx, dtype=np.int64)
    if len(candidates) < 2 or len(query_idx) == 0:
        raise DataError(f"need at least one query and two candidates, got {len(query_idx)} and "
                        f"{len(candidates)}", source="retrieval metrics")
    k = min(k, len(candidates) - 1)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)   # cosine
    _, codes = np.unique(key.astype(str), return_inverse=True)
    codes = codes.ravel()

    # Exclude each query's own row among the candidates.
    position = np.full(n, -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    own = position[query_idx]
    rows = np.flatnonzero(own >= 0)
    exclude = scipy.sparse.csr_matrix((np.ones(len(rows), bool), (rows, own[rows])),
                                      shape=(len(query_idx), len(candidates)))
    ranked, _ = brute_force_top_k(emb[query_idx], emb[candidates], k, exclude=exclude)

    # Relevant sets as a sparse (queries, candidates) matrix: same key, not self.
    order = np.argsort(codes[candidates], kind="stable")
    sorted_codes = codes[candidates][order]
    lo = np.searchsorted(sorted_codes, codes[query_idx], side="left")
    hi = np.searchsorted(sorted_codes, codes[query_idx], side="right")
    sizes = hi - lo
    q_rows = np.repeat(np.arange(len(query_idx)), sizes)
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    cols = order[np.repeat(lo, sizes) + offsets]
    not_self = cols != own[q_rows]
    relevant = scipy.sparse.csr_matrix((np.ones(not_self.sum(), bool), (q_rows[not_self], cols[not_self])),
                                       shape=(len(query_idx), len(candidates)))

    result = retrieval_metrics(ranked, relevant, ks=(k,))
    per_query_hits = np.asarray(relevant[np.arange(len(query_idx))[:, None], np.maximum(ranked, 0)].todense())
    per_query_hits &= ranked >= 0
    has_relevant = np.asarray(relevant.sum(axis=1)).ravel() > 0
    precision = per_query_hits[has_relevant].sum(axis=1) / k if has_relevant.any() else np.array([np.nan])
    return {f"precision@{k}": float(np.mean(precision)), **result}


def content_retrieval_metrics(embeddings: np.ndarray, eval_idx: np.ndarray, relevance_key: np.ndarray,
                              *, k: int = 10, candidates: Literal["all", "eval"] = "all") -> dict[str, float]:
    """Held-out item-to-item retrieval quality of item vectors.

    Each item in ``eval_idx`` queries for its k nearest items by cosine (itself
    excluded) among all items (``candidates="all"``) or only the held-out ones
    (``"eval"``); an item is relevant when it has the same ``relevance_key``
    (e.g. ``combine_keys(category, colour, material)``). Returns
    ``precision@k``, ``recall@k``, ``ndcg@k``, ``hit_rate@k``, ``mrr`` (within
    the top k), ``n_queries`` and ``n_excluded`` (queries with nothing relevant).
    """
    if candidates not in ("all", "eval"):
        raise ValueError(f"candidates must be 'all' or 'eval', got {candidates!r}")
    candidate_idx = None if candidates == "all" else np.asarray(eval_idx)
    return item_retrieval_metrics(embeddings, eval_idx, relevance_key, candidate_idx=candidate_idx, k=k)


# --------------------------------------------------------------------------
# Notebook 03: the content task of a data set, and the comparison it runs
# --------------------------------------------------------------------------
#: Per data set: the attributes the content model predicts (``labels``), the
#: ones two items must share to count as relevant to each other
#: (``relevance``), and the ones a product photo can show (``image``: labels
#: of the supervised image encoder and the key of its score). Synthetic labels
#: are planted truth (colour, material): labels only, never inputs. Colour +
#: material is the key because the text states colour for only half the items
#: and the image never shows material, so no single modality suffices.
CONTENT_TASKS: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": {"labels": ("category", "colour", "material"), "relevance": ("colour", "material"),
                  "image": ("category", "colour")},
    "fashion": {"labels": ("category", "colour"), "relevance": ("category", "colour"),
                "image": ("category", "colour")},
    "movielens-100k": {"labels": ("category",), "relevance": ("category",), "image": ()},
}
#: Any other data set (e.g. a csv catalogue): predict and match the category.
DEFAULT_CONTENT_TASK: dict[str, tuple[str, ...]] = {"labels": ("category",), "relevance": ("category",),
                                                     "image": ("category",)}
#: Placeholder values that mean "not known" (data.UNKNOWN and friends).
MISSING_VALUES = frozenset({"", "unknown", "nan", "none", "na", "<na>"})
#: An attribute whose values pin down a label on at least this share of items
#: would hand the model the answer (movielens ``genres`` contains the first genre).
LEAK_PURITY = 0.98


@dataclasses.dataclass
class ContentTask:
    """What notebook 03's content model learns and how it is scored.

    Attributes:
        label_columns: attributes predicted by the content model.
        labels: their int codes ``(n,)`` (-1 = unknown, ignored in the loss).
        relevance_columns: two items are relevant to each other when they share all of these.
        relevance_key: ``(n,)`` str; items with an unknown value get a unique
            key (never relevant, excluded as queries).
        image_columns / image_labels / image_key: the same for the image
            encoder (empty when the data set has no images or nothing visual).
        attribute_columns: inputs of the attribute modality (``price_band``
            from ``price`` included when there is a price).
        attributes: their int codes ``(n,)``.
        excluded: attribute column -> why it is not an input.
    """

    label_columns: list[str]
    labels: dict[str, np.ndarray]
    relevance_columns: list[str]
    relevance_key: np.ndarray
    image_columns: list[str]
    image_labels: dict[str, np.ndarray]
    image_key: np.ndarray | None
    attribute_columns: list[str]
    attributes: dict[str, np.ndarray]
    excluded: dict[str, str]

    def describe(self) -> str:
        return (f"predict {', '.join(self.label_columns)}; relevant = same "
                f"{' + '.join(self.relevance_columns)}; attribute inputs: "
                f"{', '.join(self.attribute_columns) or 'none'}")

    def summary(self) -> pd.DataFrame:
        """One row per column involved: its role(s) and its number of values."""
        rows = []
        for col in dict.fromkeys([*self.label_columns, *self.relevance_columns, *self.image_columns,
                                  *self.attribute_columns, *self.excluded]):
            roles = [role for role, cols in (("label", self.label_columns), ("relevance", self.relevance_columns),
                                             ("image label", self.image_columns),
                                             ("attribute input", self.attribute_columns)) if col in cols]
            codes = self.labels.get(col, self.attributes.get(col, self.image_labels.get(col)))
            rows.append({"column": col, "role": ", ".join(roles) or "excluded",
                         "values": None if codes is None else len(np.unique(codes[codes >= 0])),
                         "note": self.excluded.get(col, "")})
        return pd.DataFrame(rows).set_index("column")


def _missing(values: pd.Series) -> np.ndarray:
    as_str = values.astype("string").str.strip().str.lower()
    return (values.isna() | as_str.isin(MISSING_VALUES).fillna(True)).to_numpy()


def _label_codes(items: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    codes, _ = encode_attributes(items, columns)
    for col in columns:                      # placeholders like "unknown" are unknown, not a class
        codes[col] = np.where(_missing(items[col]), -1, codes[col]).astype(np.int32)
        if (codes[col] >= 0).any():          # re-number the known classes densely
            _, dense = np.unique(codes[col][codes[col] >= 0], return_inverse=True)
            codes[col][codes[col] >= 0] = dense.astype(np.int32)
    return codes


def relevance_key(items: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``combine_keys`` of ``columns``; rows with an unknown value get a key of
    their own (``"?<row>"``), so they are never relevant to anything."""
    if not columns:
        raise ValueError("relevance_key needs at least one column")
    key = combine_keys(*[items[c].astype("string").fillna("") for c in columns])
    unknown = np.zeros(len(items), dtype=bool)
    for col in columns:
        unknown |= _missing(items[col])
    key = key.astype(object)
    key[unknown] = [f"?{i}" for i in np.flatnonzero(unknown)]
    return key.astype(str)


def label_purity(attribute: pd.Series | np.ndarray, label: pd.Series | np.ndarray) -> float:
    """Share of items whose label is the most frequent label of their attribute
    value (rows with either unknown left out); 1.0 = the attribute determines the label."""
    frame = pd.DataFrame({"a": np.asarray(attribute, dtype=object), "l": np.asarray(label, dtype=object)})
    known = ~(_missing(frame["a"]) | _missing(frame["l"]))
    frame = frame[known]
    if frame.empty:
        return 0.0
    majority = frame.groupby("a")["l"].agg(lambda s: s.value_counts().iloc[0]).sum()
    return float(majority / len(frame))


def content_task(dataset: str, items: pd.DataFrame, attribute_columns: Sequence[str],
                 *, has_images: bool = True, n_price_bands: int = 5,
                 leak_purity: float = LEAK_PURITY) -> ContentTask:
    """The content task of a prepared data set (see :data:`CONTENT_TASKS`).

    The attribute modality is ``attribute_columns`` (the seller-filled ones;
    never truth columns) minus the label columns, minus any column that
    determines a label on ``>= leak_purity`` of the items (:func:`label_purity`),
    plus quantile ``price_band`` codes of ``price`` when the items have one.

    Example: ``content_task(prepared.dataset, prepared.items,
    prepared.attribute_columns, has_images=prepared.has_images)``.
    """
    spec = CONTENT_TASKS.get(dataset, DEFAULT_CONTENT_TASK)
    label_columns = list(spec["labels"])
    relevance_columns = list(spec["relevance"])
    image_columns = list(spec["image"]) if has_images else []
    needed = set(label_columns) | set(relevance_columns) | set(image_columns)
    absent = sorted(c for c in needed if c not in items.columns)
    if absent:
        raise DataError(f"content task of {dataset!r} needs item columns {absent} "
                        f"(columns: {list(items.columns)})", source="items")
    labels = _label_codes(items, label_columns)
    for col, codes in labels.items():
        if (codes < 0).all():
            raise DataError(f"label column {col!r} is unknown for every item", source="items")
    excluded: dict[str, str] = {}
    inputs = []
    for col in attribute_columns:
        if col in label_columns or col in relevance_columns:
            excluded[col] = "a label of the content task"
            continue
        purity = {lab: label_purity(items[col], items[lab]) for lab in label_columns}
        leaky = {lab: p for lab, p in purity.items() if p >= leak_purity}
        if leaky:
            lab, p = max(leaky.items(), key=lambda kv: kv[1])
            excluded[col] = f"determines {lab} on {p:.0%} of items (would leak the label)"
            continue
        inputs.append(col)
    attributes, _ = encode_attributes(items, inputs) if inputs else ({}, {})
    if "price" in items.columns:
        bands = price_bands(pd.to_numeric(items["price"], errors="coerce").to_numpy(), n_bands=n_price_bands)
        if (bands >= 0).any():
            # Synthetic items already carry a seller's price_band (quartile within
            # the category); these are catalogue-wide quantiles of the price.
            name = "price_band" if "price_band" not in attributes else "price_quantile"
            attributes[name] = bands
            inputs.append(name)
    image_labels = _label_codes(items, image_columns) if image_columns else {}
    return ContentTask(
        label_columns=label_columns, labels=labels,
        relevance_columns=relevance_columns, relevance_key=relevance_key(items, relevance_columns),
        image_columns=image_columns, image_labels=image_labels,
        image_key=relevance_key(items, image_columns) if image_columns else None,
        attribute_columns=inputs, attributes=attributes, excluded=excluded)


def holdout_items(item_ids: Sequence[str], cold_items: Sequence[str], *, share: float = 0.2,
                  seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Rows to train the content model on, and held-out rows to evaluate it on.

    The held-out set is every cold-start item (never interacted with in
    training, the items content features exist for) plus a seeded random draw
    of the other items, so that it holds ``share`` of the catalogue (or just
    the cold items, if they are more). Returns ``(train_idx, eval_idx)``,
    sorted int64 row indices into the items table, disjoint and covering it.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share}")
    ids = pd.Index(np.asarray(item_ids).astype(str))
    n = len(ids)
    cold = np.flatnonzero(ids.isin(pd.Index(np.asarray(cold_items).astype(str))))
    others = np.setdiff1d(np.arange(n), cold)
    extra = max(0, min(len(others) - 1, round(share * n) - len(cold)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=extra, replace=False) if extra else np.array([], dtype=np.int64)
    eval_idx = np.sort(np.concatenate([cold, chosen]).astype(np.int64))
    train_idx = np.setdiff1d(np.arange(n), eval_idx).astype(np.int64)
    if len(train_idx) == 0 or len(eval_idx) == 0:
        raise DataError(f"cannot split {n} items into training and held-out items", source="holdout_items")
    return train_idx, eval_idx


@dataclasses.dataclass
class Comparison:
    """What :func:`compare_content_models` trained and measured.

    Attributes:
        table: one row per model (index ``text``, ``image``, ``attributes``,
            ``concat``, ``gated``, ``attention``): ``kind`` (single modality or
            fusion), ``modalities``, held-out retrieval metrics, ``seconds``.
        embeddings: model -> L2-normalised item vectors ``(n, output_dim)``.
        models: model -> :class:`ContentModel`.
        metric: the column that picks the winners.
    """

    table: pd.DataFrame
    embeddings: dict[str, np.ndarray]
    models: dict[str, ContentModel]
    metric: str

    def _best(self, kind: str) -> str:
        rows = self.table[self.table["kind"] == kind]
        return str(rows[self.metric].astype(float).idxmax())

    @property
    def best_fusion(self) -> str:
        return self._best("fusion")

    @property
    def best_single(self) -> str:
        return self._best("single modality")

    @property
    def margin(self) -> dict[str, float]:
        """Best fusion minus best single modality on :attr:`metric`: absolute and relative."""
        fused = float(self.table.loc[self.best_fusion, self.metric])
        single = float(self.table.loc[self.best_single, self.metric])
        return {"absolute": fused - single, "relative": (fused - single) / single if single > 0 else float("inf")}


def compare_content_models(
    modalities: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    masks: Mapping[str, np.ndarray] | None,
    labels: Mapping[str, np.ndarray],
    relevance: np.ndarray,
    *,
    train_idx: np.ndarray,
    eval_idx: np.ndarray,
    methods: Sequence[str] = FUSION_METHODS,
    metric: str = "ndcg@10",
    k: int = 10,
    progress: bool = True,
    **fit_kwargs: Any,
) -> Comparison:
    """Train each modality alone and each fusion of all of them; score on held-out items.

    Every model is :func:`fit_content_model` on ``train_idx`` with the same
    ``fit_kwargs`` (epochs, widths, seed...); its vectors are scored by
    :func:`content_retrieval_metrics` for the ``eval_idx`` queries against all
    items, relevant = same ``relevance`` key. A modality whose mask is all 0
    (e.g. no images at all) is left out, with a note in the table.
    """
    from tqdm.auto import tqdm

    masks = dict(masks or {})
    usable = [m for m in modalities if m not in masks or np.asarray(masks[m]).any()]
    if not usable:
        raise DataError("no modality has any present rows", source="compare_content_models")
    fused_names = {m: usable for m in methods} if len(usable) > 1 else {}
    plan = [(m, None, [m]) for m in modalities] + [(m, m, names) for m, names in fused_names.items()]
    rows, embeddings, models = {}, {}, {}
    bar = tqdm(plan, desc="content models", unit="model", disable=not progress)
    # Each fresh model traces its own predict function; TF's "retracing"
    # warning about that is expected here, so it is muted for the loop.
    with _tf_log_level("ERROR"):
        for name, method, names in bar:
            bar.set_postfix(model=name)
            row = {"kind": "fusion" if method else "single modality", "modalities": " + ".join(names)}
            if not set(names) <= set(usable):
                rows[name] = {**row, "note": "no item has this modality"}
                continue
            started = time.perf_counter()
            model, emb, _ = fit_content_model({m: modalities[m] for m in names},
                                              {m: v for m, v in masks.items() if m in names}, labels,
                                              method=method, train_idx=train_idx, progress=False, **fit_kwargs)
            scores = content_retrieval_metrics(emb, eval_idx, relevance, k=k)
            rows[name] = {**row, **scores, "seconds": round(time.perf_counter() - started, 2)}
            embeddings[name], models[name] = emb, model
    table = pd.DataFrame.from_dict(rows, orient="index")
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not one of {sorted(table.columns)}")
    return Comparison(table=table, embeddings=embeddings, models=models, metric=metric)


@contextlib.contextmanager
def _tf_log_level(level: str) -> Iterator[None]:
    logger = tf.get_logger()
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def modality_weight_table(comparison: Comparison, modalities: Mapping[str, Any],
                          masks: Mapping[str, np.ndarray] | None, rows: np.ndarray) -> pd.DataFrame:
    """Learned modality weights of the gated and attention fusions.

    Index: ``gated (prior)`` = softmax of the gate bias, the input-independent
    part; ``gated (mean)`` and ``attention (mean)`` = per-item weights averaged
    over ``rows`` (absent modalities weigh 0 for that item). Columns: modalities.
    """
    out = {}
    for method in ("gated", "attention"):
        model = comparison.models.get(method)
        if model is None:
            continue
        if method == "gated":
            out["gated (prior)"] = dict(zip(model.modality_names, model.fusion.prior_weights))
        feed_mods = {m: modalities[m] for m in model.modality_names}
        feed_masks = {m: v for m, v in (masks or {}).items() if m in model.modality_names}
        with _tf_log_level("ERROR"):       # another fresh predict function: expected retracing
            weights = model.modality_weights(feed_mods, feed_masks)[np.asarray(rows)]
        out[f"{method} (mean)"] = dict(zip(model.modality_names, weights.mean(axis=0)))
    return pd.DataFrame.from_dict(out, orient="index").astype(float)


def neighbour_changes(before: np.ndarray, after: np.ndarray, query_idx: np.ndarray, relevance: np.ndarray,
                      *, k: int = 5) -> pd.DataFrame:
    """How each query item's k nearest neighbours change from ``before`` to ``after`` vectors.

    Returns one row per query (index = item row) with ``overlap`` (share of
    the k neighbours in both lists), ``relevant_before`` / ``relevant_after``
    (neighbours sharing the query's relevance key) and ``gain``, sorted by gain
    (largest first) then overlap (smallest first): the top rows are the items
    whose neighbourhood changed most for the better.
    """
    from .metrics import brute_force_top_k, top_k_overlap

    query_idx = np.asarray(query_idx, dtype=np.int64)
    relevance = np.asarray(relevance)
    exclude = scipy.sparse.csr_matrix((np.ones(len(query_idx), bool), (np.arange(len(query_idx)), query_idx)),
                                      shape=(len(query_idx), len(before)))
    lists = []
    for vectors in (before, after):
        vectors = np.asarray(vectors, dtype=np.float32)
        ranked, _ = brute_force_top_k(vectors[query_idx], vectors, k, exclude=exclude)
        lists.append(ranked)
    overlap = top_k_overlap(lists[1], lists[0], k)
    hits = [(relevance[r] == relevance[query_idx][:, None]).sum(axis=1) for r in lists]
    table = pd.DataFrame({"overlap": overlap, "relevant_before": hits[0], "relevant_after": hits[1]},
                         index=pd.Index(query_idx, name="row"))
    table["gain"] = table["relevant_after"] - table["relevant_before"]
    return table.sort_values(["gain", "overlap"], ascending=[False, True], kind="stable")
