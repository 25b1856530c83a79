"""Training plumbing and evaluation of retrieval models (notebook 04; the model is
:mod:`recsys_utils.two_tower`): evaluation over the whole catalogue, seen items removed,
paired bootstrap comparisons, new-item exposure and the TFRS tutorial's protocol."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Any, Literal, TypeVar
from collections.abc import Callable, Iterable, Mapping, Sequence

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import metrics
from .callbacks import EpochClock
from .features import OOV_USER, QuerySet, RecData, build_features
from .profiles import RetrievalBudget
from .schema import DataError

__all__ = [
    "NewItemBoost", "RetrievalResult", "ValidationRecall", "best_by_validation",
    "evaluate_retrieval", "leave_one_out_history", "match_new_item_exposure",
    "new_item_exposure", "paired_comparison", "popularity", "rank_items",
    "recommend", "retrieval_table", "tfrs_protocol_metrics", "training_examples",
]

#: Features the query tower reads.
QUERY_KEYS = ("user", "history", "history_mask", "hour", "dow")
#: What :func:`best_by_validation` chooses among: a variant's name, a rate, ...
Key = TypeVar("Key")


def in_batches(fn: Callable[[dict[str, tf.Tensor]], Any], features: Mapping[str, np.ndarray],
               keys: Sequence[str], batch_size: int, empty: np.ndarray | None = None
               ) -> np.ndarray:
    """``fn({key: tensor})`` on consecutive ``batch_size``-row slices of ``features[keys]``,
    the outputs concatenated as numpy (``empty`` when there are no rows)."""
    out = [np.asarray(fn({k: tf.convert_to_tensor(np.asarray(features[k])[s:s + batch_size])
                          for k in keys})) for s in range(0, len(features[keys[0]]), batch_size)]
    return np.concatenate(out) if out or empty is None else empty


def catalogue(fn: Callable[[tf.Tensor], Any], n_items: int, batch_size: int) -> np.ndarray:
    """``(n_items, D)`` float32: ``fn`` of int32 item indices, ``batch_size`` at a time."""
    return in_batches(lambda b: fn(b["item"]), {"item": np.arange(n_items, dtype=np.int32)},
                      ("item",), batch_size).astype(np.float32)


@dataclasses.dataclass
class RetrievalResult:
    """A trained retrieval variant.

    Attributes:
        model: the :class:`~recsys_utils.two_tower.RetrievalModel` (``None`` for popularity).
        history: per-epoch training logs, and each epoch's wall time (``"epoch_seconds"``;
            the first includes tracing).
        item_probability: ``(n_items,)`` the log-Q sampling probabilities (training frequency).
        item_counts: ``(n_items,)`` training counts (popularity scores).
        user_ids: ``(n_users,)`` the user vocabulary it was trained with (row 0: OOV).
        trained_until: the last training timestamp it saw (a warm start trains on later ones).
    """

    variant: str
    model: Any
    history: dict[str, list[float]]
    train_seconds: float
    examples_per_second: float
    config: dict[str, Any]
    item_probability: np.ndarray
    item_counts: np.ndarray
    user_ids: np.ndarray | None = None
    trained_until: int | None = None

    @classmethod
    def of(cls, variant: str, model: Any, data: RecData, train: Mapping[str, np.ndarray],
           config: dict[str, Any]) -> RetrievalResult:
        """An untrained result around ``model``; :meth:`record` fills in its training."""
        counts = np.bincount(train["item"], minlength=data.n_items).astype(np.int64)
        return cls(variant, model, {}, 0.0, 0.0, config, data.item_probability, counts,
                   data.vocab.user_ids, int(data.examples["train"]["timestamp"].max()))

    def record(self, history: Mapping[str, list[float]], seconds: float,
               callbacks: Sequence[tf.keras.callbacks.Callback]) -> RetrievalResult:
        """Store a ``fit``'s logs and wall time, and what its callbacks measured."""
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
        if self.model is None:
            return np.log1p(self.item_counts.astype(np.float32))[:, None]
        return catalogue(self.model.candidate_embedding, len(self.item_counts), batch_size)

    def query_embeddings(self, features: Mapping[str, np.ndarray], batch_size: int = 4096
                         ) -> np.ndarray:
        """``(n, dim)`` float32 query embeddings of query features (each ``(n, ...)``)."""
        if self.model is None:
            return np.ones((len(features["user"]), 1), np.float32)
        return in_batches(self.model.query_embedding, features, QUERY_KEYS, batch_size,
                          np.zeros((0, 1), np.float32)).astype(np.float32)


