"""Benchmark: nearest-neighbour search over 10k / 100k / 1M candidates, brute force vs ScaNN.

    python benchmarks/bench_ann.py [--sizes 10000,100000,1000000] [--quick] [--queries 1000] [--rounds 3]
    python benchmarks/bench_ann.py --data two-tower --run-dir runs/synthetic-default --sizes 1000000 \
        --peer-python .venv-peers/bin/python   # trained vectors, FAISS beside (make bench-peers)

Candidates and queries are deterministic synthetic unit vectors of dimension
64 drawn from one mixture of 1,000 gaussians (``clustered_vectors``: random
unit centres, isotropic noise of norm about ``--spread`` times the centre's,
uneven cluster sizes, then L2-normalised) and scored by dot product, as the
two-tower models score. ``--spread`` sets how hard the search is: the larger,
the less the top 10 stays inside one cluster (1.0: noise as large as the
centre).

Methods, each searching all ``--queries`` queries for the top ``k=10``:

* ``numpy brute force``: matmul + argpartition over blocks of queries (exact);
* ``TF chunk-max exact search``: ``chunk_max_search``, a matmul per block of
  64 queries, then the top 10 within the 10 chunks of 100 items with the largest
  maxima (exact; the selection reads a hundredth of the scores);
* ``tfrs BruteForce``: ``tfrs.layers.factorized_top_k.BruteForce`` (TF matmul +
  ``top_k``; skip with ``--no-tfrs``);
* ``ScaNN``: ``scann.scann_ops_pybind.builder(db, k, "dot_product")``, a k-means
  tree of ``num_leaves = factor * sqrt(N)`` leaves trained on a sample of
  ``--training-sample`` rows, asymmetric hashing (2 dimensions per 4-bit
  code, anisotropic threshold 0.2) and exact float re-scoring of the best
  ``reorder`` candidates. One index per tree size (factors 1 and 2);
  ``leaves_to_search`` (1%, 3%, 10%, 30% of the leaves) and ``reorder``
  (100) are swept at query time.

For each: build seconds, batched queries/s (all queries per call: numpy in
blocks, ScaNN ``search_batched_parallel`` on every core; calls repeated for at
least ``--min-seconds`` after one untimed call; median of ``--rounds``
round-robin rounds with the min-max spread), single-query latency (median over ``--single`` queries, median
of the rounds), recall@10 against the exact top 10, and memory (the float
table; ScaNN estimated from its settings and measured as the serialized
index). One table per size, then issue #8's check: ScaNN at least 10x the
faster brute force's QPS at recall@10 >= 0.95 on 1,000,000 candidates.

The data's difficulty changes with N: the mixture is fixed, so a larger
catalogue packs more points into each cluster and the true neighbours sit
closer together (1,000 clusters: 10 rows each at 10k, 1,000 at 1M).

``--data two-tower`` replaces the mixture by the vectors a trained model
serves: notebook 04's exported towers of ``--run-dir`` (item vectors with the
profile columns and the bias column, the 256 representative queries of the
query tower's ``calibration.npz``), tiled to N candidates and ``--queries``
queries with gaussian noise of ``--noise`` times each column's spread
(``two_tower_vectors``). ``--peer-python`` adds ``faiss.IndexFlatIP``, the
exact search a practitioner would pick, run in the peers' environment
(``make bench-peers``). After the tables: the compute bound of exact search
(2 N d flop per query against this machine's best float32 matmul rate), how close each exact
method gets to it, and ScaNN's margin over the fastest exact method at
recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any
from pathlib import Path

import numpy as np

import recsys_utils  # noqa: F401 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
from recsys_utils.artifacts import dir_bytes
from recsys_utils.schema import DataError

from _common import gemm_flops, hardware_line, loadavg

DIM = 64
K = 10
#: Scores per block of the numpy brute force (64M float32 = 256 MB).
BLOCK_ELEMENTS = 1 << 26
#: Queries in the untimed call before each timed block.
WARM_UP_QUERIES = 100


# ------------------------------------------------------------------------------ data


def clustered_vectors(n: int, *, dim: int = DIM, n_clusters: int = 1000, spread: float = 1.0,
                      seed: int = 0, stream: int = 0) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors from a mixture of ``n_clusters`` gaussians.

    The mixture (centres and cluster weights) depends on ``seed`` only, so
    candidates (``stream=0``) and queries (``stream=1``) come from the same
    distribution but are different draws. Centres are random unit vectors;
    weights are log-normal (uneven cluster sizes, as in a real catalogue);
    each point is its centre plus gaussian noise of expected norm ``spread``,
    then L2-normalised (dot product = cosine).
    """
    if n < 0 or dim < 1 or n_clusters < 1 or spread < 0:
        raise DataError(f"need n >= 0, dim >= 1, n_clusters >= 1, spread >= 0; "
                        f"got n={n}, dim={dim}, n_clusters={n_clusters}, spread={spread}")
    mixture = np.random.default_rng([seed, 2024])
    centres = mixture.standard_normal((n_clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = mixture.lognormal(0.0, 1.0, n_clusters)
    rng = np.random.default_rng([seed, 2024, stream + 1])
    labels = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x *= np.float32(spread / math.sqrt(dim))
    x += centres[labels]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
    return x


def two_tower_vectors(run_dir: str | Path, n: int, n_queries: int, *, noise: float = 0.5,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, D)`` candidates and ``(n_queries, D)`` queries from a run's trained towers.

    Each row is a catalogue item's served vector (or one of the query tower's
    calibration queries), drawn uniformly, plus gaussian noise of ``noise`` times
    that column's standard deviation across the catalogue (the queries') rows:
    a catalogue of near-copies that keeps the trained geometry and its scale.
    """
    from recsys_utils import artifacts, serving

    models = Path(run_dir) / "artifacts" / "models"
    n_items = len(artifacts.load_prepared(Path(run_dir) / "artifacts").items)
    towers = serving.load_towers(models / "query_tower", models / "item_tower", n_items)
    with np.load(models / "query_tower" / "calibration.npz") as calibration:
        base_queries = towers.query_embeddings(dict(calibration))
    rng = np.random.default_rng([seed, 2025])
    return (tile_with_noise(towers.item_embeddings(), n, noise, rng),
            tile_with_noise(base_queries, n_queries, noise, rng))


def tile_with_noise(base: np.ndarray, rows: int, noise: float,
                    rng: np.random.Generator) -> np.ndarray:
    """``(rows, d)`` float32: rows of ``base`` ``(m, d)`` drawn uniformly, each plus gaussian
    noise of ``noise`` times its column's standard deviation over ``base``."""
    base = np.asarray(base, np.float32)
    out = base[rng.integers(0, len(base), rows)]
    out += (rng.standard_normal(out.shape, dtype=np.float32)
            * np.float32(noise) * base.std(axis=0, dtype=np.float64).astype(np.float32))
    return out


