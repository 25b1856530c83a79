"""int8 item-embedding tables, and item index variants against exact search (notebook 06):
:func:`index_variants` compares exact float search, the int8 table and ScaNN's quantized scoring
by recall@k, size and single-query latency."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import metrics
from .artifacts import dir_bytes
from .latency import compare_latency
from .schema import DataError
from .serving import scann_search

__all__ = ["QuantizedTable", "dequantize", "index_variants", "quantize_embeddings_int8"]


@dataclasses.dataclass
class QuantizedTable:
    """An int8 embedding table ``≈ codes * scale + offset``: ``(n, d)`` int8 codes in
    [-127, 127]; float32 ``scale`` and ``offset`` are ``(1, d)`` when ``per ==
    "dimension"``, ``(n, 1)`` when ``per == "row"``."""

    codes: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    per: str

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale.nbytes + self.offset.nbytes)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """``(n_queries, n)`` dot products with the dequantized table, without building it.

        numpy has no int8 matrix multiply, so the codes are still cast to float32: this measures
        int8 storage's accuracy, not int8 speed (ScaNN's int8 scoring has real int8 kernels)."""
        q = np.asarray(queries, np.float32)
        codes = self.codes.T.astype(np.float32)
        if self.per == "dimension":
            return (q * self.scale) @ codes + q @ self.offset.T
        # Per row: q . (s_i c_i + o_i 1) = s_i (q . c_i) + o_i sum(q).
        return (q @ codes) * self.scale.T + q.sum(1, keepdims=True) * self.offset.T


def quantize_embeddings_int8(table: np.ndarray, per: Literal["dimension", "row"] = "dimension"
                             ) -> QuantizedTable:
    """Scalar-quantize a finite ``(n, d)`` float table to int8 (about 4x smaller).

    Each dimension (or row) maps linearly from ``[min, max]`` onto ``[-127, 127]``:
    ``offset = (max + min) / 2``, ``scale = (max - min) / 254``; the worst rounding error is
    ``scale / 2``."""
    x = np.asarray(table, np.float32)
    if x.ndim != 2 or x.size == 0:
        raise DataError(f"table must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("table contains NaN or inf")
    if per not in ("dimension", "row"):
        raise DataError(f"per must be 'dimension' or 'row', got {per!r}")
    axis = 0 if per == "dimension" else 1
    lo, hi = x.min(axis=axis, keepdims=True), x.max(axis=axis, keepdims=True)
    offset = (hi + lo) / 2
    scale = np.maximum((hi - lo) / 254.0, 1e-12).astype(np.float32)
    codes = np.clip(np.rint((x - offset) / scale), -127, 127).astype(np.int8)
    return QuantizedTable(codes, scale, offset.astype(np.float32), per)


def dequantize(q: QuantizedTable) -> np.ndarray:
    """``(n, d)`` float32 reconstruction ``codes * scale + offset``."""
    return q.codes.astype(np.float32) * q.scale + q.offset


def _search_all(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
                block: int = 1024) -> np.ndarray:
    """Run a ``(b, d) -> (b, k)`` search over the queries in blocks (bounded memory)."""
    return np.concatenate([search(queries[s:s + block]) for s in range(0, len(queries), block)])


def index_variants(queries: np.ndarray, table: np.ndarray, k: int = 10, *,
                   dimensions_per_block: int = 2, reorder: int | None = None,
                   rounds: int = 3, repeats: int = 50) -> pd.DataFrame:
    """Item-index variants against exact float search: size, recall@k, single-query time.

    Rows: ``float32 exact`` and ``int8 scalar`` (numpy, both ``metrics.top_k`` over all scores, so
    their times compare the scoring alone), ``scann int8 brute force``, ``scann AH`` (asymmetric
    hashing, no re-scoring) and, with ``reorder``, ``scann AH + reorder``. Recall@k is the overlap
    with the float32 lists. ScaNN sizes are the serialized index, which keeps the float rows it
    reorders with (so AH + reorder is not smaller than float). Columns:
    ``index, bytes, recall_at_k, median_ms, p95_ms, k, x_smaller``."""
    queries = np.ascontiguousarray(queries, np.float32)
    table = np.ascontiguousarray(table, np.float32)
    qt = quantize_embeddings_int8(table)
    searches: dict[str, Callable[[np.ndarray], Any]] = {
        "float32 exact": lambda q: metrics.top_k(q @ table.T, k),
        "int8 scalar": lambda q: metrics.top_k(qt.scores(q), k)}
    sizes = {"float32 exact": table.nbytes, "int8 scalar": qt.nbytes}
    lists = {name: _search_all(fn, queries) for name, fn in searches.items()}
    configs: list[tuple[str, dict[str, Any]]] = [
        ("scann int8 brute force", {"scoring": "int8"}),
        ("scann AH", {"scoring": "ah", "dimensions_per_block": dimensions_per_block})]
    if reorder:
        configs.append(("scann AH + reorder", {"scoring": "ah", "reorder": reorder,
                                               "dimensions_per_block": dimensions_per_block}))
    for name, kwargs in configs:
        lists[name], searcher = scann_search(queries, table, k, **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            searcher.serialize(tmp)
            sizes[name] = dir_bytes(tmp)
        searches[name] = lambda q, s=searcher: s.search_batched(q, final_num_neighbors=k)
    timings = compare_latency(searches, queries, batch_fns={}, rounds=rounds, repeats=repeats)
    exact = lists["float32 exact"]
    df = pd.DataFrame([{"index": name, "bytes": sizes[name],
                        "recall_at_k": float(metrics.top_k_overlap(lists[name], exact, k).mean()),
                        "median_ms": timings[name].median_ms, "p95_ms": timings[name].p95_ms}
                       for name in searches])
    df["k"] = k
    df["x_smaller"] = df["bytes"].iloc[0] / df["bytes"]
    return df
