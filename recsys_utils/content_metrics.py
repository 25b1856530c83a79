"""How well item vectors retrieve similar items: notebook 03's content metrics.

An item is *relevant* to another when they share a key, e.g. the same colour
and material (:func:`combine_keys`). :func:`item_retrieval_metrics` lets
each query item retrieve its k nearest items by cosine and scores the lists
with the course's ranking metrics (:mod:`recsys_utils.metrics`), plus
precision@k; :func:`content_retrieval_metrics` is the held-out form
notebook 03 reports for every content model, and
:func:`recsys_utils.images.image_retrieval_score` uses it to choose the image encoder::

    key = combine_keys(items["colour"], items["material"])
    content_retrieval_metrics(vectors, eval_idx, key)   # {"ndcg@10": ..., "precision@10": ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse

from .metrics import unit_rows
from .schema import DataError


def combine_keys(*arrays: Sequence[Any]) -> np.ndarray:
    """Row-wise key joining several attribute arrays ``(n,)`` -> ``(n,)`` str, e.g. ``"bag|red|silk"``.

    Two items are relevant to each other when their keys are equal.
    """
    if not arrays:
        raise ValueError("combine_keys needs at least one array")
    parts = [np.asarray(a).astype(str) for a in arrays]
    out = parts[0].astype(object)
    for p in parts[1:]:
        out = out + "|" + p.astype(object)
    return out.astype(str)


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
    emb = unit_rows(emb)   # cosine
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
