"""Serving product search (notebook 07): one SavedModel from raw query strings to product ids,
chaining the exported text encoder, an optional trained query projection
(:func:`build_query_tower`) and a ScaNN index (:func:`export_search_model`), or brute force
(:func:`export_portable_search_model`, which loads without the ``scann`` package)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import metrics
from .artifacts import atomic_dir, save_module
from .encoder_export import load_exported
from .schema import DataError
from .searcher import check_k, check_queries
from .latency import time_requests
from .serving import (SCANN_SAVE_OPTIONS, fewest_leaves, leaves_to_sweep, load_saved_model,
                      scann_layer, scann_num_leaves, scann_ops, sweep_leaves)

__all__ = ["LoadedSearchModel", "build_query_tower", "export_portable_search_model",
           "export_search_model", "hub_encoder", "load_search_model", "served_latency",
           "served_overlap"]


def build_query_tower(encoder_path: str | Path,
                      projection: tf.keras.layers.Layer | None = None) -> tf.keras.Model:
    """``(B,) tf.string -> (B, dim)``: the encoder saved by
    :func:`recsys_utils.encoder_export.export_encoder` (TF Hub, frozen), then ``projection``
    (e.g. a trained ``SearchModel.query_tower``) if given."""
    inputs = tf.keras.Input(shape=(), dtype=tf.string, name="query")
    vectors = load_exported(encoder_path, trainable=False)(inputs)
    if projection is not None:
        vectors = projection(vectors, training=False)
    return tf.keras.Model(inputs, vectors, name="query_tower")


def hub_encoder(encoder_path: str | Path,
                batch_size: int = 64) -> Callable[[list[str]], np.ndarray]:
    """``encode(n strings) -> (n, dim) float32`` by the exported text encoder through TF Hub,
    ``batch_size`` strings per call."""
    tower = build_query_tower(encoder_path)

    def encode(queries: list[str]) -> np.ndarray:
        queries = check_queries(queries)
        if not queries:
            return np.zeros((0, int(tower.output_shape[-1])), np.float32)
        return np.concatenate([tower(tf.constant(queries[s:s + batch_size]), training=False).numpy()
                               for s in range(0, len(queries), batch_size)]).astype(np.float32)

    return encode


def _choose_scann(query_tower: tf.keras.Model, item_vectors: np.ndarray, item_ids: Sequence[str],
                  k: int, num_leaves: int, queries: Sequence[str], target_recall: float
                  ) -> tuple[tfrs.layers.factorized_top_k.ScaNN, dict[str, Any]]:
    """The index with the fewest leaves searched whose top ``k`` for ``queries`` keeps
    ``target_recall`` of the exact top ``k`` (else every leaf), and the sweep that chose it.
    The index measured is the one returned: ScaNN partitions from a random start."""
    queries = check_queries(queries)
    if not queries:
        raise DataError("choosing the ScaNN setting needs at least one validation query")
    vectors = query_tower(tf.constant(queries, tf.string)).numpy()  # (n_queries, d)
    exact, _ = metrics.brute_force_top_k(vectors, item_vectors, min(k, len(item_vectors)))
    exact_ids = np.asarray(item_ids).astype(str)[exact]  # (n_queries, k)
    recalls, indexes = sweep_leaves(
        lambda searched: scann_layer(query_tower, item_vectors, item_ids, k=k,
                                     num_leaves=num_leaves, num_leaves_to_search=searched),
        lambda index: metrics.top_k_overlap(
            index(tf.constant(queries, tf.string))[1].numpy().astype(str), exact_ids,
            exact.shape[1]).mean(),
        leaves_to_sweep(num_leaves), target_recall)
    searched = fewest_leaves(recalls, target_recall)
    sweep = [{"num_leaves_to_search": s, "recall_at_k": r} for s, r in recalls.items()]
    return indexes[searched], {"num_leaves": num_leaves, "num_leaves_to_search": searched,
                               "target_recall": target_recall, "n_queries": len(queries),
                               "sweep": sweep}


def export_search_model(query_tower: tf.keras.Model, item_vectors: np.ndarray,
                        item_ids: Sequence[str], path: str | Path, *, k: int = 10,
                        num_leaves: int | None = None, num_leaves_to_search: int | None = None,
                        validation_queries: Sequence[str] | None = None,
                        target_recall: float = 0.95) -> Path:
    """Write a SavedModel (atomically): raw query strings in, the top ``k`` item ids out, by ScaNN.

    Signature ``serving_default(query: string[B]) -> {"item_ids": string[B, k], "scores":
    float32[B, k]}``; any string works. ``item_vectors`` ``(n_items, d)``: row ``i`` is
    ``item_ids[i]``. ScaNN: ``num_leaves ≈ sqrt(n_items)``, ``max(4k, 200)`` candidates re-scored
    exactly. Leaves searched: ``num_leaves_to_search``; else, with ``validation_queries``, the
    fewest of :data:`~recsys_utils.serving.LEAF_SHARES` whose top ``k`` keeps ``target_recall``
    of the exact top ``k``; else two thirds. Saved in ``index.json``."""
    item_vectors = _check_vectors(item_vectors, item_ids)
    k = check_k(k)
    n = len(item_vectors)
    num_leaves = min(num_leaves or scann_num_leaves(n), n)
    if num_leaves_to_search is None and validation_queries is not None:
        index, info = _choose_scann(query_tower, item_vectors, item_ids, k, num_leaves,
                                    validation_queries, target_recall)
    else:
        if num_leaves_to_search is None:
            # Two thirds of the leaves: sentence vectors of short queries sit near many partitions.
            num_leaves_to_search = max(min(10, num_leaves), (2 * num_leaves) // 3)
        searched = min(num_leaves_to_search, num_leaves)
        index = scann_layer(query_tower, item_vectors, item_ids, k=k, num_leaves=num_leaves,
                            num_leaves_to_search=searched)
        info = {"num_leaves": num_leaves, "num_leaves_to_search": searched}
    return _save(index, path, info, options=tf.saved_model.SaveOptions(**SCANN_SAVE_OPTIONS))


def _check_vectors(item_vectors: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
    item_vectors = np.asarray(item_vectors, np.float32)
    if item_vectors.ndim != 2 or len(item_vectors) != len(item_ids):
        raise DataError(f"need one vector per item id: {len(item_ids)} ids, "
                        f"vectors {item_vectors.shape}")
    return item_vectors


def _save(index: tfrs.layers.factorized_top_k.TopK, path: str | Path, info: dict[str, Any],
          options: tf.saved_model.SaveOptions | None = None) -> Path:
    """Save ``index`` (with its query tower) behind one string signature, ``info`` beside it."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="query")])
    def search(query: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = index(query)
        return {"item_ids": ids, "scores": scores}

    module = tf.Module()
    module.index, module.search = index, search
    with atomic_dir(path) as tmp:
        save_module(module, tmp, signatures={"serving_default": module.search}, options=options)
        (tmp / "index.json").write_text(json.dumps(info, indent=2))
    return Path(path)


def export_portable_search_model(query_tower: tf.keras.Model, item_vectors: np.ndarray,
                                 item_ids: Sequence[str], path: str | Path, *, k: int = 10) -> Path:
    """:func:`export_search_model` with exact brute force (``O(n_items)`` a request) instead of
    ScaNN: its only non-TensorFlow ops are the tokeniser's (``tensorflow_text``), which stock
    TensorFlow Serving links in. ``index.json``: ``{"index": "brute_force", "n_items": n}``.
    DataError if vectors and ids do not match or the written graph has a ScaNN op."""
    item_vectors = _check_vectors(item_vectors, item_ids)
    k = check_k(k)
    index = tfrs.layers.factorized_top_k.BruteForce(query_tower, k=min(k, len(item_vectors)))
    index.index(tf.constant(item_vectors), tf.constant(np.asarray(item_ids).astype(str)))
    out = _save(index, path, {"index": "brute_force", "n_items": len(item_vectors)})
    if found := scann_ops(out):
        raise DataError(f"the portable search model holds ScaNN ops {sorted(found)}", source=out)
    return out


@dataclasses.dataclass
class LoadedSearchModel:
    """A reloaded :func:`export_search_model` SavedModel."""

    path: Path
    module: Any

    @property
    def index_info(self) -> dict[str, Any]:
        """The saved ``index.json`` (``{}`` if absent): see the two export functions."""
        info = self.path / "index.json"
        return json.loads(info.read_text()) if info.exists() else {}

    def search(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids (B, k) str, scores (B, k) float32)`` for raw query strings."""
        queries = check_queries(queries)
        out = self.module.signatures["serving_default"](query=tf.constant(queries, tf.string))
        return out["item_ids"].numpy().astype(str), out["scores"].numpy()


def load_search_model(path: str | Path) -> LoadedSearchModel:
    """Load an exported search model (:func:`~recsys_utils.serving.load_saved_model`)."""
    return LoadedSearchModel(Path(path), load_saved_model(
        path, "export it again by running notebook 07 (product search)"))


def served_overlap(loaded: LoadedSearchModel, queries: Sequence[str], indices: np.ndarray,
                   item_ids: Sequence[str], k: int = 10) -> float:
    """Mean share of the in-memory top ``k`` (``indices``: ``(len(queries), >= k)`` item rows
    by brute force, -1 padding) that the served model returns."""
    found, _ = loaded.search(queries)
    if len(found) == 0:
        return float("nan")
    indices = np.asarray(indices)[:, :found.shape[1]]
    # Item ids in place of indices; padding (-1) becomes an id no item has.
    exact = np.where(indices >= 0, np.asarray(item_ids).astype(object)[np.maximum(indices, 0)],
                     None)
    return float(metrics.top_k_overlap(found.astype(object), exact,
                                       min(k, found.shape[1])).mean())


def served_latency(loaded: LoadedSearchModel, queries: Sequence[str], n: int = 50,
                   warmup: int = 5) -> dict[str, float]:
    """Median and 95th-percentile wall time of ``n`` one-query requests, milliseconds."""
    queries = check_queries(queries)
    if not queries:
        raise DataError("served_latency needs at least one query")
    timed = time_requests(lambda i: loaded.search([queries[i]]), len(queries), n=n, warmup=warmup)
    return {"median_ms": timed.median_ms, "p95_ms": timed.p95_ms}
