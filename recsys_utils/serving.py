"""Serving a trained retrieval model: exact and ScaNN indexes (every ScaNN index of the course is
built here), SavedModel exports, request latency. The served model maps a user id, a request
time and, optionally, the items the user touched since training to the top-K item ids and
scores; seen items are *not* removed. A ScaNN export needs the
``scann`` op library to load; :func:`export_portable_serving_model` uses TensorFlow's own ops
only (``docs/serving.md``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal
from collections.abc import Callable, Mapping, Sequence

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import metrics
from .artifacts import atomic_dir, save_module, save_weights
from .features import QuerySet, RecData
from .latency import Timing, time_requests
from .retrieval import QUERY_KEYS, RetrievalResult, catalogue, in_batches
from .schema import DataError, summarise_error

__all__ = [
    "LEAF_SHARES", "LoadedServingModel", "QUERY_TOWER_FLOAT_OPS", "ScannSweep",
    "UserQueryModel", "build_brute_force", "build_scann", "custom_ops", "export_numeric_model",
    "export_portable_serving_model", "export_serving_model", "export_towers", "fewest_leaves",
    "leaves_to_sweep", "load_saved_model", "load_serving_model", "load_towers", "recommend",
    "request_latency", "same_top_k", "saved_model_ops", "scann_layer", "scann_num_leaves",
    "scann_ops", "scann_recall_at_k", "scann_search", "scann_sweep", "served_recall",
    "sweep_leaves", "top_k_agreement",
]

# The ScaNN ops live in the "Scann" namespace, which SaveOptions must allow.
SCANN_SAVE_OPTIONS = {"namespace_whitelist": ["Scann"]}
QUERY_INPUTS = QUERY_KEYS
#: Op types the exported query tower keeps float under full-integer quantization
#: (``tflite_conversion.convert_saved_model(keep_float_ops=...)``): the division of its
#: history mean. Measured on fashion smoke: int8 DIV lost 3.4% of Recall@10, float 0.3%.
QUERY_TOWER_FLOAT_OPS: tuple[str, ...] = ("DIV",)
TopK = tfrs.layers.factorized_top_k.TopK


class UserQueryModel(tf.keras.Model):
    """``{"user_id": (B,) string, "timestamp": (B,) int64}`` -> ``(B, dim)`` query embeddings,
    the user vocabulary and every user's training history baked in as tables.

    With ``"recent_item_ids"`` ``(B, R)`` string (most recent first, ``""`` padded), a
    request's history is those items, then the stored one, cut to the stored length ``H``:
    a click made a second ago changes the next list without retraining. Ids the catalogue
    does not know are skipped.
    """

    def __init__(self, result: RetrievalResult, data: RecData, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if result.model is None:
            raise DataError(f"variant {result.variant!r} has no query tower to serve")
        # Track the query tower only: Keras cannot serialize the whole (never called) model.
        self.query_tower = result.model.query_tower
        self.profile = result.model.profile  # the content-profile columns, when the model has them
        self._query_embedding = result.model.query_embedding
        known = data.vocab.user_ids[1:].astype(str)
        self.user_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(known, tf.string), tf.range(1, len(known) + 1, dtype=tf.int32)),
            default_value=0)  # unknown user -> OOV index 0 (empty history)
        items = data.vocab.item_ids.astype(str)
        self.item_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(items, tf.string), tf.range(len(items), dtype=tf.int32)),
            default_value=-1)  # unknown item -> -1, an empty history slot
        history, _ = data.history_for(np.arange(data.n_users))  # the mask is history >= 0
        self.histories = tf.Variable(history, trainable=False, name="histories")

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        user = self.user_table.lookup(tf.cast(inputs["user_id"], tf.string))
        ts = tf.cast(inputs["timestamp"], tf.int64)
        history = tf.gather(self.histories, user)  # (B, H), -1 = empty
        if "recent_item_ids" in inputs:
            recent = self.item_table.lookup(tf.cast(inputs["recent_item_ids"], tf.string))
            merged = tf.concat([recent, history], axis=1)  # most recent first, gaps anywhere
            # A stable sort on "is empty" moves the gaps last and keeps the order of the rest.
            order = tf.argsort(tf.cast(merged < 0, tf.int32), axis=1, stable=True)
            length = self.histories.shape[1]  # static: the towers need it
            history = tf.ensure_shape(tf.gather(merged, order, batch_dims=1)[:, :length],
                                      [None, length])
        return self._query_embedding({
            "user": user,
            "history": history,
            "history_mask": tf.cast(history >= 0, tf.float32),
            "hour": tf.cast((ts // 3600) % 24, tf.int32),
            "dow": tf.cast((ts // 86400 + 3) % 7, tf.int32),  # 1970-01-01: Thursday
        })


def _as_queries(queries: Any, timestamps: Any | None = None,
                recent: Sequence[Sequence[str]] | None = None) -> dict[str, tf.Tensor]:
    """User ids (a sequence) or a ``{"user_id", "timestamp"}`` mapping -> tensors; ``recent``:
    one list of item ids per user, most recent first (``"recent_item_ids"``, ``""`` padded)."""
    if isinstance(queries, Mapping):
        queries, timestamps = queries["user_id"], queries.get("timestamp", timestamps)
    user_ids = np.asarray(queries).astype(str).reshape(-1)
    ts = (np.zeros(len(user_ids), np.int64) if timestamps is None
          else np.broadcast_to(np.asarray(timestamps, np.int64), user_ids.shape))
    out = {"user_id": tf.constant(user_ids, tf.string), "timestamp": tf.constant(ts, tf.int64)}
    if recent is not None:
        if len(recent) != len(user_ids):
            raise DataError(f"recent items: one list per user, got {len(recent)} lists for "
                            f"{len(user_ids)} users")
        grid = np.full((len(user_ids), max([1, *map(len, recent)])), "", dtype=object)
        for row, items in enumerate(recent):
            grid[row, :len(items)] = [str(item) for item in items]
        out["recent_item_ids"] = tf.constant(grid.astype(str), tf.string)
    return out


def build_brute_force(result: RetrievalResult, data: RecData, *, k: int = 100,
                      query_model: UserQueryModel | None = None, without: Sequence[str] = ()
                      ) -> tfrs.layers.factorized_top_k.BruteForce:
    """Exact index over all items (identifiers: item id strings), querying by user id.
    ``without``: item ids left out (the catalogue before they arrived); DataError for an id
    the catalogue does not have."""
    ids = data.vocab.item_ids.astype(str)
    without = np.asarray(without).astype(str).reshape(-1)
    if unknown := sorted(set(without) - set(ids)):
        raise DataError(f"items {unknown[:5]} are not in the catalogue")
    keep = ~np.isin(ids, without)
    query_model = query_model or UserQueryModel(result, data)
    index = tfrs.layers.factorized_top_k.BruteForce(query_model, k=min(k, int(keep.sum())))
    index.index(tf.constant(result.item_embeddings()[keep]), tf.constant(ids[keep], tf.string))
    return index


#: Shares of the partitions a ScaNN sweep searches (:func:`leaves_to_sweep`).
LEAF_SHARES = (0.05, 0.1, 0.2, 0.33, 0.5, 0.67, 1.0)


def leaves_to_sweep(num_leaves: int) -> list[int]:
    """The distinct ``num_leaves_to_search`` of :data:`LEAF_SHARES` for ``num_leaves``, fewest
    first."""
    return sorted({max(1, round(num_leaves * share)) for share in LEAF_SHARES})


def fewest_leaves(recall_by_leaves: Mapping[int, float], target_recall: float) -> int:
    """The fewest leaves searched whose measured recall reaches ``target_recall``, else the
    most searched: the one rule that picks every served ScaNN setting."""
    if not recall_by_leaves:
        raise DataError("no ScaNN setting was measured: pass the leaves to search")
    good = [leaves for leaves, recall in recall_by_leaves.items() if recall >= target_recall]
    return int(min(good) if good else max(recall_by_leaves))


def sweep_leaves(build: Callable[[int], Any], recall: Callable[[Any], float],
                 leaves: Sequence[int], target_recall: float | None = None
                 ) -> tuple[dict[int, float], dict[int, Any]]:
    """Build an index per ``num_leaves_to_search`` of ``leaves``, fewest first, and measure
    its ``recall`` against exact search; with ``target_recall``, stop at the first index that
    reaches it (more leaves would not be chosen). Returns ``({leaves: recall}, {leaves:
    index})``: the measured indexes themselves, since a rebuild starts from another partition."""
    recalls: dict[int, float] = {}
    indexes: dict[int, Any] = {}
    for searched in sorted(int(s) for s in leaves):
        indexes[searched] = build(searched)
        recalls[searched] = float(recall(indexes[searched]))
        if target_recall is not None and recalls[searched] >= target_recall:
            break
    return recalls, indexes


def scann_num_leaves(n_items: int) -> int:
    """The default number of ScaNN partitions: about ``sqrt(n_items)``, between 1 and 2000."""
    return int(np.clip(round(np.sqrt(n_items)), 1, 2000))


def scann_layer(query_model: tf.keras.Model, item_vectors: np.ndarray, item_ids: Sequence[str],
                *, k: int, num_leaves: int, num_leaves_to_search: int
                ) -> tfrs.layers.factorized_top_k.ScaNN:
    """A TFRS ScaNN index over ``item_vectors`` ``(n_items, d)`` answering ``query_model``:
    ``num_leaves`` partitions (at most ``n_items``), ``num_leaves_to_search`` of them scored
    by asymmetric hashing (2 dimensions per 4-bit code), the best ``max(4k, 200)`` re-scored
    exactly."""
    n = len(item_vectors)
    num_leaves = min(num_leaves, n)
    index = tfrs.layers.factorized_top_k.ScaNN(
        query_model, k=min(k, n), num_leaves=num_leaves,
        num_leaves_to_search=min(num_leaves_to_search, num_leaves),
        num_reordering_candidates=min(n, max(4 * k, 200)), dimensions_per_block=2)
    index.index(tf.constant(np.asarray(item_vectors, np.float32)),
                tf.constant(np.asarray(item_ids).astype(str), tf.string))
    return index


def scann_search(queries: np.ndarray, table: np.ndarray, k: int = 10, *,
                 scoring: Literal["int8", "ah"] = "ah", dimensions_per_block: int = 2,
                 reorder: int | None = None) -> tuple[np.ndarray, Any]:
    """Top-k of ``queries`` ``(n_queries, d)`` over ``table`` ``(n, d)`` by a ScaNN searcher
    with quantized scoring (no tree): ``(indices (n_queries, k) int64, searcher)``.

    Args:
        scoring: ``"int8"``: brute force over int8 scalar-quantized rows; ``"ah"``: asymmetric
            hashing, each block of ``dimensions_per_block`` dimensions coded as one of 16
            centres, the anisotropic loss weighting the error parallel to the vector (threshold
            0.2).
        reorder: re-score this many AH candidates exactly (``None``: the quantized ranking).
    """
    from scann import scann_ops_pybind
    from scann.scann_ops.py.scann_builder import ReorderType
    db = np.ascontiguousarray(table, np.float32)
    builder = scann_ops_pybind.builder(db, k, "dot_product")
    builder.set_n_training_threads(1)
    if scoring == "int8":
        builder = builder.score_brute_force(quantize=ReorderType.INT8)
    elif scoring == "ah":
        if len(db) < 16:
            raise DataError(f"asymmetric hashing needs >= 16 rows to train, got {len(db)}")
        builder = builder.score_ah(dimensions_per_block, training_sample_size=len(db),
                                   anisotropic_quantization_threshold=0.2)
        if reorder:
            builder = builder.reorder(int(reorder))
    else:
        raise DataError(f"scoring must be 'int8' or 'ah', got {scoring!r}")
    searcher = builder.build()
    idx, _ = searcher.search_batched(np.ascontiguousarray(queries, np.float32),
                                     final_num_neighbors=k)
    return np.asarray(idx, np.int64), searcher


def build_scann(result: RetrievalResult, data: RecData, *, k: int = 100,
                num_leaves: int | None = None, num_leaves_to_search: int | None = None,
                query_model: UserQueryModel | None = None) -> tfrs.layers.factorized_top_k.ScaNN:
    """ScaNN index over all items, querying by user id (:func:`scann_layer`).

    Defaults: :func:`scann_num_leaves` partitions, a third of them searched (at least 10),
    ``max(4k, 200)`` candidates re-scored. Recall depends mostly on the share of leaves
    searched, and partitions train from a random start: measure the index you serve
    (:func:`scann_sweep`), a rebuild can lose several points of recall.
    """
    n = data.n_items
    num_leaves = min(scann_num_leaves(n) if num_leaves is None else num_leaves, n)
    if num_leaves_to_search is None:
        num_leaves_to_search = max(min(10, num_leaves), num_leaves // 3)
    query_model = query_model or UserQueryModel(result, data)
    return scann_layer(query_model, result.item_embeddings(), data.vocab.item_ids, k=k,
                       num_leaves=num_leaves, num_leaves_to_search=num_leaves_to_search)


def recommend(index: TopK, user_ids: Any, timestamps: Any | None = None, k: int | None = None,
              *, recent: Sequence[Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Query an in-memory index: ``(item ids (B, k) str, scores (B, k) float32)``; ``recent``:
    each user's items since training, most recent first (see :class:`UserQueryModel`)."""
    scores, ids = index(_as_queries(user_ids, timestamps, recent), k=k)
    return ids.numpy().astype(str), scores.numpy()


