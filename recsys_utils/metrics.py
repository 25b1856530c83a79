"""Ranking and prediction metrics, defined once for every notebook.

Ranking metrics are vectorised numpy (held to ``ranx`` by the tests); RMSE, AUC, log loss
and the bootstrap interval wrap scikit-learn and scipy, with the course's input checks.
Items are integer indices; a *ranked* array is ``(n_queries, list_length)``, best first,
``-1`` = "no item" (never a hit); rank r (from 1) is discounted by ``1 / log2(r + 1)``.
Queries with nothing relevant are excluded from averages and counted in ``n_excluded``.
Bad input raises :class:`~recsys_utils.schema.DataError` saying what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.stats

from recsys_utils.schema import DataError

__all__ = ["top_k", "brute_force_top_k", "top_k_overlap", "cosine_rows", "retrieval_metrics",
           "graded_metrics", "per_group", "rmse", "auc", "log_loss", "bootstrap_ci",
           "paired_difference", "describe_comparison", "queries_to_resolve"]

#: Upper bound on the elements of one score block (rows x items). A block is
#: copied a few times (negated key, boolean masks, an int32 cumsum), so 2**24
#: elements keep the peak at a few hundred MB even for 100k+ item catalogues.
_BLOCK_ELEMENTS = 2**24


def _check_k(k: int, n_items: int, what: str = "items") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= n_items:
        raise DataError(f"k={k} is out of range: there are {n_items} {what} "
                        f"(need 1 <= k <= {n_items})")
    return int(k)


def _blocks(shape: tuple[int, int], exclude: Any, batch_size: int) -> Iterator[tuple[slice, Any]]:
    """Row blocks of a ``shape`` score matrix (at most ~16M scores each) with their part
    of the shape-checked ``exclude`` mask (CSR or dense bool, or None)."""
    mask = None
    if exclude is not None:
        if scipy.sparse.issparse(exclude):
            mask = scipy.sparse.csr_matrix(exclude)
        else:
            mask = np.asarray(exclude)
            mask = mask if mask.dtype == bool else mask != 0
        if mask.shape != shape:
            raise DataError(
                f"exclude has shape {mask.shape} but scores are {shape} (n_queries, n_items); "
                "it must mark (query, item) pairs of the same matrix")
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    rows = max(1, min(batch_size, _BLOCK_ELEMENTS // max(shape[1], 1)))
    for start in range(0, shape[0], rows):
        part = slice(start, start + rows)
        yield part, None if mask is None else mask[part]


def _k_smallest_by_index(key: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` ascending column indices of each row's ``k`` smallest keys, ties at the
    k-th key to the lower index: every key strictly below the k-th, then the tied ones in
    index order. NaN orders after every number (a NaN k-th key: fewer than k numbers)."""
    kth = np.partition(key, k - 1, axis=1)[:, k - 1 : k]
    key_nan, kth_nan = np.isnan(key), np.isnan(kth)
    # NaN compares False, so spell out: when the k-th key is NaN (fewer than k
    # allowed items), every allowed item is better and the excluded are tied.
    better = (key < kth) | (kth_nan & ~key_nan)
    tied = (key == kth) | (key_nan & kth_nan)
    need = k - better.sum(axis=1, keepdims=True)
    # Among the tied, keep the lowest indices: a running count along the row.
    take = better | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need))
    return np.nonzero(take)[1].reshape(len(key), k)  # row-major: each row's columns ascend


def _k_smallest(key: np.ndarray, k: int) -> np.ndarray:
    """:func:`_k_smallest_by_index` for keys without NaN, excluded entries +inf, faster:
    ``argpartition`` picks the k smallest keys but leaves ties at the k-th key in any order,
    so only the rows where it left a tied key out are picked again by index (most rows
    under popularity's equal scores, few otherwise). An infinite k-th key needs no second
    pick: the picks at +inf are excluded items, reported as missing, not by index."""
    cols = np.argpartition(key, k - 1, axis=1)[:, :k]
    cols.sort(axis=1)
    picked = np.take_along_axis(key, cols, axis=1)
    kth = picked.max(axis=1, keepdims=True)
    tied_out = (kth[:, 0] < np.inf) & ((key == kth).sum(axis=1) > (picked == kth).sum(axis=1))
    if tied_out.mean() > 0.5:  # mostly ties: one pass by index is cheaper
        return _k_smallest_by_index(key, k)
    if tied_out.any():
        cols[tied_out] = _k_smallest_by_index(key[tied_out], k)
    return cols


