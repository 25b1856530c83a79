"""Product search (notebook 07): lexical, dense, hybrid and two-tower retrieval of items for queries.

Every method sits behind one interface, :class:`Searcher`::

    indices, scores = searcher.search(["women's red cotton t-shirt", ...], k=100)

``indices`` is ``(n_queries, k)`` int64 item rows (positions in the items
table), best first, padded with ``-1`` where a method has nothing more to
return (BM25 returns only items sharing a word with the query); ``scores`` is
``(n_queries, k)`` float32 with ``-inf`` on the padding. The arrays feed
:func:`recsys_utils.metrics.graded_metrics` directly.

* :class:`BM25`: the lexical baseline, Okapi BM25 over the same item text the
  encoder reads (:func:`recsys_utils.text.item_text`), in numpy/scipy.
* :class:`DenseSearcher`: zero-shot dense retrieval, dot products of unit
  sentence vectors (notebook 02's MiniLM) found by brute force.
* :class:`HybridSearcher`: the two fused, by reciprocal rank fusion (RRF) or by
  interpolating min-max normalised scores with a weight chosen on validation
  queries (:meth:`HybridSearcher.choose_weight`).
* :class:`TwoTowerSearcher`: a TFRS two-tower model trained on (query, relevant
  item) pairs (:func:`train_search_model`); its query tower is the frozen text
  encoder that notebook 02 exported, loaded through TF Hub, with a trained
  residual layer on top; its candidate tower corrects the item's text vector
  with the fused item features of notebook 03. Both corrections start at zero,
  so training starts from zero-shot dense retrieval.

:func:`export_search_model` writes one SavedModel that maps raw query strings
to the top-K item ids through a ScaNN index; :func:`load_search_model` reads it
back. :func:`fashion_queries` builds graded queries for the fashion catalogue,
which ships none; :func:`split_queries`, :func:`query_gains` and
:func:`evaluate` do the bookkeeping of the evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse
import tensorflow as tf  # importing recsys_utils (this package) set TF_USE_LEGACY_KERAS=1
import tensorflow_recommenders as tfrs

from . import metrics
from .schema import DataError, as_string_list, require_columns

__all__ = [
    "BM25",
    "DenseSearcher",
    "HybridSearcher",
    "LoadedSearchModel",
    "ResidualTower",
    "SearchModel",
    "SearchTraining",
    "Searcher",
    "TwoTowerSearcher",
    "build_query_tower",
    "evaluate",
    "example_results",
    "LEAF_SHARES",
    "export_search_model",
    "fashion_queries",
    "fuse",
    "hub_encoder",
    "interpolate",
    "load_search_model",
    "plot_by_kind",
    "precomputed",
    "query_gains",
    "reciprocal_rank_fusion",
    "search_queries",
    "served_latency",
    "served_overlap",
    "split_queries",
    "tokenize",
    "train_search_model",
    "training_pairs",
]

#: Cut-offs of the search evaluation: NDCG@10 (graded gains), Recall@100, MRR.
NDCG_K = 10
RECALL_K = 100
#: Relevance at or above which an item counts as relevant for Recall and MRR:
#: 2 (substitute) and 3 (exact) are items the shopper would take.
RELEVANT_AT = 2
SPLIT_NAMES = ("train", "validation", "test")


# ---------------------------------------------------------------------------- interface


class Searcher(Protocol):
    """What every search method offers."""

    name: str
    n_items: int

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        ...


def _check_texts(queries: Any) -> list[str]:
    return as_string_list(queries, source="queries")


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _pad(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``(n, m)`` results to ``(n, k)`` with -1 / -inf (a catalogue smaller than k)."""
    n, m = indices.shape
    if m >= k:
        return indices[:, :k].astype(np.int64), scores[:, :k].astype(np.float32)
    out_i = np.full((n, k), -1, np.int64)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_i[:, :m], out_s[:, :m] = indices, scores
    return out_i, out_s


# ---------------------------------------------------------------------------- BM25

_WORD = re.compile(r"\w+")


