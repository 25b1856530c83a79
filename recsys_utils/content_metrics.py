"""How well item vectors retrieve items sharing a key (:func:`combine_keys`): notebook 03::

    key = combine_keys(items["colour"], items["material"])
    content_retrieval_metrics(vectors, eval_idx, key)   # {"ndcg@10": ..., "precision@10": ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse

from .metrics import brute_force_top_k, retrieval_metrics, unit_rows
from .schema import DataError


def combine_keys(*arrays: Sequence[Any]) -> np.ndarray:
    """Row-wise key joining attribute arrays ``(n,)`` -> ``(n,)`` str, e.g. ``"bag|red|silk"``."""
    if not arrays:
        raise ValueError("combine_keys needs at least one array")
    out = np.asarray(arrays[0]).astype(str).astype(object)
    for a in arrays[1:]:
        out = out + "|" + np.asarray(a).astype(str).astype(object)
    return out.astype(str)


def item_retrieval_metrics(embeddings: np.ndarray, query_idx: np.ndarray,
                           relevance_key: np.ndarray, *, candidate_idx: np.ndarray | None = None,
                           k: int = 10, per_query: bool = False) -> dict[str, float] | pd.DataFrame:
    """Item-to-item retrieval: each query item's k nearest candidates (default all items)
    by cosine, self excluded, ties to the lower index; relevant = same ``relevance_key``
    ``(n,)``. Returns :func:`~recsys_utils.metrics.retrieval_metrics` at ``k`` (precision
    among them), per query item with ``per_query``; queries with no relevant candidate are
    excluded."""
    emb = np.asarray(embeddings, dtype=np.float32)
    n = len(emb)
    key = np.asarray(relevance_key)
    if key.shape != (n,):
        raise DataError(f"relevance_key must have shape ({n},) like the embeddings, "
                        f"got {key.shape}", source="retrieval metrics")
    query_idx = np.asarray(query_idx, dtype=np.int64)
    candidates = np.arange(n) if candidate_idx is None else np.asarray(candidate_idx, np.int64)
    if len(candidates) < 2 or len(query_idx) == 0:
        raise DataError(f"need at least one query and two candidates, got {len(query_idx)} and "
                        f"{len(candidates)}", source="retrieval metrics")
    n_queries, shape = len(query_idx), (len(query_idx), len(candidates))
    k = min(k, len(candidates) - 1)
    emb = unit_rows(emb)  # cosine
    codes = np.unique(key.astype(str), return_inverse=True)[1].ravel()
    query_codes, candidate_codes = codes[query_idx], codes[candidates]

    # Exclude each query's own row among the candidates.
    position = np.full(n, -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    own = position[query_idx]
    rows = np.flatnonzero(own >= 0)
    exclude = scipy.sparse.csr_matrix((np.ones(len(rows), bool), (rows, own[rows])), shape=shape)
    ranked, _ = brute_force_top_k(emb[query_idx], emb[candidates], k, exclude=exclude)

    # Relevant: same key (a product of one-hot key matrices), minus the query itself.
    def one_hot(c: np.ndarray) -> scipy.sparse.csr_matrix:
        return scipy.sparse.csr_matrix((np.ones(len(c)), (np.arange(len(c)), c)),
                                       shape=(len(c), codes.max() + 1))

    relevant = (one_hot(query_codes) @ one_hot(candidate_codes).T - exclude).tocsr()
    relevant.eliminate_zeros()
    return retrieval_metrics(ranked, relevant, ks=(k,), per_query=per_query)


def content_retrieval_metrics(embeddings: np.ndarray, eval_idx: np.ndarray,
                              relevance_key: np.ndarray, *, k: int = 10,
                              candidates: Literal["all", "eval"] = "all",
                              per_query: bool = False) -> dict[str, float] | pd.DataFrame:
    """Held-out item-to-item retrieval quality of item vectors: each ``eval_idx`` item
    queries all items (``candidates="all"``) or only the held-out ones (``"eval"``);
    see :func:`item_retrieval_metrics`."""
    if candidates not in ("all", "eval"):
        raise ValueError(f"candidates must be 'all' or 'eval', got {candidates!r}")
    candidate_idx = None if candidates == "all" else np.asarray(eval_idx)
    return item_retrieval_metrics(embeddings, eval_idx, relevance_key,
                                  candidate_idx=candidate_idx, k=k, per_query=per_query)