def _top_k_block(scores: np.ndarray, k: int, exclude_block: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one block: (indices (B, k), scores (B, k)), ties to the lower index.

    Excluded entries get the ranking key +inf, after every allowed score; where an allowed
    score is -inf (key +inf too) they get NaN instead, which numpy orders after +inf, so an
    item scored -inf still beats an excluded one (slower: NaN slows ``argpartition``
    threefold). Excluded picks (a row with fewer than k allowed items) come back as -1."""
    # Ascending key == best first.
    key = -scores.astype(np.result_type(scores.dtype, np.float32), copy=False)
    by_index = bool(np.isposinf(key).any())
    blocked = np.nan if by_index else np.inf
    if scipy.sparse.issparse(exclude_block):
        coo = exclude_block.tocoo()
        key[coo.row, coo.col] = blocked
    elif exclude_block is not None:
        key[exclude_block] = blocked
    cols = _k_smallest_by_index(key, k) if by_index else _k_smallest(key, k)
    picked = np.take_along_axis(key, cols, axis=1)
    # Stable sort keeps the ascending-index order among equal keys.
    order = np.argsort(picked, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    missing = np.isnan(picked) if by_index else np.isposinf(picked)
    cols[missing] = -1
    picked[missing] = np.inf  # reported score -inf
    return cols.astype(np.int64), -picked


def top_k(scores: np.ndarray, k: int, *,
          exclude: scipy.sparse.spmatrix | scipy.sparse.sparray | np.ndarray | None = None,
          batch_size: int = 4096) -> np.ndarray:
    """``(n_queries, k)`` int64 indices of the ``k`` best of ``(n_queries, n_items)`` real
    ``scores`` (no NaN), best first, ties to the lower index. ``exclude``: optional
    ``(n_queries, n_items)`` mask (dense or sparse, non-zero = excluded) of pairs never to
    return, e.g. training items; a row with fewer than ``k`` allowed items is padded with
    ``-1``. ``batch_size``: rows per block (at most ~16M scores)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise DataError(f"scores must be 2-D (n_queries, n_items), got shape {scores.shape}")
    if (not np.issubdtype(scores.dtype, np.number)
            or np.issubdtype(scores.dtype, np.complexfloating)):
        raise DataError(f"scores must be real numbers, got dtype {scores.dtype}")
    k = _check_k(k, scores.shape[1])
    out = np.empty((len(scores), k), dtype=np.int64)
    for part, mask in _blocks(scores.shape, exclude, batch_size):
        block = scores[part]
        if np.issubdtype(block.dtype, np.floating) and np.isnan(block).any():
            bad = part.start + int(np.flatnonzero(np.isnan(block).any(axis=1))[0])
            raise DataError(f"scores contain NaN (first in query row {bad}); "
                            "check the model output")
        out[part] = _top_k_block(block, k, mask)[0]
    return out


def brute_force_top_k(
        queries: np.ndarray, items: np.ndarray, k: int, *,
        exclude: scipy.sparse.spmatrix | scipy.sparse.sparray | np.ndarray | None = None,
        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``(n_queries, dim)`` queries by dot product with ``(n_items, dim)``
    items, the ground truth of approximate indexes, block by block (the score matrix never
    exists whole). ``k``, ``exclude``, ``batch_size``: as in :func:`top_k`. Returns
    ``(indices, scores)``, both ``(n_queries, k)`` (``-1`` padding scores ``-inf``)."""
    queries, items = np.asarray(queries), np.asarray(items)
    if queries.ndim != 2 or items.ndim != 2:
        raise DataError(f"queries and items must be 2-D (n, dim); "
                        f"got {queries.shape} and {items.shape}")
    if queries.shape[1] != items.shape[1]:
        raise DataError(f"embedding sizes differ: queries have dim {queries.shape[1]}, "
                        f"items {items.shape[1]}")
    for name, array in (("queries", queries), ("items", items)):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"{name} contain NaN or inf; check the embeddings")
    k = _check_k(k, len(items))
    dtype = np.result_type(queries.dtype, items.dtype, np.float32)
    items_t = np.ascontiguousarray(items.T, dtype=dtype)
    indices = np.empty((len(queries), k), dtype=np.int64)
    values = np.empty((len(queries), k), dtype=dtype)
    for part, mask in _blocks((len(queries), len(items)), exclude, batch_size):
        block = queries[part].astype(dtype, copy=False) @ items_t
        indices[part], values[part] = _top_k_block(block, k, mask)
    return indices, values


def top_k_overlap(approx: Any, exact: Any, k: int) -> np.ndarray:
    """Recall against exact search: ``(n_queries,)`` float64 ``|approx[:k] ∩ exact[:k]| / k``
    of two ``(n_queries, >= k)`` lists of item indices (``-1`` = padding, never counted)
    or item id strings."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise DataError(f"result lists must be (n_queries, k) with the same rows; "
                        f"got {approx.shape} and {exact.shape}")
    k = _check_k(k, min(approx.shape[1], exact.shape[1]), "entries per result list")

    def real(row: np.ndarray) -> set:
        numeric = np.issubdtype(row.dtype, np.number)
        return set((row[row >= 0] if numeric else row).tolist())

    return np.array([len(real(a[:k]) & real(e[:k])) / k for a, e in zip(approx, exact)],
                    dtype=np.float64)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32: each row scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, d)`` arrays -> ``(n,)``, e.g. a quantized
    encoder's vectors against float32's."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise DataError(f"shapes differ: {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)


