"""Training plumbing and evaluation of retrieval models (notebook 04).

The model itself (towers, ``tfrs.Model``, ``train_retrieval``) is written in
notebook 04 and generated into :mod:`recsys_utils.two_tower`. This module holds
what every model shares: the training examples (:func:`training_examples`),
the trained result (:class:`RetrievalResult`) and early stopping
(:class:`ValidationRecall`); evaluation over the whole catalogue with seen
items removed (:func:`evaluate_retrieval`, :func:`retrieval_table`), warm
(``test``) and cold-start (``test_cold``) apart; paired bootstrap comparisons;
new-item exposure (:class:`NewItemBoost`); and the TFRS tutorial's protocol
(:func:`tfrs_protocol_metrics`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal
from collections.abc import Iterable, Mapping, Sequence

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import metrics
from .callbacks import EpochClock
from .features import RecData, build_features
from .schema import DataError

__all__ = [
    "NewItemBoost",
    "RetrievalResult",
    "ValidationRecall",
    "best_by_validation",
    "evaluate_retrieval",
    "leave_one_out_history",
    "match_new_item_exposure",
    "new_item_exposure",
    "paired_comparison",
    "popularity",
    "rank_items",
    "recommend",
    "retrieval_table",
    "tfrs_protocol_metrics",
    "training_examples",
]

#: Features the query tower reads.
QUERY_KEYS = ("user", "history", "history_mask", "hour", "dow")


# ------------------------------------------------------------------------------ training


@dataclasses.dataclass
class RetrievalResult:
    """A trained retrieval variant.

    Attributes:
        variant: the variant's name (``popularity``, ``id``, ``fused``...).
        model: the :class:`~recsys_utils.two_tower.RetrievalModel` (``None`` for
            popularity).
        history: per-epoch training logs (``{"loss": [...], ...}``) and each
            epoch's wall time (``"epoch_seconds"``; the first includes tracing).
        train_seconds: wall time of ``fit``.
        examples_per_second: training examples processed per second.
        config: the training arguments.
        item_probability: ``(n_items,)`` the sampling probabilities used for
            the log-Q correction (training frequency).
        item_counts: ``(n_items,)`` training counts (popularity scores).
    """

    variant: str
    model: Any
    history: dict[str, list[float]]
    train_seconds: float
    examples_per_second: float
    config: dict[str, Any]
    item_probability: np.ndarray
    item_counts: np.ndarray

    @classmethod
    def of(cls, variant: str, model: Any, data: RecData, train: Mapping[str, np.ndarray],
           config: dict[str, Any]) -> RetrievalResult:
        """An untrained result around ``model``; :meth:`record` fills in its training."""
        counts = np.bincount(train["item"], minlength=data.n_items).astype(np.int64)
        return cls(variant, model, {}, 0.0, 0.0, config, data.item_probability, counts)

    def record(self, history: Mapping[str, list[float]], seconds: float,
               callbacks: Sequence[tf.keras.callbacks.Callback]) -> RetrievalResult:
        """Store a ``fit``'s per-epoch logs and wall time, and what its callbacks measured
        (:class:`~recsys_utils.callbacks.EpochClock`, :class:`ValidationRecall`)."""
        self.history = {k: [float(x) for x in v] for k, v in history.items()}
        self.train_seconds = seconds
        epochs_run = len(self.history.get("loss", ()))
        self.examples_per_second = epochs_run * int(self.item_counts.sum()) / max(seconds, 1e-9)
        for callback in callbacks:
            if isinstance(callback, EpochClock):
                self.history["epoch_seconds"] = callback.seconds
            if isinstance(callback, ValidationRecall):
                self.history[f"val_{callback.metric}"] = callback.curve
                self.config["best_epoch"] = callback.best_epoch
        return self

    def item_embeddings(self, batch_size: int = 4096) -> np.ndarray:
        """``(n_items, dim)`` float32 candidate embeddings of the whole catalogue."""
        n = len(self.item_counts)
        if self.model is None:
            return np.log1p(self.item_counts.astype(np.float32))[:, None]
        out = [self.model.candidate_embedding(tf.range(s, min(s + batch_size, n))).numpy()
               for s in range(0, n, batch_size)]
        return np.concatenate(out).astype(np.float32)

    def query_embeddings(self, features: Mapping[str, np.ndarray], batch_size: int = 4096
                         ) -> np.ndarray:
        """``(n, dim)`` float32 query embeddings of query features (each ``(n, ...)``)."""
        n = len(features["user"])
        if self.model is None:
            return np.ones((n, 1), np.float32)
        out = []
        for s in range(0, n, batch_size):
            batch = {k: tf.convert_to_tensor(np.asarray(features[k])[s:s + batch_size])
                     for k in QUERY_KEYS}
            out.append(self.model.query_embedding(batch).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


def training_examples(data: RecData, train_history: str = "before") -> dict[str, np.ndarray]:
    """The training interactions as model inputs: the query features and ``item``, ``(N, ...)``.

    ``train_history``: ``"before"``, each example's history is the user's items strictly
    before it (next-item prediction); ``"leave_one_out"``, the user's last training items
    minus the example's own item, which is what an evaluation query sees.
    """
    train = {k: data.examples["train"][k] for k in (*QUERY_KEYS, "item")}
    if train_history == "leave_one_out":
        train["history"], train["history_mask"] = leave_one_out_history(data, train["user"],
                                                                        train["item"])
    elif train_history != "before":
        raise DataError(f"train_history must be 'before' or 'leave_one_out', got {train_history!r}")
    if len(train["item"]) == 0:
        raise DataError("no training examples")
    return train


def popularity(data: RecData, train: Mapping[str, np.ndarray], config: dict[str, Any]
               ) -> RetrievalResult:
    """The ``popularity`` variant: no model, every user gets ``log(1 + training count)``."""
    started = time.perf_counter()
    result = RetrievalResult.of("popularity", None, data, train, config)
    seconds = time.perf_counter() - started
    result.train_seconds = seconds
    result.examples_per_second = len(train["item"]) / max(seconds, 1e-9)
    return result


class ValidationRecall(tf.keras.callbacks.Callback):
    """Early stopping on a validation retrieval metric with best-weights restore.

    After each epoch the validation users are ranked over the whole catalogue
    (seen items removed), exactly as :func:`evaluate_retrieval` does, and
    ``metric`` (``"recall@50"``, ``"ndcg@10"``, ...) is read.
    """

    def __init__(self, result: RetrievalResult, data: RecData, *, patience: int = 2,
                 metric: str = "recall@50") -> None:
        super().__init__()
        name, _, k = metric.partition("@")
        if name not in ("recall", "ndcg", "hit_rate") or not k.isdigit():
            raise DataError(f"stopping metric must look like 'recall@50' or 'ndcg@10', "
                            f"got {metric!r}")
        self.result, self.data, self.patience = result, data, patience
        self.metric, self.k = metric, int(k)
        self.curve: list[float] = []
        self.best, self.best_epoch, self._best_weights = -1.0, 0, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float(evaluate_retrieval(self.result, self.data, "validation",
                                         ks=(self.k,))[self.metric])
        self.curve.append(value)
        if logs is not None:
            logs[f"val_{self.metric}"] = value
        if value > self.best:
            self.best, self.best_epoch = value, epoch + 1
            self._best_weights = self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


def leave_one_out_history(data: RecData, user: np.ndarray, item: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Each example's query history: the user's last ``H`` training items, minus its own item.

    Args:
        user, item: ``(n,)`` the training examples' user and item indices.

    Returns:
        ``(history, mask)``: ``(n, H)`` int32 (``-1`` where empty) and float32.
    """
    history, mask = data.history_for(np.asarray(user), None)
    own = history == np.asarray(item)[:, None]
    return (np.where(own, -1, history).astype(np.int32),
            np.where(own, 0.0, mask).astype(np.float32))


