"""Ranking data, evaluation and the retrieve-then-rank chain (notebook 05; the ranker is
:mod:`recsys_utils.dcn_ranker`): training rows with sampled or hard negatives, evaluation
against the constant predictor, the chain against retrieval alone, the TFRS multitask model
and the ranker's export for notebook 06."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Literal
from collections.abc import Mapping, Sequence

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import metrics, training_logs
from .callbacks import EpochBar
from .features import QuerySet, RecData, to_dataset
from .profiles import RetrievalBudget
from .retrieval import QUERY_KEYS, RetrievalResult, in_batches, rank_items
from .serving import export_numeric_model
from .two_tower import RetrievalModel, build_retrieval_model
from .schema import DataError

__all__ = [
    "ChainCandidates", "ChainResult", "MultitaskResult", "RankingResult", "chain_candidates",
    "chain_ndcg", "evaluate_ranking", "export_ranking_model", "hard_negative_examples",
    "ranking_examples", "train_multitask", "tune_ranker_weight",
]

FEATURE_KEYS = (*QUERY_KEYS, "item")


@dataclasses.dataclass
class RankingResult:
    """A trained ranker (:class:`~recsys_utils.dcn_ranker.RankingModel`) for ``target``
    ``"rating"`` or ``"click"``; ``baseline`` is the constant predictor (train mean rating or
    base rate)."""

    target: str
    model: Any
    history: dict[str, list[float]]
    train_seconds: float
    examples_per_second: float
    baseline: float
    config: dict[str, Any]

    def predict(self, features: Mapping[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
        """``(n,)`` predicted ratings, or click probabilities, for feature arrays ``(n, ...)``."""
        pred = in_batches(self._score, features, FEATURE_KEYS, batch_size, np.zeros(0, np.float32))
        return 1.0 / (1.0 + np.exp(-pred)) if self.target == "click" else pred

    def _score(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.model(batch, training=False)


def ranking_examples(data: RecData, split: str = "train", *, sampled_negatives: int = 0,
                     seed: int = 42) -> dict[str, np.ndarray]:
    """The split's example arrays with ``target``: the rating, or for event data the 0/1
    implicit label, with ``sampled_negatives`` unseen warm items per positive appended."""
    ex = dict(data.examples[split])
    if data.feedback == "rating":
        ex["target"] = ex["rating"].astype(np.float32)
        return ex
    ex["target"] = ex["label"].astype(np.float32)
    if sampled_negatives <= 0:
        return ex
    rng = np.random.default_rng(seed)
    positives = np.flatnonzero(ex["label"] > 0)
    source = np.repeat(positives, sampled_negatives)
    warm = np.flatnonzero(data.warm_items)
    candidates = warm[rng.integers(0, len(warm), len(source))]
    seen = np.asarray(data.train_matrix[ex["user"][source], candidates]).ravel() > 0
    return _with_negatives(ex, source[~seen], candidates[~seen], ("target", "label"))


def _with_negatives(ex: Mapping[str, np.ndarray], source: np.ndarray, items: np.ndarray,
                    zeroed: Sequence[str] = ("target",)) -> dict[str, np.ndarray]:
    """``ex`` with copies of its rows ``source`` appended, for ``items``, ``zeroed`` set to 0."""
    extra = {k: v[source] for k, v in ex.items()}
    extra["item"] = items.astype(np.int32)
    extra.update({k: np.zeros(len(source), np.float32) for k in zeroed})
    return {k: np.concatenate([ex[k], extra[k]]) for k in ex}


def hard_negative_examples(data: RecData, retrieval: Any, *, negatives: int = 4, k: int = 100,
                           max_positives: int | None = None, seed: int = 42
                           ) -> dict[str, np.ndarray]:
    """Training rows ``(n_rows, ...)`` with ``target``, positives first, for a re-ranker of
    retrieved candidates: every training interaction (at most ``max_positives``, a seeded
    sample) is a positive (1); for each, ``negatives`` items drawn from the user's top-``k``
    retrieved items (``retrieval``: anything with ``query_embeddings`` / ``item_embeddings``)
    never seen in training get 0: the plausible items a re-ranker has to push down."""
    ex = dict(data.examples["train"])
    rng = np.random.default_rng(seed)
    if max_positives is not None and len(ex["item"]) > max_positives:
        keep = np.sort(rng.choice(len(ex["item"]), max_positives, replace=False))
        ex = {key: v[keep] for key, v in ex.items()}
    ex["target"] = np.ones(len(ex["item"]), np.float32)
    users, first = np.unique(ex["user"], return_index=True)
    feats = {key: ex[key][first] for key in QUERY_KEYS}
    ranked = rank_items(retrieval.query_embeddings(feats), retrieval.item_embeddings(), k,
                        exclude=data.train_matrix[users])
    row_of_user = np.searchsorted(users, ex["user"])
    source = np.repeat(np.arange(len(ex["item"])), negatives)
    pick = ranked[row_of_user[source], rng.integers(0, ranked.shape[1], len(source))]
    return _with_negatives(ex, source[pick >= 0], pick[pick >= 0])


def evaluate_ranking(result: RankingResult, data: RecData, split: str = "test") -> dict[str, Any]:
    """Model vs constant predictor on ``split``'s rows: ``{"rmse", "rmse_constant"}`` for
    ratings, ``{"auc", "auc_constant" (0.5), "log_loss", "log_loss_constant", "base_rate"}``
    for clicks (AUC NaN when the split holds one class), with ``target``, ``split``, ``n``."""
    ex = ranking_examples(data, split)
    if len(ex["target"]) == 0:
        raise DataError(f"split {split!r} is empty: nothing to evaluate")
    y, pred = ex["target"], result.predict(ex)
    constant = np.full_like(y, result.baseline)
    out: dict[str, Any] = {"target": result.target, "split": split, "n": len(y)}
    if result.target == "rating":
        return {**out, "rmse": metrics.rmse(y, pred), "rmse_constant": metrics.rmse(y, constant)}
    return {**out, "auc": metrics.auc(y, pred) if 0 < y.mean() < 1 else float("nan"),
            "auc_constant": 0.5, "log_loss": metrics.log_loss(y, pred),
            "log_loss_constant": metrics.log_loss(y, constant), "base_rate": float(y.mean())}


@dataclasses.dataclass
class ChainResult:
    """Retrieve-then-rank against retrieval alone.

    Attributes:
        retrieval_ndcg / chain_ndcg: NDCG@k of the retrieval order / after re-ranking
            (read from ``retrieval_at_k`` / ``chain_at_k``).
        recall_at_retrieve: share of relevant items among the candidates (the ceiling
            for any re-ranker).
        ranker_weight: weight of the blend (1.0 = the ranker's order alone).
        retrieval_at_k / chain_at_k: every metric of :func:`metrics.retrieval_metrics` at
            ``k`` (recall, precision, F1, hit rate, NDCG, MRR) of the two orders.
        ranked / reranked: ``(n_queries, k_retrieve)`` item indices.
    """

    recall_at_retrieve: float
    k: int
    k_retrieve: int
    n_queries: int
    ranker_weight: float
    retrieval_at_k: dict[str, float]
    chain_at_k: dict[str, float]
    ranked: np.ndarray = dataclasses.field(repr=False)
    reranked: np.ndarray = dataclasses.field(repr=False)

    @property
    def retrieval_ndcg(self) -> float:
        return self.retrieval_at_k[f"ndcg@{self.k}"]

    @property
    def chain_ndcg(self) -> float:
        return self.chain_at_k[f"ndcg@{self.k}"]


#: Blend weights :func:`tune_ranker_weight` tries (0 = retrieval order, 1 = ranker order).
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def _row_standardise(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row z-scores over the valid entries: puts both stages' scores on one scale."""
    masked = np.where(valid, scores, np.nan)
    mean = np.nanmean(masked, axis=1, keepdims=True)
    std = np.nanstd(masked, axis=1, keepdims=True)
    return np.where(valid, (scores - mean) / np.where(std > 0, std, 1.0), 0.0)


@dataclasses.dataclass
class ChainCandidates:
    """Each user's retrieved candidates with both stages' scores, computed once, so any
    blend of the two orders is cheap to evaluate.

    Attributes:
        queries: the split's queries (relevant items, features).
        ranked: ``(n_queries, k_retrieve)`` item indices in retrieval order, -1 = padding.
        retrieval_scores / ranker_scores: ``(n_queries, k_retrieve)`` float64.
    """

    queries: QuerySet = dataclasses.field(repr=False)
    ranked: np.ndarray = dataclasses.field(repr=False)
    retrieval_scores: np.ndarray = dataclasses.field(repr=False)
    ranker_scores: np.ndarray = dataclasses.field(repr=False)

    @property
    def k_retrieve(self) -> int:
        return int(self.ranked.shape[1])

    def order(self, ranker_weight: float) -> np.ndarray:
        """Candidates by ``(1 - w) * z(retrieval) + w * z(ranker)``: ``(n_queries, k_retrieve)``."""
        valid = self.ranked >= 0
        blended = ((1.0 - ranker_weight) * _row_standardise(self.retrieval_scores, valid)
                   + ranker_weight * _row_standardise(self.ranker_scores, valid))
        blended[~valid] = -np.inf  # padding stays last
        order = np.argsort(-blended, axis=1, kind="stable")
        return np.take_along_axis(self.ranked, order, axis=1)

    def ndcg(self, ranker_weight: float, k: int = 10) -> float:
        """NDCG@k of :meth:`order` against the split's relevant items."""
        return float(metrics.retrieval_metrics(self.order(ranker_weight), self.queries.relevant,
                                               ks=(k,))[f"ndcg@{k}"])

    def rescored(self, ranking_model: RankingResult) -> "ChainCandidates":
        """The same candidates (same retrieval), scored by another ranker."""
        return dataclasses.replace(
            self, ranker_scores=_ranker_scores(ranking_model, self.queries, self.ranked))

    def compare(self, ranker_weight: float, k: int = 10, *, n_boot: int = 2000,
                seed: int = 0) -> dict[str, Any]:
        """The blend at ``ranker_weight`` against retrieval alone on the same users, with a 95%
        bootstrap interval of the per-user difference of NDCG@k: a
        :func:`metrics.paired_difference` row (an interval containing 0 is a tie)."""
        per_user = [metrics.retrieval_metrics(order, self.queries.relevant, ks=(k,),
                                              per_query=True)[f"ndcg@{k}"]
                    for order in (self.order(ranker_weight), self.ranked)]
        return metrics.paired_difference(f"retrieval + re-ranker (w = {ranker_weight:g})",
                                         "retrieval alone", self.queries.split, f"ndcg@{k}",
                                         *per_user, n_boot=n_boot, seed=seed)

    def evaluate(self, k: int = 10, ranker_weight: float = 1.0) -> ChainResult:
        """Retrieval order against the re-ranked order, as a :class:`ChainResult`."""
        base = metrics.retrieval_metrics(self.ranked, self.queries.relevant,
                                         ks=(k, self.k_retrieve))
        reranked = self.order(ranker_weight)
        at_k = [{name: value for name, value in scores.items() if name.endswith(f"@{k}")
                 or name == "mrr"}
                for scores in (base, metrics.retrieval_metrics(reranked, self.queries.relevant,
                                                               ks=(k,)))]
        return ChainResult(
            recall_at_retrieve=float(base[f"recall@{self.k_retrieve}"]), k=k,
            k_retrieve=self.k_retrieve, n_queries=int(base["n_queries"]),
            ranker_weight=float(ranker_weight), retrieval_at_k=at_k[0], chain_at_k=at_k[1],
            ranked=self.ranked, reranked=reranked)


def chain_candidates(retrieval_result: RetrievalResult, ranking_model: RankingResult,
                     data: RecData, k_retrieve: int = 100, *, split: str = "test"
                     ) -> ChainCandidates:
    """Retrieve ``k_retrieve`` items per user of ``split`` (training items removed) and score
    each with the ranker, with the retrieval query's features (all training history, the
    time of the user's first interaction in the split)."""
    if len(data.splits.get(split, ())) == 0:
        raise DataError(f"the chain needs a non-empty {split!r} split; have "
                        f"{sorted(k for k, v in data.splits.items() if len(v))}")
    queries = data.queries(split)
    q = retrieval_result.query_embeddings(queries.features)
    items = retrieval_result.item_embeddings()
    ranked = rank_items(q, items, k_retrieve, exclude=queries.exclude)
    retrieval_scores = np.einsum("qd,qkd->qk", q, items[np.maximum(ranked, 0)]).astype(np.float64)
    return ChainCandidates(queries, ranked, retrieval_scores,
                           _ranker_scores(ranking_model, queries, ranked))


def _ranker_scores(ranking_model: RankingResult, queries: QuerySet, ranked: np.ndarray
                   ) -> np.ndarray:
    """``(n_queries, k_retrieve)`` float64 ranker scores of every (user, candidate) pair."""
    n_q, width = ranked.shape
    pairs = {key: np.repeat(queries.features[key], width, axis=0) for key in QUERY_KEYS}
    pairs["item"] = np.maximum(ranked, 0).reshape(-1).astype(np.int32)
    return ranking_model.predict(pairs).reshape(n_q, width).astype(np.float64)


def tune_ranker_weight(retrieval_result: RetrievalResult, ranking_model: RankingResult,
                       data: RecData, k_retrieve: int = 100, k: int = 10, *,
                       weights: Sequence[float] = BLEND_WEIGHTS, split: str = "validation"
                       ) -> tuple[float, dict[float, float]]:
    """``(best weight, {weight: NDCG@k on split})`` of the blend ``(1 - w) * z(retrieval)
    + w * z(ranker)`` (z: standardised over each user's candidates), chosen on ``split``;
    ``w = 0`` keeps the retrieval order (a ranker that does not help is switched off)."""
    candidates = chain_candidates(retrieval_result, ranking_model, data, k_retrieve, split=split)
    curve = {float(w): candidates.ndcg(w, k) for w in weights}
    best = max(curve, key=lambda w: (curve[w], -w))  # ties: the smaller weight
    return best, curve


def chain_ndcg(retrieval_result: RetrievalResult, ranking_model: RankingResult, data: RecData,
               k_retrieve: int = 100, k: int = 10, *, split: str = "test",
               ranker_weight: float = 1.0) -> ChainResult:
    """Retrieve ``k_retrieve`` items per user of ``split``, re-rank by the blend of
    :func:`tune_ranker_weight` (1: the ranker alone), compare NDCG@k. For several orders
    of the same candidates, use :func:`chain_candidates` once and evaluate each."""
    return chain_candidates(retrieval_result, ranking_model, data, k_retrieve,
                            split=split).evaluate(k, ranker_weight)


class MultitaskModel(tfrs.Model):
    """Retrieval towers shared with a rating head (an MLP over ``[query, item]`` embeddings),
    as in the TFRS multitask tutorial; the losses are weighted."""

    def __init__(self, retrieval: RetrievalModel, *, retrieval_weight: float,
                 rating_weight: float, rating_offset: float) -> None:
        super().__init__()
        self.retrieval = retrieval
        self.rating_head = tf.keras.Sequential([
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dense(1, dtype="float32")])
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")])
        self.retrieval_weight = float(retrieval_weight)
        self.rating_weight = float(rating_weight)
        self.rating_offset = float(rating_offset)

    def rating(self, query: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(self.rating_head(tf.concat([query, item], -1)), -1) + self.rating_offset

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        r = self.retrieval
        query = r.query_tower(features, training=training)
        item_idx = tf.cast(features["item"], tf.int32)
        items = r.item_tower(item_idx, training=training)
        probability = tf.gather(r._probability, item_idx) if r.log_q else None
        retrieval_loss = r.task(query, items, candidate_sampling_probability=probability,
                                candidate_ids=item_idx, compute_metrics=not training)
        rating_loss = self.rating_task(labels=tf.cast(features["target"], tf.float32),
                                       predictions=self.rating(query, items))
        return self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss


@dataclasses.dataclass
class MultitaskResult:
    """A jointly trained :class:`MultitaskModel` and its two views: ``retrieval`` (a
    :class:`RetrievalResult`) and ``ranking`` (whose ``predict`` uses the rating head)."""

    retrieval: RetrievalResult
    ranking: _MultitaskRanker
    model: MultitaskModel


class _MultitaskRanker(RankingResult):
    def _score(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        r = self.model.retrieval
        return self.model.rating(r.query_tower(batch, training=False),
                                 r.item_tower(tf.cast(batch["item"], tf.int32), training=False))


def train_multitask(data: RecData, item_content: np.ndarray | None = None, *,
                    variant: Literal["id", "content", "fused"] = "fused",
                    retrieval_weight: float = 1.0, rating_weight: float = 1.0, epochs: int = 5,
                    batch_size: int = 256, embedding_dim: int = 32, learning_rate: float = 0.01,
                    seed: int = 42, log_q: bool = True,
                    strategy: tf.distribute.Strategy | None = None,
                    progress: bool = True) -> MultitaskResult:
    """Joint retrieval + rating model (rating data only), with loss weights (the TFRS
    tutorial: a model weighted towards one task does poorly on the other); the retrieval
    part is ``build_retrieval_model``'s, otherwise with the budget's defaults."""
    if data.feedback != "rating":
        raise DataError("train_multitask predicts ratings: it needs rating feedback")
    train = ranking_examples(data, "train")
    baseline = float(train["target"].mean())
    tf.keras.utils.set_random_seed(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        retrieval = build_retrieval_model(variant, data, item_content, RetrievalBudget(
            embedding_dim=embedding_dim, log_q=log_q))
        model = MultitaskModel(retrieval, retrieval_weight=retrieval_weight,
                               rating_weight=rating_weight, rating_offset=baseline)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    dataset = to_dataset({k: train[k] for k in (*FEATURE_KEYS, "target")}, batch_size,
                         seed=seed, drop_remainder=replicas > 1)
    callbacks = [EpochBar(epochs, f"multitask/{variant}")] if progress else []
    callbacks += training_logs.callbacks(f"multitask/{variant}")
    start = time.perf_counter()
    fit = model.fit(dataset, epochs=epochs, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - start
    config = dict(variant=variant, retrieval_weight=retrieval_weight, rating_weight=rating_weight,
                  epochs=epochs, batch_size=batch_size, embedding_dim=embedding_dim,
                  learning_rate=learning_rate, seed=seed, log_q=log_q)
    view = RetrievalResult.of(f"multitask/{variant}", retrieval, data, train, config).record(
        fit.history, seconds, [])
    ranking_view = _MultitaskRanker("rating", model, view.history, seconds,
                                    view.examples_per_second, baseline, config)
    return MultitaskResult(view, ranking_view, model)


def export_ranking_model(result: RankingResult, data: RecData, path: Any, *,
                         n_calibration: int = 256, seed: int = 0) -> Any:
    """Save the ranker as a numeric SavedModel (:func:`~recsys_utils.serving.export_numeric_model`).

    Signature: ``user, item, hour, dow int32[B]``, ``history int32[B, H]`` (-1 = empty),
    ``history_mask float32[B, H]`` -> ``{"score": float32[B]}`` (predicted rating, or
    click probability).
    """
    model, click = result.model, result.target == "click"

    def score(features: dict[str, tf.Tensor]) -> tf.Tensor:
        out = model(features, training=False)
        return tf.sigmoid(out) if click else out

    return export_numeric_model(model, score, ("user", "item", "history", "history_mask", "hour",
                                               "dow"), data, path, output="score",
                                n_calibration=n_calibration, seed=seed)