def _check_ranked(ranked: Any, needed: int, ks_text: str) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise DataError(f"ranked must be 2-D (n_queries, list_length) item indices, "
                        f"got shape {ranked.shape}")
    if ranked.size and not np.issubdtype(ranked.dtype, np.integer):
        raise DataError(f"ranked must hold integer item indices, got dtype {ranked.dtype}")
    ranked = ranked.astype(np.int64, copy=False)
    if ranked.shape[1] < needed:
        raise DataError(
            f"ranked lists have {ranked.shape[1]} item(s) per query but {ks_text} needs "
            f"{needed}; retrieve at least {needed} items or ask for smaller ks")
    if ranked.size and ranked.min() < -1:
        raise DataError(f"ranked holds {int(ranked.min())}; item indices are >= 0 (-1 = no item)")
    # A repeated item would be counted twice (recall > 1): catch it here.
    ordered = np.sort(ranked, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise DataError(f"ranked row {row} lists an item more than once: "
                        f"{ranked[row].tolist()[:20]}")
    return ranked


def _check_ks(ks: Any, name: str = "ks") -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1
                     for k in ks):
        raise DataError(f"{name} must be positive integers, got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def _relevant_pairs(relevant: Any, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten per-query relevant sets into unique (query, item) pairs."""
    if scipy.sparse.issparse(relevant):
        matrix = scipy.sparse.csr_matrix(relevant)
        if matrix.shape[0] != n_queries:
            raise DataError(f"relevant has {matrix.shape[0]} rows but ranked has "
                            f"{n_queries} queries")
        matrix.eliminate_zeros()
        coo = matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)
    is_array = isinstance(relevant, np.ndarray) and relevant.dtype != object
    if is_array and not (relevant.ndim == 1 or (relevant.ndim == 2 and relevant.dtype == bool)):
        raise DataError(
            f"relevant as an array must be 1-D (one target per query) or a 2-D bool mask, "
            f"got shape {relevant.shape} dtype {relevant.dtype}")
    if not is_array and (isinstance(relevant, (str, bytes, Mapping))
                         or not hasattr(relevant, "__len__")):
        raise DataError("relevant must be a sequence with one collection of item indices "
                        "per query")
    if len(relevant) != n_queries:
        raise DataError(f"relevant has {len(relevant)} entries but ranked has "
                        f"{n_queries} queries")
    if is_array:  # one target per query, or a dense relevance mask
        q, items = (np.arange(n_queries), relevant) if relevant.ndim == 1 else np.nonzero(relevant)
    else:
        try:
            sizes = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=n_queries)
            items = np.fromiter((item for r in relevant for item in r), dtype=np.float64,
                                count=int(sizes.sum()))
        except (TypeError, ValueError) as error:
            raise DataError(f"relevant must hold collections of integer item indices per "
                            f"query ({error})") from None
        q = np.repeat(np.arange(n_queries), sizes)
    items = np.asarray(items)
    if items.size and not np.all(np.mod(items, 1) == 0):
        raise DataError("relevant item indices must be integers")
    if items.size and items.min() < 0:
        raise DataError(f"relevant holds {items.min():g}; item indices are >= 0")
    pairs = np.stack([np.asarray(q, dtype=np.int64), items.astype(np.int64)], axis=1)
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs
    return pairs[:, 0], pairs[:, 1]