def training_examples(data: RecData, train_history: str = "before") -> dict[str, np.ndarray]:
    """The training interactions as model inputs: the query features and ``item``, ``(N, ...)``.
    ``train_history``: ``"before"``, the user's items strictly before each example;
    ``"leave_one_out"``, the user's last training items minus the example's own item."""
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
    result.train_seconds = seconds = time.perf_counter() - started
    result.examples_per_second = len(train["item"]) / max(seconds, 1e-9)
    return result


class ValidationRecall(tf.keras.callbacks.Callback):
    """Early stopping on a validation :func:`evaluate_retrieval` ``metric`` (``"recall@50"``,
    ``"ndcg@10"``, ...), restoring the best weights."""

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
    """``(history, mask)`` ``(n, H)`` int32 (``-1`` where empty) and float32: the last ``H``
    training items of each example's user (``user``, ``item``: ``(n,)``), minus its own item."""
    history, mask = data.history_for(np.asarray(user), None)
    own = history == np.asarray(item)[:, None]
    return (np.where(own, -1, history).astype(np.int32),
            np.where(own, 0.0, mask).astype(np.float32))


def rank_items(query_embeddings: np.ndarray, item_embeddings: np.ndarray, k: int, *,
               exclude: Any = None, candidates: np.ndarray | None = None) -> np.ndarray:
    """Top-``k`` item indices ``(n_q, k)`` by dot product, ``-1``-padded. ``candidates`` (item
    indices) restricts the ranking to a subset, still returning catalogue indices;
    ``exclude`` is a ``(n_q, n_items)`` mask over the whole catalogue."""
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
    return np.pad(ranked, ((0, 0), (0, max(k - ranked.shape[1], 0))), constant_values=-1)


def _in_model_vocabulary(result: Any, data: RecData, queries: QuerySet) -> dict[str, np.ndarray]:
    """``queries``' features with each user's row in ``result``'s own user vocabulary (its
    ``user_ids``): a model trained on an earlier period knows fewer users, and those it has
    never seen get the out-of-vocabulary row."""
    known = getattr(result, "user_ids", None)
    if known is None or np.array_equal(known, data.vocab.user_ids):
        return queries.features
    row = {user: i for i, user in enumerate(np.asarray(known).astype(str)) if i != OOV_USER}
    users = np.array([row.get(user, OOV_USER) for user in queries.user_ids],
                     queries.features["user"].dtype)
    return {**queries.features, "user": users}


#: Seed of the item order that breaks ties in :func:`evaluate_retrieval` (one order for every
#: model, so paired comparisons break ties alike).
TIE_ORDER_SEED = 0


def evaluate_retrieval(result: RetrievalResult, data: RecData, split: str = "test",
                       ks: Sequence[int] = (10, 50, 100), exclude_seen: bool = True, *,
                       candidates: Literal["all", "cold"] = "all", per_query: bool = False
                       ) -> dict[str, Any] | pd.DataFrame:
    """Retrieval metrics of ``result`` on one split: each user of ``split`` queries with all
    their training history (training items removed with ``exclude_seen``); relevant = the
    user's items in the split.

    Args:
        split: ``"test"`` (warm items), ``"test_cold"``, or ``"validation"``.
        candidates: ``"all"`` ranks the whole catalogue (warm and cold items compete);
            ``"cold"`` only the cold items (lists shorter than ``max(ks)`` are padded).
            Equal scores are ordered by a fixed random order of the items
            (:data:`TIE_ORDER_SEED`), the same for every model.
        per_query: return the per-query DataFrame (for :func:`~recsys_utils.metrics.bootstrap_ci`).

    Returns:
        ``{"variant", "split", "candidates", "recall@K", "ndcg@K", "hit_rate@K", "mrr",
        "n_queries", "n_excluded"}``.
    """
    queries = data.queries(split)
    if candidates not in ("all", "cold"):
        raise DataError(f"candidates must be 'all' or 'cold', got {candidates!r}")
    pool = data.cold_items if candidates == "cold" else np.arange(data.n_items)
    if len(pool) == 0:
        raise DataError("there are no cold items to rank")
    # Ties go to one fixed random order of the items, not to the lower index: a model that
    # gives many items one score (popularity; an id model on new items) is not credited
    # with the order the catalogue happens to be numbered in.
    pool = np.random.default_rng(TIE_ORDER_SEED).permutation(pool)
    ranked = rank_items(result.query_embeddings(_in_model_vocabulary(result, data, queries)),
                        result.item_embeddings(), max(ks),
                        exclude=queries.exclude if exclude_seen else None, candidates=pool)
    out = metrics.retrieval_metrics(ranked, queries.relevant, ks=ks, per_query=per_query)
    if per_query:
        return out
    return {"variant": result.variant, "split": split, "candidates": candidates, **out}


