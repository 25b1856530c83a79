"""Zero-shot dense retrieval for product search (notebook 07): exact top cosine by brute force
over unit sentence vectors of items and queries::

    encode = precomputed(query_texts, query_vectors)     # or encoder.encode
    dense = DenseSearcher(item_vectors, encode)          # item_vectors (n_items, d)
    indices, scores = dense.search(queries, k=100)       # (n_queries, 100) each
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import metrics
from .schema import DataError
from .searcher import check_k, check_queries, pad_results

__all__ = ["DenseSearcher", "precomputed"]


def precomputed(texts: Sequence[str], vectors: np.ndarray,
                fallback: Callable[[list[str]], np.ndarray] | None = None
                ) -> Callable[[list[str]], np.ndarray]:
    """``encode(queries: list[str]) -> (len(queries), d) float32`` looking up ``vectors[i]``
    ``(len(texts), d)`` by ``texts[i]``; ``fallback`` (e.g. ``encoder.encode``) encodes other
    texts, which without it raise :class:`DataError`."""
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
        known = np.array([q in row for q in queries], bool)
        out[known] = vectors[[row[q] for q in queries if q in row]]
        if missing:
            out[~known] = fallback(missing)
        return out

    return encode


class DenseSearcher:
    """Exact dot-product retrieval over ``item_vectors`` ``(n_items, d)`` (items-table rows)
    for queries that ``encode`` (e.g. ``encoder.encode`` or :func:`precomputed`) maps to
    ``(n, d)`` vectors in the same space; ``name`` labels it in tables."""

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
        """``(n_queries, d)`` float32 from ``encode``, its shape checked."""
        queries = check_queries(queries)
        vectors = np.asarray(self.encode(queries), np.float32)
        if vectors.shape != (len(queries), self.item_vectors.shape[1]):
            raise DataError(f"encode returned {vectors.shape}; expected "
                            f"({len(queries)}, {self.item_vectors.shape[1]})")
        return vectors

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        k = check_k(k)
        vectors = self.query_vectors(queries)
        if not len(vectors):
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        idx, val = metrics.brute_force_top_k(vectors, self.item_vectors, min(k, self.n_items))
        return pad_results(idx, val, k)
