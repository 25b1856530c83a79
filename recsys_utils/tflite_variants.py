"""Size, CPU latency and quality of each TFLite variant of a model (notebook 06): one model
(:func:`measure_variants`), the query + item tower pair (:func:`measure_towers`), and every
model's rows in one table (:func:`size_quality_table`)."""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import metrics, retrieval
from .latency import compare_latency, slice_rows
from .progress import track
from .schema import DataError, summarise_error
from .serving import QUERY_INPUTS
from .tflite_conversion import MODES, ConversionResult, TFLiteRunner

if TYPE_CHECKING:
    from .features import QuerySet

__all__ = ["TowerMeasurement", "gzip_mb", "measure_towers", "measure_variants",
           "size_quality_table"]

#: Conversions, by mode or as a list (e.g. from ``tflite_conversion.convert_all``).
Results = Mapping[str, ConversionResult] | Sequence[ConversionResult]


def gzip_mb(*paths: str | Path) -> float:
    """The files' size once gzip-compressed, MB: what a download or a registry ships. Zeros (a
    pruned matrix) compress, though a TFLite file stores every tensor dense."""
    return sum(len(gzip.compress(Path(p).read_bytes(), compresslevel=6)) for p in paths) / 1e6


def _as_by_mode(results: Results) -> dict[str, ConversionResult]:
    return {r.mode: r for r in (results.values() if isinstance(results, Mapping) else results)}


def _run(row: dict[str, Any], fn: Callable[[], Any]) -> Any:
    """``fn()``, or ``None`` with ``row`` marked failed when an int8 kernel fails at run time."""
    try:
        return fn()
    except DataError:  # the caller's mistake
        raise
    except (RuntimeError, ValueError) as exc:
        row["ok"], row["error"] = False, f"run time: {summarise_error(exc)}"
        return None


def measure_variants(
    results: Results, *, model: str, quality: Callable[[str, TFLiteRunner], float],
    quality_metric: str, timing_inputs: Mapping[str, np.ndarray] | np.ndarray,
    batch_threads: int | None = None, latency_threads: int = 1, repeats: int = 20, rounds: int = 3,
    batch_size: int = 32, extra_files: Mapping[str, Path] | None = None, progress: bool = True,
) -> pd.DataFrame:
    """One row per conversion: size, CPU latency and throughput, and quality.

    ``quality(mode, runner) -> float`` runs first, variant by variant, on a ``batch_threads``
    runner (``None``: all cores); a ``RuntimeError`` or ``ValueError`` there (an int8 kernel can
    fail at run time) is recorded in ``error``, a :class:`DataError` raised. The variants that ran
    are then timed together on ``timing_inputs`` by :func:`recsys_utils.latency.compare_latency`:
    single queries on ``latency_threads`` (default 1: a sub-millisecond model spends more time
    waking threads than computing), batches of ``batch_size`` on ``batch_threads``.
    ``extra_files``: mode -> a file counted in the sizes (e.g. a second tower). Failed conversions
    get a row with their error only. Columns: ``model, variant, ok, size_mb, gzip_mb, median_ms, p95_ms,
    round_min_ms, round_max_ms, throughput, num_threads, batch_threads, quality, quality_metric,
    float_ops, kept_float, error``."""
    batch_threads = int(batch_threads or os.cpu_count() or 1)
    rows, runners = {}, {}
    for r in track(list(_as_by_mode(results).values()), desc=f"quality of {model}", unit="variant",
                  disable=not progress):
        row = {"model": model, "variant": r.mode, "ok": r.ok, "size_mb": r.size_mb,
               "gzip_mb": np.nan, "median_ms": np.nan, "p95_ms": np.nan, "round_min_ms": np.nan,
               "round_max_ms": np.nan, "throughput": np.nan, "num_threads": latency_threads,
               "batch_threads": batch_threads, "quality": np.nan, "quality_metric": quality_metric,
               "float_ops": ", ".join(f"{k} x{v}" for k, v in sorted(r.float_ops.items())),
               "kept_float": ", ".join(r.kept_float), "error": r.error}
        rows[r.mode] = row
        if not r.ok:
            continue
        files = [r.path, *([extra_files[r.mode]] if extra_files and r.mode in extra_files else [])]
        row["size_mb"] = sum(Path(f).stat().st_size for f in files) / 1e6
        row["gzip_mb"] = gzip_mb(*files)
        runner = TFLiteRunner(r.path, num_threads=batch_threads)
        score = _run(row, lambda: float(quality(r.mode, runner)))
        if score is None:
            continue
        row["quality"] = score
        single = (runner if latency_threads == batch_threads
                  else TFLiteRunner(r.path, num_threads=latency_threads))
        runners[r.mode] = (single, runner)
    for mode, (single, batch) in list(runners.items()):
        # A kernel that fails on the timing inputs is recorded, not timed.
        if _run(rows[mode], lambda: (single(slice_rows(timing_inputs, 0, 1)),
                                     batch(slice_rows(timing_inputs, 0, batch_size)))) is None:
            del runners[mode]
    if runners:
        timings = compare_latency({m: single for m, (single, _) in runners.items()}, timing_inputs,
                                  batch_fns={m: batch for m, (_, batch) in runners.items()},
                                  rounds=rounds, repeats=repeats, batch_size=batch_size)
        for mode, timing in timings.items():
            per_round = timing.round_medians_ms or (timing.median_ms,)
            rows[mode].update(median_ms=timing.median_ms, p95_ms=timing.p95_ms,
                              round_min_ms=min(per_round), round_max_ms=max(per_round),
                              throughput=timing.throughput, num_threads=timing.num_threads,
                              batch_threads=timing.batch_threads)
    return pd.DataFrame(list(rows.values()))


