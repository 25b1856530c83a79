"""A compact image encoder trained on the catalogue's own images (no download): load, train,
embed, and pick the training objective (:func:`choose_image_encoder`). Import ``recsys_utils``
before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``)."""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import tensorflow as tf

from . import training_logs
from .content_metrics import combine_keys, item_retrieval_metrics
from .content_model import check_labels
from .contrastive import contrastive_loss
from .progress import track
from .schema import DataError, summarise_error

Backbone = Literal["small_cnn", "mobilenet_v3_small_imagenet"]
Objective = Literal["supervised", "contrastive"]
BACKBONES: tuple[str, ...] = get_args(Backbone)
OBJECTIVES: tuple[str, ...] = get_args(Objective)


def _load_one(path: Any, size: int, pad_value: int) -> tuple[np.ndarray | None, str]:
    """-> (image (size, size, 3) uint8 or None, status: loaded|none|missing|unreadable)."""
    from PIL import Image

    blank = isinstance(path, str) and not path.strip()
    if path is None or blank or (isinstance(path, float) and np.isnan(path)):  # NaN: pandas'
        return None, "none"
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None, "missing"
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                # Composite transparency onto the padding colour, not onto black.
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (pad_value,) * 3 + (255,))
                im = Image.alpha_composite(canvas, rgba).convert("RGB")
            else:
                im = im.convert("RGB")
            w, h = im.size
            scale = size / max(w, h)
            new = (max(1, round(w * scale)), max(1, round(h * scale)))
            im = im.resize(new, Image.BILINEAR)
            out = Image.new("RGB", (size, size), (pad_value,) * 3)
            out.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
            return np.asarray(out, dtype=np.uint8), "loaded"
    except Exception:   # any decoder error means "unreadable", counted below
        return None, "unreadable"


def load_images(
    paths: Sequence[str | None], size: int = 64, *, progress: bool = True, pad_value: int = 255,
    workers: int | None = None, return_counts: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Load item images as RGB: ``images`` uint8 ``(n, size, size, 3)``, ``present`` ``(n,)``.

    ``paths`` has one entry per item, None/NaN/"" for no image. Images keep their aspect ratio,
    padded to a square with ``pad_value`` (white, like product photos). Absent, missing or
    unreadable images give zeros and ``present=False``; one warning counts missing and unreadable
    files. ``workers``: decoding threads (default: 2 x CPU cores, at most 8); ``return_counts``
    also returns the counts of each outcome."""
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    paths = list(paths)
    n = len(paths)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    present = np.zeros(n, dtype=bool)
    counts = {"total": n, "loaded": 0, "none": 0, "missing": 0, "unreadable": 0}
    first_bad: dict[str, str] = {}
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            track(total=n, desc="loading images", unit="image", disable=not progress) as bar:
        # PIL releases the GIL while decoding, so threads overlap file I/O and decode.
        loaded = pool.map(lambda p: _load_one(p, size, pad_value), paths)
        for i, (image, status) in enumerate(loaded):
            counts[status] += 1
            if image is not None:
                images[i], present[i] = image, True
            elif status != "none":
                first_bad.setdefault(status, str(paths[i]))
            bar.update(1)
    if first_bad:
        examples = "; ".join(f"{k}: {v}" for k, v in first_bad.items())
        warnings.warn(f"load_images: {counts['missing']} missing and {counts['unreadable']} "
                      f"unreadable image files of {n} treated as absent (e.g. {examples})",
                      stacklevel=2)
    return (images, present, counts) if return_counts else (images, present)


def _conv_bn_relu(x: tf.Tensor, filters: int, name: str, strides: int = 1) -> tf.Tensor:
    x = tf.keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                               name=f"{name}_conv")(x)
    # momentum 0.9: with a few hundred steps the moving statistics must catch
    # up, or inference-mode outputs drift from what training saw.
    x = tf.keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return tf.keras.layers.ReLU(name=f"{name}_relu")(x)


def build_image_encoder(size: int = 64, dim: int = 64, *, backbone: Backbone = "small_cnn",
                        widths: Sequence[int] = (32, 64, 128)) -> tf.keras.Model:
    """An image encoder: raw pixels ``(B, size, size, 3)`` in 0-255 -> unit vectors ``(B, dim)``.

    ``"small_cnn"`` (offline, ~0.1 M parameters, ~2.5 s per epoch of 1,700 64-px images on 2 CPU
    cores): a stride-2 Conv-BN-ReLU stem, a Conv-BN-ReLU + MaxPool block per entry of ``widths``,
    average pooling, Dense, L2 norm. ``"mobilenet_v3_small_imagenet"``: Keras' MobileNetV3-Small
    with downloaded ImageNet weights (``size >= 32``); RuntimeError naming the offline default if
    the download fails."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid backbones: {', '.join(BACKBONES)}")
    inputs = tf.keras.Input((size, size, 3), name="pixels")
    if backbone == "small_cnn":
        x = tf.keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
        # A strided stem halves the resolution first: full-resolution 3x3 convs
        # cost ~10x more on CPU (27 s vs 2.6 s per epoch of 1,700 64-px images)
        # for no gain on catalogue photos this small.
        x = _conv_bn_relu(x, widths[0], "stem", strides=2)
        for b, filters in enumerate(widths):
            x = _conv_bn_relu(x, filters, f"block{b}")
            x = tf.keras.layers.MaxPooling2D(name=f"block{b}_pool")(x)
        x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        try:
            base = tf.keras.applications.MobileNetV3Small(
                input_shape=(size, size, 3), include_top=False, weights="imagenet",
                pooling="avg", include_preprocessing=True)   # takes 0-255 pixels itself
        except Exception as exc:  # download errors come in many types
            raise RuntimeError(
                f"backbone {backbone!r} needs ImageNet weights downloaded by Keras, which failed "
                f"({summarise_error(exc, 200)}). Without a network use the default, "
                f"offline backbone='small_cnn'.") from exc
        x = base(inputs)
    x = tf.keras.layers.Dense(dim, name="projection")(x)
    outputs = tf.keras.layers.UnitNormalization(name="l2_normalize")(x)
    return tf.keras.Model(inputs, outputs, name=f"image_encoder_{backbone}")