def _s_stem(word: str) -> str:
    """Harman's "S" stemmer (1991): plural endings only, e.g. shirts -> shirt, dresses -> dresse."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str, *, stem: bool = True) -> list[str]:
    """Lower-cased Unicode word tokens (NFKC), plural-stemmed by default.

    ``"Women's Navy-Blue Shirts"`` -> ``["women", "s", "navy", "blue", "shirt"]``.
    """
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return [_s_stem(w) for w in words] if stem else words


class BM25:
    """Okapi BM25 over a fixed catalogue, with sparse matrices.

    For a query ``q`` and a document ``d`` of length ``|d|`` (tokens),
    ``score(q, d) = Σ_{t in q} idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · (1 - b + b · |d| / avgdl))``
    with ``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))`` (the Lucene
    form, always positive), ``N`` documents and ``avgdl`` their mean length.
    A term repeated in the query counts once per repetition. Only items sharing
    at least one term with the query are returned; the rest of a result row is
    ``-1`` padding.

    Args:
        k1: term-frequency saturation (1.2-2.0 usual).
        b: length normalisation (0 = none, 1 = full).
        stem: plural stemming in :func:`tokenize`.
    """

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, *, stem: bool = True) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise DataError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.stem = float(k1), float(b), stem
        self.vocabulary: dict[str, int] = {}
        self.weights: scipy.sparse.csr_matrix | None = None  # (n_items, n_terms)
        self.idf = np.zeros(0)
        self.n_items = 0

    def _counts(self, texts: Sequence[str], grow: bool) -> scipy.sparse.csr_matrix:
        rows, cols = [], []
        for r, doc in enumerate(texts):
            for token in tokenize(doc, stem=self.stem):
                col = self.vocabulary.get(token)
                if col is None:
                    if not grow:
                        continue  # a query word no item has: contributes nothing
                    col = self.vocabulary[token] = len(self.vocabulary)
                rows.append(r)
                cols.append(col)
        shape = (len(texts), len(self.vocabulary))
        data = np.ones(len(rows), np.float64)
        matrix = scipy.sparse.csr_matrix((data, (rows, cols)), shape=shape)
        matrix.sum_duplicates()
        return matrix

    def fit(self, items_text: Sequence[str]) -> BM25:
        """Index the catalogue: one text per item, in items-table order."""
        items_text = _check_texts(items_text)
        if not items_text:
            raise DataError("BM25.fit needs at least one item text")
        self.vocabulary = {}
        tf_ = self._counts(items_text, grow=True)
        n = tf_.shape[0]
        lengths = np.asarray(tf_.sum(axis=1)).ravel()
        avgdl = max(lengths.mean(), 1e-9)
        df = np.bincount(tf_.indices, minlength=tf_.shape[1])
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))
        # Per stored (item, term) entry: its row's length normaliser and its term's idf.
        norm = self.k1 * (1 - self.b + self.b * lengths / avgdl)
        row_of = np.repeat(np.arange(n), np.diff(tf_.indptr))
        tf_vals = tf_.data
        values = self.idf[tf_.indices] * tf_vals * (self.k1 + 1) / (tf_vals + norm[row_of])
        self.weights = scipy.sparse.csr_matrix((values, tf_.indices, tf_.indptr), shape=tf_.shape)
        self.n_items = n
        return self

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense ``(n_queries, n_items)`` BM25 scores (for small catalogues and tests)."""
        self._require_fit()
        q = self._counts(_check_texts(queries), grow=False)
        return np.asarray((q @ self.weights.T).todense(), dtype=np.float64)

    def _require_fit(self) -> None:
        if self.weights is None:
            raise DataError("BM25 is not fitted: call fit(items_text) first")

    def search(self, queries: Sequence[str], k: int, *, batch_size: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` matching items per query (see :class:`Searcher`)."""
        self._require_fit()
        k = _check_k(k)
        queries = _check_texts(queries)
        q = self._counts(queries, grow=False)
        kk = min(k, self.n_items)
        out_i = np.full((len(queries), kk), -1, np.int64)
        out_s = np.full((len(queries), kk), -np.inf, np.float32)
        weights_t = self.weights.T.tocsc()
        for start in range(0, len(queries), batch_size):
            block = np.asarray((q[start:start + batch_size] @ weights_t).todense(), np.float32)
            if not len(block):
                continue
            idx = metrics.top_k(block, kk)
            val = np.take_along_axis(block, idx, axis=1)
            matched = val > 0  # idf > 0, so a shared term always gives a positive score
            out_i[start:start + len(block)] = np.where(matched, idx, -1)
            out_s[start:start + len(block)] = np.where(matched, val, -np.inf)
        return _pad(out_i, out_s, k)


# ---------------------------------------------------------------------------- dense


def precomputed(texts: Sequence[str], vectors: np.ndarray,
                fallback: Callable[[list[str]], np.ndarray] | None = None
                ) -> Callable[[list[str]], np.ndarray]:
    """An ``encode`` function that looks vectors up by text, e.g. notebook 02's ``query_text``.

    Texts not in ``texts`` go to ``fallback`` (e.g. ``encoder.encode``), or
    raise :class:`DataError` when there is none.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise DataError(f"need one vector per text: {len(texts)} texts, vectors {vectors.shape}")
    row = {t: i for i, t in enumerate(texts)}

    def encode(queries: list[str]) -> np.ndarray:
        missing = [q for q in queries if q not in row]
        if missing and fallback is None:
            raise DataError(f"{len(missing)} quer(y/ies) have no precomputed vector, e.g. "
                            f"{missing[0]!r}; pass fallback=encoder.encode")
        out = np.zeros((len(queries), vectors.shape[1]), np.float32)
        known = [i for i, q in enumerate(queries) if q in row]
        out[known] = vectors[[row[queries[i]] for i in known]]
        if missing:
            unknown = [i for i, q in enumerate(queries) if q not in row]
            out[unknown] = fallback([queries[i] for i in unknown])
        return out

    return encode


class DenseSearcher:
    """Exact dot-product retrieval of unit item vectors for encoded queries.

    Args:
        item_vectors: ``(n_items, d)``, rows aligned with the items table.
        encode: maps a list of query strings to ``(n, d)`` vectors in the same
            space (``encoder.encode`` or :func:`precomputed`).
        name: label in tables.
    """

    def __init__(self, item_vectors: np.ndarray, encode: Callable[[list[str]], np.ndarray],
                 name: str = "dense") -> None:
        item_vectors = np.asarray(item_vectors, np.float32)
        if item_vectors.ndim != 2 or not len(item_vectors):
            raise DataError(f"item_vectors must be (n_items, d), got {item_vectors.shape}")
        if not np.isfinite(item_vectors).all():
            raise DataError("item_vectors contain NaN or inf")
        self.item_vectors, self.encode, self.name = item_vectors, encode, name
        self.n_items = len(item_vectors)

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        queries = _check_texts(queries)
        vectors = np.asarray(self.encode(queries), np.float32)
        if vectors.shape != (len(queries), self.item_vectors.shape[1]):
            raise DataError(f"encode returned {vectors.shape}; expected "
                            f"({len(queries)}, {self.item_vectors.shape[1]})")
        return vectors

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = _check_k(k)
        vectors = self.query_vectors(queries)
        if not len(vectors):
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        idx, val = metrics.brute_force_top_k(vectors, self.item_vectors, min(k, self.n_items))
        return _pad(idx, val, k)


# ---------------------------------------------------------------------------- fusion


def _flatten(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, item, value) of the non-padding entries of a result list."""
    indices = np.asarray(indices)
    keep = indices >= 0
    q = np.nonzero(keep)[0]
    return q.astype(np.int64), indices[keep].astype(np.int64), np.asarray(values)[keep].astype(np.float64)


def _top_per_query(q: np.ndarray, items: np.ndarray, values: np.ndarray, n_queries: int,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum values per (query, item) pair, then the top ``k`` items per query (ties: lower index)."""
    out_i = np.full((n_queries, k), -1, np.int64)
    out_s = np.full((n_queries, k), -np.inf, np.float32)
    if not len(q):
        return out_i, out_s
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
    k = _check_k(k)
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
    """Min-max normalise ``values`` within each query (1 where a query's values are all equal)."""
    low = np.full(n_queries, np.inf)
    high = np.full(n_queries, -np.inf)
    np.minimum.at(low, q, values)
    np.maximum.at(high, q, values)
    span = (high - low)[q]
    return np.where(span > 0, (values - low[q]) / np.where(span > 0, span, 1.0), 1.0)


def interpolate(lexical: tuple[np.ndarray, np.ndarray], dense: tuple[np.ndarray, np.ndarray],
                weight: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score interpolation: ``weight · dense' + (1 - weight) · lexical'``.

    Each list's scores are min-max normalised to [0, 1] within the query's own
    list, and an item missing from a list gets 0 from it. ``weight=1`` gives
    the dense ranking, ``weight=0`` the lexical one (on the items each
    returned).
    """
    k = _check_k(k)
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
    """Lexical and dense retrieval fused (see :func:`fuse`).

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

    def _lists(self, queries: Sequence[str], k: int):
        depth = max(self.depth, k)
        return self.lexical.search(queries, depth), self.dense.search(queries, depth)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = _check_k(k)
        lexical, dense = self._lists(queries, k)
        return fuse(lexical, dense, k, method=self.method, weight=self.weight, k_rrf=self.k_rrf)

    def choose_weight(self, queries: Sequence[str], gains: Sequence[Mapping[int, float]],
                      grid: Sequence[float] = tuple(np.round(np.linspace(0, 1, 11), 2)),
                      ) -> float:
        """Set (and return) the interpolation weight with the best validation NDCG@10.

        Ties go to the weight closest to 0.5 (the most even mix). The
        per-weight scores are kept in :attr:`validation`.
        """
        lexical, dense = self._lists(queries, NDCG_K)
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


# ---------------------------------------------------------------------------- queries


def split_queries(queries: pd.DataFrame, seed: int,
                  fractions: Sequence[float] = (0.5, 0.25, 0.25)) -> np.ndarray:
    """Assign each query to ``train`` / ``validation`` / ``test``, stratified by ``kind``.

    Deterministic in ``seed``. Within each kind the queries are permuted and
    cut by ``fractions``, so every split holds every kind in about the same
    share. Returns an array of split names aligned with ``queries``.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise DataError(f"fractions must be three shares summing to 1, got {fractions}")
    kinds = queries["kind"].astype(str).to_numpy() if "kind" in queries else np.full(len(queries), "all")
    rng = np.random.default_rng([int(seed), 808])
    out = np.empty(len(queries), dtype=object)
    for kind in sorted(set(kinds)):
        rows = rng.permutation(np.flatnonzero(kinds == kind))
        n_train = round(fractions[0] * len(rows))
        n_val = round(fractions[1] * len(rows))
        out[rows[:n_train]] = "train"
        out[rows[n_train:n_train + n_val]] = "validation"
        out[rows[n_train + n_val:]] = "test"
    return out.astype(str)


def query_gains(queries: pd.DataFrame, judgements: pd.DataFrame, items: pd.DataFrame
                ) -> list[dict[int, float]]:
    """Per query (in ``queries`` order) ``{item row: relevance}`` over its judged items."""
    require_columns(judgements, ["query_id", "item_id", "relevance"], source="judgements")
    row = pd.Series(np.arange(len(items)), index=items["item_id"].astype(str))
    known = judgements["item_id"].astype(str).isin(row.index)
    if not known.all():
        raise DataError(f"{int((~known).sum())} judgement(s) name items that are not in the "
                        "items table", source="judgements", column="item_id")
    j = judgements.assign(row=row.loc[judgements["item_id"].astype(str)].to_numpy())
    grouped = {qid: dict(zip(g["row"].tolist(), g["relevance"].astype(float).tolist()))
               for qid, g in j.groupby("query_id", sort=False)}
    return [grouped.get(str(qid), {}) for qid in queries["query_id"]]


def training_pairs(gains: Sequence[Mapping[int, float]], min_relevance: float = RELEVANT_AT
                   ) -> pd.DataFrame:
    """The (query, engaged item) pairs a search model trains on: items judged >= ``min_relevance``.

    Returns a DataFrame with ``query`` (position in ``gains``), ``item`` (row)
    and ``relevance``.
    """
    rows = [(q, item, rel) for q, g in enumerate(gains) for item, rel in g.items()
            if rel >= min_relevance]
    return pd.DataFrame(rows, columns=["query", "item", "relevance"]).astype(
        {"query": np.int64, "item": np.int64, "relevance": np.float64})


# Fashion: indirect ways of saying a usage or a gender (vague queries).
_FASHION_USAGE = {
    "casual": ["for everyday wear", "for relaxed weekends"],
    "formal": ["for the office", "for a business meeting"],
    "sports": ["for the gym", "for a morning run"],
    "ethnic": ["in a traditional style", "for a festival"],
    "party": ["for a night out", "for a party"],
    "smart casual": ["smart but relaxed", "for a dinner date"],
    "travel": ["for a trip", "for travelling"],
    "home": ["to wear at home", "for lounging"],
}
_FASHION_GENDER = {
    "men": ["for him", "for a man"], "women": ["for her", "for a woman"],
    "boys": ["for a boy", "for my son"], "girls": ["for a girl", "for my daughter"],
    "unisex": ["for anyone", "for everybody"],
}
_FASHION_KIND_SHARES = {"exact": 0.4, "partial": 0.35, "vague": 0.25}
_FASHION_UNKNOWN = {"", "unknown", "na", "nan", "none"}


def _known(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() not in _FASHION_UNKNOWN


def fashion_queries(items: pd.DataFrame, seed: int, n_queries: int, *,
                    max_judged: int = 1000, n_negatives: int = 20
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Graded search queries for the fashion catalogue, from its own attributes.

    Each query copies the attributes of a seed item drawn from the catalogue
    (so every query has at least one relevance-3 item), in one of three kinds:

    * ``exact``: article type with every known attribute among gender, colour
      and usage, in catalogue words: "men navy blue casual shirts";
    * ``partial``: article type with one or two of them: "navy blue shirts";
    * ``vague``: the broader sub-category with usage and / or gender said
      indirectly, plus the colour when known: "topwear for the office for him".

    Relevance (ESCI grades) from attribute agreement, with the head being the
    article type (exact, partial) or the sub-category (vague): 3 = head and
    every stated attribute agree, 2 = head and all but one, 1 = same head
    otherwise, or (exact, partial) a sibling article type of the same
    sub-category with every stated attribute agreeing (a white top for "girls
    white tshirts"), 0 = otherwise. A unisex item agrees with a men's or
    women's query. Per query the judgements keep the items graded >= 1 (at most
    ``max_judged - n_negatives``, higher grades first; unjudged items count as
    irrelevant, so the cap is generous) plus ``n_negatives`` sampled items
    graded 0.

    Args:
        items: the fashion items table (``item_id``, ``category``,
            ``sub_category``, ``gender``, ``colour``, ``usage``).
        seed: fixes everything.
        n_queries: number of queries (>= 1).

    Returns:
        ``(queries, judgements)``: queries with ``query_id``, ``text``,
        ``kind``, ``target_category``, ``target_sub_category``,
        ``target_gender``, ``target_colour``, ``target_usage`` (missing when not
        stated); judgements with ``query_id``, ``item_id``, ``relevance``.
    """
    cols = ["category", "sub_category", "gender", "colour", "usage"]
    require_columns(items, ["item_id", *cols], source="items")
    if n_queries < 1:
        raise DataError(f"n_queries must be >= 1, got {n_queries}")
    rng = np.random.default_rng([int(seed), 8080])
    values = {c: items[c].astype(str).str.strip().str.lower().to_numpy() for c in cols}
    seeds_ok = np.flatnonzero(np.array([_known(v) for v in values["category"]])
                              & np.array([_known(v) for v in values["sub_category"]]))
    if not len(seeds_ok):
        raise DataError("no item has a known category and sub-category to build queries from",
                        source="items", column="category")
    counts = {k: int(share * n_queries) for k, share in _FASHION_KIND_SHARES.items()}
    counts["exact"] += n_queries - sum(counts.values())
    kinds = rng.permutation(np.array([k for k, v in counts.items() for _ in range(v)]))
    seeds = rng.choice(seeds_ok, size=n_queries)
    n_items = len(items)
    item_ids = items["item_id"].astype(str).to_numpy()
    width = max(4, len(str(n_queries)))
    rows, judged = [], []
    for q, (kind, s) in enumerate(zip(kinds, seeds)):
        item = {c: values[c][s] for c in cols}
        stated = [c for c in ("gender", "colour", "usage") if _known(item[c])
                  and not (c == "usage" and item[c] in item["category"])]  # "sports sports shoes"
        if kind == "partial" and stated:
            stated = list(rng.choice(np.array(stated), size=min(len(stated), 1 + int(rng.random() < 0.4)),
                                     replace=False))
            stated = [c for c in ("gender", "colour", "usage") if c in stated]
        if kind == "vague":
            head = "sub_category"
            parts = [item["sub_category"]]
            if "colour" in stated:
                parts.insert(0, item["colour"])
            indirect = [c for c in stated if c in ("usage", "gender")
                        and item[c] in (_FASHION_USAGE if c == "usage" else _FASHION_GENDER)]
            stated = [c for c in stated if c == "colour" or c in indirect]
            for c in indirect:
                table = _FASHION_USAGE if c == "usage" else _FASHION_GENDER
                options = table[item[c]]
                parts.append(options[int(rng.integers(len(options)))])
            text = " ".join(parts)
        else:
            head = "category"
            words = [item[c] for c in ("gender", "colour", "usage") if c in stated]
            text = " ".join([*words, item["category"]])
        target = {head: item[head], **{c: item[c] for c in stated}}

        same = values[head] == target[head]
        matches = np.zeros(n_items, np.int64)
        for c in stated:
            agree = values[c] == target[c]
            if c == "gender" and target[c] in ("men", "women"):
                agree |= values[c] == "unisex"
            matches += agree
        n = len(stated)
        rel = np.zeros(n_items, np.int64)
        if head == "category":  # a sibling article type with every attribute right, e.g. a top for a t-shirt query
            rel[(values["sub_category"] == item["sub_category"]) & ~same & (matches == n)] = 1
        rel[same] = 1
        rel[same & (matches >= n - 1)] = 2
        rel[same & (matches == n)] = 3
        keep, budget = [], max_judged - n_negatives
        for grade in (3, 2, 1):
            idx = np.flatnonzero(rel == grade)
            if len(idx) > budget:
                idx = np.sort(rng.choice(idx, size=budget, replace=False))
            keep.append(idx)
            budget -= len(idx)
        zeros = np.flatnonzero(rel == 0)
        keep.append(np.sort(rng.choice(zeros, size=min(n_negatives, len(zeros)), replace=False)))
        idx = np.concatenate(keep)
        qid = f"fq{q + 1:0{width}d}"
        rows.append({"query_id": qid, "text": text, "kind": str(kind),
                     **{f"target_{c}": target.get(c) for c in cols}})
        judged.append(pd.DataFrame({"query_id": qid, "item_id": item_ids[idx], "relevance": rel[idx]}))
    judgements = pd.concat(judged, ignore_index=True)
    judgements["relevance"] = judgements["relevance"].astype("int64")
    return pd.DataFrame(rows), judgements


# ---------------------------------------------------------------------------- evaluation


def evaluate(rankings: Mapping[str, np.ndarray], gains: Sequence[Mapping[int, float]],
             kinds: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """NDCG@10 (graded gains), Recall@100 and MRR per method and query kind.

    Args:
        rankings: method name -> ``(n_queries, L)`` item rows (-1 padding;
            lists shorter than 100 are padded with misses).
        gains: per query ``{item row: relevance}`` (:func:`query_gains`).
        kinds: one label per query.

    Returns:
        Long table: ``method``, ``kind`` (each kind plus ``"all"``),
        ``ndcg@10``, ``recall@100``, ``mrr``, ``n_queries``. Recall and MRR
        count items graded >= :data:`RELEVANT_AT` as relevant.
    """
    frames = []
    for name, ranked in rankings.items():
        ranked = np.asarray(ranked)
        if ranked.ndim == 2 and ranked.shape[1] < RECALL_K:  # shorter lists: the rest are misses
            ranked = np.pad(ranked, ((0, 0), (0, RECALL_K - ranked.shape[1])), constant_values=-1)
        table = metrics.per_group(metrics.graded_metrics, np.asarray(kinds), ranked=ranked,
                                  gains=list(gains), ks=(NDCG_K,), recall_ks=(RECALL_K,),
                                  relevant_threshold=RELEVANT_AT)
        frames.append(table.rename_axis("kind").reset_index().assign(method=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["method", "kind", f"ndcg@{NDCG_K}", f"recall@{RECALL_K}", "mrr", "n_queries"]]


def plot_by_kind(table: pd.DataFrame, metric: str = f"ndcg@{NDCG_K}"):
    """Grouped bars of ``metric``: one group per query kind (and all), one bar per method."""
    import matplotlib.pyplot as plt

    wide = table.pivot(index="kind", columns="method", values=metric)
    order = [k for k in wide.index if k != "all"] + (["all"] if "all" in wide.index else [])
    wide = wide.loc[order, list(dict.fromkeys(table["method"]))]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(wide), 3.4))
    n = len(wide.columns)
    width = 0.8 / n
    x = np.arange(len(wide))
    for i, method in enumerate(wide.columns):
        ax.bar(x + (i - (n - 1) / 2) * width, wide[method].to_numpy(), width, label=method)
    ax.set_xticks(x, wide.index)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.set_title(f"{metric} by query kind (test queries)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def example_results(queries: Sequence[str], indices: np.ndarray, items: pd.DataFrame,
                    gains: Sequence[Mapping[int, float]], k: int = 5,
                    labels: Sequence[str] | None = None) -> pd.DataFrame:
    """The top ``k`` results of some queries as a long table (``query``, ``rank``,
    ``item_id``, ``title``, ``relevance``), the shape :func:`recsys_utils.plots.neighbour_grid` reads."""
    rows = []
    labels = list(labels) if labels is not None else list(queries)
    for q, label in enumerate(labels):
        for rank, item in enumerate(np.asarray(indices)[q, :k], start=1):
            if item < 0:
                continue
            rows.append({"query": label, "rank": rank, "item_id": items["item_id"].iloc[item],
                         "title": items["title"].iloc[item],
                         "relevance": int(gains[q].get(int(item), 0))})
    return pd.DataFrame(rows)


def search_queries(prepared: Any, seed: int, n_fashion_queries: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame, str] | None:
    """The queries and judgements a data set is searched with, and where they come from.

    The data set's own queries when it has them (``synthetic``: generated with
    the catalogue), :func:`fashion_queries` for ``fashion``, else ``None``
    (MovieLens has no queries).

    Returns:
        ``(queries, judgements, origin)`` or ``None``.
    """
    if prepared.queries is not None and prepared.judgements is not None and len(prepared.queries):
        return prepared.queries, prepared.judgements, "the data set's own queries"
    if prepared.dataset == "fashion":
        queries, judgements = fashion_queries(prepared.items, seed, n_fashion_queries)
        return queries, judgements, "built from catalogue attributes (search.fashion_queries)"
    return None


def hub_encoder(encoder_path: str | Path, batch_size: int = 64
                ) -> Callable[[list[str]], np.ndarray]:
    """An ``encode`` function running the text encoder SavedModel of notebook 02 through TF Hub."""
    tower = build_query_tower(encoder_path)

    def encode(queries: list[str]) -> np.ndarray:
        queries = _check_texts(queries)
        if not queries:
            return np.zeros((0, int(tower.output_shape[-1])), np.float32)
        return np.concatenate([tower(tf.constant(queries[s:s + batch_size]), training=False).numpy()
                               for s in range(0, len(queries), batch_size)]).astype(np.float32)

    return encode


# ---------------------------------------------------------------------------- two-tower model

class ResidualTower(tf.keras.layers.Layer):
    """``l2_normalize(base + MLP(inputs))`` with the MLP's last layer initialised to zero.

    At initialisation the tower returns its (normalised) ``base`` unchanged, so
    a search model built from two of them starts exactly at zero-shot dense
    retrieval and training only learns corrections. Call with ``inputs`` alone
    (the base is the input itself) or ``(base, inputs)``.

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

    * Query tower: the frozen text encoder, then ``query_tower``, a
      :class:`ResidualTower` (``q = l2(e + MLP(e))``). Being frozen, the
      encoder is outside this model while training: its vector of each
      training query is computed once and fed as ``query_vector``; the
      exported query tower (:func:`build_query_tower`) chains the TF Hub
      encoder and this layer.
    * Candidate tower: the item's text vector ``t`` plus a learned correction
      from its text vector and fused features ``f`` (notebook 03):
      ``c = l2(t + MLP([t; f]))``, so what the text misses but the image shows
      (e.g. the colour of half the synthetic items) can move the item.

    Both corrections start at zero: before training the model *is* zero-shot
    dense retrieval. Scores are cosines divided by ``temperature``; in-batch
    softmax, accidental hits (the same item twice in a batch) removed.
    """

    def __init__(self, item_text: np.ndarray, item_features: np.ndarray, *,
                 query_hidden: Sequence[int] = (), item_hidden: Sequence[int] = (256,),
                 temperature: float = 0.05, seed: int = 42) -> None:
        super().__init__()
        self.item_text = tf.constant(np.asarray(item_text, np.float32))
        self.item_features = tf.constant(np.concatenate(
            [np.asarray(item_text, np.float32), np.asarray(item_features, np.float32)], axis=1))
        self.dim = int(self.item_text.shape[1])
        self.query_tower = ResidualTower(self.dim, query_hidden, seed, name="query_tower")
        self.candidate_tower = ResidualTower(self.dim, item_hidden, seed + 1000,
                                             name="candidate_tower")
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True, temperature=temperature)

    def candidates(self, item: tf.Tensor, training: Any = None) -> tf.Tensor:
        return self.candidate_tower((tf.gather(self.item_text, item),
                                     tf.gather(self.item_features, item)), training=training)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features["query_vector"], training=training)
        item = tf.cast(features["item"], tf.int32)
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


@dataclasses.dataclass
class SearchTraining:
    """What :func:`train_search_model` did: the model, per-round losses, timings."""

    model: SearchModel
    losses: list[float]
    train_seconds: float
    n_pairs: int
    n_queries: int
    config: dict[str, Any]


def _rounds(pairs: pd.DataFrame, rounds: int, batch_size: int, seed: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per round, each training query with one positive drawn ∝ gain (2^rel - 1), in batches
    of distinct queries: another query's positive is a negative, never the query's own."""
    rng = np.random.default_rng([int(seed), 81])
    by_query = {q: (g["item"].to_numpy(), np.exp2(g["relevance"].to_numpy()) - 1)
                for q, g in pairs.groupby("query", sort=True)}
    queries = np.array(sorted(by_query))
    batch = min(batch_size, len(queries))
    usable = len(queries) // batch * batch
    q_out, i_out = [], []
    for _ in range(rounds):
        for q in rng.permutation(queries)[:usable]:
            items, weight = by_query[q]
            q_out.append(q)
            i_out.append(items[rng.choice(len(items), p=weight / weight.sum())])
    return np.array(q_out, np.int64), np.array(i_out, np.int64)


def train_search_model(
    query_vectors: np.ndarray,
    pairs: pd.DataFrame,
    item_text: np.ndarray,
    item_features: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    query_hidden: Sequence[int] = (),
    item_hidden: Sequence[int] = (256,),
    learning_rate: float = 1e-3,
    temperature: float = 0.05,
    seed: int = 42,
    progress: bool = True,
) -> SearchTraining:
    """Train a :class:`SearchModel` on (query, relevant item) pairs.

    Args:
        query_vectors: ``(n_queries, d)`` frozen-encoder vectors of the
            queries that ``pairs["query"]`` indexes.
        pairs: :func:`training_pairs` of the training queries.
        item_text: ``(n_items, d)`` item text vectors (notebook 02), the
            candidate tower's starting point.
        item_features: ``(n_items, f)`` fused item features (notebook 03).
        epochs: rounds over the training queries; each round draws one
            positive per query (probability ∝ ``2**rel - 1``), in batches of
            ``batch_size`` distinct queries (a query's other relevant items
            are never its in-batch negatives).
        query_hidden, item_hidden, temperature: model shape (:class:`SearchModel`).

    Returns:
        :class:`SearchTraining`.
    """
    query_vectors = np.asarray(query_vectors, np.float32)
    item_text = np.asarray(item_text, np.float32)
    item_features = np.asarray(item_features, np.float32)
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
    from .callbacks import EpochBar

    callbacks = [EpochBar(epochs, "search two-tower")] if progress else []
    start = time.perf_counter()
    # One Keras epoch = one round (``steps`` batches), so the bar and the losses are per round.
    fit = model.fit(dataset.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=0,
                    callbacks=callbacks)
    seconds = time.perf_counter() - start
    return SearchTraining(model, [float(x) for x in fit.history["loss"]], seconds, len(pairs),
                          n_queries, config)


class TwoTowerSearcher:
    """A trained :class:`SearchModel` behind the :class:`Searcher` interface.

    ``encode`` gives the frozen encoder's vectors for query strings (the same
    function the dense searcher uses); the model's query tower is applied on top.
    """

    def __init__(self, model: SearchModel, encode: Callable[[list[str]], np.ndarray],
                 name: str = "two-tower") -> None:
        self.model, self.encode, self.name = model, encode, name
        self.item_vectors = model.item_embeddings()
        self.n_items = len(self.item_vectors)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = _check_k(k)
        queries = _check_texts(queries)
        if not queries:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        vectors = self.model.query_embeddings(np.asarray(self.encode(queries), np.float32))
        idx, val = metrics.brute_force_top_k(vectors, self.item_vectors, min(k, self.n_items))
        return _pad(idx, val, k)


# ---------------------------------------------------------------------------- serving


def build_query_tower(encoder_path: str | Path,
                      projection: tf.keras.layers.Layer | None = None) -> tf.keras.Model:
    """``(B,) tf.string -> (B, dim)``: the exported encoder (TF Hub, frozen), then ``projection``.

    ``projection`` is e.g. a trained :attr:`SearchModel.query_tower`.

    ``encoder_path`` is the SavedModel :func:`recsys_utils.text.export_encoder`
    wrote (notebook 02: ``artifacts.model_dir(artifact_dir, "text_encoder")``).
    Without ``projection`` this is the zero-shot dense query encoder.
    """
    from .text import load_exported

    inputs = tf.keras.Input(shape=(), dtype=tf.string, name="query")
    vectors = load_exported(encoder_path, trainable=False)(inputs)
    if projection is not None:
        vectors = projection(vectors, training=False)
    return tf.keras.Model(inputs, vectors, name="query_tower")


def _scann_index(query_tower: tf.keras.Model, item_vectors: np.ndarray, item_ids: Sequence[str],
                 k: int, num_leaves: int, num_leaves_to_search: int
                 ) -> tfrs.layers.factorized_top_k.ScaNN:
    n = len(item_vectors)
    index = tfrs.layers.factorized_top_k.ScaNN(
        query_tower, k=min(k, n), num_leaves=num_leaves,
        num_leaves_to_search=min(num_leaves_to_search, num_leaves),
        num_reordering_candidates=min(n, max(4 * k, 200)), dimensions_per_block=2)
    index.index(tf.constant(np.asarray(item_vectors, np.float32)),
                tf.constant(np.asarray(item_ids).astype(str)))
    return index


#: Shares of the leaves :func:`export_search_model` tries, fewest first, when it
#: chooses the setting on validation queries.
LEAF_SHARES = (0.1, 0.2, 0.33, 0.5, 0.67, 1.0)


def _choose_scann(query_tower: tf.keras.Model, item_vectors: np.ndarray, item_ids: Sequence[str],
                  k: int, num_leaves: int, queries: Sequence[str], target_recall: float
                  ) -> tuple[tfrs.layers.factorized_top_k.ScaNN, dict[str, Any]]:
    """The index with the fewest leaves searched whose top ``k`` for ``queries`` keeps
    ``target_recall`` of the exact top ``k`` (else every leaf), and the sweep that chose it.

    Each setting is a separately built index (ScaNN trains its partitions from
    a random start), and the one measured is the one returned.
    """
    queries = _check_texts(queries)
    if not queries:
        raise DataError("choosing the ScaNN setting needs at least one validation query")
    vectors = query_tower(tf.constant(queries, tf.string)).numpy()
    exact, _ = metrics.brute_force_top_k(vectors, item_vectors, min(k, len(item_vectors)))
    exact_ids = np.asarray(item_ids).astype(str)[exact]
    sweep = []
    for searched in sorted({max(1, round(num_leaves * f)) for f in LEAF_SHARES}):
        index = _scann_index(query_tower, item_vectors, item_ids, k, num_leaves, searched)
        _, found = index(tf.constant(queries, tf.string))  # (scores, ids)
        recall = float(metrics.top_k_overlap(found.numpy().astype(str), exact_ids,
                                             exact.shape[1]).mean())
        sweep.append({"num_leaves_to_search": searched, "recall_at_k": recall})
        if recall >= target_recall:
            break  # the fewest leaves that reach the target: more only cost time
    return index, {"num_leaves": num_leaves, "num_leaves_to_search": searched,
                   "target_recall": target_recall, "n_queries": len(queries), "sweep": sweep}


class _SearchModule(tf.Module):
    def __init__(self, index: tfrs.layers.factorized_top_k.ScaNN) -> None:
        super().__init__()
        self.index = index

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="query")])
    def search(self, query: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self.index(query)
        return {"item_ids": ids, "scores": scores}


def export_search_model(query_tower: tf.keras.Model, item_vectors: np.ndarray,
                        item_ids: Sequence[str], path: str | Path, *, k: int = 10,
                        num_leaves: int | None = None, num_leaves_to_search: int | None = None,
                        validation_queries: Sequence[str] | None = None,
                        target_recall: float = 0.95) -> Path:
    """Write a SavedModel: raw query strings in, the top ``k`` item ids out, through ScaNN.

    Signature ``serving_default(query: string[B]) -> {"item_ids": string[B, k],
    "scores": float32[B, k]}``. The encoder's tokeniser is inside, so any
    string works: empty, very long (truncated to the encoder's max length) or
    non-ASCII. ScaNN: ``num_leaves ≈ sqrt(n_items)``, ``max(4k, 200)``
    candidates re-scored exactly. Leaves searched: ``num_leaves_to_search`` if
    given; else, with ``validation_queries``, the fewest of :data:`LEAF_SHARES`
    whose top ``k`` keeps ``target_recall`` of the exact top ``k`` on them;
    else two thirds. What was chosen is saved beside the model as
    ``index.json`` (:attr:`LoadedSearchModel.index_info`). Written atomically
    (:func:`recsys_utils.artifacts.atomic_dir`).
    """
    import json

    from .artifacts import atomic_dir
    from .serving import SCANN_SAVE_OPTIONS

    item_vectors = np.asarray(item_vectors, np.float32)
    if item_vectors.ndim != 2 or len(item_vectors) != len(item_ids):
        raise DataError(f"need one vector per item id: {len(item_ids)} ids, vectors {item_vectors.shape}")
    k = _check_k(k)
    n = len(item_vectors)
    num_leaves = min(num_leaves or int(np.clip(round(np.sqrt(n)), 1, 2000)), n)
    if num_leaves_to_search is None and validation_queries is not None:
        index, info = _choose_scann(query_tower, item_vectors, item_ids, k, num_leaves,
                                    validation_queries, target_recall)
    else:
        if num_leaves_to_search is None:
            # Two thirds of the leaves: sentence vectors of short queries sit near many partitions.
            num_leaves_to_search = max(min(10, num_leaves), (2 * num_leaves) // 3)
        searched = min(num_leaves_to_search, num_leaves)
        index = _scann_index(query_tower, item_vectors, item_ids, k, num_leaves, searched)
        info = {"num_leaves": num_leaves, "num_leaves_to_search": searched}
    module = _SearchModule(index)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # Keras warns that the ScaNN layer has no get_config: not needed here
    try:
        with atomic_dir(path) as tmp:
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.search},
                                options=tf.saved_model.SaveOptions(**SCANN_SAVE_OPTIONS))
            (tmp / "index.json").write_text(json.dumps(info, indent=2))
    finally:
        logger.setLevel(level)
    return Path(path)


@dataclasses.dataclass
class LoadedSearchModel:
    """A reloaded :func:`export_search_model` SavedModel."""

    path: Path
    module: Any

    @property
    def index_info(self) -> dict[str, Any]:
        """How the ScaNN index was set up: ``num_leaves``, ``num_leaves_to_search`` and,
        when chosen on validation queries, ``target_recall`` and the ``sweep``."""
        import json

        info = self.path / "index.json"
        return json.loads(info.read_text()) if info.exists() else {}

    def search(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids (B, k) str, scores (B, k) float32)`` for raw query strings."""
        queries = _check_texts(queries)
        out = self.module.signatures["serving_default"](query=tf.constant(queries, tf.string))
        return out["item_ids"].numpy().astype(str), out["scores"].numpy()


def load_search_model(path: str | Path) -> LoadedSearchModel:
    """Load an exported search model: the documented way to read it back.

    The SavedModel uses custom ops: the tokeniser's (``NormalizeUTF8`` and
    friends, from ``tensorflow_text``) and ScaNN's. A bare
    ``tf.saved_model.load`` fails with ``Op type not registered`` unless both
    packages were imported first; this loader imports them, then loads.

    Raises:
        DataError: no SavedModel at ``path``, or one that does not load (the
            message names the path and the notebook that exports it).
    """
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise DataError(f"no SavedModel at {path}: run export_search_model (notebook 07) first")
    import scann  # noqa: F401  (ScaNN custom ops)
    import tensorflow_text  # noqa: F401  (the tokeniser's ops)

    try:
        module = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many kinds; the message says what to do
        detail = " ".join(str(exc).split())[:300]
        raise DataError(f"cannot load the search model ({type(exc).__name__}: {detail}); "
                        "re-export it by re-running notebook 07 (product search)",
                        source=path) from exc
    return LoadedSearchModel(path, module)


def served_overlap(loaded: LoadedSearchModel, queries: Sequence[str], indices: np.ndarray,
                   item_ids: Sequence[str], k: int = 10) -> float:
    """Mean share of the in-memory top ``k`` (``indices``, brute force) that the served model returns."""
    found, _ = loaded.search(queries)
    if len(found) == 0:
        return float("nan")
    indices = np.asarray(indices)[:, :found.shape[1]]
    # Item ids in place of indices; padding (-1) becomes an id no item has.
    exact = np.where(indices >= 0, np.asarray(item_ids).astype(object)[np.maximum(indices, 0)], None)
    return float(metrics.top_k_overlap(found.astype(object), exact,
                                       min(k, found.shape[1])).mean())


def served_latency(loaded: LoadedSearchModel, queries: Sequence[str], n: int = 50,
                   warmup: int = 5) -> dict[str, float]:
    """Median and 95th-percentile wall time of ``n`` one-query requests, milliseconds."""
    from .serving import time_requests

    queries = _check_texts(queries)
    if not queries:
        raise DataError("served_latency needs at least one query")
    timed = time_requests(lambda i: loaded.search([queries[i]]), len(queries), n=n, warmup=warmup)
    return {"median_ms": timed.median_ms, "p95_ms": timed.p95_ms}