def served_recall(item_ids: np.ndarray, data: RecData, queries: QuerySet, k: int = 10
                  ) -> np.ndarray:
    """Per-user Recall@k ``(n_queries,)`` of served lists ``item_ids`` ``(n_queries, K)`` (id
    strings, one row per user of ``queries``), each user's training items removed first as
    the evaluator removes them (the served model keeps them)."""
    if len(item_ids) != len(queries):
        raise DataError(f"{len(item_ids)} served lists for {len(queries)} users")
    ranked = data.vocab.item_index(np.ravel(item_ids)).reshape(np.shape(item_ids))
    kept = np.full((len(ranked), k), -1, np.int64)
    for row, items in enumerate(ranked):
        fresh = items[~np.isin(items, queries.exclude[row].indices)][:k]
        kept[row, :len(fresh)] = fresh
    return metrics.retrieval_metrics(kept, queries.relevant, ks=(k,),
                                     per_query=True)[f"recall@{k}"].to_numpy()


def scann_recall_at_k(scann_index: TopK, brute_index: TopK, queries: Any, k: int = 10,
                      timestamps: Any | None = None) -> float:
    """Mean over ``queries`` (user ids or a ``{"user_id", "timestamp"}`` mapping) of
    ``|ScaNN top-k ∩ exact top-k| / k``."""
    approx, _ = recommend(scann_index, queries, timestamps, k=k)
    exact, _ = recommend(brute_index, queries, timestamps, k=k)
    return float(metrics.top_k_overlap(approx, exact, k).mean())


