"""The product-search models of notebook 07: the hybrids (reciprocal rank fusion, score
interpolation, ``HybridSearcher``) and the TFRS two-tower search model (``SearchModel``
with its ``compute_loss``, trained by ``train_search_model``), behind the ``Searcher``
interface of :mod:`recsys_utils.searcher`.

Generated from ``notebooks/07_product_search.ipynb`` (its cells marked ``# @save``):
edit the notebook, then run ``python -m recsys_utils.notebook_code``.
"""
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_utils import metrics, training_logs
from recsys_utils.callbacks import EpochBar
from recsys_utils.schema import DataError
from recsys_utils.search_eval import NDCG_K, RELEVANT_AT
from recsys_utils.searcher import Searcher, check_k, check_queries, empty_results, pad_results


def _flatten(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, item, value), each ``(m,)``, of the non-padding entries of
    ``(n, depth)`` result lists."""
    indices = np.asarray(indices)
    keep = indices >= 0
    q = np.nonzero(keep)[0]
    return (q.astype(np.int64), indices[keep].astype(np.int64),
            np.asarray(values)[keep].astype(np.float64))


def _top_per_query(q: np.ndarray, items: np.ndarray, values: np.ndarray, n_queries: int,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum values per (query, item) pair, then the top ``k`` items per query (ties: lower index).

    Returns ``(indices (n_queries, k) int64, scores (n_queries, k) float32)``, -1 / -inf padded.
    """
    out_i, out_s = empty_results(n_queries, k)
    if not len(q):
        return out_i, out_s
    # One code per (query, item) pair, so a single bincount sums what every list gave it.
    width = int(items.max()) + 1
    codes, inverse = np.unique(q * width + items, return_inverse=True)
    total = np.bincount(inverse, weights=values)
    uq, ui = codes // width, codes % width
    order = np.lexsort((ui, -total, uq))
    uq, ui, total = uq[order], ui[order], total[order]
    starts = np.searchsorted(uq, np.arange(n_queries))
    rank = np.arange(len(uq)) - starts[uq]
    keep = rank < k
    out_i[uq[keep], rank[keep]] = ui[keep]
    out_s[uq[keep], rank[keep]] = total[keep]
    return out_i, out_s


