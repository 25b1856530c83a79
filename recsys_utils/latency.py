"""The one timing harness (no TensorFlow import), every result a :class:`Timing`:
:func:`compare_latency` times variants in interleaved rounds, :func:`measure_latency` one
function, :func:`time_requests` single requests to a served model (notebooks 04 and 07)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .schema import DataError

__all__ = ["Timing", "compare_latency", "count_rows", "measure_latency", "slice_rows",
           "time_requests"]


def count_rows(inputs: Mapping[str, np.ndarray] | np.ndarray) -> int:
    """Rows of a ``{name: (n, ...) array}`` mapping or of one ``(n, ...)`` array."""
    return len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)


def slice_rows(inputs: Mapping[str, np.ndarray] | np.ndarray, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of every array, in the form of ``inputs`` (a mapping or an array)."""
    if isinstance(inputs, Mapping):
        return {k: np.asarray(v)[start:stop] for k, v in inputs.items()}
    return np.asarray(inputs)[start:stop]


def _time_calls(fn: Callable[[Any], Any], args: Iterable[Any]) -> np.ndarray:
    """Wall time in seconds of ``fn(arg)`` for each ``arg`` (made before its clock starts)."""
    seconds = []
    for arg in args:
        start = time.perf_counter()
        fn(arg)
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds, dtype=np.float64)


@dataclasses.dataclass
class Timing:
    """CPU cost of one model variant, or of one served model's requests.

    Attributes:
        median_ms, p95_ms: single-query latency over all ``rounds * repeats`` timed calls.
        throughput: rows per second on batches of ``batch_size`` (median over the timed
            batch calls; NaN, and ``batch_size`` 0, when batches were not timed).
        num_threads, batch_threads: threads of the single-query and the batch function.
        round_medians_ms: ``(rounds,)`` median latency of each round (their spread: the noise).
    """

    median_ms: float
    p95_ms: float
    throughput: float
    repeats: int
    batch_size: int
    num_threads: int | None = None
    batch_threads: int | None = None
    rounds: int = 1
    round_medians_ms: tuple[float, ...] = ()


def compare_latency(fns: Mapping[str, Callable[[Any], Any]],
                    inputs: Mapping[str, np.ndarray] | np.ndarray, *,
                    batch_fns: Mapping[str, Callable[[Any], Any]] | None = None,
                    rounds: int = 3, repeats: int = 20, warmup: int = 5, batch_size: int = 64,
                    batch_repeats: int = 3) -> dict[str, Timing]:
    """Single-query latency and batch throughput of several functions, measured alike: after
    warm-up, ``rounds`` times each function in turn (the order rotates) is timed on the same
    ``repeats`` single rows and ``batch_repeats`` batches, each block after an untimed call
    (a shape change re-allocates a TFLite interpreter's tensors).

    Args:
        fns: name -> single-query function, called with a one-row slice of ``inputs``
            (same type: a dict of arrays or an array).
        inputs: ``(n, ...)`` rows; single queries cycle through them.
        batch_fns: name -> function for the batch calls (default: ``fns``; ``{}`` skips
            throughput), e.g. a runner with more threads.
        batch_size: rows per batch call (capped at ``n``).

    Returns:
        name -> :class:`Timing`, thread counts read from each function's ``num_threads``.
    """
    n = count_rows(inputs)
    if n == 0:
        raise DataError("timing needs at least one input row")
    if not fns:
        raise DataError("compare_latency needs at least one function to time")
    if rounds < 1 or repeats < 1:
        raise DataError(f"rounds and repeats must be >= 1, got {rounds}, {repeats}")
    batch_fns = dict(fns) if batch_fns is None else dict(batch_fns)
    if unknown := set(batch_fns) - set(fns):
        raise DataError(f"batch_fns has names without a single-query function: {sorted(unknown)}")
    b = min(batch_size, n) if batch_fns and batch_size > 0 else 0
    batch = slice_rows(inputs, 0, b)
    names = list(fns)
    for name in names:
        for i in range(warmup):
            fns[name](slice_rows(inputs, i % n, i % n + 1))
        if name in batch_fns:
            batch_fns[name](batch)
    single = {name: np.empty((rounds, repeats)) for name in names}
    batch_seconds: dict[str, list[float]] = {name: [] for name in batch_fns}
    for r in range(rounds):
        rows = [(r * repeats + i) % n for i in range(repeats)]
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            fn(slice_rows(inputs, rows[0], rows[0] + 1))
            single[name][r] = _time_calls(fn, (slice_rows(inputs, row, row + 1) for row in rows))
            if name in batch_fns:
                batch_fns[name](batch)
                batch_seconds[name].extend(
                    _time_calls(batch_fns[name], [batch] * batch_repeats).tolist())
    out = {}
    for name in names:
        times = single[name] * 1e3
        seconds = batch_seconds.get(name)
        out[name] = Timing(
            median_ms=float(np.median(times)), p95_ms=float(np.percentile(times, 95)),
            throughput=float(b / np.median(seconds)) if seconds else float("nan"),
            repeats=repeats, batch_size=b if seconds else 0,
            num_threads=getattr(fns[name], "num_threads", None),
            batch_threads=getattr(batch_fns[name], "num_threads", None) if seconds else None,
            rounds=rounds, round_medians_ms=tuple(float(v) for v in np.median(times, axis=1)))
    return out


def measure_latency(fn: Callable[[Any], Any], inputs: Mapping[str, np.ndarray] | np.ndarray,
                    *, repeats: int = 50, warmup: int = 3, batch_size: int = 64,
                    batch_repeats: int = 3) -> Timing:
    """:func:`compare_latency` of one function in one round."""
    return compare_latency({"fn": fn}, inputs, rounds=1, repeats=repeats, warmup=warmup,
                           batch_size=batch_size, batch_repeats=batch_repeats)["fn"]


def _wait(result: Any) -> None:
    """Read every tensor of a result (nested in dicts, tuples, lists), so its time counts."""
    if hasattr(result, "numpy"):
        result.numpy()
    elif isinstance(result, (Mapping, tuple, list)):
        for value in result.values() if isinstance(result, Mapping) else result:
            _wait(value)


def time_requests(call: Callable[[int], Any], n_requests: int, *, n: int = 200,
                  warmup: int = 10) -> Timing:
    """Time ``n`` calls ``call(i)`` (request ``i``, cycling through ``range(n_requests)``),
    each waiting for the result's tensors; batches are not timed."""
    if n_requests < 1 or n < 1:
        raise DataError(f"timing needs at least one request and one call, got {n_requests}, {n}")
    for i in range(warmup):
        call(i % n_requests)
    times = _time_calls(lambda i: _wait(call(i)), (i % n_requests for i in range(n))) * 1000.0
    median = float(np.median(times))
    return Timing(median_ms=median, p95_ms=float(np.percentile(times, 95)),
                  throughput=float("nan"), repeats=n, batch_size=0, round_medians_ms=(median,))