@dataclasses.dataclass
class ScannSweep:
    """ScaNN indexes at several ``num_leaves_to_search``, each measured against brute force.
    Two builds with the same settings differ, so :meth:`choose` returns the measured index
    itself, never a rebuild.

    Attributes:
        table: a ``brute force`` row, then one ``scann`` row per setting: ``index``,
            ``num_leaves``, ``num_leaves_to_search``, ``recall_at_k``, ``median_ms``, ``p95_ms``.
        indexes: ``num_leaves_to_search`` -> the ScaNN index of that row.
        brute_force: the exact reference index (``None`` when measured otherwise).
    """

    table: pd.DataFrame
    indexes: dict[int, tfrs.layers.factorized_top_k.ScaNN]
    brute_force: tfrs.layers.factorized_top_k.BruteForce | None = None

    @property
    def num_leaves(self) -> int:
        """How many partitions every swept index has."""
        return int(self.table["num_leaves"].dropna().iloc[0])

    def choose(self, target_recall: float) -> tuple[int, tfrs.layers.factorized_top_k.ScaNN]:
        """``(num_leaves_to_search, index)``: the fewest leaves reaching ``target_recall``,
        else the most searched."""
        points = self.table[self.table["index"] == "scann"]
        leaves = fewest_leaves(dict(zip(points["num_leaves_to_search"].astype(int),
                                        points["recall_at_k"])), target_recall)
        return leaves, self.indexes[leaves]


