"""Serving a trained retrieval model: exact and ScaNN indexes, latency, SavedModel.

The served model takes a user id string and a request time, and returns the
top-K item id strings with their scores. Everything the query tower needs is
inside the model: a string -> index hash table for user ids (unknown ids map to
the OOV index 0, whose history is empty), and each user's last ``H`` training
items as a constant table, so a client sends nothing but the id::

    brute = serving.build_brute_force(result, data, k=100)
    scann = serving.build_scann(result, data, k=100)
    serving.scann_recall_at_k(scann, brute, data.vocab.user_ids[1:200], k=10)
    path = serving.export_serving_model(scann, "artifacts/models/retrieval_scann")
    loaded = serving.load_serving_model(path)
    ids, scores = loaded.recommend(["u0001"], timestamps=[1_700_000_000])

Seen items are *not* removed by the served model (evaluation removes them);
a production service would filter the returned list against the user's
history or query ``k + |history|`` items and drop those.

Two exports answer the same signature. :func:`export_serving_model` of a
ScaNN index is the fast one, but its graph holds ScaNN's custom ops: loading it
needs the ``scann`` package's op library, which stock TensorFlow Serving does
not link. :func:`export_portable_serving_model` holds brute force over the
item embeddings (a matmul and ``top_k``): only TensorFlow's own ops, so stock
TensorFlow Serving or any TensorFlow loads it, at ``O(n_items)`` per request
(``docs/serving.md``). :func:`custom_ops` lists what a SavedModel needs beyond
TensorFlow::

    portable = serving.export_portable_serving_model(brute, "artifacts/models/retrieval_portable")
    assert not serving.custom_ops(portable)

ScaNN is approximate: it partitions the item embeddings into ``num_leaves``
clusters, searches the ``num_leaves_to_search`` nearest ones with
asymmetric-hashing (quantised) scores, and re-scores the best
``num_reordering_candidates`` exactly. :func:`scann_recall_at_k` measures how
much of the exact top-K it keeps. A SavedModel holding a ScaNN index must be
saved with ``tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])`` (the
ScaNN ops live in that namespace), and loading it needs ``scann`` imported.

Every ScaNN index of the course is built here: :func:`scann_layer` (the TFRS
layer behind :func:`build_scann` and product search's export) and
:func:`scann_search` (quantized scoring of a whole table, notebook 06's index
variants). Requests are timed by :mod:`recsys_utils.latency`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal
from collections.abc import Mapping, Sequence

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import metrics
from .artifacts import atomic_dir, save_module
from .features import RecData
from .latency import Timing, time_requests
from .retrieval import RetrievalResult
from .schema import DataError

__all__ = [
    "LoadedServingModel",
    "UserQueryModel",
    "build_brute_force",
    "build_scann",
    "scann_layer",
    "scann_num_leaves",
    "scann_search",
    "export_towers",
    "load_towers",
    "custom_ops",
    "export_portable_serving_model",
    "export_serving_model",
    "load_serving_model",
    "saved_model_ops",
    "scann_ops",
    "request_latency",
    "recommend",
    "same_top_k",
    "top_k_agreement",
    "scann_recall_at_k",
    "scann_sweep",
    "ScannSweep",
]

SCANN_SAVE_OPTIONS = {"namespace_whitelist": ["Scann"]}


class UserQueryModel(tf.keras.Model):
    """``{"user_id": (B,) string, "timestamp": (B,) int64}`` -> ``(B, dim)`` query embeddings.

    The user vocabulary and every user's training history are baked in as
    tables, so the model needs only the id (and the request time for the
    hour / day-of-week context).
    """

    def __init__(self, result: RetrievalResult, data: RecData, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if result.model is None:
            raise DataError(f"variant {result.variant!r} has no query tower to serve")
        # The query tower's weights, and the computation that serves them (the item-bias column
        # included). Tracking the whole RetrievalModel would ask Keras to serialize a model
        # that is never called as a layer ("not built").
        self.query_tower = result.model.query_tower
        self.profile = result.model.profile  # the content-profile columns, when the model has them
        self._query_embedding = result.model.query_embedding
        known = data.vocab.user_ids[1:].astype(str)
        self.user_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(known, tf.string),
                tf.range(1, len(known) + 1, dtype=tf.int32)),
            default_value=0)  # unknown user -> OOV index 0 (empty history)
        history, mask = data.history_for(np.arange(data.n_users))
        self.histories = tf.Variable(history, trainable=False, name="histories")
        self.history_masks = tf.Variable(mask, trainable=False, name="history_masks")

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        user = self.user_table.lookup(tf.cast(inputs["user_id"], tf.string))
        ts = tf.cast(inputs["timestamp"], tf.int64)
        features = {
            "user": user,
            "history": tf.gather(self.histories, user),
            "history_mask": tf.gather(self.history_masks, user),
            "hour": tf.cast((ts // 3600) % 24, tf.int32),
            "dow": tf.cast((ts // 86400 + 3) % 7, tf.int32),  # 1970-01-01: Thursday
        }
        return self._query_embedding(features)


def _item_embeddings_and_ids(result: RetrievalResult, data: RecData) -> tuple[tf.Tensor, tf.Tensor]:
    return (tf.constant(result.item_embeddings()),
            tf.constant(data.vocab.item_ids.astype(str), tf.string))


def _as_queries(queries: Any, timestamps: Any | None = None) -> dict[str, tf.Tensor]:
    """User ids (a sequence) or a ``{"user_id", "timestamp"}`` mapping -> tensors."""
    if isinstance(queries, Mapping):
        user_ids, timestamps = queries["user_id"], queries.get("timestamp", timestamps)
    else:
        user_ids = queries
    user_ids = np.asarray(user_ids).astype(str).reshape(-1)
    ts = (np.zeros(len(user_ids), np.int64) if timestamps is None
          else np.broadcast_to(np.asarray(timestamps, np.int64), user_ids.shape))
    return {"user_id": tf.constant(user_ids, tf.string), "timestamp": tf.constant(ts, tf.int64)}


def build_brute_force(result: RetrievalResult, data: RecData, *, k: int = 100,
                      query_model: UserQueryModel | None = None
                      ) -> tfrs.layers.factorized_top_k.BruteForce:
    """Exact index over all items (identifiers: item id strings), querying by user id."""
    query_model = query_model or UserQueryModel(result, data)
    index = tfrs.layers.factorized_top_k.BruteForce(query_model, k=min(k, data.n_items))
    index.index(*_item_embeddings_and_ids(result, data))
    return index


def scann_num_leaves(n_items: int) -> int:
    """The default number of ScaNN partitions: about ``sqrt(n_items)``, between 1 and 2000."""
    return int(np.clip(round(np.sqrt(n_items)), 1, 2000))


def scann_layer(
    query_model: tf.keras.Model,
    item_vectors: np.ndarray,
    item_ids: Sequence[str],
    *,
    k: int,
    num_leaves: int,
    num_leaves_to_search: int,
    num_reordering_candidates: int | None = None,
    dimensions_per_block: int = 2,
) -> tfrs.layers.factorized_top_k.ScaNN:
    """A TFRS ScaNN index over ``item_vectors`` ``(n_items, d)``, answering ``query_model``'s queries.

    The one ScaNN index build of the course (:func:`build_scann`, product
    search's :func:`recsys_utils.search_serving.export_search_model`):
    ``num_leaves`` partitions (at most ``n_items``), ``num_leaves_to_search`` of
    them searched with asymmetric-hashing scores, ``dimensions_per_block``
    dimensions per 4-bit code, and the best ``num_reordering_candidates``
    (default ``max(4k, 200)``: the quantised scores only shortlist) re-scored
    exactly. Identifiers are ``item_ids`` as strings.
    """
    n = len(item_vectors)
    num_leaves = min(num_leaves, n)
    if num_reordering_candidates is None:
        num_reordering_candidates = min(n, max(4 * k, 200))
    index = tfrs.layers.factorized_top_k.ScaNN(
        query_model, k=min(k, n), num_leaves=num_leaves,
        num_leaves_to_search=min(num_leaves_to_search, num_leaves),
        num_reordering_candidates=num_reordering_candidates,
        dimensions_per_block=dimensions_per_block)
    index.index(tf.constant(np.asarray(item_vectors, np.float32)),
                tf.constant(np.asarray(item_ids).astype(str), tf.string))
    return index


def scann_search(
    queries: np.ndarray,
    table: np.ndarray,
    k: int = 10,
    *,
    scoring: Literal["int8", "ah"] = "ah",
    dimensions_per_block: int = 2,
    anisotropic_quantization_threshold: float = 0.2,
    reorder: int | None = None,
    seed_threads: int = 1,
) -> tuple[np.ndarray, Any]:
    """Top-k by a ScaNN searcher with quantized scoring over the whole table (no tree).

    Args:
        scoring: ``"int8"``: brute force over int8 scalar-quantized rows
            (ScaNN's ``score_brute_force(quantize=INT8)``); ``"ah"``: asymmetric
            hashing, each block of ``dimensions_per_block`` dimensions coded as
            one of 16 centres (4 bits), scored against the float query through
            lookup tables; anisotropic loss weights the error parallel to the
            vector (what matters for dot products) by the threshold.
        reorder: re-score this many AH candidates with exact float dot products
            (``None``: report the quantized ranking itself).

    Returns:
        ``(indices (n_queries, k) int64, searcher)``.
    """
    from scann import scann_ops_pybind
    from scann.scann_ops.py.scann_builder import ReorderType

    db = np.ascontiguousarray(table, np.float32)
    builder = scann_ops_pybind.builder(db, k, "dot_product")
    builder.set_n_training_threads(seed_threads)
    if scoring == "int8":
        builder = builder.score_brute_force(quantize=ReorderType.INT8)
    elif scoring == "ah":
        if len(db) < 16:
            raise DataError(f"asymmetric hashing needs >= 16 rows to train, got {len(db)}")
        builder = builder.score_ah(dimensions_per_block,
                                   anisotropic_quantization_threshold=anisotropic_quantization_threshold,
                                   training_sample_size=len(db))
        if reorder:
            builder = builder.reorder(int(reorder))
    else:
        raise DataError(f"scoring must be 'int8' or 'ah', got {scoring!r}")
    searcher = builder.build()
    idx, _ = searcher.search_batched(np.ascontiguousarray(queries, np.float32), final_num_neighbors=k)
    return np.asarray(idx, np.int64), searcher


def build_scann(
    result: RetrievalResult,
    data: RecData,
    *,
    k: int = 100,
    num_leaves: int | None = None,
    num_leaves_to_search: int | None = None,
    num_reordering_candidates: int | None = None,
    dimensions_per_block: int = 2,
    query_model: UserQueryModel | None = None,
) -> tfrs.layers.factorized_top_k.ScaNN:
    """ScaNN index over all items, querying by user id.

    Defaults scale with the catalogue: ``num_leaves ≈ sqrt(n_items)`` (capped
    at 2000), search a third of the leaves (at least 10) and re-score
    ``max(4k, 200)`` candidates exactly. Dot-product (not cosine) embeddings
    have uneven norms, so the k-means partitions fit them poorly and recall
    depends mostly on the share of leaves searched: on the default synthetic
    catalogue (3,000 items, 55 leaves) recall@10 was about 0.75 searching 10
    leaves, 0.91 with 20 and 1.0 with all. :func:`scann_sweep` measures the
    trade-off. Raise ``num_leaves_to_search`` for recall, lower it for speed.
    The partitions are trained from a random start, so measure the index you
    serve: a rebuild with the same settings can lose several points of recall.
    """
    n = data.n_items
    if num_leaves is None:
        num_leaves = scann_num_leaves(n)
    num_leaves = min(num_leaves, n)
    if num_leaves_to_search is None:
        num_leaves_to_search = max(min(10, num_leaves), num_leaves // 3)
    query_model = query_model or UserQueryModel(result, data)
    return scann_layer(query_model, result.item_embeddings(), data.vocab.item_ids, k=k,
                       num_leaves=num_leaves, num_leaves_to_search=num_leaves_to_search,
                       num_reordering_candidates=num_reordering_candidates,
                       dimensions_per_block=dimensions_per_block)


def recommend(index: tfrs.layers.factorized_top_k.TopK, user_ids: Any,
              timestamps: Any | None = None, k: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Query an in-memory index: ``(item ids (B, k) str, scores (B, k) float32)``."""
    scores, ids = index(_as_queries(user_ids, timestamps), k=k)
    return ids.numpy().astype(str), scores.numpy()


def scann_recall_at_k(scann_index: tfrs.layers.factorized_top_k.TopK,
                      brute_index: tfrs.layers.factorized_top_k.TopK,
                      queries: Any, k: int = 10, timestamps: Any | None = None) -> float:
    """Mean over queries of ``|ScaNN top-k ∩ exact top-k| / k``.

    Args:
        queries: user ids, or a ``{"user_id", "timestamp"}`` mapping.
    """
    approx, _ = recommend(scann_index, queries, timestamps, k=k)
    exact, _ = recommend(brute_index, queries, timestamps, k=k)
    return float(metrics.top_k_overlap(approx, exact, k).mean())


@dataclasses.dataclass
class ScannSweep:
    """ScaNN indexes at several ``num_leaves_to_search``, each measured against brute force.

    Building a ScaNN index trains its partitions (k-means) from a random
    start, so two builds with the same settings differ: on a catalogue of
    1,500 items, recall@10 of two builds searching 13 of 39 leaves was 0.99
    and 0.90. The sweep therefore keeps every index it measured, and
    :meth:`choose` hands back the measured index itself, never a rebuild.

    Attributes:
        table: one row per setting plus a ``brute force`` row: ``index``,
            ``num_leaves``, ``num_leaves_to_search``, ``recall_at_k``,
            ``median_ms``, ``p95_ms``. :meth:`choose` reads only the
            ``scann`` rows' ``num_leaves_to_search`` and ``recall_at_k``.
        indexes: ``num_leaves_to_search`` -> the ScaNN index of that row.
        brute_force: the exact index the recalls were measured against, or
            ``None`` when they were measured otherwise (product search
            compares with numpy brute force, :mod:`recsys_utils.search_serving`).
    """

    table: pd.DataFrame
    indexes: dict[int, tfrs.layers.factorized_top_k.ScaNN]
    brute_force: tfrs.layers.factorized_top_k.BruteForce | None = None

    @property
    def num_leaves(self) -> int:
        """How many partitions every swept index has."""
        return int(self.table["num_leaves"].dropna().iloc[0])

    def choose(self, target_recall: float) -> tuple[int, tfrs.layers.factorized_top_k.ScaNN]:
        """The fewest leaves whose index reached ``target_recall`` (else the most searched).

        Returns:
            ``(num_leaves_to_search, index)``.
        """
        points = self.table[self.table["index"] == "scann"]
        if points.empty:
            raise DataError("the sweep measured no ScaNN setting: pass leaves_to_search")
        good = points[points["recall_at_k"] >= target_recall]
        leaves = int(good["num_leaves_to_search"].min() if len(good)
                     else points["num_leaves_to_search"].max())
        return leaves, self.indexes[leaves]


def scann_sweep(
    result: RetrievalResult,
    data: RecData,
    user_ids: Sequence[str],
    *,
    leaves_to_search: Sequence[int] | None = None,
    num_leaves: int | None = None,
    k: int = 10,
    index_k: int = 100,
    n_latency: int = 100,
    timestamps: Any | None = None,
) -> ScannSweep:
    """Recall@k against brute force and single-query latency, per ``num_leaves_to_search``.

    Every index is built to serve ``index_k`` results (as the served model
    does; latency is measured for that request) and its recall is measured
    on its first ``k``.

    Returns:
        A :class:`ScannSweep`: the table and the indexes it measured.
    """
    query_model = UserQueryModel(result, data)
    brute = build_brute_force(result, data, k=index_k, query_model=query_model)
    if num_leaves is None:
        num_leaves = scann_num_leaves(data.n_items)
    if leaves_to_search is None:
        leaves_to_search = sorted({max(1, round(num_leaves * f)) for f in (0.05, 0.1, 0.2, 0.33, 0.5, 1.0)})
    lat = request_latency(brute, user_ids, n=n_latency, timestamps=timestamps)
    rows = [{"index": "brute force", "num_leaves": None, "num_leaves_to_search": None,
             "recall_at_k": 1.0, "median_ms": lat.median_ms, "p95_ms": lat.p95_ms}]
    indexes = {}
    for search in leaves_to_search:
        scann = build_scann(result, data, k=index_k, num_leaves=num_leaves,
                            num_leaves_to_search=search, query_model=query_model)
        indexes[int(search)] = scann
        lat = request_latency(scann, user_ids, n=n_latency, timestamps=timestamps)
        rows.append({"index": "scann", "num_leaves": num_leaves, "num_leaves_to_search": search,
                     "recall_at_k": scann_recall_at_k(scann, brute, user_ids, k, timestamps),
                     "median_ms": lat.median_ms, "p95_ms": lat.p95_ms})
    return ScannSweep(pd.DataFrame(rows), indexes, brute)


def _serving_function(index: tfrs.layers.factorized_top_k.TopK, k: int | None) -> Any:
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.int64)])
    def serve(user_id: tf.Tensor, timestamp: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return index({"user_id": user_id, "timestamp": timestamp}, k=k)
    return serve


def request_latency(index: Any, user_ids: Sequence[str], *, n: int = 200, warmup: int = 10,
                    timestamps: Any | None = None, k: int | None = None) -> Timing:
    """Time ``n`` single-user requests (cycling through ``user_ids``).

    ``index`` is an in-memory TFRS index (called through a compiled
    ``tf.function``, as it would be served) or a :class:`LoadedServingModel`;
    timed by :func:`recsys_utils.latency.time_requests`.
    """
    queries = _as_queries(user_ids, timestamps)
    users, ts = queries["user_id"], queries["timestamp"]
    if isinstance(index, LoadedServingModel):
        fn = index.signature
        call = lambda i: fn(user_id=users[i:i + 1], timestamp=ts[i:i + 1])
    else:
        fn = _serving_function(index, k)
        call = lambda i: fn(users[i:i + 1], ts[i:i + 1])
    return time_requests(call, len(user_ids), n=n, warmup=warmup)


class _ServingModule(tf.Module):
    def __init__(self, index: tfrs.layers.factorized_top_k.TopK, k: int | None) -> None:
        super().__init__()
        self.index = index
        self.k = k

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="timestamp")])
    def recommend(self, user_id: tf.Tensor, timestamp: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self.index({"user_id": user_id, "timestamp": timestamp}, k=self.k)
        return {"item_ids": ids, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend_now(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        now = tf.cast(tf.timestamp(), tf.int64) * tf.ones_like(user_id, dtype=tf.int64)
        return self.recommend(user_id, now)


def export_serving_model(index: tfrs.layers.factorized_top_k.TopK, path: str | Path,
                         *, k: int | None = None) -> Path:
    """Save ``index`` (with its user query model) as a SavedModel, atomically.

    Signatures:

    * ``serving_default(user_id: string[B], timestamp: int64[B])`` ->
      ``{"item_ids": string[B, K], "scores": float32[B, K]}``;
    * ``recommend_now(user_id: string[B])``: the same at the server's clock.

    The model is written to a temporary directory beside ``path`` and renamed
    into place, replacing an earlier export.
    """
    path = Path(path)
    module = _ServingModule(index, k)
    is_scann = isinstance(index, tfrs.layers.factorized_top_k.ScaNN)
    options = tf.saved_model.SaveOptions(**SCANN_SAVE_OPTIONS) if is_scann else None
    with atomic_dir(path) as tmp:
        save_module(module, tmp, options=options, signatures={
            "serving_default": module.recommend,
            "recommend_now": module.recommend_now,
        })
    return path


def export_portable_serving_model(index: tfrs.layers.factorized_top_k.BruteForce | RetrievalResult,
                                  path: str | Path, *, data: RecData | None = None,
                                  k: int | None = None) -> Path:
    """Save brute force over the item embeddings as a SavedModel with TensorFlow's own ops only.

    ``index`` is a :func:`build_brute_force` index, or a trained
    :class:`~recsys_utils.retrieval.RetrievalResult` (then ``data`` is needed and
    the index is built here, ``k`` results, default 100). The signatures are
    :func:`export_serving_model`'s (``serving_default(user_id: string[B],
    timestamp: int64[B]) -> {"item_ids", "scores"}`` and ``recommend_now``);
    a request scores every item (one ``(B, d) x (d, n_items)`` matmul, then
    ``top_k``). Stock TensorFlow Serving loads it, and so does
    ``tf.saved_model.load`` in a process that never imported ``scann``.

    Raises:
        DataError: ``index`` is a ScaNN index (use :func:`export_serving_model`),
            or the written graph uses an op TensorFlow does not define.
    """
    if isinstance(index, RetrievalResult):
        if data is None:
            raise DataError("export_portable_serving_model(result, ...) needs data= to build "
                            "the brute-force index")
        index = build_brute_force(index, data, k=k or 100)
        k = None
    if not isinstance(index, tfrs.layers.factorized_top_k.BruteForce):
        raise DataError(f"a portable export holds brute force, got {type(index).__name__}: pass "
                        "serving.build_brute_force(result, data) (export_serving_model saves ScaNN)")
    path = export_serving_model(index, path, k=k)
    extra = custom_ops(path)
    if extra:
        raise DataError(f"the portable export uses ops TensorFlow does not define: {sorted(extra)}",
                        source=path)
    return path


def saved_model_ops(path: str | Path) -> set[str]:
    """Every op type in a SavedModel's graph and functions (calls of its own functions left out)."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(path) / "saved_model.pb"
    if not pb.exists():
        raise DataError(f"no SavedModel at {path}", source=path)
    model = saved_model_pb2.SavedModel()
    model.ParseFromString(pb.read_bytes())
    ops: set[str] = set()
    for graph in model.meta_graphs:
        library = graph.graph_def.library
        ops.update(node.op for node in graph.graph_def.node)
        for function in library.function:
            ops.update(node.op for node in function.node_def)
        ops -= {function.signature.name for function in library.function}
    return ops


def custom_ops(path: str | Path) -> set[str]:
    """The op types of a SavedModel that TensorFlow itself does not define (not in
    ``tf.raw_ops``): ScaNN's ``Scann>...``, TF Text's tokeniser ops, ... Empty for a
    model that any TensorFlow, and stock TensorFlow Serving, can load."""
    return {op for op in saved_model_ops(path) if not hasattr(tf.raw_ops, op)}


def scann_ops(path: str | Path) -> set[str]:
    """The ScaNN ops (``Scann>...``) of a SavedModel: empty unless it holds a ScaNN index."""
    return {op for op in custom_ops(path) if op.startswith("Scann")}


@dataclasses.dataclass
class LoadedServingModel:
    """A reloaded serving SavedModel.

    Attributes:
        path: where it was loaded from.
        module: the object ``tf.saved_model.load`` returned.
    """

    path: Path
    module: Any

    @property
    def signature(self) -> Any:
        return self.module.signatures["serving_default"]

    def recommend(self, user_ids: Any, timestamps: Any | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids (B, K) str, scores (B, K) float32)`` for ``user_ids``."""
        queries = _as_queries(user_ids, timestamps)
        out = self.signature(user_id=queries["user_id"], timestamp=queries["timestamp"])
        return out["item_ids"].numpy().astype(str), out["scores"].numpy()


def load_serving_model(path: str | Path) -> LoadedServingModel:
    """Load a model written by :func:`export_serving_model` or
    :func:`export_portable_serving_model`; imports ``scann`` (its ops) only for a ScaNN export.

    Raises:
        DataError: no SavedModel at ``path``, or a ScaNN export without ``scann`` installed.
    """
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise DataError(f"no SavedModel at {path}: run export_serving_model first")
    if scann_ops(path):
        try:  # registers the ScaNN custom ops
            import scann  # noqa: F401
        except ImportError as error:
            raise DataError(f"{path} holds a ScaNN index: loading it needs the scann package "
                            "(or export it with export_portable_serving_model)",
                            source=path) from error
    return LoadedServingModel(path, tf.saved_model.load(str(path)))


def same_top_k(index: tfrs.layers.factorized_top_k.TopK, loaded: LoadedServingModel,
               user_ids: Sequence[str], timestamps: Any | None = None, k: int = 10,
               *, tie_tolerance: float = 1e-5) -> bool:
    """True when the reloaded model returns the same top-``k`` as ``index``, up to ties.

    The scores at every rank must agree within ``tie_tolerance``, and the ids
    must be the same except where two items' scores tie within it: the
    in-memory index runs eagerly and the SavedModel as a graph, so float
    rounding may order tied items either way.
    """
    ids_a, scores_a = recommend(index, user_ids, timestamps)
    ids_b, scores_b = loaded.recommend(user_ids, timestamps)
    ids_a, ids_b = ids_a[:, :k], ids_b[:, :k]
    if not np.allclose(scores_a[:, :k], scores_b[:, :k], rtol=0.0, atol=tie_tolerance):
        return False
    for row, position in zip(*np.nonzero(ids_a != ids_b)):
        neighbours = scores_a[row, max(position - 1, 0): position + 2]
        if np.sort(np.abs(neighbours - scores_a[row, position]))[1] > tie_tolerance:
            return False  # a different item at a rank with no tie: not a rounding swap
    return True


# ------------------------------------------------------------------------------ towers for TFLite


class _QueryTowerModule(tf.Module):
    def __init__(self, model: Any, history_length: int) -> None:
        super().__init__()
        self.model = model
        h = history_length
        self.embed = tf.function(self._embed, input_signature=[
            tf.TensorSpec([None], tf.int32, name="user"),
            tf.TensorSpec([None, h], tf.int32, name="history"),
            tf.TensorSpec([None, h], tf.float32, name="history_mask"),
            tf.TensorSpec([None], tf.int32, name="hour"),
            tf.TensorSpec([None], tf.int32, name="dow")])

    def _embed(self, user, history, history_mask, hour, dow):
        features = {"user": user, "history": history, "history_mask": history_mask,
                    "hour": hour, "dow": dow}
        return {"embedding": self.model.query_embedding(features)}


class _ItemTowerModule(tf.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="item")])
    def embed(self, item: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"embedding": self.model.candidate_embedding(item)}


QUERY_INPUTS = ("user", "history", "history_mask", "hour", "dow")


def export_towers(result: RetrievalResult, data: RecData, query_path: str | Path,
                  item_path: str | Path, *, n_calibration: int = 256, seed: int = 0
                  ) -> dict[str, Path]:
    """Save the query tower and the item (candidate) tower as plain SavedModels.

    Signatures (``serving_default``), numeric tensors only, so that
    ``tf.lite.TFLiteConverter.from_saved_model`` converts them (notebook 06):

    * query tower: ``user int32[B]``, ``history int32[B, H]`` (-1 = empty),
      ``history_mask float32[B, H]``, ``hour int32[B]``, ``dow int32[B]`` ->
      ``{"embedding": float32[B, D]}``;
    * item tower: ``item int32[B]`` (row of the items table) ->
      ``{"embedding": float32[B, D]}``.

    ``D`` includes the prior column when the model has a popularity prior, so
    ``query . item`` is the served score. Beside each ``saved_model.pb`` a
    ``calibration.npz`` holds ``n_calibration`` representative inputs (training
    rows, keyed by input name) for full-integer quantization.
    """
    if result.model is None:
        raise DataError(f"variant {result.variant!r} has no towers to export")
    rng = np.random.default_rng(seed)
    train = data.examples["train"]
    rows = rng.choice(len(train["user"]), min(n_calibration, len(train["user"])), replace=False)
    paths = {}
    for name, module, path, keys in (
            ("query", _QueryTowerModule(result.model, data.history_length), query_path,
             QUERY_INPUTS),
            ("item", _ItemTowerModule(result.model), item_path, ("item",))):
        with atomic_dir(path) as tmp:
            save_module(module, tmp, signatures={"serving_default": module.embed})
            np.savez(Path(tmp) / "calibration.npz", **{
                k: np.asarray(train[k][rows], np.float32 if k == "history_mask" else np.int32)
                for k in keys})
        paths[name] = Path(path)
    return paths


@dataclasses.dataclass
class LoadedTowers:
    """Exported query and item towers, usable where a :class:`RetrievalResult` is
    expected for ranking (``query_embeddings`` / ``item_embeddings``)."""

    variant: str
    query: Any
    item: Any
    n_items: int

    def query_embeddings(self, features: Mapping[str, np.ndarray], batch_size: int = 4096
                         ) -> np.ndarray:
        """``(n, D)`` float32 from query features (each ``(n, ...)``)."""
        fn = self.query.signatures["serving_default"]
        n = len(features["user"])
        out = []
        for s in range(0, n, batch_size):
            batch = {k: tf.constant(np.asarray(features[k][s:s + batch_size]),
                                    tf.float32 if k == "history_mask" else tf.int32)
                     for k in QUERY_INPUTS}
            out.append(fn(**batch)["embedding"].numpy())
        return np.concatenate(out).astype(np.float32)

    def item_embeddings(self, batch_size: int = 4096) -> np.ndarray:
        """``(n_items, D)`` float32 embeddings of the whole catalogue."""
        fn = self.item.signatures["serving_default"]
        return np.concatenate([
            fn(item=tf.range(s, min(s + batch_size, self.n_items), dtype=tf.int32))["embedding"].numpy()
            for s in range(0, self.n_items, batch_size)]).astype(np.float32)


def load_towers(query_path: str | Path, item_path: str | Path, n_items: int,
                variant: str = "loaded") -> LoadedTowers:
    """Load the towers written by :func:`export_towers`."""
    for path in (query_path, item_path):
        if not (Path(path) / "saved_model.pb").exists():
            raise DataError(f"no SavedModel at {path}: run notebook 04 (retrieval) first")
    return LoadedTowers(variant, tf.saved_model.load(str(query_path)),
                        tf.saved_model.load(str(item_path)), n_items)


def top_k_agreement(index: tfrs.layers.factorized_top_k.TopK, loaded: LoadedServingModel,
                    user_ids: Sequence[str], timestamps: Any | None = None, k: int = 10
                    ) -> dict[str, float]:
    """How far a reloaded model agrees with the in-memory index on the top ``k``.

    Returns ``{"overlap": mean |A ∩ B| / k, "identical_rows": share of users
    whose top k is identical in order}``. The in-memory index runs eagerly and
    the SavedModel as a graph; float rounding can differ in the last bit, which
    swaps items whose scores tie to ~1e-6 (common with ScaNN's quantised
    scores), so ``overlap`` is the robust check and ``identical_rows`` the strict one.
    """
    ids_a, _ = recommend(index, user_ids, timestamps)
    ids_b, _ = loaded.recommend(user_ids, timestamps)
    overlap = float(metrics.top_k_overlap(ids_b, ids_a, k).mean())
    a, b = ids_a[:, :k], ids_b[:, :k]
    return {"overlap": overlap, "identical_rows": float(np.mean((a == b).all(axis=1)))}