# ------------------------------------------------------------------------------ exact search and recall


def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int = K, *,
                items_t: np.ndarray | None = None,
                block_elements: int = BLOCK_ELEMENTS) -> np.ndarray:
    """Exact top-``k`` by dot product: ``(n_q, dim) x (n, dim) -> (n_q, k)`` int64, best first.

    Queries are scored in blocks of ``block_elements // n`` rows, so the
    ``(n_q, n)`` score matrix is never held whole. ``items_t`` is
    ``items.T`` as a C-contiguous ``(dim, n)`` array, when the caller keeps
    one (the matmul is ~1.5x faster on it than on the transposed view).
    """
    queries, items = np.asarray(queries, np.float32), np.asarray(items, np.float32)
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise DataError(f"queries and items must be (n, dim) with one dim; "
                        f"got {queries.shape} and {items.shape}")
    n = len(items)
    if not 1 <= k <= n:
        raise DataError(f"k={k} must be between 1 and the number of items ({n})")
    if items_t is None:
        items_t = items.T
    rows = max(1, block_elements // n)
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), rows):
        scores = queries[start:start + rows] @ items_t
        # The k largest sit in the last k columns: no negated copy of the block needed.
        top = np.argpartition(scores, n - k, axis=1)[:, n - k:]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start:start + rows] = np.take_along_axis(top, order, axis=1)
    return out