def retrieval_table(results: Iterable[RetrievalResult], data: RecData,
                    ks: Sequence[int] = (10, 50, 100), *,
                    settings: Sequence[tuple[str, str]] = (
                        ("test", "all"), ("test_cold", "all"), ("test_cold", "cold")),
                    ) -> pd.DataFrame:
    """One row per (variant, split, candidate set), empty splits skipped, with training time
    and throughput (NaN for a model without, such as a :class:`NewItemBoost`)."""
    return pd.DataFrame([
        {**evaluate_retrieval(result, data, split, ks, candidates=pool),
         "train_seconds": getattr(result, "train_seconds", np.nan),
         "examples_per_second": getattr(result, "examples_per_second", np.nan)}
        for result in results for split, pool in settings
        if len(data.splits.get(split, ())) and (pool != "cold" or len(data.cold_items))])


def recommend(result: Any, data: RecData, user_ids: Sequence[str], k: int = 10, *,
              exclude_seen: bool = True) -> np.ndarray:
    """Top-``k`` item ids for each user id: ``(n_users, k)`` strings, ``""`` where no item is
    left. ``result``: anything with ``query_embeddings`` / ``item_embeddings``; unknown users
    get the OOV user and an empty history."""
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    features = data.user_features(np.asarray(user_ids).astype(str))
    exclude = data.train_matrix[features["user"]] if exclude_seen else None
    ranked = rank_items(result.query_embeddings(features), result.item_embeddings(), k,
                        exclude=exclude)
    ids = data.vocab.item_ids[np.maximum(ranked, 0)]
    return np.where(ranked >= 0, ids, "")


def best_by_validation(models: Mapping[Key, Any], data: RecData, metric: str = "ndcg@10") -> Key:
    """The key (a name, a rate, ...) of the model (anything :func:`evaluate_retrieval` scores)
    with the best ``metric`` on the validation users; the first wins a tie."""
    if not models:
        raise DataError("best_by_validation needs at least one model")
    k = int(metric.partition("@")[2] or 10)
    values = {name: float(evaluate_retrieval(model, data, "validation", ks=(k,))[metric])
              for name, model in models.items()}
    return max(values, key=values.get)


def paired_comparison(a: Any, b: Any, data: RecData, split: str = "test",
                      metric: str = "ndcg@10", *, candidates: str = "all",
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``a`` against ``b`` on the same users (:func:`evaluate_retrieval`), with a 95% bootstrap
    interval of the per-user difference of ``metric`` (:func:`.metrics.paired_difference`). An
    interval containing 0 is a tie.

    Returns:
        ``{"a", "b", "split", "metric", "value_a", "value_b", "difference",
        "low", "high", "n_queries"}``.
    """
    k = int(metric.partition("@")[2] or 10)
    per_user = [evaluate_retrieval(model, data, split, ks=(k,), candidates=candidates,
                                   per_query=True)[metric] for model in (a, b)]
    return metrics.paired_difference(a.variant, b.variant, split, metric, *per_user,
                                     n_boot=n_boot, seed=seed)


class NewItemBoost:
    """``model`` (anything with ``query_embeddings`` / ``item_embeddings``) with the score of
    every item unseen in training (``~data.warm_items``) raised by ``shift``: still one dot
    product (queries get a trailing 1, items ``shift`` if new else 0), one index."""

    def __init__(self, model: Any, data: RecData, shift: float, *, variant: str | None = None
                 ) -> None:
        self.model = model
        self.shift = float(shift)
        self.variant = variant or f"{model.variant} (new items {self.shift:+.2f})"
        self._new = ~data.warm_items

    def query_embeddings(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return _with_one(self.model.query_embeddings(features))

    def item_embeddings(self) -> np.ndarray:
        return _with_shift(self.model.item_embeddings(), self._new, self.shift)


def _with_one(query: np.ndarray) -> np.ndarray:
    return np.concatenate([query, np.ones((len(query), 1), np.float32)], axis=1)


def _with_shift(items: np.ndarray, new: np.ndarray, shift: float) -> np.ndarray:
    """Items with a last column of ``shift`` where ``new`` (else 0), against queries' 1."""
    return np.concatenate([items, np.where(new, shift, 0.0).astype(np.float32)[:, None]], axis=1)


def _exposure(model: Any, data: RecData, split: str, k: int) -> Callable[[float], float]:
    """``shift`` -> mean share of new items in each ``split`` user's top ``k`` (seen items
    removed), ``shift`` added to the new items' scores."""
    queries = data.queries(split)
    query, items = model.query_embeddings(queries.features), model.item_embeddings()
    new = ~data.warm_items

    def share(shift: float = 0.0) -> float:
        q, i = (_with_one(query), _with_shift(items, new, shift)) if shift else (query, items)
        ranked = rank_items(q, i, k, exclude=queries.exclude)
        valid = ranked >= 0
        hits = new[np.maximum(ranked, 0)] & valid
        return float(np.mean(hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)))
    return share