def scann_sweep(result: RetrievalResult, data: RecData, user_ids: Sequence[str], *,
                leaves_to_search: Sequence[int] | None = None, num_leaves: int | None = None,
                k: int = 10, index_k: int = 100, n_latency: int = 100,
                timestamps: Any | None = None) -> ScannSweep:
    """Recall@k against brute force and single-query latency, per ``num_leaves_to_search``:
    every index serves ``index_k`` results (the timed request), recall is on its first ``k``."""
    query_model = UserQueryModel(result, data)
    brute = build_brute_force(result, data, k=index_k, query_model=query_model)
    num_leaves = scann_num_leaves(data.n_items) if num_leaves is None else num_leaves
    recalls, indexes = sweep_leaves(
        lambda searched: build_scann(result, data, k=index_k, num_leaves=num_leaves,
                                     num_leaves_to_search=searched, query_model=query_model),
        lambda index: scann_recall_at_k(index, brute, user_ids, k, timestamps),
        leaves_to_sweep(num_leaves) if leaves_to_search is None else leaves_to_search)

    def latency(index: Any) -> dict[str, float]:
        lat = request_latency(index, user_ids, n=n_latency, timestamps=timestamps)
        return {"median_ms": lat.median_ms, "p95_ms": lat.p95_ms}

    rows = [{"index": "brute force", "num_leaves": None, "num_leaves_to_search": None,
             "recall_at_k": 1.0, **latency(brute)}]
    rows += [{"index": "scann", "num_leaves": num_leaves, "num_leaves_to_search": searched,
              "recall_at_k": recall, **latency(indexes[searched])}
             for searched, recall in recalls.items()]
    return ScannSweep(pd.DataFrame(rows), indexes, brute)