def chunk_max_search(items: np.ndarray, k: int = K, *, chunk: int = 100,
                     rows: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """Exact top-``k`` by dot product in TensorFlow, near the matmul's speed: a function of
    ``(n_q, dim)`` queries -> ``(n_q, k)`` int64 item indices, best first.

    For each block of ``rows`` queries: one matmul against all ``n`` items, the maximum of
    each run of ``chunk`` items, the ``k`` chunks with the largest maxima, then the top
    ``k`` of those ``k * chunk`` scores. The ``k`` best items lie in those chunks (any
    other chunk's maximum is beaten by ``k`` items already), so the answer is exact; the
    selection reads ``n / chunk`` maxima instead of ranking ``n`` scores.
    """
    import tensorflow as tf

    items = np.asarray(items, np.float32)
    n = len(items)
    if not 1 <= k <= n or chunk < 1 or rows < 1:
        raise DataError(f"need 1 <= k ({k}) <= items ({n}), chunk >= 1 and rows >= 1")
    chunk = min(chunk, n // k)  # at least k chunks to choose from
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n  # the last chunk's missing columns score -inf
    items_t = tf.constant(np.ascontiguousarray(items.T))
    offsets = tf.range(chunk)

    @tf.function(input_signature=[tf.TensorSpec([None, items.shape[1]], tf.float32)])
    def block(queries: tf.Tensor) -> tf.Tensor:
        scores = tf.matmul(queries, items_t)                                    # (b, n)
        if pad:
            scores = tf.pad(scores, [[0, 0], [0, pad]], constant_values=-np.inf)
        maxima = tf.reduce_max(tf.reshape(scores, [-1, n_chunks, chunk]), axis=-1)
        best_chunks = tf.math.top_k(maxima, k).indices                         # (b, k)
        candidates = tf.reshape(best_chunks[..., None] * chunk + offsets, [-1, k * chunk])
        top = tf.math.top_k(tf.gather(scores, candidates, batch_dims=1), k).indices
        return tf.gather(candidates, top, batch_dims=1)                         # (b, k)

    def search(queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, np.float32)
        return np.concatenate([block(queries[s:s + rows]).numpy() for s in
                               range(0, len(queries), rows)]).astype(np.int64)

    return search


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int = K) -> float:
    """Mean share of each query's exact top ``k`` that ``found`` retrieved (first ``k`` columns).

    ``found`` ``(n_q, >= 0)`` item indices (``-1`` or missing columns = no
    item; duplicates count once); ``exact`` ``(n_q, >= k)``.
    """
    found, exact = np.asarray(found), np.asarray(exact)
    if found.ndim != 2 or exact.ndim != 2 or len(found) != len(exact) or exact.shape[1] < k:
        raise DataError(f"need found (n_q, m) and exact (n_q, >= {k}); "
                        f"got {found.shape} and {exact.shape}")
    if len(exact) == 0:
        return float("nan")
    truth = exact[:, :k]
    hit = (truth[:, :, None] == found[:, None, :k]).any(axis=2)  # (n_q, k): exact item found
    return float(hit.sum(axis=1).mean() / k)


# ------------------------------------------------------------------------------ ScaNN settings


def scann_settings(n: int, *, leaf_factors: Sequence[float] = (1.0, 2.0),
                   search_fractions: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
                   reorders: Sequence[int] = (100,), k: int = K
                   ) -> list[tuple[int, list[tuple[int, int]]]]:
    """Index and query settings for ``n`` candidates.

    Returns ``[(num_leaves, [(leaves_to_search, reorder), ...]), ...]``: one
    tree per factor, ``num_leaves = round(factor * sqrt(n))`` (at least 2, at
    most ``n // 10`` so a leaf holds ~10+ rows), and per tree every share of
    leaves searched (at least 1 leaf, distinct values) times every reorder
    count (at least ``k``, at most ``n``).
    """
    if n < 20:
        raise DataError(f"ScaNN's tree needs a catalogue of >= 20 rows, got {n}")
    out: list[tuple[int, list[tuple[int, int]]]] = []
    for factor in leaf_factors:
        leaves = int(min(max(2, round(factor * math.sqrt(n))), n // 10))
        if any(leaves == existing for existing, _ in out):
            continue
        searched = sorted({min(leaves, max(1, round(f * leaves))) for f in search_fractions})
        reorder = sorted({min(n, max(k, int(r))) for r in reorders})
        out.append((leaves, [(s, r) for s in searched for r in reorder]))
    return out


def scann_bytes(n: int, dim: int, num_leaves: int, *, dims_per_block: int = 2,
                reorder: bool = True) -> int:
    """Approximate ScaNN index memory from its settings, in bytes.

    4-bit AH codes (``ceil(dim / dims_per_block) / 2`` bytes per row), a 4-byte
    row id per row in its leaf, the float32 centres, the AH codebooks (16
    centres per block) and, with exact re-scoring, the float32 table itself
    (``4 * dim`` bytes per row: by far the largest part).
    """
    blocks = math.ceil(dim / dims_per_block)
    per_row = math.ceil(blocks / 2) + 4 + (4 * dim if reorder else 0)
    return n * per_row + num_leaves * dim * 4 + blocks * 16 * dims_per_block * 4


# ------------------------------------------------------------------------------ timing


def _batched_qps(search: Callable[[np.ndarray], object], queries: np.ndarray,
                 min_seconds: float) -> float:
    """Queries/s of whole-batch calls, repeated until ``min_seconds`` have passed."""
    calls, start = 0, time.perf_counter()
    while True:
        search(queries)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * len(queries) / elapsed


def _median_ms(search_one: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        search_one(q)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _fmt_mb(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 1e6:.1f}"


class Method:
    """One row of a table: how to search all queries at once and one query alone."""

    def __init__(self, name: str, setting: str, batched: Callable[[np.ndarray], np.ndarray],
                 single: Callable[[np.ndarray], object] | None, *, build_s: float = 0.0,
                 est_bytes: int | None = None, real_bytes: int | None = None,
                 scann: bool = False) -> None:
        self.name, self.setting, self.batched, self.single = name, setting, batched, single
        self.build_s, self.est_bytes, self.real_bytes, self.scann = build_s, est_bytes, real_bytes, scann
        self.timed_qps: Callable[[np.ndarray], float] | None = None  # when it times itself
        self.qps: list[float] = []
        self.ms: list[float] = []
        self.recall = float("nan")


def _scann_methods(items: np.ndarray, args: argparse.Namespace) -> list[Method]:
    from scann import scann_ops_pybind

    methods = []
    n = len(items)
    for num_leaves, settings in scann_settings(n, leaf_factors=args.leaf_factors,
                                               search_fractions=args.search_fractions,
                                               reorders=args.reorder, k=K):
        sample = min(n, args.training_sample)
        start = time.perf_counter()
        builder = scann_ops_pybind.builder(items, K, "dot_product")
        builder.set_n_training_threads(os.cpu_count() or 1)
        searcher = (builder
                    .tree(num_leaves=num_leaves, num_leaves_to_search=settings[0][0],
                          training_sample_size=sample)
                    .score_ah(2, anisotropic_quantization_threshold=0.2, training_sample_size=sample)
                    .reorder(max(r for _, r in settings))
                    .build())
        build_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory(prefix="bench_ann_") as tmp:
            searcher.serialize(tmp)
            real = dir_bytes(tmp)
        print(f"  ScaNN {num_leaves} leaves (training sample {sample:,}) built in {build_s:.1f} s",
              flush=True)
        for leaves, reorder in settings:
            def batched(q, s=searcher, lv=leaves, r=reorder):
                return np.asarray(s.search_batched_parallel(q, final_num_neighbors=K,
                                                            pre_reorder_num_neighbors=r,
                                                            leaves_to_search=lv)[0])

            def single(q, s=searcher, lv=leaves, r=reorder):
                return s.search(q, final_num_neighbors=K, pre_reorder_num_neighbors=r,
                                leaves_to_search=lv)

            methods.append(Method(
                "ScaNN", f"leaves {num_leaves}, search {leaves} ({leaves / num_leaves:.0%}), "
                         f"reorder {reorder}",
                batched, single, build_s=build_s, real_bytes=real, scann=True,
                est_bytes=scann_bytes(n, items.shape[1], num_leaves)))
    return methods


def _tfrs_method(items: np.ndarray) -> Method:
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    start = time.perf_counter()
    index = tfrs.layers.factorized_top_k.BruteForce(k=K)
    index.index(tf.constant(items))
    build_s = time.perf_counter() - start
    rows = max(1, BLOCK_ELEMENTS // len(items))

    def batched(q: np.ndarray) -> np.ndarray:
        return np.concatenate([index(tf.constant(q[s:s + rows]))[1].numpy()
                               for s in range(0, len(q), rows)])

    return Method("tfrs BruteForce", "TF matmul + top_k", batched,
                  lambda q: index(tf.constant(q[None, :])), build_s=build_s,
                  est_bytes=items.nbytes)


def _faiss_method(items: np.ndarray, peer: Any, work: Path) -> Method:
    """``faiss.IndexFlatIP`` in the peers' process; it times its own batched calls."""
    np.save(work / "items.npy", items)
    build_s = peer.ask(op="faiss_index", items=str(work / "items.npy"))["build_seconds"]
    (work / "items.npy").unlink()  # the peer holds its copy; the file is the size of the table

    def search(q: np.ndarray, min_seconds: float = 0.0) -> tuple[np.ndarray, float]:
        np.save(work / "queries.npy", q)
        answer = peer.ask(op="faiss_search", queries=str(work / "queries.npy"), k=K,
                          out=str(work / "ids.npy"), min_seconds=min_seconds)
        return np.load(work / "ids.npy"), answer["qps"]

    method = Method("FAISS IndexFlatIP (peer)", "exact, BLAS + heap top-k",
                    lambda q: search(q)[0], None, build_s=build_s, est_bytes=items.nbytes)
    method.timed_qps = search
    return method


def bench_size(n: int, args: argparse.Namespace, peer: Any = None) -> list[Method]:
    """Time every method on ``n`` candidates; print and return the rows."""
    start = time.perf_counter()
    if args.data == "two-tower":
        items, queries = two_tower_vectors(args.run_dir, n, args.queries, noise=args.noise,
                                           seed=args.seed)
    else:
        items = clustered_vectors(n, n_clusters=args.clusters, spread=args.spread, seed=args.seed)
        queries = clustered_vectors(args.queries, n_clusters=args.clusters, spread=args.spread,
                                    seed=args.seed, stream=1)
    print(f"\n== {n:,} candidates x {items.shape[1]} dims ({items.nbytes / 1e6:.0f} MB float32), "
          f"{len(queries):,} queries; generated in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    exact = exact_top_k(queries, items)  # the ground truth, and the numpy warm-up
    print(f"  exact top-{K} (ground truth) in {time.perf_counter() - start:.1f} s", flush=True)
    peak_before = gemm_flops()  # again after the searches: the bound takes the higher

    items_t = np.ascontiguousarray(items.T)
    block = min(len(queries), max(1, BLOCK_ELEMENTS // n))
    methods = [Method("numpy brute force", f"matmul + argpartition, blocks of {block} queries",
                      lambda q: exact_top_k(q, items, items_t=items_t),
                      lambda q: exact_top_k(q[None, :], items, items_t=items_t),
                      est_bytes=items.nbytes)]
    chunk = 100
    search = chunk_max_search(items, chunk=chunk)
    methods.append(Method("TF chunk-max exact search", f"matmul, max per {chunk} items, top chunks",
                          search, lambda q: search(q[None, :]), est_bytes=items.nbytes))
    if not args.no_tfrs:
        methods.append(_tfrs_method(items))
    work = Path(tempfile.mkdtemp(prefix="bench_ann_peer_")) if peer is not None else None
    if work is not None:
        methods.append(_faiss_method(items, peer, work))
    methods += _scann_methods(items, args)
    for m in methods:  # warm-up (tracing, thread pools) and recall from the same output
        m.recall = recall_at_k(m.batched(queries), exact)
    single = queries[: args.single]
    warm = queries[: min(len(queries), WARM_UP_QUERIES)]
    load_before = loadavg()
    # Round-robin: a burst of load from another process hits one round of each method alike.
    for r in range(args.rounds):
        for m in methods:
            # One untimed call before each timed block: the previous method (ScaNN's
            # parallel search, say) leaves other threads and caches warm, and the
            # first call after it ran at less than half the speed of later ones.
            m.batched(warm)
            m.qps.append(m.timed_qps(queries, args.min_seconds)[1] if m.timed_qps is not None
                         else _batched_qps(m.batched, queries, args.min_seconds))
            if m.single is not None:
                m.single(single[0])
                m.ms.append(_median_ms(m.single, single))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    print(f"  1-min load average before/after timing: {load_before} / {loadavg()}")
    if work is not None:
        shutil.rmtree(work)

    base = max(statistics.median(m.qps) for m in methods if not m.scann)
    print()
    print(f"| method | setting | build s | QPS batched (median) | spread (min-max) | "
          f"single query ms | recall@{K} | memory MB (est. / serialized) | x brute-force QPS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in methods:
        qps = statistics.median(m.qps)
        memory = (f"{_fmt_mb(m.est_bytes)} / {_fmt_mb(m.real_bytes)}" if m.scann
                  else f"{_fmt_mb(m.est_bytes)}")
        single_ms = f"{statistics.median(m.ms):.3f}" if m.ms else "-"
        print(f"| {m.name} | {m.setting} | {m.build_s:.1f} | {qps:,.0f} | "
              f"{min(m.qps):,.0f}-{max(m.qps):,.0f} | {single_ms} | "
              f"{m.recall:.4f} | {memory} | {qps / base:.1f}x |")
    float_mb = items.nbytes / 1e6
    dim = items.shape[1]
    print(f"\nmemory: the float32 table is {float_mb:.1f} MB ({4 * dim} B/row); ScaNN keeps it for "
          f"the exact re-scoring and adds ~{scann_bytes(n, dim, 0) / n - 4 * dim:.0f} B/row "
          f"(4-bit codes + row ids); without reordering it would be "
          f"~{scann_bytes(n, dim, 0, reorder=False) / 1e6:.1f} MB")
    print(exact_bound_lines(n, dim, methods, peaks=(peak_before,)))
    return methods


def exact_bound_lines(n: int, dim: int, methods: list[Method], *, peaks: Sequence[float] = (),
                      min_recall: float = 0.95) -> str:
    """How close each exact method comes to the compute bound, and ScaNN's margin over the best.

    Exact search costs ``2 n dim`` flop per query; at the machine's best float32 matmul rate
    (:func:`_common.gemm_flops`) that is the most queries/s any exact method can reach (the
    top-k selection comes on top). That rate is measured now and taken with ``peaks``
    measured earlier (flop/s), the highest of them: other work on the machine makes a
    matmul read slow, never fast.
    """
    peak = max([*peaks, gemm_flops()])
    bound = peak / (2.0 * n * dim)
    exact = [(statistics.median(m.qps), m) for m in methods if not m.scann]
    lines = [f"compute bound of exact search: 2 x {n:,} x {dim} flop per query at "
             f"{peak / 1e9:.0f} GFLOP/s (this machine's best float32 matmul, measured) = "
             f"{bound:,.0f} QPS"]
    lines += [f"  {m.name}: {qps:,.0f} QPS = {qps / bound:.0%} of the bound" for qps, m in exact]
    best_qps, best = max(exact, key=lambda t: t[0])
    lines.append(f"exact baseline within 2x of the compute bound: "
                 f"{'met' if best_qps >= bound / 2 else 'not met'} ({best.name}, "
                 f"{bound / best_qps:.1f}x below it)")
    scann = [(statistics.median(m.qps), m) for m in methods if m.scann and m.recall >= min_recall]
    if scann:
        qps, m = max(scann, key=lambda t: t[0])
        lines.append(f"ScaNN's margin over the fastest exact search at recall@{K} >= {min_recall}: "
                     f"{qps / best_qps:.1f}x ({m.setting}: {qps:,.0f} QPS, recall@{K} "
                     f"{m.recall:.4f}, against {best.name} {best_qps:,.0f} QPS)")
    else:
        lines.append(f"ScaNN's margin over exact search: no setting reached recall@{K} "
                     f"{min_recall}")
    return "\n".join(lines)


def target_line(n: int, methods: list[Method], *, factor: float = 10.0,
                min_recall: float = 0.95) -> str:
    """Issue #8's check on ``n`` candidates from the measured rows."""
    base = max((statistics.median(m.qps), m.name) for m in methods if not m.scann)
    ok = [(statistics.median(m.qps), m) for m in methods if m.scann and m.recall >= min_recall]
    head = (f"ScaNN >= {factor:g}x brute-force QPS at recall@{K} >= {min_recall} "
            f"on {n:,} candidates: ")
    if not ok:
        return head + f"not met (no ScaNN setting reached recall@{K} {min_recall})"
    qps, best = max(ok, key=lambda t: t[0])
    verdict = "met" if qps >= factor * base[0] else "not met"
    return (head + f"{verdict} (best setting {best.setting}: {qps:,.0f} QPS = "
            f"{qps / base[0]:.1f}x {base[1]} {base[0]:,.0f} QPS, recall@{K} {best.recall:.4f})")


def _ints(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def _floats(text: str) -> list[float]:
    return [float(s) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_ints, default=[10_000, 100_000, 1_000_000],
                        help="candidate counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="only 10,000 and 100,000 candidates")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=100, help="single queries timed per round")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="batched searches repeat until this long, per method and round")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm / centre norm")
    parser.add_argument("--training-sample", type=int, default=100_000,
                        help="rows ScaNN trains its tree and codes on")
    parser.add_argument("--leaf-factors", type=_floats, default=[1.0, 2.0],
                        help="num_leaves = factor * sqrt(N), one index each")
    parser.add_argument("--search-fractions", type=_floats, default=[0.01, 0.03, 0.1, 0.3],
                        help="shares of the leaves searched per query")
    parser.add_argument("--reorder", type=_ints, default=[100],
                        help="AH candidates re-scored exactly")
    parser.add_argument("--no-tfrs", action="store_true", help="skip the TFRS BruteForce layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("gaussian", "two-tower"), default="gaussian",
                        help="gaussian mixture, or a run's trained tower vectors tiled with noise")
    parser.add_argument("--run-dir", default="runs/synthetic-default",
                        help="with --data two-tower: a run directory notebook 04 has written")
    parser.add_argument("--noise", type=float, default=0.5,
                        help="with --data two-tower: noise / each column's spread")
    parser.add_argument("--peer-python", default=None,
                        help="python of the peers' venv (make bench-peers): adds FAISS")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 100_000] or [10_000, 100_000]

    print(hardware_line())
    data = (f"the trained towers of {args.run_dir} tiled with noise {args.noise} x each "
            "column's spread" if args.data == "two-tower" else
            f"mixture of {args.clusters:,} gaussians in {DIM} dims, spread {args.spread}, "
            "L2-normalised")
    print(f"data: {data}, dot product; {args.queries:,} queries alike; "
          f"k={K}; {args.rounds} timed rounds (round-robin) after a warm-up; "
          f"single-query latency: median of {args.single} queries; "
          f"ScaNN batched search on {os.cpu_count()} threads, numpy on BLAS threads")
    peer = None
    if args.peer_python:
        from recsys_utils.bert_checkpoint import default_checkpoint_dir

        from _peers import Peer

        peer = Peer(args.peer_python, default_checkpoint_dir(), 128)
        print("peer: " + ", ".join(f"{k} {v}" for k, v in peer.info.items() if k != "ready"))
    results = {n: bench_size(n, args, peer) for n in args.sizes}
    if peer is not None:
        peer.close()
    print()
    target = 1_000_000
    if target in results:
        print(target_line(target, results[target]))
    else:
        print(f"ScaNN >= 10x brute-force QPS at recall@{K} >= 0.95 on {target:,} candidates: "
              f"not measured ({target:,} not in --sizes)")


if __name__ == "__main__":
    main()