def new_item_exposure(model: Any, data: RecData, split: str = "validation", k: int = 50) -> float:
    """Mean share of new items (unseen in training) in the users' top ``k``, seen items
    removed; reads no labels of ``split``, only its users."""
    return _exposure(model, data, split, k)()


def match_new_item_exposure(model: Any, data: RecData, target: float, *,
                            split: str = "validation", k: int = 50, tolerance: float = 0.002,
                            max_shift: float = 20.0) -> NewItemBoost:
    """``model`` boosted (:class:`NewItemBoost`) so that its :func:`new_item_exposure` on
    ``split`` matches ``target``, by bisection on the shift; raises if out of reach."""
    if not 0.0 <= target <= 1.0:
        raise DataError(f"target exposure must be a share in [0, 1], got {target}")
    exposure = _exposure(model, data, split, k)
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


def tfrs_protocol_metrics(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame,
                          budgets: Mapping[str, tuple[str, RetrievalBudget]], *,
                          item_content: np.ndarray | None = None, history_length: int = 0,
                          seed: int = 42, ks: Sequence[int] = (1, 5, 10, 50, 100),
                          progress: bool = True) -> pd.DataFrame:
    """Top-K accuracy under the TFRS basic-retrieval tutorial's protocol: each model of
    ``budgets`` (label -> (variant, budget) for :func:`~recsys_utils.two_tower.train_retrieval`;
    no ``early_stopping``: no validation split) trains on ``train`` and is scored on
    every rating of ``test`` by a ``tfrs.metrics.FactorizedTopK`` over *all* items (no
    seen-item removal), querying with the user's last ``history_length`` training ratings.

    Returns:
        DataFrame indexed by label: ``top_K_accuracy`` columns and ``train_seconds``.
    """
    from .two_tower import train_retrieval  # the model module imports this one

    feedback = "rating" if "rating" in train else "event"
    prepared = SimpleNamespace(items=items, feedback=feedback, cold_items=None,
                               splits={"train": train, "test": test})
    data = build_features(prepared, history_length=history_length, seed=seed)
    rows = {}
    for label, (variant, budget) in budgets.items():
        if budget.early_stopping:
            raise DataError("the TFRS protocol has no validation split: set early_stopping=False")
        result = train_retrieval(variant, data, item_content, budget, seed=seed,
                                 progress=progress)
        candidates = result.item_embeddings()
        index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
        index.index(tf.constant(candidates), tf.range(data.n_items, dtype=tf.int32))
        examples = dict(data.examples["test"])
        # Every test rating asks with the user's whole training history, as a served query would.
        examples["history"], examples["history_mask"] = data.history_for(examples["user"], None)
        queries = result.query_embeddings(examples)
        metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
        for start in range(0, len(queries), 4096):
            batch = examples["item"][start:start + 4096]
            metric.update_state(tf.constant(queries[start:start + 4096]),
                                tf.constant(candidates[batch]),
                                true_candidate_ids=tf.constant(batch))
        rows[label] = {**{f"top_{k}_accuracy": float(v) for k, v in zip(ks, metric.result())},
                       "train_seconds": result.train_seconds}
    return pd.DataFrame.from_dict(rows, orient="index")
