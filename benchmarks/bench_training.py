"""Benchmark: two-tower retrieval training throughput (examples/s) as the world grows.

    python benchmarks/bench_training.py [--worlds 1000x1000,3000x3000,10000x6000] [--epochs 4]

Generates three synthetic worlds (``USERSxITEMS``: ``recsys_utils.synthetic``,
split as notebook 01 splits them, features as notebook 04 builds them with
``recsys_utils.features.build_features``; the middle one is the ``default``
profile's size) and trains the ``id`` and ``fused`` variants of
``recsys_utils.two_tower.train_retrieval`` on each with the default profile's
retrieval budget (``recsys_utils.profiles``: embedding size, optimizer,
learning rate, log-Q, history length and batch size; ``--batch-size`` and
``--learning-rate`` override the last two), at one fixed batch size for every
world and without early stopping. Notebook 04 instead grows the batch on
worlds with more than ``max_steps_per_epoch`` batches
(``features.scaled_budget``); the fixed batch keeps the worlds comparable.
The ``fused`` variant's content vectors are random, 64-dimensional (no
notebook needs to have run; the tower's cost does not depend on what the
vectors mean).

Examples/s is timed per epoch (``history["epoch_seconds"]``); the first epoch (graph
tracing) is left out and the table gives the median over the later epochs
with the min-max spread, next to the first epoch's seconds, the
``RetrievalResult.examples_per_second`` of the whole fit (first epoch
included) and, per world, the rate of the input pipeline alone (the same
``tf.data`` pipeline iterated without a model, median of the passes after
the first).
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np

import recsys_utils  # noqa: F401 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
from recsys_utils import features, profiles, retrieval, splits, synthetic
from recsys_utils import two_tower
from recsys_utils.schema import DataError

from _common import hardware_line, loadavg

CONTENT_DIM = 64


def parse_worlds(text: str) -> list[tuple[int, int]]:
    """``"1000x1000,3000x3000"`` -> ``[(users, items), ...]``."""
    out = []
    for part in text.split(","):
        try:
            users, items = (int(float(v)) for v in part.lower().split("x"))
        except ValueError:
            raise DataError(f"worlds are USERSxITEMS separated by commas, got {part!r}") from None
        if users < 10 or items < 20:
            raise DataError(f"a world needs >= 10 users and >= 20 items, got {part!r}")
        out.append((users, items))
    return out


def make_world(n_users: int, n_items: int, *, seed: int = 42, history_length: int = 20,
               cold_item_fraction: float = 0.1) -> tuple[features.RecData, np.ndarray]:
    """A synthetic world as notebook 04 sees it, plus ``(n_items, 64)`` random content vectors."""
    dataset = synthetic.generate(n_items=n_items, n_users=n_users, seed=seed)
    split = splits.split_interactions(dataset.interactions, cold_item_fraction=cold_item_fraction,
                                      seed=seed)
    prepared = SimpleNamespace(items=dataset.items, feedback=dataset.feedback,
                               cold_items=split.cold_items, splits=split.as_dict())
    data = features.build_features(prepared, history_length=history_length, seed=seed)
    content = np.random.default_rng(seed).standard_normal((n_items, CONTENT_DIM)).astype(np.float32)
    return data, content


def profile_budget(budget: profiles.RetrievalBudget, epochs: int, batch_size: int | None = None,
                   learning_rate: float | None = None) -> profiles.RetrievalBudget:
    """A profile's retrieval budget with the benchmark's epochs and no early stopping;
    ``batch_size`` and ``learning_rate`` replace the profile's when given (DataError if
    they are not positive)."""
    changes = {"batch_size": batch_size, "learning_rate": learning_rate}
    return budget.replace(epochs=epochs, early_stopping=False,
                          **{k: v for k, v in changes.items() if v is not None})


def pipeline_seconds(data: features.RecData, batch_size: int, *, seed: int = 42,
                     passes: int = 3) -> list[float]:
    """Seconds per pass over ``train_retrieval``'s input pipeline alone (no model).

    The same ``tf.data`` pipeline ``train_retrieval`` fits on (``features.to_dataset``
    of the query keys and the item: shuffle buffer of the whole training set,
    batch, prefetch), iterated ``passes`` times in Python.
    """
    train = data.examples["train"]
    dataset = features.to_dataset({k: train[k] for k in (*retrieval.QUERY_KEYS, "item")},
                                  batch_size, seed=seed)
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        for _batch in dataset:
            pass
        seconds.append(time.perf_counter() - start)
    return seconds


def throughput(n_examples: int, epoch_seconds: list[float], skip: int = 1
               ) -> tuple[float, float, float]:
    """``(median, min, max)`` examples/s over the epochs after the first ``skip``."""
    later = epoch_seconds[skip:]
    if not later:
        raise DataError(f"need more than {skip} epoch(s) to leave out the first, "
                        f"got {len(epoch_seconds)}")
    rates = [n_examples / s for s in later]
    return statistics.median(rates), min(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=parse_worlds,
                        default=[(1000, 1000), (3000, 3000), (10000, 6000)],
                        help="USERSxITEMS, comma-separated")
    parser.add_argument("--variants", default="id,fused")
    parser.add_argument("--epochs", type=int, default=4, help="the first is left out")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the default profile's retrieval batch size")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: the default profile's retrieval learning rate")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch (tracing) is left out")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    print(hardware_line())
    settings = profiles.get_profile("default").retrieval
    budget = profile_budget(settings.budget, args.epochs, args.batch_size, args.learning_rate)
    args.batch_size = budget.batch_size
    print(f"budget (default profile unless overridden, no early stopping): {budget}, "
          f"batch size {budget.batch_size} (profile: "
          f"{settings.budget.batch_size}), history {settings.history_length}; fused "
          f"content: random {CONTENT_DIM}-d vectors; no tf.distribute strategy (one CPU device)")
    rows = []
    load_before = loadavg()
    for n_users, n_items in args.worlds:
        start = time.perf_counter()
        data, content = make_world(n_users, n_items, seed=args.seed,
                                   history_length=settings.history_length)
        n_train = len(data.examples["train"]["item"])
        print(f"world {n_users:,} users x {n_items:,} items: {n_train:,} training interactions "
              f"(built in {time.perf_counter() - start:.1f} s)", flush=True)
        pipeline, _, _ = throughput(n_train, pipeline_seconds(data, args.batch_size, seed=args.seed,
                                                              passes=args.epochs))
        print(f"  input pipeline alone: {pipeline:,.0f} examples/s (passes 2-{args.epochs})",
              flush=True)
        for variant in variants:
            result = two_tower.train_retrieval(
                variant, data, content if variant in ("content", "fused") else None, budget,
                seed=args.seed, progress=False)
            seconds = result.history["epoch_seconds"]
            median, low, high = throughput(n_train, seconds)
            rows.append(dict(users=n_users, items=n_items, n_train=n_train, variant=variant,
                             median=median, low=low, high=high, first=seconds[0],
                             overall=result.examples_per_second, pipeline=pipeline,
                             load=loadavg(),
                             steps=-(-n_train // args.batch_size)))
            print(f"  {variant}: {median:,.0f} examples/s (epochs 2-{len(seconds)}), "
                  f"first epoch {seconds[0]:.1f} s", flush=True)
    print(f"1-min load average before/after: {load_before} / {loadavg()}")
    print()
    print(f"| users | items | training interactions | variant | batch size | steps/epoch | "
          f"examples/s, epochs 2-{args.epochs} (median) | spread (min-max) | first epoch s | "
          f"examples/s incl. first epoch | input pipeline alone, examples/s | 1-min load after |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['users']:,} | {r['items']:,} | {r['n_train']:,} | {r['variant']} | "
              f"{args.batch_size} | {r['steps']} | {r['median']:,.0f} | "
              f"{r['low']:,.0f}-{r['high']:,.0f} | {r['first']:.1f} | {r['overall']:,.0f} | "
              f"{r['pipeline']:,.0f} | {r['load']} |")


if __name__ == "__main__":
    main()