def reciprocal_rank_fusion(results: Sequence[tuple[np.ndarray, np.ndarray]], k: int, *,
                           k_rrf: float = 60.0, weights: Sequence[float] | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion (Cormack, Clarke & Büttcher, 2009).

    ``score(d) = Σ_m w_m / (k_rrf + rank_m(d))`` over the lists ``m`` that
    contain ``d`` (ranks 1-based; padding ``-1`` ignored). Only ranks matter,
    so scores on different scales fuse without calibration.

    Args:
        results: ``(indices, scores)`` pairs, each ``(n_queries, depth)``.
        k: length of the fused lists.
        k_rrf: damping constant (60 in the paper).
        weights: per-list weights (default all 1).

    Returns:
        ``(indices (n, k), fused scores (n, k))``.
    """
    k = check_k(k)
    if not results:
        raise DataError("reciprocal_rank_fusion needs at least one result list")
    n = len(results[0][0])
    weights = [1.0] * len(results) if weights is None else list(weights)
    parts = []
    for (indices, _), w in zip(results, weights, strict=True):
        if len(indices) != n:
            raise DataError("result lists cover different numbers of queries")
        ranks = np.broadcast_to(np.arange(1, np.shape(indices)[1] + 1), np.shape(indices))
        q, items, r = _flatten(indices, ranks)
        parts.append((q, items, w / (k_rrf + r)))
    return _top_per_query(*(np.concatenate(p) for p in zip(*parts)), n, k)


def _min_max(q: np.ndarray, values: np.ndarray, n_queries: int) -> np.ndarray:
    """Min-max normalise ``values`` ``(m,)`` within each query ``q`` ``(m,)``; where a
    query's values are all equal, 1 (each is its list's best; ranx's min-max gives 0)."""
    low = np.full(n_queries, np.inf)
    high = np.full(n_queries, -np.inf)
    np.minimum.at(low, q, values)
    np.maximum.at(high, q, values)
    span = (high - low)[q]
    return np.where(span > 0, (values - low[q]) / np.where(span > 0, span, 1.0), 1.0)


def interpolate(lexical: tuple[np.ndarray, np.ndarray], dense: tuple[np.ndarray, np.ndarray],
                weight: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score interpolation: ``weight · dense' + (1 - weight) · lexical'``.

    Each list (``(indices, scores)``, each ``(n_queries, depth)``) has its
    scores min-max normalised to [0, 1] within the query's own list, and an
    item missing from a list gets 0 from it. ``weight=1`` gives the dense
    ranking, ``weight=0`` the lexical one (on the items each returned).
    Returns ``(indices (n, k), scores (n, k))``.
    """
    k = check_k(k)
    if not 0 <= weight <= 1:
        raise DataError(f"weight must be in [0, 1], got {weight}")
    n = len(lexical[0])
    parts = []
    for (indices, scores), w in ((lexical, 1.0 - weight), (dense, weight)):
        if len(indices) != n:
            raise DataError("result lists cover different numbers of queries")
        q, items, s = _flatten(indices, scores)
        parts.append((q, items, w * _min_max(q, s, n)))
    return _top_per_query(*(np.concatenate(p) for p in zip(*parts)), n, k)


def fuse(lexical: tuple[np.ndarray, np.ndarray], dense: tuple[np.ndarray, np.ndarray], k: int,
         *, method: str = "rrf", weight: float = 0.5, k_rrf: float = 60.0
         ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reciprocal_rank_fusion` (``method="rrf"``) or :func:`interpolate`."""
    if method == "rrf":
        return reciprocal_rank_fusion([lexical, dense], k, k_rrf=k_rrf)
    if method == "interpolation":
        return interpolate(lexical, dense, weight, k)
    raise DataError(f"fusion method must be 'rrf' or 'interpolation', got {method!r}")


class HybridSearcher:
    """Lexical and dense retrieval fused (see :func:`fuse`), behind the ``Searcher`` interface.

    Both searchers return their top ``depth`` items; the fused list is cut to
    ``k``. For ``method="interpolation"``, :meth:`choose_weight` picks the
    weight that maximises NDCG@10 on validation queries.
    """

    def __init__(self, lexical: Searcher, dense: Searcher, *, method: str = "rrf",
                 weight: float = 0.5, k_rrf: float = 60.0, depth: int = 200,
                 name: str | None = None) -> None:
        if method not in ("rrf", "interpolation"):
            raise DataError(f"fusion method must be 'rrf' or 'interpolation', got {method!r}")
        if lexical.n_items != dense.n_items:
            raise DataError(f"searchers index different catalogues ({lexical.n_items} vs "
                            f"{dense.n_items} items)")
        self.lexical, self.dense, self.method = lexical, dense, method
        self.weight, self.k_rrf, self.depth = float(weight), float(k_rrf), int(depth)
        self.n_items = lexical.n_items
        self.name = name or f"hybrid ({method})"
        self.validation: pd.DataFrame | None = None

    def _lists(self, queries: Sequence[str], k: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        depth = max(self.depth, k)
        return self.lexical.search(queries, depth), self.dense.search(queries, depth)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` fused items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        k = check_k(k)
        lexical, dense = self._lists(queries, k)
        return fuse(lexical, dense, k, method=self.method, weight=self.weight, k_rrf=self.k_rrf)

    def choose_weight(self, queries: Sequence[str], gains: Sequence[Mapping[int, float]],
                      grid: Sequence[float] = tuple(np.round(np.linspace(0, 1, 11), 2)),
                      ) -> float:
        """Set (and return) the interpolation weight with the best validation NDCG@10.

        Ties go to the weight closest to 0.5 (the most even mix). The
        per-weight scores are kept in :attr:`validation`.
        """
        lexical, dense = self._lists(queries, NDCG_K)  # searched once, fused per weight
        rows = []
        for w in grid:
            idx, _ = interpolate(lexical, dense, float(w), NDCG_K)
            value = metrics.graded_metrics(idx, gains, ks=(NDCG_K,), recall_ks=(NDCG_K,),
                                           relevant_threshold=RELEVANT_AT)[f"ndcg@{NDCG_K}"]
            rows.append({"weight": float(w), f"ndcg@{NDCG_K}": float(value)})
        self.validation = pd.DataFrame(rows)
        scores = self.validation[f"ndcg@{NDCG_K}"].to_numpy()
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        weights = self.validation["weight"].to_numpy()
        self.weight = float(weights[best[np.argmin(np.abs(weights[best] - 0.5))]])
        return self.weight


class ResidualTower(tf.keras.layers.Layer):
    """``l2_normalize(base + MLP(inputs))`` ``(B, dim)``, the MLP's last layer initialised to zero.

    At initialisation the tower returns its (normalised) ``base`` unchanged, so
    a search model built from two of them starts exactly at zero-shot dense
    retrieval and training only learns corrections. Call with ``inputs``
    ``(B, dim)`` alone (the base is the input itself) or ``(base (B, dim), inputs (B, f))``.

    Args:
        dim: output width = the base's width.
        hidden_units: hidden GELU layers of the correction MLP.
    """

    def __init__(self, dim: int, hidden_units: Sequence[int] = (), seed: int = 42,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim, self.hidden_units, self.seed = int(dim), tuple(int(u) for u in hidden_units), seed
        self.hidden = [tf.keras.layers.Dense(
            u, activation="gelu", name=f"hidden_{i}",
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed + i))
            for i, u in enumerate(self.hidden_units)]
        # Zero kernel and bias: the correction is 0 until training moves it.
        self.out = tf.keras.layers.Dense(self.dim, kernel_initializer="zeros", name="correction")

    def call(self, inputs: Any, training: Any = None) -> tf.Tensor:
        base, x = inputs if isinstance(inputs, (tuple, list)) else (inputs, inputs)
        for layer in self.hidden:
            x = layer(x)
        return tf.math.l2_normalize(tf.cast(base, tf.float32) + self.out(x), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "hidden_units": list(self.hidden_units),
                "seed": self.seed}


class SearchModel(tfrs.Model):
    """Two towers for query -> product search, trained with ``tfrs.tasks.Retrieval``.

    * Query tower: ``query_tower``, a :class:`ResidualTower` over the frozen
      encoder's vector ``e`` of the query, ``q = l2(e + MLP(e))``. The encoder
      stays outside this model while training (each training query is encoded
      once and fed as ``query_vector`` ``(B, dim)``); the served query tower
      (``search_serving.build_query_tower``) chains the TF Hub encoder and this layer.
    * Candidate tower: the item's text vector ``t`` plus a learned correction
      from ``t`` and its fused features ``f`` (notebook 03),
      ``c = l2(t + MLP([t; f]))``: what the text misses but the image shows can move the item.

    Both corrections start at zero, so before training the model *is* zero-shot
    dense retrieval. Scores are cosines divided by ``temperature``; in-batch
    softmax with accidental hits (the same item twice in a batch) removed.

    Args:
        item_text: ``(n_items, dim)`` unit text vectors of the items (notebook 02).
        item_features: ``(n_items, f)`` fused item features (notebook 03).
    """

    def __init__(self, item_text: np.ndarray, item_features: np.ndarray, *,
                 query_hidden: Sequence[int] = (), item_hidden: Sequence[int] = (256,),
                 temperature: float = 0.05, seed: int = 42) -> None:
        super().__init__()
        self.item_text = tf.constant(np.asarray(item_text, np.float32))      # (n_items, dim)
        self.item_features = tf.constant(np.concatenate(                     # (n_items, dim + f)
            [np.asarray(item_text, np.float32), np.asarray(item_features, np.float32)], axis=1))
        self.dim = int(self.item_text.shape[1])
        self.query_tower = ResidualTower(self.dim, query_hidden, seed, name="query_tower")
        self.candidate_tower = ResidualTower(self.dim, item_hidden, seed + 1000,
                                             name="candidate_tower")
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True, temperature=temperature)

    def candidates(self, item: tf.Tensor, training: Any = None) -> tf.Tensor:
        """Item rows ``(B,)`` -> unit candidate embeddings ``(B, dim)``."""
        return self.candidate_tower((tf.gather(self.item_text, item),
                                     tf.gather(self.item_features, item)), training=training)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features["query_vector"], training=training)  # (B, dim)
        item = tf.cast(features["item"], tf.int32)                              # (B,)
        # The other queries' items are the negatives; candidate_ids drops a batch's repeats.
        return self.task(query, self.candidates(item, training), candidate_ids=item,
                         compute_metrics=False)

    def item_embeddings(self, batch_size: int = 4096) -> np.ndarray:
        """``(n_items, dim)`` unit candidate embeddings of the whole catalogue."""
        n = int(self.item_text.shape[0])
        return np.concatenate([self.candidates(tf.range(s, min(s + batch_size, n)), False).numpy()
                               for s in range(0, n, batch_size)]).astype(np.float32)

    def query_embeddings(self, query_vectors: np.ndarray) -> np.ndarray:
        """``(n, dim)`` unit query embeddings from the encoder's ``(n, dim)`` vectors."""
        if not len(query_vectors):
            return np.zeros((0, self.dim), np.float32)
        return self.query_tower(tf.constant(np.asarray(query_vectors, np.float32)),
                                training=False).numpy()


def _check_training_data(query_vectors: np.ndarray, pairs: pd.DataFrame, item_text: np.ndarray,
                         item_features: np.ndarray) -> None:
    """A :class:`DataError` naming what does not fit before any training starts."""
    if not len(pairs):
        raise DataError("no training pairs: the training queries have no item graded >= 2")
    if query_vectors.ndim != 2 or pairs["query"].max() >= len(query_vectors):
        raise DataError(f"query_vectors {query_vectors.shape} do not cover the pairs' queries")
    if item_text.ndim != 2 or item_text.shape[1] != query_vectors.shape[1]:
        raise DataError(f"item_text {item_text.shape} must be (n_items, {query_vectors.shape[1]}), "
                        "in the query vectors' space")
    if item_features.ndim != 2 or len(item_features) != len(item_text) \
            or pairs["item"].max() >= len(item_text):
        raise DataError(f"item_features {item_features.shape} and item_text {item_text.shape} "
                        "must have one row per item, covering the pairs' items")
    for name, array in (("query_vectors", query_vectors), ("item_text", item_text),
                        ("item_features", item_features)):
        if not np.isfinite(array).all():
            raise DataError(f"{name} contain NaN or inf")


def _rounds(pairs: pd.DataFrame, rounds: int, batch_size: int, seed: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per round, each training query with one positive drawn ∝ gain (2^rel - 1), in batches
    of distinct queries: another query's positive is a negative, never the query's own.

    Returns ``(query positions (N,), item rows (N,))``, ``N`` a multiple of the batch size.
    """
    rng = np.random.default_rng([int(seed), 81])
    by_query = {q: (g["item"].to_numpy(), np.exp2(g["relevance"].to_numpy()) - 1)
                for q, g in pairs.groupby("query", sort=True)}
    queries = np.array(sorted(by_query))
    batch = min(batch_size, len(queries))
    usable = len(queries) // batch * batch  # whole batches only: a short one would repeat queries
    q_out, i_out = [], []
    for _ in range(rounds):
        for q in rng.permutation(queries)[:usable]:
            items, weight = by_query[q]
            q_out.append(q)
            i_out.append(items[rng.choice(len(items), p=weight / weight.sum())])
    return np.array(q_out, np.int64), np.array(i_out, np.int64)


@dataclasses.dataclass
class SearchTraining:
    """What :func:`train_search_model` did: the model, per-round losses, timings."""

    model: SearchModel
    losses: list[float]
    train_seconds: float
    n_pairs: int
    n_queries: int
    config: dict[str, Any]


def train_search_model(query_vectors: np.ndarray, pairs: pd.DataFrame, item_text: np.ndarray,
                       item_features: np.ndarray, *, epochs: int = 30, batch_size: int = 32,
                       query_hidden: Sequence[int] = (), item_hidden: Sequence[int] = (256,),
                       learning_rate: float = 1e-3, temperature: float = 0.05, seed: int = 42,
                       progress: bool = True) -> SearchTraining:
    """Build, compile and fit a :class:`SearchModel` on (query, relevant item) pairs.

    Args:
        query_vectors: ``(n_queries, d)`` frozen-encoder vectors of the
            queries that ``pairs["query"]`` indexes.
        pairs: ``training_pairs`` of the training queries (:mod:`recsys_utils.search_queries`).
        item_text: ``(n_items, d)`` item text vectors (notebook 02), the
            candidate tower's starting point.
        item_features: ``(n_items, f)`` fused item features (notebook 03).
        epochs: rounds over the training queries; each round draws one
            positive per query (probability ∝ ``2**rel - 1``), in batches of
            ``batch_size`` distinct queries.
        query_hidden, item_hidden, temperature: model shape (:class:`SearchModel`).
    """
    query_vectors = np.asarray(query_vectors, np.float32)
    item_text = np.asarray(item_text, np.float32)
    item_features = np.asarray(item_features, np.float32)
    _check_training_data(query_vectors, pairs, item_text, item_features)
    config = {"epochs": epochs, "batch_size": batch_size, "query_hidden": list(query_hidden),
              "item_hidden": list(item_hidden), "learning_rate": learning_rate,
              "temperature": temperature, "seed": seed}
    tf.keras.utils.set_random_seed(seed)
    model = SearchModel(item_text, item_features, query_hidden=query_hidden,
                        item_hidden=item_hidden, temperature=temperature, seed=seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    q, items = _rounds(pairs, epochs, batch_size, seed)
    n_queries = int(pairs["query"].nunique())
    batch = min(batch_size, n_queries)
    steps = max(len(q) // batch // max(epochs, 1), 1)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"query_vector": query_vectors[q], "item": items.astype(np.int32)}).batch(batch)
    callbacks = [EpochBar(epochs, "search two-tower")] if progress else []
    callbacks += training_logs.callbacks("search/two_tower")  # epoch losses for TensorBoard
    start = time.perf_counter()
    # One Keras epoch = one round (``steps`` batches), so the bar and the losses are per round.
    fit = model.fit(dataset.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=0,
                    callbacks=callbacks)
    seconds = time.perf_counter() - start
    return SearchTraining(model, [float(x) for x in fit.history["loss"]], seconds, len(pairs),
                          n_queries, config)


class TwoTowerSearcher:
    """A trained :class:`SearchModel` behind the ``Searcher`` interface.

    ``encode`` gives the frozen encoder's ``(n, d)`` vectors for query strings
    (the same function the dense searcher uses); the model's query tower is
    applied on top, and the catalogue's candidate embeddings are computed once.
    """

    def __init__(self, model: SearchModel, encode: Callable[[list[str]], np.ndarray],
                 name: str = "two-tower") -> None:
        self.model, self.encode, self.name = model, encode, name
        self.item_vectors = model.item_embeddings()  # (n_items, d)
        self.n_items = len(self.item_vectors)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        k = check_k(k)
        queries = check_queries(queries)
        if not queries:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        vectors = self.model.query_embeddings(np.asarray(self.encode(queries), np.float32))
        idx, val = metrics.brute_force_top_k(vectors, self.item_vectors, min(k, self.n_items))
        return pad_results(idx, val, k)