def _check_images(images: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    present = np.asarray(present, dtype=bool)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"images must be (n, size, size, 3), got {images.shape}", source="images")
    if present.shape != (len(images),):
        raise DataError(f"present must be ({len(images)},), got {present.shape}", source="images")
    return images, present


def train_image_encoder(
    images: np.ndarray, present: np.ndarray, *, objective: Objective,
    labels: Mapping[str, np.ndarray] | None = None, text_embeddings: np.ndarray | None = None,
    train_idx: np.ndarray | None = None, dim: int = 64, epochs: int = 5, batch_size: int = 128,
    temperature: float = 0.05, learning_rate: float = 2e-3, seed: int = 42, augment: bool = True,
    backbone: Backbone = "small_cnn", progress: bool = True,
) -> tuple[tf.keras.Model, dict[str, list[float]]]:
    """Train an image encoder on the catalogue's own images.

    ``"supervised"``: a cosine-softmax head per attribute of ``labels`` (name -> int codes
    ``(n,)``, -1 = unknown, ignored), logits ``cos(v, w_c) / temperature``, losses summed.
    ``"contrastive"``: ``text_embeddings`` ``(n, d)`` through a learned linear projection + L2
    norm, symmetric in-batch cross-entropy of ``v_i . t_j / temperature`` with the item's own text
    as target. Trains on the ``train_idx`` rows (default all) that have an image. Returns
    ``(encoder, history)``: per-epoch means of ``loss`` and ``accuracy/<attr>`` (contrastive:
    in-batch ``accuracy/image_to_text``)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; "
                         f"valid objectives: {', '.join(OBJECTIVES)}")
    images, present = _check_images(images, present)
    n, size = len(images), images.shape[1]
    rows = np.arange(n) if train_idx is None else np.asarray(train_idx, dtype=np.int64)
    rows = rows[present[rows]]
    if len(rows) < 2:
        raise DataError(f"only {len(rows)} training rows have an image; need at least 2",
                        source="images")
    if objective == "supervised":
        if not labels:
            raise DataError("objective='supervised' needs labels: {attribute: int codes (n,)}",
                            source="labels")
        targets = check_labels(labels, n)
    else:
        if text_embeddings is None:
            raise DataError("objective='contrastive' needs text_embeddings (n, d)",
                            source="text_embeddings")
        text_embeddings = np.asarray(text_embeddings, dtype=np.float32)
        if text_embeddings.ndim != 2 or len(text_embeddings) != n:
            raise DataError(f"text_embeddings must be ({n}, d), got {text_embeddings.shape}",
                            source="text_embeddings")
        if batch_size < 2:
            raise DataError("contrastive training needs batches of at least 2 items",
                            source="images")

    tf.keras.utils.set_random_seed(seed)
    encoder = build_image_encoder(size, dim, backbone=backbone)
    # Geometric augmentation only: colour is an attribute the encoder must keep.
    augmenter = tf.keras.Sequential([
        tf.keras.layers.RandomFlip("horizontal", seed=seed),
        tf.keras.layers.RandomTranslation(0.08, 0.08, fill_mode="nearest", seed=seed + 1),
    ], name="augment") if augment else None
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    inv_t = 1.0 / float(temperature)

    if objective == "supervised":
        names = sorted(targets)
        # Cosine classifier: normalised class vectors put logits on retrieval's cosine scale.
        head_vars = [tf.Variable(tf.random.normal((dim, int(targets[k].max()) + 1), stddev=0.1,
                                                  seed=seed), name=f"classes_{k}") for k in names]
        tensors = (images[rows], *[targets[k][rows] for k in names])
    else:
        text_proj = tf.keras.layers.Dense(dim, use_bias=False, name="text_projection")
        text_proj.build((None, text_embeddings.shape[1]))
        head_vars = text_proj.trainable_variables
        tensors = (images[rows], text_embeddings[rows])
    ds = tf.data.Dataset.from_tensor_slices(tensors).shuffle(len(rows), seed=seed,
                                                             reshuffle_each_iteration=True)
    # Contrastive: a batch of one has no negatives; drop the ragged tail.
    drop = objective == "contrastive" and len(rows) > batch_size
    ds = ds.batch(min(batch_size, len(rows)), drop_remainder=drop).prefetch(tf.data.AUTOTUNE)

    def step_loss(batch: tuple) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        x = tf.cast(batch[0], tf.float32)
        if augmenter is not None:
            x = augmenter(x, training=True)
        v = encoder(x, training=True)                                       # (B, dim), unit
        if objective == "supervised":
            loss, acc = 0.0, {}
            for name, w, y in zip(names, head_vars, batch[1:]):
                logits = inv_t * tf.matmul(v, tf.math.l2_normalize(w, axis=0))
                known = tf.cast(y >= 0, tf.float32)
                n_known = tf.maximum(tf.reduce_sum(known), 1.0)
                ce = tf.keras.losses.sparse_categorical_crossentropy(tf.maximum(y, 0), logits,
                                                                     from_logits=True)
                loss += tf.reduce_sum(ce * known) / n_known
                hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
                acc[f"accuracy/{name}"] = tf.reduce_sum(hit * known) / n_known
            return loss, acc
        t = tf.math.l2_normalize(text_proj(batch[1]), axis=-1)
        # In-batch accuracy: is each image's most similar text in the batch its own item's?
        nearest = tf.argmax(tf.matmul(v, t, transpose_b=True), -1, output_type=tf.int32)
        hit = tf.cast(tf.equal(nearest, tf.range(tf.shape(v)[0])), tf.float32)
        return contrastive_loss(v, t, temperature), {"accuracy/image_to_text": tf.reduce_mean(hit)}

    @tf.function(reduce_retracing=True)
    def train_step(batch: tuple) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        with tf.GradientTape() as tape:
            loss, stats = step_loss(batch)
        variables = encoder.trainable_variables + list(head_vars)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, stats

    history: dict[str, list[float]] = {"loss": []}
    desc = f"image encoder ({objective})"
    log = training_logs.scalar_writer(f"image_encoder/{objective}")
    with track(total=epochs, desc=desc, unit="epoch", disable=not progress) as bar:
        for epoch in range(epochs):
            started = time.perf_counter()
            sums: collections.Counter[str] = collections.Counter()
            count = 0
            for batch in ds:
                loss, stats = train_step(batch)
                b = int(tf.shape(batch[0])[0])
                count += b
                sums.update({k: float(v) * b for k, v in {"loss": loss, **stats}.items()})
            for k, total in sums.items():
                history.setdefault(k, []).append(total / count)
            log(epoch, {k: v[-1] for k, v in history.items()})
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
            bar.write(f"{desc} epoch {epoch + 1}/{epochs}: "
                      + ", ".join(f"{k} {v[-1]:.4g}" for k, v in history.items())
                      + f" ({time.perf_counter() - started:.1f} s)")
            bar.update(1)
    return encoder, history


def embed_images(encoder: tf.keras.Model, images: np.ndarray, present: np.ndarray,
                 batch_size: int = 256) -> np.ndarray:
    """Unit image vectors ``(n, dim)`` float32, zeros where ``present`` is False."""
    images, present = _check_images(images, present)
    out = np.zeros((len(images), int(encoder.output_shape[-1])), dtype=np.float32)
    if present.any():
        out[present] = encoder.predict(images[present].astype(np.float32), batch_size=batch_size,
                                       verbose=0)
    return out


def image_retrieval_score(
    embeddings: np.ndarray, present: np.ndarray, labels: np.ndarray | Mapping[str, np.ndarray], *,
    query_idx: np.ndarray | None = None, k: int = 10,
) -> float:
    """Mean precision@k of image nearest neighbours sharing an attribute combination: queries
    are the ``query_idx`` items with an image (default: all; pass held-out rows), a neighbour is
    relevant when its ``labels`` key (one per item, or a dict of attribute arrays) matches."""
    present = np.asarray(present, dtype=bool)
    key = (combine_keys(*[labels[name] for name in sorted(labels)])
           if isinstance(labels, Mapping) else np.asarray(labels))
    queries = np.arange(len(present)) if query_idx is None else np.asarray(query_idx, np.int64)
    queries = queries[present[queries]]
    return item_retrieval_metrics(embeddings, queries, key, candidate_idx=np.flatnonzero(present),
                                  k=k)[f"precision@{k}"]


@dataclasses.dataclass
class ImageEncoderChoice:
    """What :func:`choose_image_encoder` trained and measured: the ``objective`` kept, its
    ``encoder`` and ``embeddings`` ``(n, dim)``; ``scores`` (test items) and
    ``validation_scores`` (which chose): ``"random"`` (the untrained encoder) and each
    objective -> :func:`image_retrieval_score`; each objective's training ``histories`` and
    wall-time ``seconds``."""

    objective: str
    encoder: tf.keras.Model
    embeddings: np.ndarray
    scores: dict[str, float]
    validation_scores: dict[str, float]
    histories: dict[str, dict[str, list[float]]]
    seconds: dict[str, float]

    def table(self) -> pd.DataFrame:
        """One row per encoder: validation and test score, training seconds, whether kept."""
        rows = {name: {"validation score": self.validation_scores[name], "test score": score,
                       "seconds": self.seconds.get(name, 0.0), "kept": name == self.objective}
                for name, score in self.scores.items()}
        return pd.DataFrame.from_dict(rows, orient="index")


def choose_image_encoder(
    images: np.ndarray, present: np.ndarray, *, labels: Mapping[str, np.ndarray],
    text_embeddings: np.ndarray | None, key: np.ndarray, train_idx: np.ndarray,
    validation_idx: np.ndarray, test_idx: np.ndarray, objectives: Sequence[str] = OBJECTIVES,
    backbone: Backbone = "small_cnn", dim: int = 64, k: int = 10, seed: int = 42,
    progress: bool = True, **train_kwargs: Any,
) -> ImageEncoderChoice:
    """Train the image encoder with each objective on ``train_idx`` (plus ``train_kwargs``) and
    keep the best by :func:`image_retrieval_score` with ``validation_idx`` as queries and
    ``key`` as relevance; score each, and an untrained ``"random"`` baseline, with
    ``test_idx`` as queries. Ties go to the first objective."""
    images, present = _check_images(images, present)
    unknown = sorted(set(objectives) - set(OBJECTIVES))
    if unknown or not objectives:
        raise ValueError(f"unknown objectives {unknown}; "
                         f"valid objectives: {', '.join(OBJECTIVES)}")
    queries = {part: np.asarray(idx, dtype=np.int64)
               for part, idx in (("validation", validation_idx), ("test", test_idx))}
    for part, rows in queries.items():
        if not present[rows].any():
            raise DataError(f"no {part} item has an image to score the encoders on",
                            source="images")
    tf.keras.utils.set_random_seed(seed)
    score, validation_score = (
        functools.partial(image_retrieval_score, present=present, labels=key,
                          query_idx=queries[part], k=k) for part in ("test", "validation"))
    random_encoder = build_image_encoder(images.shape[1], dim, backbone=backbone)
    random_vectors = embed_images(random_encoder, images, present)
    scores = {"random": score(random_vectors)}
    validation_scores = {"random": validation_score(random_vectors)}
    encoders, vectors, histories, seconds = {}, {}, {}, {}
    for objective in objectives:
        started = time.perf_counter()
        encoders[objective], histories[objective] = train_image_encoder(
            images, present, objective=objective, labels=labels, text_embeddings=text_embeddings,
            train_idx=train_idx, dim=dim, seed=seed, backbone=backbone, progress=progress,
            **train_kwargs)
        vectors[objective] = embed_images(encoders[objective], images, present)
        seconds[objective] = round(time.perf_counter() - started, 2)
        scores[objective] = score(vectors[objective])
        validation_scores[objective] = validation_score(vectors[objective])
    # max keeps the first of equal scores
    best = max(objectives, key=lambda o: validation_scores[o])
    return ImageEncoderChoice(objective=best, encoder=encoders[best], embeddings=vectors[best],
                              scores=scores, validation_scores=validation_scores,
                              histories=histories, seconds=seconds)
