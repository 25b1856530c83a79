"""The timing harness: interleaved rounds, one function, single requests."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils import latency, tflite_conversion
from recsys_utils.schema import DataError


def test_measure_latency_reports_threads_and_throughput(dense_variants, dense_model):
    runner = tflite_conversion.TFLiteRunner(dense_variants["float32"].path, num_threads=1)
    timing = latency.measure_latency(runner, {"features": dense_model[3]}, repeats=20, batch_size=32)
    assert timing.num_threads == 1 and timing.batch_threads == 1 and timing.batch_size == 32
    assert timing.rounds == 1 and len(timing.round_medians_ms) == 1
    assert timing.median_ms > 0 and timing.throughput > 0


class _FakeClock:
    """Stands in for time.perf_counter: fake models advance it by a known cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_compare_latency_interleaves_rounds_and_measures_alike(monkeypatch):
    import types

    clock = _FakeClock()
    monkeypatch.setattr(latency, "time", types.SimpleNamespace(perf_counter=clock))
    calls: list[tuple[str, tuple[int, ...]]] = []

    class Model:
        def __init__(self, name, ms_per_row, batch_ms_per_row, num_threads):
            self.name, self.ms, self.batch_ms, self.num_threads = name, ms_per_row, batch_ms_per_row, num_threads

        def __call__(self, x):
            calls.append((self.name, tuple(x[:, 0].astype(int))))
            clock.now += (self.ms if len(x) == 1 else self.batch_ms) * len(x) / 1e3

    inputs = np.arange(40, dtype=np.float32).reshape(20, 2)
    fns = {"a": Model("a", 1.0, 0.5, 1), "b": Model("b", 3.0, 0.5, 1), "c": Model("c", 2.0, 0.25, 1)}
    batch = {"a": Model("a", 9.0, 0.1, 4)}  # "a" batches on another, faster runner; b, c: no batches
    timings = latency.compare_latency(fns, inputs, batch_fns=batch, rounds=3, repeats=4,
                                      warmup=2, batch_size=8)
    assert {n: t.median_ms for n, t in timings.items()} == pytest.approx({"a": 1.0, "b": 3.0, "c": 2.0})
    assert timings["b"].round_medians_ms == pytest.approx((3.0, 3.0, 3.0))
    assert timings["a"].throughput == pytest.approx(8 / (8 * 0.1e-3))
    assert timings["a"].num_threads == 1 and timings["a"].batch_threads == 4
    assert np.isnan(timings["b"].throughput) and timings["b"].batch_size == 0
    # The order rotates every round (a b c, b c a, c a b), each round on the same rows for all.
    blocks = [name for i, (name, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != name]
    assert blocks[-9:] == list("abcbcacab")
    rows = {name: [r for n, r in calls if n == name and len(r) == 1] for name in fns}
    assert rows["a"] == rows["b"] == rows["c"] and len(rows["a"]) == 2 + 3 * (1 + 4)
    with pytest.raises(DataError, match="batch_fns"):
        latency.compare_latency(fns, inputs, batch_fns={"z": fns["a"]})
    with pytest.raises(DataError, match="at least one input row"):
        latency.compare_latency(fns, inputs[:0])


def test_time_requests_cycles_through_the_requests_after_a_warm_up():
    seen = []
    timed = latency.time_requests(lambda i: seen.append(i) or np.zeros(1), 3, n=5, warmup=2)
    assert seen == [0, 1, 0, 1, 2, 0, 1]  # 2 warm-up calls, then 5 timed ones
    assert timed.repeats == 5 and timed.batch_size == 0 and 0 <= timed.median_ms <= timed.p95_ms
    with pytest.raises(DataError, match="at least one request"):
        latency.time_requests(lambda i: None, 0)
