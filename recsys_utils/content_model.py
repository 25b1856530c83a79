"""The content model of notebook 03: fused item features trained to predict item attributes.

:func:`fit_content_model` fuses an item's modalities (text and image vectors,
attribute codes), trains one softmax head per attribute, and returns the
L2-normalised fused "content" vectors that the retrieval and ranking notebooks read.
Import ``recsys_utils`` before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np
import tensorflow as tf

from . import training_logs
from .callbacks import EpochBar
from .fusion_layers import (AttentionFusion, AttributeEmbedding, ConcatFusion, FusionLayer,
                            ModalityDropout)
from .gated_fusion import GatedFusion
from .schema import DataError

FusionMethod = Literal["concat", "gated", "attention"]
FUSION_METHODS: tuple[str, ...] = get_args(FusionMethod)


def build_fusion(method: FusionMethod, **kwargs: Any) -> FusionLayer:
    """A fusion layer by name; keyword arguments (``output_dim`` required) go to the layer."""
    classes = {"concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}
    if method not in classes:
        raise ValueError(f"unknown fusion method {method!r}; "
                         f"valid methods: {', '.join(FUSION_METHODS)}")
    return classes[method](**kwargs)


@dataclasses.dataclass
class ContentModel:
    """What :func:`fit_content_model` trained.

    ``encoder`` maps the feed to L2-normalised vectors ``(B, output_dim)``,
    ``classifier`` to ``{label: class probabilities}``; ``modality_names`` is
    the order of the mask columns; ``method`` is None for a single modality.
    """

    encoder: tf.keras.Model
    classifier: tf.keras.Model
    fusion: tf.keras.layers.Layer
    modality_names: list[str]
    method: str | None
    _weights_model: tf.keras.Model | None = None
    _attribute_keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def feed(self, modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None
             ) -> dict[str, np.ndarray]:
        """Model inputs from the same ``modalities`` / ``masks`` given to training."""
        return _feed(modalities, masks, self.modality_names, self._attribute_keys)

    def embed(self, modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None,
              batch_size: int = 1024) -> np.ndarray:
        """L2-normalised item vectors ``(n, output_dim)`` float32."""
        return self.encoder.predict(self.feed(modalities, masks), batch_size=batch_size, verbose=0)

    def modality_weights(self, modalities: Mapping[str, Any],
                         masks: Mapping[str, np.ndarray] | None = None,
                         batch_size: int = 1024) -> np.ndarray:
        """Per-item modality weights ``(n, M)``, columns in :attr:`modality_names` order
        (gated: gate weights; attention: head-averaged attention)."""
        if self._weights_model is None:
            raise ValueError(f"method={self.method!r} has no modality weights; "
                             f"only 'gated' and 'attention' do")
        return self._weights_model.predict(self.feed(modalities, masks), batch_size=batch_size,
                                           verbose=0)


def _validate_modalities(modalities: Mapping[str, Any]) -> tuple[int, dict[str, list[str]]]:
    """``(n rows, {attribute modality: sorted code names})``; DataError on bad input."""
    if not modalities:
        raise DataError("no modalities given", source="fit_content_model")
    attribute_keys: dict[str, list[str]] = {}
    n = None
    for name, value in modalities.items():
        if isinstance(value, Mapping):
            if not value:
                raise DataError(f"modality {name!r}: empty dict of attribute codes",
                                source="modalities")
            attribute_keys[name] = sorted(value)
            arrays = {f"{name}.{k}": np.asarray(v) for k, v in value.items()}
            for key, arr in arrays.items():
                if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                    raise DataError(f"{key}: attribute codes must be a 1-D integer array, "
                                    f"got dtype {arr.dtype} shape {arr.shape}", source="modalities")
        else:
            arr = np.asarray(value)
            if arr.ndim != 2:
                raise DataError(f"modality {name!r} must be (n, d), got shape {arr.shape}",
                                source="modalities")
            if not np.isfinite(arr).all():
                bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
                raise DataError(f"modality {name!r} has non-finite values (first at row {bad}); "
                                f"mark absent rows in `masks` and store zeros", source="modalities")
            arrays = {name: arr}
        for key, arr in arrays.items():
            n = len(arr) if n is None else n
            if len(arr) != n:
                raise DataError(f"{key} has {len(arr)} rows, expected {n}", source="modalities")
    return n, attribute_keys


def _feed(modalities: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None,
          names: list[str], attribute_keys: Mapping[str, list[str]]) -> dict[str, np.ndarray]:
    n, _ = _validate_modalities({k: modalities[k] for k in names})
    masks = masks or {}
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise DataError(f"masks for unknown modalities {unknown}; modalities: {names}",
                        source="masks")
    feed: dict[str, np.ndarray] = {}
    columns = []
    for name in names:
        if name in attribute_keys:
            for key in attribute_keys[name]:
                feed[f"{name}__{key}"] = np.asarray(modalities[name][key], dtype=np.int32)
        else:
            feed[name] = np.asarray(modalities[name], dtype=np.float32)
        mask = np.asarray(masks.get(name, np.ones(n))).astype(np.float32)
        if mask.shape != (n,):
            raise DataError(f"mask {name!r} must have shape ({n},), got {mask.shape}",
                            source="masks")
        columns.append(mask)
    feed["modality_mask"] = np.stack(columns, axis=1)
    return feed


def check_labels(labels: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """``{name: (n,) int32 codes}``, -1 = missing; a clear DataError for anything else."""
    if not labels:
        raise DataError("no labels given: the content task predicts at least one attribute",
                        source="labels")
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
    masks: Mapping[str, np.ndarray] | None, labels: Mapping[str, np.ndarray], *,
    method: FusionMethod | None, train_idx: np.ndarray,
    val_idx: np.ndarray | None = None, output_dim: int = 64, attribute_dim: int = 32,
    modality_dropout: float = 0.1, epochs: int = 10, batch_size: int = 256,
    learning_rate: float = 1e-3, seed: int = 42, progress: bool = True, **fusion_kwargs: Any,
) -> tuple[ContentModel, np.ndarray, dict[str, list[float]]]:
    """Train a fusion on multi-attribute prediction; return item vectors for all items.

    ``modalities``: name -> ``(n, d)`` float array (e.g. text or image vectors)
    or -> dict of attribute int codes ``(n,)``. ``masks``: name -> ``(n,)`` 1/0
    presence (unlisted: always present; absent rows hold anything finite).
    ``labels``: attribute name -> int codes ``(n,)`` to predict (-1 = unknown),
    none also an input. ``method=None`` trains a single-modality baseline through
    the same projection + MLP as concat. ``modality_dropout``: training-time
    probability of hiding a present modality (never all), so the model copes
    with missing ones.

    Returns:
        ``(model, embeddings, history)``: the L2-normalised ``(n, output_dim)``
        float32 vectors of all items (inference mode, true masks), per-epoch losses.
    """
    if method is not None and method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; valid methods: "
                         f"{', '.join(FUSION_METHODS)}, or None for a single modality")
    names = list(modalities)
    if method is None and len(names) != 1:
        raise ValueError(f"method=None trains a single-modality baseline and needs exactly one "
                         f"modality, got {names}; pick one or choose a fusion method")
    n, attribute_keys = _validate_modalities(modalities)
    labels = check_labels(labels, n)
    for mod, keys in attribute_keys.items():
        leaked = sorted(set(keys) & set(labels))
        if leaked:
            raise DataError(f"attribute(s) {leaked} are both an input (modality {mod!r}) and a "
                            "label: the task would be trivial; drop them from one side",
                            source="fit_content_model")
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if train_idx.size == 0 or train_idx.min() < 0 or train_idx.max() >= n:
        raise DataError(f"train_idx must be non-empty row indices in [0, {n})",
                        source="fit_content_model")

    tf.keras.utils.set_random_seed(seed)
    feed = _feed(modalities, masks, names, attribute_keys)

    # Graph: inputs -> (attribute embedding) -> modality dropout -> fusion -> heads.
    inputs: dict[str, tf.keras.Input] = {}
    tensors: dict[str, tf.Tensor] = {}
    for name in names:
        if name in attribute_keys:
            codes = {}
            for key in attribute_keys[name]:
                codes[key] = inputs[f"{name}__{key}"] = tf.keras.Input(
                    (), dtype=tf.int32, name=f"{name}__{key}")
            vocab = {key: int(max(modalities[name][key].max(), 0)) + 1
                     for key in attribute_keys[name]}
            tensors[name] = AttributeEmbedding(vocab, attribute_dim,
                                               name=f"attributes_{name}")(codes)
        else:
            tensors[name] = inputs[name] = tf.keras.Input((feed[name].shape[1],), name=name)
    mask_in = inputs["modality_mask"] = tf.keras.Input((len(names),), name="modality_mask")
    train_mask = ModalityDropout(modality_dropout if method else 0.0, seed=seed,
                                 name="modality_dropout")(mask_in)
    modality_list = [tensors[name] for name in names]
    defaults = {"hidden_units": (256,)} if method is None else {}
    fusion = build_fusion(method or "concat", output_dim=output_dim, modality_names=names,
                          name="fusion", **{**defaults, **fusion_kwargs})
    fused = fusion(modality_list, modality_mask=train_mask)
    embedding = tf.keras.layers.UnitNormalization(name="embedding")(fused)
    heads = {label: tf.keras.layers.Dense(int(codes.max()) + 1, activation="softmax",
                                          name=label)(fused) for label, codes in labels.items()}
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
    callbacks += training_logs.callbacks(f"fusion/{method or names[0]}")
    val = (dataset(np.asarray(val_idx, dtype=np.int64), False)
           if val_idx is not None and len(val_idx) else None)
    history = classifier.fit(dataset(train_idx, True), validation_data=val, epochs=epochs,
                             verbose=0, callbacks=callbacks)
    model = ContentModel(encoder, classifier, fusion, names, method, weights_model, attribute_keys)
    embeddings = encoder.predict(feed, batch_size=max(batch_size, 1024), verbose=0)
    return (model, embeddings.astype(np.float32),
            {k: [float(v) for v in vs] for k, vs in history.history.items()})