def _discounts(n: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks 1..n, shape (n,)."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _reciprocal_rank(hits: np.ndarray) -> np.ndarray:
    """1 / rank of the first True per row, 0 when none; hits is (n, L) bool."""
    return np.where(hits.any(axis=1), 1.0 / (hits.argmax(axis=1) + 1.0), 0.0)


def _summary(columns: dict[str, np.ndarray], keep: np.ndarray, per_query: bool):
    """The per-query frame of the kept queries, or its means with the query counts."""
    frame = pd.DataFrame(columns, index=pd.Index(np.flatnonzero(keep), name="query"))
    if per_query:
        return frame
    out = {col: float(frame[col].mean()) if len(frame) else float("nan")
           for col in frame.columns if col != "n_relevant"}
    return {**out, "n_queries": len(frame), "n_excluded": int(len(keep) - len(frame))}


def retrieval_metrics(
        ranked: np.ndarray,
        relevant: Sequence[Collection[int]] | np.ndarray | scipy.sparse.spmatrix,
        ks: Sequence[int] = (10, 50, 100), *, per_query: bool = False,
) -> dict[str, float] | pd.DataFrame:
    """Binary-relevance Recall, Precision, F1, HitRate and NDCG at each of ``ks``, and MRR.

    ``ranked`` is ``(n_queries, L >= max(ks))``. ``relevant`` gives each query's relevant
    items: a sequence of collections (``[{3, 7}, {1}, ...]``), a 1-D int array (one
    target per query), or a ``(n_queries, n_items)`` bool mask or sparse matrix. With
    relevant set ``R`` and top-K list ``T``: ``recall@K = |R ∩ T| / |R|``,
    ``precision@K = |R ∩ T| / K``, ``f1@K`` their harmonic mean (0 without a hit, per
    query, then averaged), ``hit_rate@K = [R ∩ T ≠ ∅]``, ``ndcg@K`` with binary gains and
    IDCG over ``min(|R|, K)`` ranks; ``mrr`` looks at the whole list, so it depends on ``L``.
    Returns ``{"recall@10", "precision@10", "f1@10", "hit_rate@10", "ndcg@10", ..., "mrr",
    "n_queries", "n_excluded"}``, or with ``per_query`` (for :func:`bootstrap_ci`, paired comparisons,
    :func:`per_group`) those metrics and ``n_relevant`` per evaluated query position."""
    ks = _check_ks(ks)
    ranked = _check_ranked(ranked, max(ks), f"ks={list(ks)}")
    n_queries, length = ranked.shape
    q, items = _relevant_pairs(relevant, n_queries)
    n_relevant = np.bincount(q, minlength=n_queries)
    # One int64 code per (query, item) pair, for a vectorised membership test.
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 1
    codes = np.arange(n_queries)[:, None] * width + ranked
    hits = np.isin(codes, q * width + items) & (ranked >= 0)  # (n, L) bool

    keep = n_relevant > 0
    hits, n_rel = hits[keep], n_relevant[keep]
    disc = _discounts(length)
    ideal_cum = np.cumsum(disc)  # IDCG for min(|R|, K) = m is ideal_cum[m - 1]
    columns: dict[str, np.ndarray] = {}
    for k in ks:
        found = hits[:, :k].sum(axis=1)
        recall, precision = found / n_rel, found / k
        columns[f"recall@{k}"], columns[f"precision@{k}"] = recall, precision
        columns[f"f1@{k}"] = np.divide(2 * precision * recall, precision + recall,
                                       out=np.zeros_like(recall), where=found > 0)
        columns[f"hit_rate@{k}"] = (found > 0).astype(np.float64)
        columns[f"ndcg@{k}"] = (hits[:, :k] @ disc[:k]) / ideal_cum[np.minimum(n_rel, k) - 1]
    columns["mrr"] = _reciprocal_rank(hits)
    columns["n_relevant"] = n_rel
    return _summary(columns, keep, per_query)


def graded_metrics(
        ranked: np.ndarray, gains: Sequence[Mapping[int, float]], ks: Sequence[int] = (10,),
        recall_ks: Sequence[int] = (100,), relevant_threshold: float = 1, *,
        per_query: bool = False) -> dict[str, float] | pd.DataFrame:
    """Graded-relevance metrics for search: NDCG at ``ks``, Recall at ``recall_ks``, MRR.

    ``ranked`` is ``(n_queries, L >= max(ks + recall_ks))``; ``gains`` per query a mapping
    ``{item_index: relevance}`` over its judged items (ESCI: 0 irrelevant .. 3 exact; unjudged =
    0). ``ndcg@K`` uses gain ``2**rel - 1`` and an IDCG over *all* judged items, so items never
    retrieved still raise the bar. Recall and MRR count items with ``rel >= relevant_threshold``
    (``> 0``); queries without any are excluded. Returns the averages with ``n_queries`` and
    ``n_excluded``, or as in :func:`retrieval_metrics` with ``per_query``.
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
            + ("" if isinstance(gains, Mapping) else f" of length {len(gains)}"))
    sizes = np.fromiter((len(g) for g in gains), dtype=np.int64, count=n_queries)
    q = np.repeat(np.arange(n_queries), sizes)
    items = np.fromiter((i for g in gains for i in g), dtype=np.int64, count=len(q))
    rel = np.fromiter((r for g in gains for r in g.values()), dtype=np.float64, count=len(q))
    if len(rel) and (not np.isfinite(rel).all() or rel.min() < 0):
        raise DataError("relevance grades must be finite and >= 0")
    if len(items) and items.min() < 0:
        raise DataError(f"gains hold item index {items.min()}; item indices are >= 0")

    # Each ranked item's grade, from the sparse (query, item) grade matrix (unjudged: 0).
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 1
    grades = scipy.sparse.csr_matrix((rel, (q, items)), shape=(n_queries, width))
    grade = np.where(ranked >= 0, grades[np.arange(n_queries)[:, None], ranked.clip(0)].toarray(),
                     0.0)
    gain, is_rel = np.exp2(grade) - 1.0, grade >= relevant_threshold

    # Ideal DCG: each query's judged gains sorted descending, cut at K.
    all_gain = np.exp2(rel) - 1.0
    by_query = np.lexsort((-all_gain, q))
    q_sorted, g_sorted = q[by_query], all_gain[by_query]
    position = np.arange(len(q)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # 0-based rank
    disc_all = _discounts(int(sizes.max(initial=0)) or 1)

    n_rel = np.bincount(q[rel >= relevant_threshold], minlength=n_queries)
    keep = n_rel > 0
    disc = _discounts(length)
    columns: dict[str, np.ndarray] = {}
    for k in ks:
        inside = position < k
        idcg = np.bincount(q_sorted[inside], weights=g_sorted[inside] * disc_all[position[inside]],
                           minlength=n_queries)
        columns[f"ndcg@{k}"] = (gain[:, :k] @ disc[:k])[keep] / idcg[keep]
    for k in recall_ks:
        columns[f"recall@{k}"] = is_rel[keep, :k].sum(axis=1) / n_rel[keep]
    columns["mrr"] = _reciprocal_rank(is_rel[keep])
    columns["n_relevant"] = n_rel[keep]
    return _summary(columns, keep, per_query)


def per_group(metric_fn: Callable[..., pd.DataFrame],
              groups: Sequence[str] | np.ndarray | pd.Series, **kw: Any) -> pd.DataFrame:
    """Mean of each metric and ``n_queries`` evaluated, per group of queries (one label
    per query of ``ranked`` in ``groups``) and ``"all"``. ``metric_fn``:
    :func:`retrieval_metrics`, :func:`graded_metrics` or any function returning a
    per-query frame with ``per_query=True``; ``kw`` are its arguments (``ranked=``, ...).
    """
    frame = metric_fn(per_query=True, **kw)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{getattr(metric_fn, '__name__', metric_fn)} did not return a "
                        "per-query DataFrame")
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


def _binary(y: np.ndarray) -> np.ndarray:
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"labels must be 0/1, got values {np.unique(y)[:10].tolist()}")
    return y


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error of ``(n,)`` predictions (``sklearn.metrics``)."""
    from sklearn.metrics import root_mean_squared_error

    return float(root_mean_squared_error(*_paired(y_true, y_pred, ("y_true", "y_pred"))))


def auc(y_true: Any, scores: Any) -> float:
    """ROC AUC of ``(n,)`` scores for ``(n,)`` 0/1 labels (``sklearn.metrics.roc_auc_score``).
    Raises :class:`DataError` on one class, where AUC is undefined (callers that may see
    one, like :func:`recsys_utils.ranking.evaluate_ranking`, check first)."""
    from sklearn.metrics import roc_auc_score

    y, s = _paired(y_true, scores, ("y_true", "scores"))
    positive = _binary(y) == 1
    if positive.all() or not positive.any():
        raise DataError("AUC needs both positive and negative labels; got only one class")
    return float(roc_auc_score(positive, s))


def log_loss(y_true: Any, p: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of ``(n,)`` probabilities for 0/1 labels (``sklearn``), ``p``
    clipped to ``[eps, 1 - eps]`` first (the course's convention; scikit-learn alone clips
    at ~2e-16). One class is fine; probabilities outside [0, 1] (logits) raise."""
    from sklearn.metrics import log_loss as sklearn_log_loss

    y, prob = _paired(y_true, p, ("y_true", "p"))
    _binary(y)
    if prob.min() < 0 or prob.max() > 1:
        raise DataError(
            f"p must be probabilities in [0, 1], got range [{prob.min():g}, {prob.max():g}]; "
            "apply a sigmoid to logits first")
    return float(sklearn_log_loss(y, np.clip(prob, eps, 1 - eps), labels=[0.0, 1.0]))


def bootstrap_ci(per_query_values: np.ndarray | pd.Series, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """``1 - alpha`` percentile bootstrap interval of the mean of ``(n_queries,)`` values
    (``n_boot`` resamples by ``scipy.stats.bootstrap``, ``2**22 // n`` at a time).

    For a paired comparison pass the per-query difference (``a["ndcg@10"] -
    b["ndcg@10"]``): an interval excluding 0 is a difference the sample supports.
    Not scipy's default BCa, which is NaN on a constant sample (systems that agree)."""
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


def paired_difference(a: str, b: str, split: str, metric: str, per_user_a: Any,
                      per_user_b: Any, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Two systems' ``(n_queries,)`` values of ``metric`` on the same queries (users), in the
    same order, compared: the mean difference ``a - b`` with its paired 95% bootstrap interval
    (:func:`bootstrap_ci`); an interval containing 0 is a tie.

    Returns:
        ``{"a", "b", "split", "metric", "value_a", "value_b", "difference",
        "low", "high", "n_queries"}``.
    """
    per_user_a, per_user_b = (np.asarray(v, dtype=np.float64) for v in (per_user_a, per_user_b))
    if per_user_a.ndim != 1 or per_user_a.shape != per_user_b.shape:
        raise DataError(f"paired_difference needs one value per query for both systems, on the "
                        f"same queries: got shapes {per_user_a.shape} and {per_user_b.shape}")
    difference = per_user_a - per_user_b
    low, high = bootstrap_ci(difference, n_boot=n_boot, seed=seed)
    return {"a": a, "b": b, "split": split, "metric": metric,
            "value_a": float(per_user_a.mean()), "value_b": float(per_user_b.mean()),
            "difference": float(difference.mean()), "low": low, "high": high,
            "n_queries": int(len(difference))}


def describe_comparison(row: Mapping[str, Any]) -> str:
    """One :func:`paired_difference` row as a sentence: ``a`` beats, ties with (the interval holds
    0) or loses to ``b`` on the split's metric, both values, the difference and its interval.
    A tie with a non-zero difference also says how many queries would resolve it
    (:func:`queries_to_resolve`), when the row counts its queries."""
    tie = row["low"] <= 0 <= row["high"]
    verdict = "ties with" if tie else "beats" if row["difference"] > 0 else "loses to"
    sentence = (f"{row['a']} {verdict} {row['b']} on {row['split']} {row['metric']}: "
                f"{row['value_a']:.4f} vs {row['value_b']:.4f} (difference "
                f"{row['difference']:+.4f}, 95% interval [{row['low']:+.4f}, {row['high']:+.4f}])")
    if tie and row["difference"] != 0 and row.get("n_queries"):
        sentence += (f"; a difference this size would need about "
                     f"{queries_to_resolve(row):,} queries, not {row['n_queries']:,}, to tell "
                     f"from zero")
    return sentence


def queries_to_resolve(row: Mapping[str, Any]) -> int:
    """The number of queries at which a :func:`paired_difference` row's interval, narrowing as
    ``1/sqrt(n)`` with the per-query spread unchanged, would just exclude 0 at its difference:
    ``n * (half-width / |difference|)^2``. What a tie says about its test set's size, not a
    promise: a larger test set also moves the difference."""
    half_width = (row["high"] - row["low"]) / 2
    if row["difference"] == 0:
        raise DataError("a difference of exactly 0 is resolved by no number of queries")
    return int(np.ceil(row["n_queries"] * (half_width / abs(row["difference"])) ** 2))