def request_latency(index: Any, user_ids: Sequence[str], *, n: int = 200, warmup: int = 10,
                    timestamps: Any | None = None, k: int | None = None,
                    recent: Sequence[Sequence[str]] | None = None) -> Timing:
    """Time ``n`` single-user requests (cycling through ``user_ids``) with
    :func:`recsys_utils.latency.time_requests`. ``index``: an in-memory TFRS index (called
    through the compiled serving function) or a :class:`LoadedServingModel`; ``recent``:
    each user's recent items, sent with every request."""
    queries = _as_queries(user_ids, timestamps, recent)
    if isinstance(index, LoadedServingModel):
        fn = index.module.signatures["recommend_recent" if recent is not None else
                                     "serving_default"]
    else:
        module = _ServingModule(index, k)
        fn = module.recommend_recent if recent is not None else module.recommend
    return time_requests(lambda i: fn(**{key: value[i:i + 1] for key, value in queries.items()}),
                         len(user_ids), n=n, warmup=warmup)


class _ServingModule(tf.Module):
    def __init__(self, index: TopK, k: int | None) -> None:
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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="timestamp"),
                                  tf.TensorSpec([None, None], tf.string, name="recent_item_ids")])
    def recommend_recent(self, user_id: tf.Tensor, timestamp: tf.Tensor,
                         recent_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self.index({"user_id": user_id, "timestamp": timestamp,
                                  "recent_item_ids": recent_item_ids}, k=self.k)
        return {"item_ids": ids, "scores": scores}


def export_serving_model(index: TopK, path: str | Path, *, k: int | None = None) -> Path:
    """Save ``index`` (with its user query model) as a SavedModel, atomically. Signatures:
    ``serving_default(user_id: string[B], timestamp: int64[B])`` -> ``{"item_ids": string[B,
    K], "scores": float32[B, K]}``, ``recommend_now(user_id: string[B])`` at server time, and
    ``recommend_recent(user_id, timestamp, recent_item_ids: string[B, R])`` with the items the
    user touched since training (most recent first, ``""`` padded).
    """
    path, module = Path(path), _ServingModule(index, k)
    options = (tf.saved_model.SaveOptions(**SCANN_SAVE_OPTIONS)
               if isinstance(index, tfrs.layers.factorized_top_k.ScaNN) else None)
    with atomic_dir(path) as tmp:
        save_module(module, tmp, options=options, signatures={
            "serving_default": module.recommend, "recommend_now": module.recommend_now,
            "recommend_recent": module.recommend_recent})
    return path


def export_portable_serving_model(index: tfrs.layers.factorized_top_k.BruteForce,
                                  path: str | Path, *, k: int | None = None) -> Path:
    """Save a :func:`build_brute_force` index as a SavedModel with TensorFlow's own ops only
    (stock TensorFlow Serving loads it), signatures as :func:`export_serving_model`.

    Raises:
        DataError: a ScaNN index, or the written graph uses an op TensorFlow does not define.
    """
    if not isinstance(index, tfrs.layers.factorized_top_k.BruteForce):
        raise DataError(f"a portable export holds brute force, got {type(index).__name__}: "
                        "pass serving.build_brute_force(result, data) (export_serving_model "
                        "saves ScaNN)")
    path = export_serving_model(index, path, k=k)
    if extra := custom_ops(path):
        raise DataError("the portable export uses ops TensorFlow does not define: "
                        f"{sorted(extra)}", source=path)
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
        functions = graph.graph_def.library.function
        ops.update(node.op for node in graph.graph_def.node)
        ops.update(node.op for function in functions for node in function.node_def)
        ops -= {function.signature.name for function in functions}
    return ops


def custom_ops(path: str | Path) -> set[str]:
    """The op types of a SavedModel that TensorFlow does not define (not in ``tf.raw_ops``):
    ScaNN's, TF Text's, ... Empty for a model stock TensorFlow Serving can load."""
    return {op for op in saved_model_ops(path) if not hasattr(tf.raw_ops, op)}


def scann_ops(path: str | Path) -> set[str]:
    """The ScaNN ops (``Scann>...``) of a SavedModel: empty unless it holds a ScaNN index."""
    return {op for op in custom_ops(path) if op.startswith("Scann")}


@dataclasses.dataclass
class LoadedServingModel:
    """A reloaded serving SavedModel: where from, and what ``tf.saved_model.load`` returned."""

    path: Path
    module: Any

    @property
    def signature(self) -> Any:
        return self.module.signatures["serving_default"]

    def recommend(self, user_ids: Any, timestamps: Any | None = None,
                  recent: Sequence[Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids (B, K) str, scores (B, K) float32)`` for ``user_ids``, with each user's
        ``recent`` items (most recent first) when given."""
        if recent is None:
            out = self.signature(**_as_queries(user_ids, timestamps))
        elif "recommend_recent" not in self.module.signatures:
            raise DataError(f"{self.path} takes no recent items (exported before "
                            "recommend_recent existed): export it again", source=self.path)
        else:
            out = self.module.signatures["recommend_recent"](
                **_as_queries(user_ids, timestamps, recent))
        return out["item_ids"].numpy().astype(str), out["scores"].numpy()


def load_saved_model(path: str | Path, remedy: str) -> Any:
    """``tf.saved_model.load(path)``, the packages that register its custom ops imported first
    (a bare load fails with ``Op type not registered``): ``scann`` for a ScaNN index,
    ``tensorflow_text`` for the others (the tokeniser's). A :class:`DataError` ending in
    ``remedy`` (what to run) when there is no SavedModel, a package is missing or it does not
    load."""
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise DataError(f"no SavedModel at {path}: {remedy}", source=path)
    try:
        extra = custom_ops(path)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign saved_model.pb
        raise DataError(f"cannot read {path / 'saved_model.pb'} ({summarise_error(exc)}): "
                        f"{remedy}", source=path) from exc
    scann = {op for op in extra if op.startswith("Scann")}
    for package in (["scann"] if scann else []) + (["tensorflow_text"] if extra - scann else []):
        try:
            __import__(package)
        except ImportError as error:
            raise DataError(f"{path} uses {package}'s ops: loading it needs the {package} "
                            f"package ({remedy})", source=path) from error
    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many kinds; the message says what to do
        raise DataError(f"cannot load {path} ({summarise_error(exc)}): {remedy}",
                        source=path) from exc


def load_serving_model(path: str | Path) -> LoadedServingModel:
    """Load an :func:`export_serving_model` or :func:`export_portable_serving_model` model
    (:func:`load_saved_model`)."""
    return LoadedServingModel(Path(path), load_saved_model(
        path, "run export_serving_model (or export_portable_serving_model, which loads "
              "without scann) first"))


def same_top_k(index: TopK, loaded: LoadedServingModel, user_ids: Sequence[str],
               timestamps: Any | None = None, k: int = 10, *, tie_tolerance: float = 1e-5
               ) -> bool:
    """True when the reloaded model returns the same top-``k`` as ``index``: scores agree
    within ``tie_tolerance`` at every rank, ids except where two scores tie within it (eager
    vs graph rounding may order ties either way)."""
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


def top_k_agreement(index: TopK, loaded: LoadedServingModel, user_ids: Sequence[str],
                    timestamps: Any | None = None, k: int = 10) -> dict[str, float]:
    """``{"overlap": mean |A ∩ B| / k, "identical_rows": share of users whose top k is
    identical in order}`` between a reloaded model and the in-memory index (rounding swaps
    near-ties: ``overlap`` is the robust check, ``identical_rows`` the strict one)."""
    ids_a, _ = recommend(index, user_ids, timestamps)
    ids_b, _ = loaded.recommend(user_ids, timestamps)
    return {"overlap": float(metrics.top_k_overlap(ids_b, ids_a, k).mean()),
            "identical_rows": float(np.mean((ids_a[:, :k] == ids_b[:, :k]).all(axis=1)))}


# ------------------------------------------------------------------------------ numeric exports


def _dtype(key: str) -> tf.DType:
    return tf.float32 if key == "history_mask" else tf.int32


class _NumericModule(tf.Module):
    """``serve``: int32 inputs (float32 ``history_mask``, ``(B, H)`` histories) named ``keys``
    -> ``{output: fn({key: tensor})}``."""

    def __init__(self, model: Any, fn: Callable[[dict[str, tf.Tensor]], tf.Tensor],
                 keys: Sequence[str], history_length: int, output: str) -> None:
        super().__init__()
        self.model = model  # tracked, so that its variables are saved

        def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
            return {output: fn(dict(zip(keys, args)))}

        self.serve = tf.function(serve, input_signature=[
            tf.TensorSpec([None, history_length] if k.startswith("history") else [None],
                          _dtype(k), name=k) for k in keys])


def export_numeric_model(model: Any, fn: Callable[[dict[str, tf.Tensor]], tf.Tensor],
                         keys: Sequence[str], data: RecData, path: str | Path, *, output: str,
                         n_calibration: int = 256, seed: int = 0) -> Path:
    """Save ``fn`` over numeric inputs ``keys`` as a plain SavedModel (``serving_default``),
    atomically, for ``tf.lite.TFLiteConverter.from_saved_model``; ``calibration.npz`` beside it
    holds ``n_calibration`` seeded training rows (keyed by input name) for int8 quantization, and
    ``checkpoint/`` the Keras model's weights (``artifacts.restore_weights``)."""
    module = _NumericModule(model, fn, keys, data.history_length, output)
    train = data.examples["train"]
    n = len(train["item"])
    rows = np.random.default_rng(seed).choice(n, min(n_calibration, n), replace=False)
    with atomic_dir(path) as tmp:
        save_module(module, tmp, signatures={"serving_default": module.serve})
        save_weights(model, tmp)
        np.savez(Path(tmp) / "calibration.npz", **{
            k: np.asarray(train[k][rows], _dtype(k).as_numpy_dtype) for k in keys})
    return Path(path)


def export_towers(result: RetrievalResult, data: RecData, query_path: str | Path,
                  item_path: str | Path, *, n_calibration: int = 256, seed: int = 0
                  ) -> dict[str, Path]:
    """Save the query and item towers as numeric SavedModels (:func:`export_numeric_model`).

    Signatures: query ``user int32[B]``, ``history int32[B, H]`` (-1 = empty),
    ``history_mask float32[B, H]``, ``hour``, ``dow int32[B]``; item ``item int32[B]``;
    both -> ``{"embedding": float32[B, D]}``. ``D`` includes the prior column when
    the model has one, so ``query . item`` is the served score.
    """
    model = result.model
    if model is None:
        raise DataError(f"variant {result.variant!r} has no towers to export")
    kwargs = dict(output="embedding", n_calibration=n_calibration, seed=seed)
    return {"query": export_numeric_model(model, model.query_embedding, QUERY_INPUTS, data,
                                          query_path, **kwargs),
            "item": export_numeric_model(model, lambda f: model.candidate_embedding(f["item"]),
                                         ("item",), data, item_path, **kwargs)}


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
        return in_batches(lambda b: fn(**{k: tf.cast(v, _dtype(k)) for k, v in b.items()})[
            "embedding"], features, QUERY_INPUTS, batch_size).astype(np.float32)

    def item_embeddings(self, batch_size: int = 4096) -> np.ndarray:
        """``(n_items, D)`` float32 embeddings of the whole catalogue."""
        fn = self.item.signatures["serving_default"]
        return catalogue(lambda i: fn(item=i)["embedding"], self.n_items, batch_size)


def load_towers(query_path: str | Path, item_path: str | Path, n_items: int,
                variant: str = "loaded") -> LoadedTowers:
    """Load the towers written by :func:`export_towers`."""
    remedy = "run notebook 04 (retrieval) first"
    return LoadedTowers(variant, load_saved_model(query_path, remedy),
                        load_saved_model(item_path, remedy), n_items)
