"""The :class:`Searcher` interface every product-search method of notebook 07 offers
(:mod:`recsys_utils.bm25`, :mod:`~recsys_utils.dense_search`, :mod:`~recsys_utils.search_models`).

``indices, scores = searcher.search(["women's red cotton t-shirt", ...], k=100)``: ``(n, k)``
int64 item rows, best first, and float32 scores, padded with ``-1`` / ``-inf`` where a method
has nothing more (BM25 returns only items sharing a word with the query).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .schema import DataError, as_string_list

__all__ = ["Searcher", "check_k", "check_queries", "empty_results", "pad_results"]


class Searcher(Protocol):
    """What every search method offers: a ``name`` for tables, its catalogue size and ``search``."""

    name: str
    n_items: int

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        ...


def check_queries(queries: Any) -> list[str]:
    """``queries`` as a list of strings; a bare string or a non-string item is a :class:`DataError`."""
    return as_string_list(queries, source="queries")


def check_k(k: Any) -> int:
    """``k`` as a positive ``int`` (a bool or a float is refused, not rounded)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")
    return int(k)


def empty_results(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, k)`` results holding nothing yet: int64 indices ``-1``, float32 scores ``-inf``."""
    return np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)


def pad_results(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, m)`` results cut or padded to ``(n, k)``: int64 indices (-1 pad), float32 scores
    (-inf pad), so a catalogue smaller than ``k`` keeps every method's arrays one shape."""
    n, m = indices.shape
    if m >= k:
        return indices[:, :k].astype(np.int64), scores[:, :k].astype(np.float32)
    out_i, out_s = empty_results(n, k)
    out_i[:, :m], out_s[:, :m] = indices, scores
    return out_i, out_s
