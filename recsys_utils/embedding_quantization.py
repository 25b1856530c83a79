"""int8 item-embedding tables, and the item index variants measured against exact search (notebook 06).

:func:`quantize_embeddings_int8` stores a table as int8 codes with a scale and
offset per dimension (or per row), 4x smaller; :func:`index_variants` compares it
and ScaNN's quantized scoring (:func:`recsys_utils.serving.scann_search`) with
exact float search by recall@K, size and single-query latency.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import metrics
from .latency import compare_latency
from .schema import DataError
from .serving import scann_search

__all__ = [
    "QuantizedTable",
    "dequantize",
    "index_variants",
    "quantize_embeddings_int8",
]


@dataclasses.dataclass
class QuantizedTable:
    """An int8 embedding table: ``table ≈ codes * scale + offset``.

    Attributes:
        codes: ``(n, d)`` int8 in [-127, 127].
        scale, offset: ``(1, d)`` (per dimension) or ``(n, 1)`` (per row) float32.
        per: ``"dimension"`` or ``"row"``.
    """

    codes: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    per: str

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale.nbytes + self.offset.nbytes)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """``(n_queries, n)`` dot products with the dequantized table.

        Computed as ``(q * scale) @ codes.T + q @ offset.T`` for per-dimension
        tables, without building the dequantized table. numpy has no int8
        matrix multiply, so each call still converts the codes to a float32
        copy: this shows what int8 storage costs in accuracy, not int8 speed
        (ScaNN's int8 scoring in :func:`index_variants` has real int8 kernels).
        """
        q = np.asarray(queries, np.float32)
        if self.per == "dimension":
            return (q * self.scale) @ self.codes.T.astype(np.float32) + q @ self.offset.T
        # Per row: q . (s_i c_i + o_i 1) = s_i (q . c_i) + o_i sum(q).
        return (q @ self.codes.T.astype(np.float32)) * self.scale.T + q.sum(1, keepdims=True) * self.offset.T


def quantize_embeddings_int8(table: np.ndarray, per: Literal["dimension", "row"] = "dimension"
                             ) -> QuantizedTable:
    """Scalar-quantize a float table to int8, symmetric around each slice's midpoint.

    Each dimension (``per="dimension"``) or row (``per="row"``) is mapped
    linearly from ``[min, max]`` onto ``[-127, 127]``: ``offset = (max + min) / 2``,
    ``scale = (max - min) / 254``; the worst rounding error is ``scale / 2``.

    Args:
        table: ``(n, d)`` finite floats.

    Returns:
        A :class:`QuantizedTable` (about 4x smaller than float32).
    """
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


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _search_all(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
                block: int = 1024) -> np.ndarray:
    """Run a ``(b, d) -> (b, k)`` search over the queries in blocks (bounded memory)."""
    return np.concatenate([search(queries[s:s + block]) for s in range(0, len(queries), block)])


def index_variants(queries: np.ndarray, table: np.ndarray, k: int = 10, *,
                   dimensions_per_block: int = 2, reorder: int | None = None,
                   rounds: int = 3, repeats: int = 50) -> pd.DataFrame:
    """Item-index variants against exact float search: size, recall@k, single-query time.

    Rows: ``float32 exact`` (numpy), ``int8 scalar`` (this module, per dimension),
    ``scann int8 brute force``, ``scann AH`` (asymmetric hashing without
    re-scoring) and, when ``reorder``, ``scann AH + reorder``. The two numpy
    rows search the same way, ``metrics.top_k`` over all scores of the query
    (``q @ table.T`` against :meth:`QuantizedTable.scores`), so their times
    compare the scoring alone. Recall@k is
    :func:`recsys_utils.metrics.top_k_overlap` against the float32 lists.
    Sizes are the table bytes (float32 / int8 + scales) or the serialized
    ScaNN index (``searcher.serialize``, which also stores the float rows it
    needs to reorder, so AH + reorder is not smaller than float). Every
    variant is timed one query at a time by
    :func:`recsys_utils.latency.compare_latency` (interleaved rounds), with
    numpy's and ScaNN's own thread settings.

    Returns:
        DataFrame: ``index``, ``bytes``, ``recall_at_k``, ``median_ms``,
        ``p95_ms``, ``k``, ``x_smaller``.
    """
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
            sizes[name] = _dir_bytes(Path(tmp))
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
