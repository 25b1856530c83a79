"""The pure helpers of the benchmark scripts (nothing is timed here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest

from recsys_utils import metrics
from recsys_utils import two_tower
from recsys_utils.profiles import RetrievalBudget
from recsys_utils.schema import DataError
from toy_world import make_toy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _common  # noqa: E402
import bench_ann  # noqa: E402
import bench_peers  # noqa: E402
import bench_runall  # noqa: E402


# ------------------------------------------------------------------------------ _common


def test_loadavg_reads_the_first_field_and_survives_a_missing_file(tmp_path):
    (tmp_path / "loadavg").write_text("1.25 0.80 0.50 2/300 12345\n")
    assert _common.loadavg(tmp_path / "loadavg") == "1.25"
    assert _common.loadavg(tmp_path / "absent") == "n/a"
    (tmp_path / "empty").write_text("")
    assert _common.loadavg(tmp_path / "empty") == "n/a"


def test_hardware_line_names_the_cpu_ram_and_every_version():
    import platform

    line = _common.hardware_line()
    assert line.startswith("CPU: ") and "; GPU: " in line
    for name, label in _common.PACKAGES:
        assert f"{label} {_common.package_version(name)}" in line
    assert f"Python {platform.python_version()}" in line
    assert _common.package_version("numpy") == np.__version__
    assert _common.package_version("no-such-distribution-xyz") == "not installed"


# ------------------------------------------------------------------------------ bench_ann data


def test_clustered_vectors_are_deterministic_unit_rows():
    a = bench_ann.clustered_vectors(500, dim=16, n_clusters=20, seed=3)
    b = bench_ann.clustered_vectors(500, dim=16, n_clusters=20, seed=3)
    assert a.shape == (500, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a, bench_ann.clustered_vectors(500, dim=16, n_clusters=20, seed=4))
    assert bench_ann.clustered_vectors(0, dim=16).shape == (0, 16)


def test_queries_come_from_the_same_mixture_as_candidates():
    # Without noise every row is a centre: the query stream draws other rows of the same centres.
    items = bench_ann.clustered_vectors(2000, dim=8, n_clusters=5, spread=0.0, seed=1, stream=0)
    queries = bench_ann.clustered_vectors(300, dim=8, n_clusters=5, spread=0.0, seed=1, stream=1)
    centres = np.unique(items.round(5), axis=0)
    assert len(centres) == 5
    assert {tuple(r) for r in np.unique(queries.round(5), axis=0)} <= {tuple(r) for r in centres}
    assert not np.array_equal(items[:300], queries)  # a different draw, not a copy


def test_spread_controls_how_clustered_the_data_is():
    def mean_cosine_to_cluster_mates(spread: float) -> float:
        x = bench_ann.clustered_vectors(1000, dim=32, n_clusters=10, spread=spread, seed=0)
        centre_rows = bench_ann.clustered_vectors(1000, dim=32, n_clusters=10, spread=0.0, seed=0)
        # spread=0 gives each row's centre (same labels: the noise is drawn after them).
        return float((x * centre_rows).sum(1).mean())

    tight, loose = mean_cosine_to_cluster_mates(0.3), mean_cosine_to_cluster_mates(2.0)
    assert tight > 0.9 and loose < 0.6 and tight > loose


def test_clustered_vectors_rejects_bad_arguments():
    with pytest.raises(DataError):
        bench_ann.clustered_vectors(10, n_clusters=0)
    with pytest.raises(DataError):
        bench_ann.clustered_vectors(10, spread=-1.0)


# ------------------------------------------------------------------------------ exact search, recall


def test_exact_top_k_matches_the_package_brute_force_in_blocks():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((700, 12)).astype(np.float32)
    queries = rng.standard_normal((53, 12)).astype(np.float32)
    expected, _ = metrics.brute_force_top_k(queries, items, 10)
    # Blocks of 2 queries (1,400 scores), with and without the pre-transposed table.
    got = bench_ann.exact_top_k(queries, items, 10, block_elements=1400)
    np.testing.assert_array_equal(got, expected)
    got_t = bench_ann.exact_top_k(queries, items, 10, items_t=np.ascontiguousarray(items.T))
    np.testing.assert_array_equal(got_t, expected)
    with pytest.raises(DataError):
        bench_ann.exact_top_k(queries, items, 701)
    with pytest.raises(DataError):
        bench_ann.exact_top_k(queries[:, :5], items, 3)


@pytest.mark.parametrize("n, chunk", [(1037, 100), (1000, 100), (25, 100)])
def test_chunk_max_search_equals_the_exact_top_k(n, chunk):
    rng = np.random.default_rng(n)
    items = np.abs(rng.standard_normal((n, 8))).astype(np.float32)
    queries = rng.standard_normal((70, 8)).astype(np.float32)
    queries[:5] = -np.abs(queries[:5])  # every score < 0: a padded column must not win
    search = bench_ann.chunk_max_search(items, k=10, chunk=chunk, rows=16)
    found = search(queries)
    assert found.shape == (70, 10) and found.dtype == np.int64
    np.testing.assert_array_equal(found, bench_ann.exact_top_k(queries, items, k=10))
    with pytest.raises(DataError):
        bench_ann.chunk_max_search(items, k=n + 1)


def test_recall_at_k_counts_the_exact_items_found():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert bench_ann.recall_at_k(exact, exact, 4) == 1.0
    assert bench_ann.recall_at_k(exact[:, ::-1], exact, 4) == 1.0  # order inside the top k is free
    assert bench_ann.recall_at_k(exact + 100, exact, 4) == 0.0
    # Row 0 finds 1 and 3 (a duplicate and padding count for nothing), row 1 finds 5, 6, 7.
    found = np.array([[1, 1, 3, -1], [7, 6, 5, 99]])
    assert bench_ann.recall_at_k(found, exact, 4) == pytest.approx((2 / 4 + 3 / 4) / 2)
    # Only the first k columns of each count: 4 found beyond k=2 is not a hit.
    assert bench_ann.recall_at_k(np.array([[9, 1, 2]]), np.array([[1, 2, 3]]), 2) == 0.5
    # Fewer columns than k (a searcher that returned less): the rest are misses.
    assert bench_ann.recall_at_k(np.array([[2]]), np.array([[1, 2]]), 2) == 0.5
    with pytest.raises(DataError):
        bench_ann.recall_at_k(exact[:1], exact, 4)


def test_recall_of_a_perturbed_exact_search_is_its_overlap():
    rng = np.random.default_rng(1)
    items = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((40, 8)).astype(np.float32)
    exact = bench_ann.exact_top_k(queries, items, 10)
    # Drop the best item of every query: the 2nd..11th hold 9 of the true 10.
    approx = bench_ann.exact_top_k(queries, items, 11)[:, 1:]
    assert bench_ann.recall_at_k(approx, exact, 10) == pytest.approx(0.9)


# ------------------------------------------------------------------------------ ScaNN settings


def test_scann_settings_scale_with_the_catalogue():
    settings = bench_ann.scann_settings(1_000_000, leaf_factors=(1, 2),
                                        search_fractions=(0.01, 0.1), reorders=(5, 100))
    assert [leaves for leaves, _ in settings] == [1000, 2000]
    assert settings[0][1] == [(10, 10), (10, 100), (100, 10), (100, 100)]  # reorder >= k=10
    small = bench_ann.scann_settings(100, leaf_factors=(1, 4), search_fractions=(0.001, 2.0))
    # 10 leaves is the cap (>= 10 rows a leaf): factor 4 collapses onto it; 1 <= searched <= leaves.
    assert small == [(10, [(1, 100), (10, 100)])]
    with pytest.raises(DataError):
        bench_ann.scann_settings(10)


def test_scann_bytes_counts_codes_ids_centres_and_the_float_table():
    n, dim = 10_000, 64
    without = bench_ann.scann_bytes(n, dim, 100, reorder=False)
    with_table = bench_ann.scann_bytes(n, dim, 100, reorder=True)
    assert with_table - without == n * dim * 4
    # 32 blocks of 4 bits = 16 B and a 4-byte id per row, plus centres and codebooks.
    assert without == n * 20 + 100 * dim * 4 + 32 * 16 * 2 * 4
    assert bench_ann.scann_bytes(2 * n, dim, 100) > with_table


def _method(name, qps, recall, scann):
    m = bench_ann.Method(name, f"{name} setting", lambda q: q, lambda q: q, scann=scann)
    m.qps, m.recall = list(qps), recall
    return m


def test_target_line_compares_the_best_good_scann_with_the_faster_brute_force():
    brute = [_method("numpy", [90, 100, 110], 1.0, False), _method("tfrs", [150], 1.0, False)]
    fast_but_poor = _method("ScaNN a", [10_000], 0.90, True)
    good = _method("ScaNN b", [1_600], 0.96, True)
    line = bench_ann.target_line(1_000_000, brute + [fast_but_poor, good])
    assert line.endswith("(best setting ScaNN b setting: 1,600 QPS = 10.7x tfrs 150 QPS, "
                         "recall@10 0.9600)")
    assert ": met (" in line
    slow = _method("ScaNN c", [1_400], 0.99, True)
    assert ": not met (" in bench_ann.target_line(1_000_000, brute + [fast_but_poor, slow])
    assert "no ScaNN setting reached" in bench_ann.target_line(1_000_000, brute + [fast_but_poor])


def test_exact_bound_lines_measure_exact_search_against_the_matmul_rate(monkeypatch):
    # 1e9 flop/s and 2 x 1,000 x 50 flop per query: a bound of 10,000 QPS.
    monkeypatch.setattr(bench_ann, "gemm_flops", lambda: 1e9)
    exact = [_method("numpy", [3_000], 1.0, False), _method("faiss", [6_000], 1.0, False)]
    good = _method("ScaNN b", [30_000], 0.96, True)
    text = bench_ann.exact_bound_lines(1_000, 50, exact + [_method("ScaNN a", [90_000], 0.9, True),
                                                           good])
    assert "= 10,000 QPS" in text and "numpy: 3,000 QPS = 30% of the bound" in text
    # A rate measured earlier and higher is the bound: 2e9 flop/s, 20,000 QPS.
    earlier = bench_ann.exact_bound_lines(1_000, 50, exact + [good], peaks=(2e9, 0.5e9))
    assert "= 20,000 QPS" in earlier and "numpy: 3,000 QPS = 15% of the bound" in earlier
    assert "within 2x of the compute bound: met (faiss, 1.7x below it)" in text
    assert "recall@10 >= 0.95: 5.0x (ScaNN b setting: 30,000 QPS" in text
    slow = bench_ann.exact_bound_lines(1_000, 50, exact[:1] + [_method("ScaNN a", [9], 0.9, True)])
    assert "not met (numpy, 3.3x below it)" in slow and "no setting reached recall@10" in slow


def test_tile_with_noise_keeps_the_rows_near_their_source_and_scales_noise_by_column():
    base = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 50.0]], np.float32)  # column std 1.63, 16.3
    rng = np.random.default_rng(0)
    tiled = bench_ann.tile_with_noise(base, 30_000, 0.1, rng)
    assert tiled.shape == (30_000, 2) and tiled.dtype == np.float32
    # Noise of 0.1 x 1.63 in column 0 leaves each row nearest its source (rows 2 apart).
    source = np.argmin(np.abs(tiled[:, :1] - base[None, :, 0]), axis=1)
    assert np.bincount(source, minlength=3).min() > 9_000  # every row drawn, about evenly
    residual = tiled - base[source]
    np.testing.assert_allclose(residual.std(axis=0), 0.1 * base.std(axis=0), rtol=0.03)
    assert np.array_equal(bench_ann.tile_with_noise(base, 5, 0.5, np.random.default_rng(1)),
                          bench_ann.tile_with_noise(base, 5, 0.5, np.random.default_rng(1)))
    copies = bench_ann.tile_with_noise(base, 50, 0.0, rng)  # no noise: copies of base rows
    assert (copies[:, None, :] == base[None]).all(axis=2).any(axis=1).all()


def test_flops_per_text_counts_the_padded_batches_the_encoder_runs():
    class Backbone:
        def get_config(self):
            return {"hidden_dim": 4, "intermediate_dim": 8, "num_layers": 2}

    class Encoder:  # two bucketed batches: 3 texts padded to 8 tokens, 1 text to 16
        backbone = Backbone()

        def batches(self, texts, batch_size):
            yield np.arange(3), np.zeros((3, 8), np.int32), np.ones((3, 8), np.int32)
            yield np.arange(1), np.zeros((1, 16), np.int32), np.ones((1, 16), np.int32)

    per_token = 4 * 4 * 4 + 2 * 4 * 8  # attention projections + feed-forward, per layer
    expected = 2 * 2 * (3 * (8 * per_token + 2 * 8 * 8 * 4) + (16 * per_token + 2 * 16 * 16 * 4))
    assert bench_peers.flops_per_text(Encoder(), ["a"] * 4, 3) == expected / 4


# ------------------------------------------------------------------------------ bench_runall


def test_read_timings(tmp_path):
    assert bench_runall.read_timings(tmp_path) is None
    (tmp_path / "timings.json").write_text(json.dumps({"01_a": 12, "02_b": 3.5}))
    assert bench_runall.read_timings(tmp_path) == {"01_a": 12.0, "02_b": 3.5}
    (tmp_path / "timings.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        bench_runall.read_timings(tmp_path)


def test_timing_table_totals_and_checks_the_target():
    # Rows follow the series' execution order (`expected`), not the names' sort order.
    lines = bench_runall.timing_table({"07_y": 300.0, "08_x": 100.0}, {"08_x": "today"},
                                      expected=["08_x", "07_y"])
    assert lines[2].startswith("| 08_x | 100.0 | 1.7 | 25% | today |")
    assert lines[3].startswith("| 07_y | 300.0 | 5.0 | 75% | - |")
    assert "**400.0**" in lines[4]
    assert lines[-1].endswith("minutes: met (6.7 min for 2 notebooks)")

    slow = bench_runall.timing_table({"01_a": 500.0, "02_b": 500.0}, expected=["01_a", "02_b"])
    assert ": not met (16.7 min" in slow[-1]
    # Incomplete series: under the target it cannot be judged; over it, it already fails.
    partial = bench_runall.timing_table({"01_a": 100.0}, expected=["01_a", "02_b"])
    assert ": not known (" in partial[-1] and "02_b" in partial[-1]
    over = bench_runall.timing_table({"01_a": 1000.0}, expected=["01_a", "02_b"])
    assert ": not met (" in over[-1] and "no timing for 02_b" in over[-1]


def test_timing_table_shows_entries_outside_the_series_apart_and_leaves_them_out():
    # A renamed notebook's stale 600 s would push the total past 15 minutes if it counted.
    timings = {"08_x": 100.0, "06_old_name": 600.0, "07_y": 300.0}
    lines = bench_runall.timing_table(timings, expected=["08_x", "07_y"])
    total = lines.index(next(line for line in lines if line.startswith("| **total**")))
    assert [line.split(" | ")[0] for line in lines[2:total]] == ["| 08_x", "| 07_y"]
    assert "**400.0**" in lines[total] and "75%" in lines[3]
    assert any(line.startswith("| 06_old_name | 600.0 | 10.0 | - |") for line in lines[total:])
    assert lines[-1].endswith("minutes: met (6.7 min for 2 notebooks)")
    # Without a series order every entry counts, sorted by name.
    plain = bench_runall.timing_table(timings)
    assert plain[2].startswith("| 06_old_name |") and "**1000.0**" in plain[5]
    assert ": not met (16.7 min for 3 notebooks)" in plain[-1]


# ------------------------------------------------------------------------------ bench_training


def test_parse_worlds_and_throughput():
    import bench_training

    assert bench_training.parse_worlds("1000x2000, 3e3x3000") == [(1000, 2000), (3000, 3000)]
    for bad in ("1000", "ax10", "5x1000"):
        with pytest.raises(DataError):
            bench_training.parse_worlds(bad)
    # The first epoch (tracing) is left out: 100 examples in 10 s, then 1 s, 2 s, 4 s.
    assert bench_training.throughput(100, [10.0, 1.0, 2.0, 4.0]) == (50.0, 25.0, 100.0)
    with pytest.raises(DataError):
        bench_training.throughput(100, [3.0])


def test_profile_budget_defaults_to_the_default_profile_and_takes_overrides():
    import bench_training
    from recsys_utils import profiles

    budget = profiles.get_profile("default").retrieval.budget
    assert budget.early_stopping and budget.epochs != 3
    # The benchmark sets epochs and early stopping itself; the rest is the profile's.
    same = bench_training.profile_budget(budget, 3)
    assert same == budget.replace(epochs=3, early_stopping=False)
    changed = bench_training.profile_budget(budget, 3, batch_size=budget.batch_size * 4,
                                            learning_rate=0.5)
    assert changed.batch_size == budget.batch_size * 4 and changed.learning_rate == 0.5
    assert changed.embedding_dim == budget.embedding_dim
    assert budget.learning_rate != 0.5  # the profile itself is not changed
    for bad in ({"batch_size": 0}, {"learning_rate": -1.0}):
        with pytest.raises(DataError):
            bench_training.profile_budget(budget, 3, **bad)


def test_train_retrieval_records_every_epoch_wall_time():
    from recsys_utils import features

    toy = make_toy(seed=0)
    data = features.build_features(toy.prepared, history_length=3)
    result = two_tower.train_retrieval("id", data, None, RetrievalBudget(epochs=3),
                                       progress=False)
    seconds = result.history["epoch_seconds"]
    assert len(seconds) == len(result.history["loss"]) == 3 and all(s > 0 for s in seconds)


def test_make_world_aligns_content_with_the_catalogue():
    import bench_training

    data, content = bench_training.make_world(60, 80, seed=1, history_length=4)
    assert content.shape == (data.n_items, bench_training.CONTENT_DIM) == (80, 64)
    assert data.history_length == 4 and len(data.examples["train"]["item"]) > 0
    assert len(data.cold_items) > 0 and not data.warm_items[data.cold_items].any()
    seconds = bench_training.pipeline_seconds(data, 16, passes=2)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


def test_run_all_target_applies_only_to_the_synthetic_default_run(tmp_path):
    metrics = tmp_path / "artifacts" / "metrics"
    metrics.mkdir(parents=True)
    assert bench_runall.run_kind(tmp_path) is None
    (metrics / "01_data_preparation.json").write_text('{"dataset": "synthetic"}')
    (metrics / "02_text_encoding.json").write_text('{"dataset": "synthetic", "profile": "smoke"}')
    kind = bench_runall.run_kind(tmp_path)
    assert kind == ("synthetic", "smoke")
    lines = bench_runall.timing_table({"01_a": 10.0}, kind=kind)
    assert "does not apply: this run is synthetic / smoke" in lines[-1]
    lines = bench_runall.timing_table({"01_a": 10.0}, kind=("synthetic", "default"))
    assert lines[-1].split(": ", 1)[1].startswith("met")