@dataclasses.dataclass
class TowerMeasurement:
    """Every variant of the query + item tower pair, measured (:func:`measure_towers`).

    ``table`` holds :func:`measure_variants` rows (``quality`` is Recall@k); ``ranked`` mode ->
    ``(n_queries, k)`` top-k items; ``agreement`` mode -> mean top-k overlap with the reference's
    lists; ``query_vectors`` / ``item_vectors`` come from the reference towers (``None`` if they
    did not run); ``recall_interval`` mode -> paired 95% bootstrap interval of the mode's Recall@k
    minus the reference's (the report's quality check reads it)."""

    table: pd.DataFrame
    ranked: dict[str, np.ndarray]
    agreement: dict[str, float]
    query_vectors: np.ndarray | None
    item_vectors: np.ndarray | None
    recall_interval: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def measure_towers(
    query_results: Results, item_results: Results, queries: QuerySet, n_items: int, *, k: int = 10,
    reference: str = "float32", reference_lists: np.ndarray | None = None,
    batch_threads: int | None = None, latency_threads: int = 1, repeats: int = 20, rounds: int = 3,
    batch_size: int = 32, progress: bool = True,
) -> TowerMeasurement:
    """Size, query-tower latency and Recall@k of each tower pair variant.

    Each mode pairs the two towers converted in that mode (a failed row if the item tower did not
    convert). Recall@k ranks the whole catalogue, item tower inputs ``0 .. n_items - 1``, per query
    as :func:`~recsys_utils.retrieval.evaluate_retrieval` does. The size is both files; latency is
    the query tower's (item vectors are computed offline). ``reference``: the mode compared with,
    whose vectors are returned; ``reference_lists`` ``(n_queries, k)``: another model's top-k
    lists to compare with instead (e.g. the unpruned towers')."""
    query_by_mode, item_by_mode = _as_by_mode(query_results), _as_by_mode(item_results)
    pairs = {}
    for mode, q in query_by_mode.items():
        item = item_by_mode.get(mode)
        if q.ok and (item is None or not item.ok):
            why = "was not converted" if item is None else f"did not convert: {item.error}"
            q = dataclasses.replace(q, ok=False, path=None, size_bytes=None,
                                    error=f"item tower {mode} {why}")
        pairs[mode] = q
    features = {name: np.asarray(queries.features[name]) for name in QUERY_INPUTS}
    ranked: dict[str, np.ndarray] = {}
    vectors: dict[str, np.ndarray] = {}

    def recall(mode: str, query_runner: TFLiteRunner) -> float:
        item_runner = TFLiteRunner(item_by_mode[mode].path, num_threads=query_runner.num_threads)
        query_vectors = np.asarray(query_runner.predict(features), np.float32)
        item_vectors = np.asarray(item_runner.predict({"item": np.arange(n_items, dtype=np.int32)}),
                                  np.float32)
        ranked[mode] = retrieval.rank_items(query_vectors, item_vectors, k, exclude=queries.exclude)
        if mode == reference:
            vectors.update(query=query_vectors, item=item_vectors)
        return metrics.retrieval_metrics(ranked[mode], queries.relevant, ks=(k,))[f"recall@{k}"]

    table = measure_variants(
        pairs, model="towers", quality=recall, quality_metric=f"Recall@{k}",
        timing_inputs=features,
        extra_files={m: r.path for m, r in item_by_mode.items() if r.ok},
        batch_threads=batch_threads, latency_threads=latency_threads, repeats=repeats,
        rounds=rounds, batch_size=batch_size, progress=progress)
    agreement, interval = {}, {}
    compared = ranked.get(reference) if reference_lists is None else reference_lists
    if compared is not None:
        def per_query(lists: np.ndarray) -> np.ndarray:
            return metrics.retrieval_metrics(lists, queries.relevant, ks=(k,),
                                             per_query=True)[f"recall@{k}"].to_numpy()

        for mode, lists in ranked.items():
            agreement[mode] = float(metrics.top_k_overlap(lists, compared, k).mean())
            interval[mode] = metrics.bootstrap_ci(per_query(lists) - per_query(compared))
    return TowerMeasurement(table, ranked, agreement, vectors.get("query"), vectors.get("item"),
                            interval)


def size_quality_table(rows: Sequence[Mapping[str, Any]], *, reference: str = "float32"
                       ) -> pd.DataFrame:
    """One row per (model, variant), sizes and latencies relative to ``reference``.

    ``rows`` are dicts with at least ``model``, ``variant`` and ``size_mb``, plus any measurements.
    Adds ``x_smaller`` (reference size / size) and, with ``median_ms``, ``speedup`` (reference
    median / median). Models keep their order of appearance, variants follow :data:`MODES` (others
    after)."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    for column in ("model", "variant", "size_mb"):
        if column not in df:
            raise DataError(f"rows need a {column!r} entry", source="size_quality_table")
    ref = df[df["variant"] == reference].set_index("model")
    df["x_smaller"] = df["model"].map(ref["size_mb"]) / df["size_mb"]
    if "median_ms" in df:
        df["speedup"] = df["model"].map(ref["median_ms"]) / df["median_ms"]
    model_rank = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
    variant_rank = {m: i for i, m in enumerate(MODES)}
    key = df["model"].map(model_rank) * 100 + df["variant"].map(variant_rank).fillna(len(MODES))
    return df.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)
