"""Ranking and prediction metrics, implemented once for the whole course.

The ranking metrics are the course's own, in numpy (plus ``scipy.sparse`` for
exclusion masks), vectorised, with no TensorFlow import, so the same numbers come
out of every notebook: retrieval (04), the ranking chain (05), quantisation (06),
fusion (03) and product search (07); the tests hold them to ``ranx``. The
pointwise metrics (RMSE, AUC, log loss) are thin wrappers over
``sklearn.metrics`` and the bootstrap interval over ``scipy.stats.bootstrap``,
with the course's input checks and conventions (stated in each docstring).

Conventions
-----------
* Items are integer indices ``0 .. n_items - 1`` (positions in the catalogue
  or embedding table), never string ids.
* A *ranked* array has shape ``(n_queries, list_length)``; row ``i`` holds the
  item indices returned for query ``i``, best first. ``-1`` means "no item"
  (:func:`top_k` pads with it when a row has fewer than ``k`` allowed items)
  and never counts as a hit.
* Ranks are 1-based in formulas: the first item of a list has rank 1 and
  discount ``1 / log2(1 + 1) = 1``.
* Queries with nothing relevant are *excluded* from averages (a metric of
  "found 0 of 0" is undefined) and counted in ``n_excluded``.

Bad input (wrong shapes, lists shorter than a requested K, NaN scores,
probabilities outside [0, 1]) raises :class:`~recsys_utils.schema.DataError`
with a message saying what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.stats

from recsys_utils.schema import DataError

__all__ = [
    "top_k",
    "brute_force_top_k",
    "top_k_overlap",
    "cosine_rows",
    "retrieval_metrics",
    "graded_metrics",
    "per_group",
    "rmse",
    "auc",
    "log_loss",
    "bootstrap_ci",
]

#: Upper bound on the elements of one score block (rows x items). A block is
#: copied a few times (negated key, boolean masks, an int32 cumsum), so 2**24
#: elements keep the peak at a few hundred MB even for 100k+ item catalogues.
_BLOCK_ELEMENTS = 2**24


# --------------------------------------------------------------------------
# Top-K selection
# --------------------------------------------------------------------------


def _rows_per_block(batch_size: int, n_items: int) -> int:
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    return max(1, min(batch_size, _BLOCK_ELEMENTS // max(n_items, 1)))


def _check_k(k: int, n_items: int, what: str = "items") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= n_items:
        raise DataError(f"k={k} is out of range: there are {n_items} {what} (need 1 <= k <= {n_items})")
    return int(k)


def _prepare_exclude(exclude: Any, shape: tuple[int, int]):
    """Exclusion mask as CSR (sparse input) or a dense bool array, shape-checked."""
    if exclude is None:
        return None
    if scipy.sparse.issparse(exclude):
        mask = scipy.sparse.csr_matrix(exclude)
    else:
        mask = np.asarray(exclude)
        if mask.dtype != bool:
            mask = mask != 0
    if mask.shape != shape:
        raise DataError(
            f"exclude has shape {mask.shape} but scores are {shape} (n_queries, n_items); "
            "it must mark (query, item) pairs of the same matrix"
        )
    return mask


def _top_k_block(scores: np.ndarray, k: int, exclude_block: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one block; returns (indices (B, k), scores (B, k)).

    Ties are broken by the lower item index. Excluded entries become NaN in the
    ranking key, which numpy orders after every number (+inf included), so an
    item scored -inf still beats an excluded one; excluded picks (only possible
    when a row has fewer than k allowed items) come back as index -1.
    """
    n_rows = scores.shape[0]
    key = -scores.astype(np.result_type(scores.dtype, np.float32), copy=False)  # ascending == best first
    if exclude_block is not None:
        if scipy.sparse.issparse(exclude_block):
            coo = exclude_block.tocoo()
            key[coo.row, coo.col] = np.nan
        else:
            key[exclude_block] = np.nan
    # Value of the k-th best key per row; everything strictly better is in.
    kth = np.partition(key, k - 1, axis=1)[:, k - 1 : k]
    key_nan, kth_nan = np.isnan(key), np.isnan(kth)
    # NaN compares False, so spell out: when the k-th key is NaN (fewer than k
    # allowed items), every allowed item is better and the excluded are tied.
    better = (key < kth) | (kth_nan & ~key_nan)
    tied = (key == kth) | (key_nan & kth_nan)
    need = k - better.sum(axis=1, keepdims=True)
    # Among the tied, keep the lowest indices: a running count along the row.
    take = better | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need))
    rows, cols = np.nonzero(take)  # row-major, so each row's columns ascend
    cols = cols.reshape(n_rows, k)
    picked = key[rows, cols.ravel()].reshape(n_rows, k)
    # Stable sort keeps the ascending-index order among equal keys.
    order = np.argsort(picked, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    missing = np.isnan(picked)
    if missing.any():
        cols[missing] = -1
        picked[missing] = np.inf  # reported score -inf
    return cols.astype(np.int64), -picked


def top_k(
    scores: np.ndarray,
    k: int,
    *,
    exclude: scipy.sparse.spmatrix | scipy.sparse.sparray | np.ndarray | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """Indices of the ``k`` best-scored items per query.

    Args:
        scores: ``(n_queries, n_items)`` float scores, larger is better; no NaN.
        k: how many items to return, ``1 <= k <= n_items``.
        exclude: optional ``(n_queries, n_items)`` mask (dense bool or any
            scipy sparse matrix; non-zero = excluded) of pairs never to return,
            e.g. each user's training items.
        batch_size: rows processed at once (capped so a block holds at most
            ~16M scores).

    Returns:
        ``(n_queries, k)`` int64 item indices sorted by descending score, ties
        broken by the lower index (deterministic across runs and machines).
        A row with fewer than ``k`` non-excluded items is padded with ``-1``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise DataError(f"scores must be 2-D (n_queries, n_items), got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise DataError(f"scores must be real numbers, got dtype {scores.dtype}")
    n_queries, n_items = scores.shape
    k = _check_k(k, n_items)
    mask = _prepare_exclude(exclude, scores.shape)
    rows = _rows_per_block(batch_size, n_items)
    out = np.empty((n_queries, k), dtype=np.int64)
    for start in range(0, n_queries, rows):
        block = scores[start : start + rows]
        if np.issubdtype(block.dtype, np.floating) and np.isnan(block).any():
            bad = start + int(np.flatnonzero(np.isnan(block).any(axis=1))[0])
            raise DataError(f"scores contain NaN (first in query row {bad}); check the model output")
        out[start : start + rows] = _top_k_block(
            block, k, None if mask is None else mask[start : start + rows]
        )[0]
    return out


def brute_force_top_k(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    *,
    exclude: scipy.sparse.spmatrix | scipy.sparse.sparray | np.ndarray | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact dot-product retrieval, computed block by block.

    The full ``(n_queries, n_items)`` score matrix is never held in memory:
    each block of query rows is scored against all items, reduced to its top
    ``k`` and dropped, so 100k+ item catalogues fit. This is the ground truth
    that approximate indexes (ScaNN, quantised tables) are measured against.

    Args:
        queries: ``(n_queries, dim)`` query embeddings.
        items: ``(n_items, dim)`` item embeddings.
        k: items per query, ``1 <= k <= n_items``.
        exclude: as in :func:`top_k`, shape ``(n_queries, n_items)``.
        batch_size: query rows per block (also capped at ~16M scores).

    Returns:
        ``(indices, scores)``, both ``(n_queries, k)``: item indices by
        descending dot product (ties by lower index; ``-1`` padding as in
        :func:`top_k`, with score ``-inf``) and the matching scores.
    """
    queries = np.asarray(queries)
    items = np.asarray(items)
    if queries.ndim != 2 or items.ndim != 2:
        raise DataError(
            f"queries and items must be 2-D (n, dim); got {queries.shape} and {items.shape}"
        )
    if queries.shape[1] != items.shape[1]:
        raise DataError(
            f"embedding sizes differ: queries have dim {queries.shape[1]}, items {items.shape[1]}"
        )
    for name, array in (("queries", queries), ("items", items)):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"{name} contain NaN or inf; check the embeddings")
    n_queries, n_items = len(queries), len(items)
    k = _check_k(k, n_items)
    mask = _prepare_exclude(exclude, (n_queries, n_items))
    rows = _rows_per_block(batch_size, n_items)
    dtype = np.result_type(queries.dtype, items.dtype, np.float32)
    items_t = np.ascontiguousarray(items.T, dtype=dtype)
    indices = np.empty((n_queries, k), dtype=np.int64)
    values = np.empty((n_queries, k), dtype=dtype)
    for start in range(0, n_queries, rows):
        block = queries[start : start + rows].astype(dtype, copy=False) @ items_t
        indices[start : start + rows], values[start : start + rows] = _top_k_block(
            block, k, None if mask is None else mask[start : start + rows]
        )
    return indices, values


def top_k_overlap(approx: Any, exact: Any, k: int) -> np.ndarray:
    """Share of each exact top-``k`` list that the other list also has in its top ``k``.

    The one definition of "recall against exact search" (ScaNN against brute
    force, a quantized model against float, a served model against the
    in-memory one). Lists hold item indices or item id strings; ``-1`` marks
    padding in index lists and never counts as a hit.

    Args:
        approx, exact: ``(n_queries, >= k)`` result lists, best first.

    Returns:
        ``(n_queries,)`` float64 in ``[0, 1]``: ``|approx[:k] ∩ exact[:k]| / k``.
    """
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise DataError(f"result lists must be (n_queries, k) with the same rows; "
                        f"got {approx.shape} and {exact.shape}")
    k = _check_k(k, min(approx.shape[1], exact.shape[1]), "entries per result list")

    def real(row: np.ndarray) -> set:
        return set(row[row >= 0].tolist()) if np.issubdtype(row.dtype, np.number) else set(row.tolist())

    return np.array([len(real(a[:k]) & real(e[:k])) / k for a, e in zip(approx, exact)],
                    dtype=np.float64)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32: each row scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, d)`` arrays -> ``(n,)``.

    How close a variant's vectors stay to the reference's, row by row (a
    quantized encoder against float32, an export against the model it came from).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise DataError(f"shapes differ: {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)


# --------------------------------------------------------------------------
# Ranking metrics
# --------------------------------------------------------------------------


def _check_ranked(ranked: Any, needed: int, ks_text: str) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise DataError(
            f"ranked must be 2-D (n_queries, list_length) item indices, got shape {ranked.shape}"
        )
    if ranked.size and not np.issubdtype(ranked.dtype, np.integer):
        raise DataError(f"ranked must hold integer item indices, got dtype {ranked.dtype}")
    ranked = ranked.astype(np.int64, copy=False)
    if ranked.shape[1] < needed:
        raise DataError(
            f"ranked lists have {ranked.shape[1]} item(s) per query but {ks_text} needs "
            f"{needed}; retrieve at least {needed} items or ask for smaller ks"
        )
    if ranked.size and ranked.min() < -1:
        raise DataError(f"ranked holds {int(ranked.min())}; item indices are >= 0 (-1 = no item)")
    # A repeated item would be counted twice (recall > 1): catch it here.
    if ranked.shape[1] > 1:
        ordered = np.sort(ranked, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            row = int(np.flatnonzero(repeated.any(axis=1))[0])
            raise DataError(
                f"ranked row {row} lists an item more than once: {ranked[row].tolist()[:20]}"
            )
    return ranked


def _check_ks(ks: Any, name: str = "ks") -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise DataError(f"{name} must be positive integers, got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def _relevant_pairs(relevant: Any, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten per-query relevant sets into unique (query, item) pairs."""
    if scipy.sparse.issparse(relevant):
        matrix = scipy.sparse.csr_matrix(relevant)
        if matrix.shape[0] != n_queries:
            raise DataError(f"relevant has {matrix.shape[0]} rows but ranked has {n_queries} queries")
        matrix.eliminate_zeros()
        coo = matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)
    if isinstance(relevant, np.ndarray) and relevant.dtype != object:
        if relevant.ndim == 1:  # one target per query
            q, items = np.arange(len(relevant)), relevant
        elif relevant.ndim == 2 and relevant.dtype == bool:  # dense relevance mask
            q, items = np.nonzero(relevant)
        else:
            raise DataError(
                f"relevant as an array must be 1-D (one target per query) or a 2-D bool mask, "
                f"got shape {relevant.shape} dtype {relevant.dtype}"
            )
        if len(relevant) != n_queries:
            raise DataError(f"relevant has {len(relevant)} entries but ranked has {n_queries} queries")
    else:
        if isinstance(relevant, (str, bytes, Mapping)) or not hasattr(relevant, "__len__"):
            raise DataError("relevant must be a sequence with one collection of item indices per query")
        if len(relevant) != n_queries:
            raise DataError(f"relevant has {len(relevant)} entries but ranked has {n_queries} queries")
        try:
            sizes = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=n_queries)
            items = np.fromiter(
                (item for r in relevant for item in r), dtype=np.float64, count=int(sizes.sum())
            )
        except (TypeError, ValueError) as error:
            raise DataError(
                f"relevant must hold collections of integer item indices per query ({error})"
            ) from None
        q = np.repeat(np.arange(n_queries), sizes)
    items = np.asarray(items)
    if items.size:
        if not np.all(np.mod(items, 1) == 0):
            raise DataError("relevant item indices must be integers")
        if items.min() < 0:
            raise DataError(f"relevant holds {items.min():g}; item indices are >= 0")
    q = np.asarray(q, dtype=np.int64)
    items = items.astype(np.int64)
    pairs = np.unique(np.stack([q, items], axis=1), axis=0) if len(q) else np.empty((0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1]


def _encode(q: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
    """One int64 code per (query, item) pair, for vectorised membership tests."""
    return q * width + items


def _discounts(n: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks 1..n, shape (n,)."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _reciprocal_rank(hits: np.ndarray) -> np.ndarray:
    """1 / rank of the first True per row, 0 when none; hits is (n, L) bool."""
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)


def _summary(frame: pd.DataFrame, n_total: int, per_query: bool):
    if per_query:
        return frame
    out = {
        col: float(frame[col].mean()) if len(frame) else float("nan")
        for col in frame.columns
        if col != "n_relevant"
    }
    out["n_queries"] = len(frame)
    out["n_excluded"] = int(n_total - len(frame))
    return out


def retrieval_metrics(
    ranked: np.ndarray,
    relevant: Sequence[Collection[int]] | np.ndarray | scipy.sparse.spmatrix,
    ks: Sequence[int] = (10, 50, 100),
    *,
    per_query: bool = False,
) -> dict[str, float] | pd.DataFrame:
    """Binary-relevance retrieval metrics: Recall, HitRate and NDCG at each K, and MRR.

    Args:
        ranked: ``(n_queries, L)`` item indices best first, ``L >= max(ks)``;
            ``-1`` = no item.
        relevant: per query the relevant item indices. Either a sequence of
            collections (``[{3, 7}, {1}, ...]``), a 1-D int array with one
            target per query (next-item prediction), a 2-D bool mask
            ``(n_queries, n_items)`` or a sparse matrix with those rows.
        ks: cut-offs.
        per_query: return a per-query DataFrame instead of the averages (for
            :func:`bootstrap_ci`, paired comparisons and :func:`per_group`).

    Definitions, for a query with relevant set ``R`` and top-K list ``T``:

    * ``recall@K = |R ∩ T| / |R|``; ``hit_rate@K = 1 if R ∩ T else 0``;
    * ``ndcg@K = DCG / IDCG`` with ``DCG = Σ_{hits at rank r <= K} 1/log2(r+1)``
      and ``IDCG = Σ_{r=1}^{min(|R|, K)} 1/log2(r+1)``;
    * ``mrr`` = mean of ``1 / rank`` of the first relevant item in the whole
      list of length ``L`` (0 if none), so it depends on ``L``.

    Queries with an empty ``R`` are excluded from the averages.

    Returns:
        ``{"recall@10": ..., "hit_rate@10": ..., "ndcg@10": ..., ..., "mrr": ...,
        "n_queries": evaluated, "n_excluded": without relevant items}``; or, with
        ``per_query=True``, a DataFrame indexed by query position (excluded
        queries dropped) with those metric columns and ``n_relevant``.
    """
    ks = _check_ks(ks)
    ranked = _check_ranked(ranked, max(ks), f"ks={list(ks)}")
    n_queries, length = ranked.shape
    q, items = _relevant_pairs(relevant, n_queries)
    n_relevant = np.bincount(q, minlength=n_queries)
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 1
    codes = _encode(np.arange(n_queries)[:, None], ranked, width)
    hits = np.isin(codes, _encode(q, items, width)) & (ranked >= 0)  # (n, L) bool

    keep = n_relevant > 0
    hits, n_rel = hits[keep], n_relevant[keep]
    disc = _discounts(length)
    ideal_cum = np.cumsum(disc)  # IDCG for min(|R|, K) = m is ideal_cum[m - 1]
    columns: dict[str, np.ndarray] = {}
    for k in ks:
        found = hits[:, :k].sum(axis=1)
        columns[f"recall@{k}"] = found / n_rel
        columns[f"hit_rate@{k}"] = (found > 0).astype(np.float64)
        dcg = hits[:, :k] @ disc[:k]
        columns[f"ndcg@{k}"] = dcg / ideal_cum[np.minimum(n_rel, k) - 1]
    columns["mrr"] = _reciprocal_rank(hits)
    columns["n_relevant"] = n_rel
    frame = pd.DataFrame(columns, index=pd.Index(np.flatnonzero(keep), name="query"))
    return _summary(frame, n_queries, per_query)


def graded_metrics(
    ranked: np.ndarray,
    gains: Sequence[Mapping[int, float]],
    ks: Sequence[int] = (10,),
    recall_ks: Sequence[int] = (100,),
    relevant_threshold: float = 1,
    *,
    per_query: bool = False,
) -> dict[str, float] | pd.DataFrame:
    """Graded-relevance metrics for search (ESCI labels 0-3).

    Args:
        ranked: ``(n_queries, L)`` item indices best first,
            ``L >= max(ks + recall_ks)``; ``-1`` = no item.
        gains: per query a mapping ``{item_index: relevance}`` over its judged
            items (ESCI: 0 irrelevant, 1 complement, 2 substitute, 3 exact).
            Unjudged items count as relevance 0.
        ks: NDCG cut-offs.
        recall_ks: Recall cut-offs.
        relevant_threshold: relevance at or above which an item counts as
            relevant for Recall and MRR (``> 0``).
        per_query: return the per-query DataFrame instead of averages.

    Definitions: ``ndcg@K = DCG@K / IDCG@K`` with gain ``2**rel - 1`` and
    discount ``1/log2(rank+1)``; IDCG sorts *all* judged items of the query by
    gain, so items the system never retrieved still raise the bar.
    ``recall@K = |{rel >= threshold} ∩ top K| / |{rel >= threshold}|``;
    ``mrr`` = 1/rank of the first item with ``rel >= threshold`` (0 if none).
    Queries with no item at or above the threshold are excluded and counted.

    Returns:
        ``{"ndcg@10": ..., "recall@100": ..., "mrr": ..., "n_queries": ...,
        "n_excluded": ...}`` or the per-query DataFrame.
    """
    ks = _check_ks(ks)
    recall_ks = _check_ks(recall_ks, "recall_ks")
    needed = max(ks + recall_ks)
    ranked = _check_ranked(ranked, needed, f"ks={list(ks)} / recall_ks={list(recall_ks)}")
    if not relevant_threshold > 0:
        raise DataError(f"relevant_threshold must be > 0, got {relevant_threshold}")
    n_queries, length = ranked.shape
    if isinstance(gains, Mapping) or len(gains) != n_queries:
        raise DataError(
            f"gains must be a sequence with one {{item: relevance}} mapping per query "
            f"({n_queries} queries), got {type(gains).__name__}"
            + ("" if isinstance(gains, Mapping) else f" of length {len(gains)}")
        )
    sizes = np.fromiter((len(g) for g in gains), dtype=np.int64, count=n_queries)
    q = np.repeat(np.arange(n_queries), sizes)
    items = np.fromiter((i for g in gains for i in g), dtype=np.int64, count=len(q))
    rel = np.fromiter((r for g in gains for r in g.values()), dtype=np.float64, count=len(q))
    if len(rel) and (not np.isfinite(rel).all() or rel.min() < 0):
        raise DataError("relevance grades must be finite and >= 0")
    if len(items) and items.min() < 0:
        raise DataError(f"gains hold item index {items.min()}; item indices are >= 0")

    # Look up each ranked item's grade via sorted pair codes.
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 1
    codes = _encode(q, items, width)
    order = np.argsort(codes, kind="stable")
    codes, rel_sorted = codes[order], rel[order]
    wanted = _encode(np.arange(n_queries)[:, None], ranked, width)
    pos = np.searchsorted(codes, wanted).clip(max=max(len(codes) - 1, 0))
    judged = (ranked >= 0) & (codes[pos] == wanted) if len(codes) else np.zeros(ranked.shape, bool)
    grade = np.where(judged, rel_sorted[pos] if len(codes) else 0.0, 0.0)  # (n, L)
    gain = np.exp2(grade) - 1.0
    is_rel = grade >= relevant_threshold

    # Ideal DCG: each query's judged gains sorted descending, cut at K.
    all_gain = np.exp2(rel) - 1.0
    by_query = np.lexsort((-all_gain, q))
    q_sorted, g_sorted = q[by_query], all_gain[by_query]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if n_queries else np.empty(0, np.int64)
    position = np.arange(len(q_sorted)) - np.repeat(starts, sizes)  # 0-based ideal rank
    disc_all = _discounts(int(sizes.max(initial=0)) or 1)

    n_rel = np.bincount(q[rel >= relevant_threshold], minlength=n_queries)
    keep = n_rel > 0
    disc = _discounts(length)
    columns: dict[str, np.ndarray] = {}
    for k in ks:
        inside = position < k
        idcg = np.bincount(q_sorted[inside], weights=g_sorted[inside] * disc_all[position[inside]],
                           minlength=n_queries)
        dcg = gain[:, :k] @ disc[:k]
        columns[f"ndcg@{k}"] = dcg[keep] / idcg[keep]
    for k in recall_ks:
        columns[f"recall@{k}"] = is_rel[keep, :k].sum(axis=1) / n_rel[keep]
    columns["mrr"] = _reciprocal_rank(is_rel[keep])
    columns["n_relevant"] = n_rel[keep]
    frame = pd.DataFrame(columns, index=pd.Index(np.flatnonzero(keep), name="query"))
    return _summary(frame, n_queries, per_query)


def per_group(
    metric_fn: Callable[..., pd.DataFrame],
    groups: Sequence[str] | np.ndarray | pd.Series,
    **kw: Any,
) -> pd.DataFrame:
    """Average a metric per query group (query kind, user segment, ...).

    Args:
        metric_fn: :func:`retrieval_metrics` or :func:`graded_metrics` (any
            function accepting ``per_query=True`` and returning a per-query
            DataFrame indexed by query position).
        groups: one label per query, length ``n_queries`` (of ``ranked``).
        **kw: passed to ``metric_fn`` (``ranked=``, ``relevant=``, ``ks=``...).

    Returns:
        DataFrame with one row per group plus ``"all"``: mean of each metric
        and ``n_queries`` (evaluated queries in the group).
    """
    frame = metric_fn(per_query=True, **kw)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{getattr(metric_fn, '__name__', metric_fn)} did not return a per-query DataFrame")
    labels = np.asarray(groups)
    n_queries = len(np.asarray(kw["ranked"])) if "ranked" in kw else None
    if labels.ndim != 1 or (n_queries is not None and len(labels) != n_queries):
        raise DataError(f"groups must hold one label per query ({n_queries}), got {labels.shape}")
    metrics = frame.drop(columns=["n_relevant"], errors="ignore")
    key = pd.Series(labels[frame.index.to_numpy()], index=frame.index, name="group")
    out = metrics.groupby(key, sort=True).mean()
    out["n_queries"] = key.value_counts().reindex(out.index).astype(int)
    overall = metrics.mean().to_frame("all").T
    overall["n_queries"] = len(frame)
    return pd.concat([out, overall])


# --------------------------------------------------------------------------
# Pointwise metrics
# --------------------------------------------------------------------------


def _paired(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"{names[0]} has {a.size} values but {names[1]} has {b.size}")
    if a.size == 0:
        raise DataError(f"{names[0]} is empty")
    for name, x in zip(names, (a, b)):
        if not np.isfinite(x).all():
            raise DataError(f"{name} contains NaN or inf")
    return a, b


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error of ``(n,)`` predictions: ``sqrt(mean((y - ŷ)^2))``
    (``sklearn.metrics.root_mean_squared_error``)."""
    from sklearn.metrics import root_mean_squared_error

    y, p = _paired(y_true, y_pred, ("y_true", "y_pred"))
    return float(root_mean_squared_error(y, p))


def _binary(y: np.ndarray) -> np.ndarray:
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"labels must be 0/1, got values {np.unique(y)[:10].tolist()}")
    return y


def auc(y_true: Any, scores: Any) -> float:
    """ROC AUC of ``(n,)`` scores for ``(n,)`` 0/1 labels (``sklearn.metrics.roc_auc_score``).

    The probability that a random positive outscores a random negative, ties
    counting one half. Needs both classes: with one, AUC is undefined and this
    raises :class:`DataError` (callers that may see one class, like
    :func:`recsys_utils.ranking.evaluate_ranking`, check first and report NaN).
    """
    from sklearn.metrics import roc_auc_score

    y, s = _paired(y_true, scores, ("y_true", "scores"))
    positive = _binary(y) == 1
    if positive.all() or not positive.any():
        raise DataError("AUC needs both positive and negative labels; got only one class")
    return float(roc_auc_score(positive, s))


def log_loss(y_true: Any, p: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of ``(n,)`` probabilities for 0/1 labels.

    ``-mean(y log p + (1 - y) log(1 - p))`` (``sklearn.metrics.log_loss``) with
    ``p`` clipped to ``[eps, 1 - eps]`` first, the course's convention, so a
    confident miss costs a finite ``-log(eps)`` (scikit-learn alone clips at
    float64's machine epsilon, ~2e-16). Labels of one class are fine.
    Probabilities outside [0, 1] (usually logits passed by mistake) raise.
    """
    from sklearn.metrics import log_loss as sklearn_log_loss

    y, prob = _paired(y_true, p, ("y_true", "p"))
    _binary(y)
    if prob.min() < 0 or prob.max() > 1:
        raise DataError(
            f"p must be probabilities in [0, 1], got range [{prob.min():g}, {prob.max():g}]; "
            "apply a sigmoid to logits first"
        )
    return float(sklearn_log_loss(y, np.clip(prob, eps, 1 - eps), labels=[0.0, 1.0]))


def bootstrap_ci(
    per_query_values: np.ndarray | pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a mean over queries (``scipy.stats.bootstrap``).

    Resamples queries with replacement ``n_boot`` times and returns the
    ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled means. For a
    paired comparison of two systems on the same queries, pass the per-query
    difference (``a["ndcg@10"] - b["ndcg@10"]``): an interval excluding 0 is a
    difference the query sample supports.

    The ``percentile`` method, not scipy's default ``BCa``: it is the course's
    interval (for a given seed, the same resamples as its own implementation
    before scipy, and the same bounds to ~1e-16), and BCa is undefined (NaN and
    a warning) on a constant sample, such as the per-query difference of two
    systems that agree on every query. Resamples are drawn ``2**22 // n`` at a
    time (bounded memory).

    Args:
        per_query_values: ``(n_queries,)`` values, e.g. a column of
            ``retrieval_metrics(..., per_query=True)``.
    """
    values = np.asarray(per_query_values, dtype=np.float64).ravel()
    if values.size == 0:
        raise DataError("bootstrap_ci needs at least one value")
    if not np.isfinite(values).all():
        raise DataError("per_query_values contain NaN or inf")
    if n_boot < 1 or not 0 < alpha < 1:
        raise DataError(f"need n_boot >= 1 and 0 < alpha < 1, got n_boot={n_boot}, alpha={alpha}")
    if values.size == 1:  # scipy needs two observations; every resample of one is that one
        return float(values[0]), float(values[0])
    result = scipy.stats.bootstrap(
        (values,), np.mean, n_resamples=int(n_boot), batch=max(1, 2**22 // values.size),
        vectorized=True, confidence_level=1 - alpha, method="percentile",
        rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)