# ------------------------------------------------------------------------------ evaluation


def _pad(ranked: np.ndarray, length: int) -> np.ndarray:
    if ranked.shape[1] >= length:
        return ranked
    pad = np.full((len(ranked), length - ranked.shape[1]), -1, dtype=ranked.dtype)
    return np.concatenate([ranked, pad], axis=1)


def rank_items(
    query_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    k: int,
    *,
    exclude: Any = None,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Top-``k`` item indices ``(n_q, k)`` by dot product, ``-1``-padded.

    ``candidates`` (item indices) restricts the ranking to a subset of the
    catalogue; returned indices are still catalogue indices. ``exclude`` is a
    ``(n_q, n_items)`` mask over the whole catalogue.
    """
    if candidates is not None:
        candidates = np.asarray(candidates, dtype=np.int64)
        item_embeddings = item_embeddings[candidates]
        if exclude is not None:
            exclude = exclude[:, candidates]
    k_eff = min(k, len(item_embeddings))
    ranked, _ = metrics.brute_force_top_k(query_embeddings, item_embeddings, k_eff,
                                          exclude=exclude)
    if candidates is not None:
        ranked = np.where(ranked >= 0, candidates[np.maximum(ranked, 0)], -1)
    return _pad(ranked, k)


def evaluate_retrieval(
    result: RetrievalResult,
    data: RecData,
    split: str = "test",
    ks: Sequence[int] = (10, 50, 100),
    exclude_seen: bool = True,
    *,
    candidates: Literal["all", "cold"] = "all",
    per_query: bool = False,
) -> dict[str, Any] | pd.DataFrame:
    """Retrieval metrics of ``result`` on one split, ranking over the catalogue.

    For each user of ``split``: query embedding from all their training
    history, dot product with every candidate's embedding, top ``max(ks)``
    (:func:`recsys_utils.metrics.brute_force_top_k`; with ``exclude_seen`` the
    user's training items are removed first), relevant = the user's items in
    the split, metrics from :func:`recsys_utils.metrics.retrieval_metrics`.

    Args:
        split: ``"test"`` (warm items), ``"test_cold"``, or ``"validation"``.
        candidates: ``"all"`` ranks the whole catalogue (warm and cold items
            compete: the realistic, hard test); ``"cold"`` ranks only the cold
            items (relevant items outside that set cannot be found). A list
            shorter than ``max(ks)`` is padded with "no item".
        per_query: return the per-query DataFrame (for
            :func:`~recsys_utils.metrics.bootstrap_ci`).

    Returns:
        ``{"variant", "split", "candidates", "recall@10", ..., "ndcg@K",
        "hit_rate@K", "mrr", "n_queries", "n_excluded"}``.
    """
    queries = data.queries(split)
    q = result.query_embeddings(queries.features)
    items = result.item_embeddings()
    pool = None
    if candidates == "cold":
        pool = data.cold_items
        if len(pool) == 0:
            raise DataError("there are no cold items to rank")
    elif candidates != "all":
        raise DataError(f"candidates must be 'all' or 'cold', got {candidates!r}")
    ranked = rank_items(q, items, max(ks), exclude=queries.exclude if exclude_seen else None,
                        candidates=pool)
    out = metrics.retrieval_metrics(ranked, queries.relevant, ks=ks, per_query=per_query)
    if per_query:
        return out
    return {"variant": result.variant, "split": split, "candidates": candidates, **out}


def retrieval_table(
    results: Iterable[RetrievalResult],
    data: RecData,
    ks: Sequence[int] = (10, 50, 100),
    *,
    settings: Sequence[tuple[str, str]] = (("test", "all"), ("test_cold", "all"),
                                           ("test_cold", "cold")),
) -> pd.DataFrame:
    """One row per (variant, split, candidate set): the notebook's results table.

    Splits that are empty in ``data`` are skipped. Training time and
    throughput are added as columns (NaN for a model that has none, such as
    a :class:`NewItemBoost`).
    """
    rows = []
    for result in results:
        for split, pool in settings:
            if len(data.splits.get(split, ())) == 0 or (pool == "cold" and not len(data.cold_items)):
                continue
            row = evaluate_retrieval(result, data, split, ks, candidates=pool)
            row["train_seconds"] = getattr(result, "train_seconds", np.nan)
            row["examples_per_second"] = getattr(result, "examples_per_second", np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def recommend(result: Any, data: RecData, user_ids: Sequence[str], k: int = 10, *,
              exclude_seen: bool = True) -> np.ndarray:
    """Top-``k`` item ids for each user id: ``(n_users, k)`` strings, ``""`` where no item is left.

    ``result``: a trained :class:`RetrievalResult` (or anything with
    ``query_embeddings`` / ``item_embeddings``). Each query is the user's
    training history; an unknown user gets the out-of-vocabulary user and an
    empty history. With ``exclude_seen`` the user's training items are left out.
    """
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    features = data.user_features(np.asarray(user_ids).astype(str))
    exclude = data.train_matrix[features["user"]] if exclude_seen else None
    ranked = rank_items(result.query_embeddings(features), result.item_embeddings(), k,
                        exclude=exclude)
    ids = data.vocab.item_ids[np.maximum(ranked, 0)]
    return np.where(ranked >= 0, ids, "")


def best_by_validation(models: Mapping[str, Any], data: RecData, metric: str = "ndcg@10") -> str:
    """The name of the model with the best ``metric`` on the validation users.

    ``models``: name -> anything :func:`evaluate_retrieval` scores (a
    :class:`RetrievalResult` or a :class:`~recsys_utils.baselines.Baseline`).
    The first name wins a tie. Test users are never looked at.
    """
    if not models:
        raise DataError("best_by_validation needs at least one model")
    k = int(metric.partition("@")[2] or 10)
    values = {name: float(evaluate_retrieval(model, data, "validation", ks=(k,))[metric])
              for name, model in models.items()}
    return max(values, key=values.get)


def paired_comparison(a: Any, b: Any, data: RecData, split: str = "test",
                      metric: str = "ndcg@10", *, candidates: str = "all",
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``a`` against ``b`` on the same users, with a 95% bootstrap interval of the difference.

    Both are ranked over the catalogue by :func:`evaluate_retrieval`; the
    per-user differences of ``metric`` are resampled over users
    (:func:`recsys_utils.metrics.bootstrap_ci`). An interval containing 0 is a tie.

    Returns:
        ``{"a", "b", "split", "metric", "value_a", "value_b", "difference",
        "low", "high", "n_queries"}``.
    """
    k = int(metric.partition("@")[2] or 10)
    per_user = [evaluate_retrieval(model, data, split, ks=(k,), candidates=candidates,
                                   per_query=True)[metric] for model in (a, b)]
    difference = (per_user[0] - per_user[1]).to_numpy()
    low, high = metrics.bootstrap_ci(difference, n_boot=n_boot, seed=seed)
    return {"a": a.variant, "b": b.variant, "split": split, "metric": metric,
            "value_a": float(per_user[0].mean()), "value_b": float(per_user[1].mean()),
            "difference": float(difference.mean()), "low": low, "high": high,
            "n_queries": int(len(difference))}


# ------------------------------------------------------------------------------ new items


class NewItemBoost:
    """``model`` with the score of every item unseen in training raised by ``shift``.

    How far to promote new items is a choice, not something the training data
    can teach: every new item has the same unknown-item bias, and raising it
    moves new items up every list at the cost of old ones. The boosted score
    is still one dot product (queries get a trailing 1, items ``shift`` if new
    else 0), so it serves from the same index.

    Args:
        model: anything with ``query_embeddings(features)`` and
            ``item_embeddings()`` (a :class:`RetrievalResult`, a baseline).
        data: gives ``warm_items``; the others are "new".
        shift: added to every new item's score.
    """

    def __init__(self, model: Any, data: RecData, shift: float, *, variant: str | None = None
                 ) -> None:
        self.model = model
        self.shift = float(shift)
        self.variant = variant or f"{model.variant} (new items {self.shift:+.2f})"
        self._new = ~data.warm_items

    def query_embeddings(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return _shift_columns(self.model.query_embeddings(features), None, self._new, self.shift)[0]

    def item_embeddings(self) -> np.ndarray:
        return _shift_columns(None, self.model.item_embeddings(), self._new, self.shift)[1]


def _shift_columns(query: np.ndarray | None, items: np.ndarray | None, new: np.ndarray,
                   shift: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Queries with a trailing 1 and items with ``shift`` where ``new`` (else 0): one dot product."""
    if query is not None:
        query = np.concatenate([query, np.ones((len(query), 1), np.float32)], axis=1)
    if items is not None:
        items = np.concatenate([items, np.where(new, shift, 0.0).astype(np.float32)[:, None]],
                               axis=1)
    return query, items


def new_item_exposure(model: Any, data: RecData, split: str = "validation", k: int = 50) -> float:
    """Mean share of new items (unseen in training) in the users' top ``k``, seen items removed.

    Reads only the users of ``split`` and their training histories, no labels:
    an exposure budget that can be matched on validation users without
    looking at which new items anyone picked.
    """
    queries = data.queries(split)
    return _new_share(model.query_embeddings(queries.features), model.item_embeddings(),
                      queries.exclude, ~data.warm_items, k)


def _new_share(query: np.ndarray, items: np.ndarray, exclude: Any, new: np.ndarray, k: int,
               shift: float = 0.0) -> float:
    """Mean share of ``new`` items in each query's top ``k`` with ``shift`` added to their scores."""
    if shift:
        query, items = _shift_columns(query, items, new, shift)
    ranked = rank_items(query, items, k, exclude=exclude)
    valid = ranked >= 0
    hits = new[np.maximum(ranked, 0)] & valid
    return float(np.mean(hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)))


def match_new_item_exposure(model: Any, data: RecData, target: float, *,
                            split: str = "validation", k: int = 50, tolerance: float = 0.002,
                            max_shift: float = 20.0) -> NewItemBoost:
    """``model`` boosted (:class:`NewItemBoost`) so that its new-item exposure
    (:func:`new_item_exposure` on ``split``) matches ``target``: two models
    compared at the same share of slots given to new items. Bisection on the
    shift (exposure grows with it); raises if ``target`` is out of reach."""
    if not 0.0 <= target <= 1.0:
        raise DataError(f"target exposure must be a share in [0, 1], got {target}")
    queries = data.queries(split)
    query, items = model.query_embeddings(queries.features), model.item_embeddings()
    new = ~data.warm_items

    def exposure(shift: float) -> float:
        return _new_share(query, items, queries.exclude, new, k, shift)

    low, high = -max_shift, max_shift
    if not exposure(low) <= target <= exposure(high):
        raise DataError(f"no shift within +-{max_shift} gives {model.variant} a new-item "
                        f"exposure of {target:.3f} on {split} (top {k})")
    for _ in range(40):
        middle = (low + high) / 2
        share = exposure(middle)
        if abs(share - target) <= tolerance:
            return NewItemBoost(model, data, middle)
        low, high = (middle, high) if share < target else (low, middle)
    return NewItemBoost(model, data, high)


# ------------------------------------------------------------------------------ TFRS protocol


def tfrs_protocol_metrics(
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
    budgets: Mapping[str, Mapping[str, Any]],
    *,
    item_content: np.ndarray | None = None,
    history_length: int = 0,
    seed: int = 42,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    progress: bool = True,
) -> pd.DataFrame:
    """Top-K accuracy under the TFRS basic-retrieval tutorial's protocol.

    Train each model of ``budgets`` on ``train`` (the tutorial's 80,000
    ratings, :func:`recsys_utils.data.tfrs_protocol_split`), then
    ``model.evaluate`` every rating of ``test`` with a
    ``tfrs.metrics.FactorizedTopK`` metric over *all* items (no seen-item
    removal, as in the tutorial).

    Args:
        budgets: label -> :func:`~recsys_utils.two_tower.train_retrieval` keywords, ``variant``
            included (e.g. ``{"id": dict(variant="id", epochs=3, ...)}``).
            There is no validation split: ``early_stopping`` is refused.
        history_length: ``H`` of the queries' history (the user's training
            ratings; a random split has no time order, so the history is a bag).

    Returns:
        DataFrame indexed by label with ``top_K_accuracy`` columns (the share of
        test ratings whose item is in the user's top K) and ``train_seconds``.
    """
    from types import SimpleNamespace

    from .two_tower import train_retrieval  # the model module imports this one

    feedback = "rating" if "rating" in train else "event"
    prepared = SimpleNamespace(items=items, feedback=feedback, cold_items=None,
                               splits={"train": train, "test": test})
    data = build_features(prepared, history_length=history_length, seed=seed)
    rows = {}
    for label, budget in budgets.items():
        budget = dict(budget)
        if budget.get("early_stopping"):
            raise DataError("the TFRS protocol has no validation split: set early_stopping=False")
        variant = budget.pop("variant")
        result = train_retrieval(variant, data, item_content, seed=seed, progress=progress,
                                 **budget)
        model = result.model
        index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
        index.index(tf.constant(result.item_embeddings()), tf.range(data.n_items, dtype=tf.int32))
        examples = dict(data.examples["test"])
        # Every test rating asks with the user's whole training history, as a served query would.
        examples["history"], examples["history_mask"] = data.history_for(examples["user"], None)
        queries, candidates = result.query_embeddings(examples), result.item_embeddings()
        metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
        for start in range(0, len(queries), 4096):
            batch = examples["item"][start:start + 4096]
            metric.update_state(tf.constant(queries[start:start + 4096]),
                                tf.constant(candidates[batch]),
                                true_candidate_ids=tf.constant(batch))
        row = {f"top_{k}_accuracy": float(v) for k, v in zip(ks, metric.result())}
        row["train_seconds"] = result.train_seconds
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")
