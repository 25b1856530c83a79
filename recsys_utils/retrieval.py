"""Two-tower retrieval with TensorFlow Recommenders (notebook 04).

Variants, all trained with the same budget (epochs, batch size, learning rate,
embedding size):

* ``popularity``: no model; the score of item *i* is ``log(1 + count_i)``
  (training interactions), the same list for everybody.
* ``id``: an item id embedding (the candidate tower of the TFRS tutorials).
  Items never seen in training (cold-start) share one
  out-of-vocabulary (OOV) row that training never touches, so this model
  cannot rank cold items: that is the baseline content has to beat.
* ``content``: no item id at all. The candidate tower is a projection (an
  MLP, or linear with ``hidden_units=()``) of the item content vector
  (notebook 03: text, image, attributes or fused), so a brand new item gets
  an embedding as good as an old one.
* ``fused``: item id embedding **plus** the content MLP (summed). Cold items
  map to the shared OOV id row, and during training each item id is replaced
  by the OOV id with probability ``id_dropout``: the OOV row learns to mean
  "an item we know nothing about" and the content path learns to carry the
  item on its own, so the id part helps warm items without hurting cold ones.

The query tower is the same for every variant: the user id embedding (OOV row
0 for unknown users; ``user_dropout`` trains that row; ``use_user_id=False``
leaves it out), the masked mean of the candidate tower's embeddings of the
user's last ``H`` training items (``history_dropout`` hides some in training),
and hour-of-day / day-of-week embeddings, concatenated and projected to the
embedding size.

**Full softmax** (``loss="full_softmax"``): each query is scored against every
item seen in training, a cross-entropy over ``(B, n_items)`` logits, exact
where the in-batch softmax below samples. With ``item_bias`` a learned
per-item bias is added to the logits (popularity goes there, the towers learn
taste); ``bias_dropout`` hides a random share of the biases each step behind
one learned "unknown item" bias, which cold items get at inference (DropoutNet's
idea, applied to the bias). Like the popularity prior, the bias is one extra
embedding column, so serving stays a dot product.

The in-batch alternative (``loss="in_batch"``) is ``tfrs.tasks.Retrieval``: a
softmax where the other positives of the batch are the negatives. Because items enter a batch in
proportion to their popularity, the negatives are a popularity-biased sample,
and the plain in-batch softmax over-penalises popular items (and the learned
scores absorb a popularity term). The *log-Q correction* (Yi et al., 2019,
"Sampling-bias-corrected neural modeling") subtracts ``log Q(i)``, the
sampling probability of candidate *i*, from its logit; TFRS does this when
``candidate_sampling_probability`` is passed. We pass the empirical training
frequency ``count_i / N`` of each in-batch candidate (``log_q=True``).
**Popularity prior** (``popularity_prior=True``, used with ``log_q=False``):
the other way to handle the same bias. Without the correction the in-batch
softmax learns ``log p(i | u) - log Q(i)`` (a pointwise mutual information:
"how much more than usual does this user want *i*"), so the towers spend their
capacity on taste and none on popularity; at inference the log prior
``log(1 + count_i)`` is added back. It stays a dot product: the candidate
embedding gets one extra column holding the prior and the query embedding a
constant 1, so brute force, ScaNN and the exported towers need no change.
Cold items get the median prior of the warm items (we know nothing about how
popular a new item will be). On small data (a few interactions per item) this
learns the personal part faster than log-Q, which has to fit popularity into
the embeddings too.

**Early stopping** (``early_stopping=True``): after each epoch, Recall@50 on the
validation users (the interaction before each user's test one), over the
whole catalogue; training stops when it has not improved for ``patience``
epochs, and the best epoch's weights are restored. Two-tower models on a few
thousand interactions overfit the user ids within a few epochs.

``remove_accidental_hits=True`` drops, for each query, in-batch negatives
that are the query's own positive item (same item index), which would
otherwise be pushed down as if they were negatives.

Evaluation (:func:`evaluate_retrieval`) scores every query user against *all*
items with :func:`recsys_utils.metrics.brute_force_top_k`, removes the user's
training items ("seen item removal") and computes
:func:`recsys_utils.metrics.retrieval_metrics`. Warm (``test``) and cold
(``test_cold``) are reported separately; cold is ranked over the full
catalogue (fair: in production a new item competes with every old one, and
hard: the id model puts old items first), and optionally over the cold items
only (``candidates="cold"``: can the model order new items among
themselves?).
"""

from __future__ import annotations

import contextlib
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
from .callbacks import EpochBar, EpochClock
from .features import RecData, build_features, check_item_content, to_dataset
from .schema import DataError

__all__ = [
    "VARIANTS",
    "best_by_validation",
    "ItemTower",
    "QueryTower",
    "RetrievalModel",
    "RetrievalResult",
    "ValidationRecall",
    "evaluate_retrieval",
    "leave_one_out_history",
    "log_prior",
    "paired_comparison",
    "recommend",
    "retrieval_table",
    "tfrs_protocol_metrics",
    "train_retrieval",
]

VARIANTS = ("popularity", "id", "content", "fused")
#: Training losses: in-batch softmax (``tfrs.tasks.Retrieval``, the other positives of the
#: batch are the negatives) or a full softmax over every item seen in training.
LOSSES = ("in_batch", "full_softmax")
#: Features the query tower reads.
QUERY_KEYS = ("user", "history", "history_mask", "hour", "dow")


# ------------------------------------------------------------------------------ towers


class ItemTower(tf.keras.layers.Layer):
    """Item index -> embedding. Input ``(...)`` int item indices; output ``(..., dim)``.

    Args:
        variant: ``"id"``, ``"content"`` or ``"fused"``.
        id_tokens: ``(n_items,)`` int, the id-embedding row of each item:
            ``1 + rank`` for items seen in training, ``0`` (OOV) otherwise.
        content: ``(n_items, d)`` float content vectors (content / fused).
        embedding_dim: output size.
        hidden_units: hidden layers of the content MLP.
        id_dropout: training-time probability of replacing an id by OOV.
    """

    def __init__(self, variant: str, id_tokens: np.ndarray, content: np.ndarray | None,
                 embedding_dim: int, hidden_units: Sequence[int] = (128,),
                 id_dropout: float = 0.0, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.variant = variant
        self.use_id = variant in ("id", "fused")
        self.use_content = variant in ("content", "fused")
        self.id_dropout = float(id_dropout)
        self._seed = seed
        self._tokens = tf.constant(np.asarray(id_tokens, dtype=np.int32))
        if self.use_id:
            n_tokens = int(np.max(id_tokens)) + 1
            # Zero-initialised OOV row and small random rows elsewhere would be
            # nicer, but the Keras default (uniform +-0.05) is what TFRS uses.
            self.id_embedding = tf.keras.layers.Embedding(n_tokens, embedding_dim, name="item_id")
        if self.use_content:
            if content is None:
                raise DataError(f"variant {variant!r} needs item_content (n_items, d)")
            # A non-trainable variable, not a constant: large tables stay out of the graph.
            self.content = tf.Variable(np.asarray(content, np.float32), trainable=False,
                                       name="item_content")
            layers = [tf.keras.layers.Dense(h, activation="relu") for h in hidden_units]
            self.mlp = tf.keras.Sequential(
                layers + [tf.keras.layers.Dense(embedding_dim, dtype="float32")], name="content_mlp")

    def call(self, item_idx: tf.Tensor, training: Any = None) -> tf.Tensor:
        item_idx = tf.cast(item_idx, tf.int32)
        parts = []
        if self.use_id:
            tokens = tf.gather(self._tokens, item_idx)
            if training and self.id_dropout > 0:
                keep = tf.random.uniform(tf.shape(tokens)) >= self.id_dropout
                tokens = tf.where(keep, tokens, tf.zeros_like(tokens))
            parts.append(tf.cast(self.id_embedding(tokens), tf.float32))
        if self.use_content:
            parts.append(self.mlp(tf.gather(self.content, item_idx)))
        return tf.add_n(parts) if len(parts) > 1 else parts[0]


class QueryTower(tf.keras.layers.Layer):
    """Query features -> ``(B, dim)``.

    Inputs (a dict): ``user`` ``(B,)`` int, ``history`` ``(B, H)`` int item
    indices (-1 = empty), ``history_mask`` ``(B, H)`` float, ``hour`` ``(B,)``,
    ``dow`` ``(B,)``. The history is pooled with the (shared) item tower.
    """

    def __init__(self, n_users: int, item_tower: ItemTower, embedding_dim: int, *,
                 use_history: bool = True, use_context: bool = True, use_user_id: bool = True,
                 user_dropout: float = 0.0, history_embedding: str = "shared",
                 history_dropout: float = 0.0, n_items: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if history_embedding not in ("shared", "separate"):
            raise DataError(f"history_embedding must be 'shared' or 'separate', "
                            f"got {history_embedding!r}")
        self.item_tower = item_tower
        self.use_history = use_history
        self.use_context = use_context
        self.use_user_id = use_user_id
        self.user_dropout = float(user_dropout)
        self.history_dropout = float(history_dropout)
        # Only the layers a model calls: an unbuilt one is a warning at every export.
        self.user_embedding = (tf.keras.layers.Embedding(n_users, embedding_dim, name="user_id")
                               if use_user_id else None)
        # "separate": the history reads its own item table (input vs output
        # embeddings, as in word2vec), so "bought A, then wants B" need not be symmetric.
        self.history_embedding = None
        if history_embedding == "separate":
            if n_items is None:
                raise DataError("history_embedding='separate' needs n_items")
            self.history_embedding = tf.keras.layers.Embedding(n_items, embedding_dim,
                                                               name="history_item")
        if use_context:
            self.hour_embedding = tf.keras.layers.Embedding(24, 8, name="hour")
            self.dow_embedding = tf.keras.layers.Embedding(7, 4, name="dow")
        self.project = tf.keras.layers.Dense(embedding_dim, dtype="float32", name="project")

    def call(self, features: Mapping[str, tf.Tensor], training: Any = None) -> tf.Tensor:
        user = tf.cast(features["user"], tf.int32)
        if training and self.user_dropout > 0:
            keep = tf.random.uniform(tf.shape(user)) >= self.user_dropout
            user = tf.where(keep, user, tf.zeros_like(user))
        parts = [tf.cast(self.user_embedding(user), tf.float32)] if self.use_user_id else []
        if self.use_history:
            history = tf.cast(features["history"], tf.int32)
            mask = tf.cast(features["history_mask"], tf.float32)
            if training and self.history_dropout > 0:
                # Drop history items at random (a denoising input, as in Mult-DAE).
                keep = tf.random.uniform(tf.shape(mask)) >= self.history_dropout
                mask = mask * tf.cast(keep, tf.float32)
            if history.shape[-1] == 0:
                # No history slots: the pooled part is a zero vector of the right size.
                items = self.item_tower(tf.zeros_like(user), training=training)
                parts.append(tf.zeros_like(items))
            else:
                # Embed each distinct history item once per batch, then gather: a batch's
                # B*H slots hold at most n_items distinct items (16x fewer on MovieLens).
                flat = tf.reshape(tf.maximum(history, 0), [-1])
                distinct, position = tf.unique(flat)
                if self.history_embedding is not None:
                    embedded = tf.cast(self.history_embedding(distinct), tf.float32)
                else:
                    embedded = self.item_tower(distinct, training=training)  # (n_distinct, d)
                items = tf.reshape(tf.gather(embedded, position),
                                   [-1, history.shape[-1], embedded.shape[-1]])
                total = tf.reduce_sum(items * mask[..., None], axis=1)
                parts.append(total / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0))
        if self.use_context:
            parts.append(tf.cast(self.hour_embedding(tf.cast(features["hour"], tf.int32)), tf.float32))
            parts.append(tf.cast(self.dow_embedding(tf.cast(features["dow"], tf.int32)), tf.float32))
        return self.project(tf.concat(parts, axis=-1))


class RetrievalModel(tfrs.Model):
    """The two-tower model: ``query_tower`` and ``item_tower`` plus the task.

    ``compute_loss`` passes the in-batch candidates' training frequency as
    ``candidate_sampling_probability`` (when ``log_q``; see the module
    docstring) and their item indices as ``candidate_ids`` for accidental-hit
    removal.
    """

    def __init__(self, query_tower: QueryTower, item_tower: ItemTower,
                 item_probability: np.ndarray, *, log_q: bool = True,
                 temperature: float | None = None, prior: np.ndarray | None = None,
                 loss: str = "in_batch", softmax_items: np.ndarray | None = None,
                 item_bias: bool = False, bias_dropout: float = 0.0) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise DataError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        self.query_tower = query_tower
        self.item_tower = item_tower
        self.log_q = log_q
        self.loss_kind = loss  # not "loss": Keras' compile() sets that attribute
        self.temperature = temperature
        if loss == "full_softmax":
            # The softmax runs over the items seen in training: an item that is never a
            # positive would only ever be pushed down, and cold items would inherit that.
            items = np.asarray(softmax_items if softmax_items is not None
                               else np.arange(len(item_probability)), np.int32)
            position = np.full(len(item_probability), -1, np.int32)
            position[items] = np.arange(len(items))
            self._softmax_items = tf.constant(items)
            self._softmax_position = tf.constant(position)
        self._probability = tf.constant(np.asarray(item_probability, np.float32))
        self.task = (tfrs.tasks.Retrieval(remove_accidental_hits=True, temperature=temperature)
                     if loss == "in_batch" else None)
        # (n_items,) log prior added at inference (popularity_prior), else None.
        self.prior = None if prior is None else tf.constant(np.asarray(prior, np.float32))
        # A learned per-item bias (full softmax): popularity goes there, so the towers learn
        # taste alone. Items without a trained bias (cold ones) get the learned bias of an
        # unknown item, which training teaches by hiding a random share (bias_dropout) of the
        # items' own biases each step, as DropoutNet does for ids.
        self.item_bias = None
        self.bias_dropout = float(bias_dropout)
        if item_bias:
            if loss != "full_softmax" or prior is not None:
                raise DataError("item_bias goes with loss='full_softmax' and no popularity prior")
            if temperature:
                # Training divides the logits by the temperature before adding the bias;
                # inference scores are one dot product with the bias column, undivided.
                raise DataError("item_bias goes without a temperature: the served scores "
                                "(dot product + bias) would differ from the trained logits")
            self.item_bias = self.add_weight(name="item_bias", shape=(len(item_probability),),
                                             initializer="zeros", trainable=True)
            self.unknown_bias = self.add_weight(name="unknown_item_bias", shape=(),
                                                initializer="zeros", trainable=True)
            trained = np.zeros(len(item_probability), bool)
            trained[np.asarray(self._softmax_items)] = True
            self._bias_trained = tf.constant(trained)

    def _prior_column(self, item_idx: tf.Tensor) -> tf.Tensor | None:
        """``(B, 1)`` the score every query adds to these items, or None."""
        if self.prior is not None:
            return tf.gather(self.prior, item_idx)[:, None]
        if self.item_bias is None:
            return None
        bias = tf.where(tf.gather(self._bias_trained, item_idx),
                        tf.gather(self.item_bias, item_idx), self.unknown_bias)
        return bias[:, None]

    def query_embedding(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Inference query embedding ``(B, dim)`` (``(B, dim + 1)`` with a prior: a 1 appended)."""
        query = self.query_tower(features, training=False)
        if self.prior is None and self.item_bias is None:
            return query
        return tf.concat([query, tf.ones_like(query[:, :1])], axis=-1)

    def candidate_embedding(self, item_idx: tf.Tensor) -> tf.Tensor:
        """Inference item embedding ``(B, dim)`` (``(B, dim + 1)`` with the log prior appended)."""
        item_idx = tf.cast(item_idx, tf.int32)
        items = self.item_tower(item_idx, training=False)
        prior = self._prior_column(item_idx)
        return items if prior is None else tf.concat([items, prior], axis=-1)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features, training=training)
        item = tf.cast(features["item"], tf.int32)
        if self.loss_kind == "full_softmax":
            # Every training item is a negative of every query: (B, n_softmax) logits.
            candidates = self.item_tower(self._softmax_items, training=training)
            logits = tf.matmul(query, candidates, transpose_b=True)
            if self.temperature:
                logits = logits / self.temperature
            if self.item_bias is not None:
                bias = tf.gather(self.item_bias, self._softmax_items)
                if training and self.bias_dropout > 0:
                    hidden = tf.random.uniform(tf.shape(bias)) < self.bias_dropout
                    bias = tf.where(hidden, self.unknown_bias, bias)
                logits += bias[None, :]
            labels = tf.gather(self._softmax_position, item)
            return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        candidates = self.item_tower(item, training=training)
        probability = tf.gather(self._probability, item) if self.log_q else None
        return self.task(query, candidates, candidate_sampling_probability=probability,
                         candidate_ids=item, compute_metrics=not training)


# ------------------------------------------------------------------------------ training


@dataclasses.dataclass
class RetrievalResult:
    """A trained retrieval variant.

    Attributes:
        variant: one of :data:`VARIANTS`.
        model: the :class:`RetrievalModel` (``None`` for popularity).
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
    model: RetrievalModel | None
    history: dict[str, list[float]]
    train_seconds: float
    examples_per_second: float
    config: dict[str, Any]
    item_probability: np.ndarray
    item_counts: np.ndarray

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


def _id_tokens(data: RecData) -> np.ndarray:
    """Row of each item in the id embedding: 1.. for items seen in training, 0 = OOV."""
    tokens = np.zeros(data.n_items, np.int32)
    warm = np.flatnonzero(data.warm_items)
    tokens[warm] = np.arange(1, len(warm) + 1)
    return tokens


def log_prior(data: RecData) -> np.ndarray:
    """``(n_items,)`` float32 ``log(1 + training count)``; cold items get the warm median."""
    prior = np.log1p(data.item_counts.astype(np.float32))
    if data.warm_items.any():
        prior[~data.warm_items] = np.median(prior[data.warm_items])
    return prior


def build_retrieval_model(
    variant: str, data: RecData, item_content: np.ndarray | None = None, *,
    embedding_dim: int = 32, hidden_units: Sequence[int] = (128,), id_dropout: float | None = None,
    user_dropout: float = 0.05, use_history: bool = True, use_context: bool = True,
    log_q: bool = True, temperature: float | None = None, seed: int = 42,
    popularity_prior: bool = False, loss: str = "in_batch", use_user_id: bool = True,
    history_embedding: str = "shared", history_dropout: float = 0.0, item_bias: bool = False,
    bias_dropout: float = 0.0,
) -> RetrievalModel:
    """Build (not train) a :class:`RetrievalModel` for ``variant``.

    ``popularity_prior`` adds :func:`log_prior` at inference (see the module
    docstring; pair it with ``log_q=False``). ``loss``: ``"in_batch"`` or
    ``"full_softmax"`` (over the items seen in training; ``log_q`` is then
    moot: there is no sampling to correct). ``use_user_id=False`` drops the
    user id embedding (the query is the history and the context: nothing to
    memorise per user). ``history_embedding="separate"`` gives the history its
    own item table; ``history_dropout`` drops history items in training.
    ``item_bias`` (full softmax only) learns a per-item bias that absorbs
    popularity; ``bias_dropout`` hides that share of the biases each step behind
    one learned "unknown item" bias, which cold items then get.

    ``id_dropout`` defaults to 0.25 for ``fused`` and 0 otherwise.
    """
    if variant not in VARIANTS or variant == "popularity":
        raise DataError(f"unknown model variant {variant!r}; choose from {list(VARIANTS[1:])}")
    content = None if item_content is None else check_item_content(item_content, data.n_items)
    if id_dropout is None:
        id_dropout = 0.25 if variant == "fused" else 0.0
    item_tower = ItemTower(variant, _id_tokens(data), content, embedding_dim,
                           hidden_units=hidden_units, id_dropout=id_dropout, seed=seed,
                           name="item_tower")
    query_tower = QueryTower(data.n_users, item_tower, embedding_dim, use_history=use_history,
                             use_context=use_context, use_user_id=use_user_id,
                             user_dropout=user_dropout, history_embedding=history_embedding,
                             history_dropout=history_dropout, n_items=data.n_items,
                             name="query_tower")
    return RetrievalModel(query_tower, item_tower, data.item_probability,
                          log_q=log_q and loss == "in_batch", temperature=temperature,
                          prior=log_prior(data) if popularity_prior else None, loss=loss,
                          softmax_items=np.flatnonzero(data.warm_items), item_bias=item_bias,
                          bias_dropout=bias_dropout)


def _optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    if name == "adam":
        return tf.keras.optimizers.Adam(learning_rate)
    if name == "adagrad":
        return tf.keras.optimizers.Adagrad(learning_rate)
    raise DataError(f"optimizer must be 'adam' or 'adagrad', got {name!r}")


def _scope(strategy: tf.distribute.Strategy | None):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def train_retrieval(
    variant: Literal["popularity", "id", "content", "fused"],
    data: RecData,
    item_content: np.ndarray | None = None,
    *,
    epochs: int = 5,
    batch_size: int = 256,
    embedding_dim: int = 32,
    learning_rate: float = 0.01,
    seed: int = 42,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
    log_q: bool = True,
    optimizer: str = "adam",
    positives_only: bool = False,
    early_stopping: bool = False,
    patience: int = 2,
    train_history: Literal["before", "leave_one_out"] = "before",
    stopping_metric: str = "recall@50",
    **model_kwargs: Any,
) -> RetrievalResult:
    """Train one retrieval variant on ``data.examples["train"]``.

    Args:
        variant: ``popularity``, ``id``, ``content`` or ``fused``.
        data: :func:`~recsys_utils.features.build_features` output.
        item_content: ``(n_items, d)`` float32 content vectors aligned with the
            items table (needed by ``content`` and ``fused``).
        epochs, batch_size, embedding_dim, learning_rate: the shared budget.
        seed: seeds weights, dropout and the shuffle.
        strategy: e.g. from :func:`recsys_utils.hardware.choose_strategy`; the
            model and optimizer are built under ``strategy.scope()``.
        progress: a tqdm bar over epochs.
        log_q: pass the in-batch candidates' training frequency as
            ``candidate_sampling_probability`` (log-Q correction).
        optimizer: ``"adam"`` or ``"adagrad"`` (the TFRS tutorial's).
        positives_only: train on ``label == 1`` rows only (e.g. skip views);
            default trains on every interaction, like the TFRS tutorial.
        early_stopping: stop when the validation ``stopping_metric`` (e.g.
            ``"recall@50"``, ``"ndcg@10"``) has not improved for ``patience``
            epochs and restore the best epoch's weights (``epochs`` is then the
            maximum). Needs a non-empty validation split;
            ``history["val_<metric>"]`` records the curve and
            ``config["best_epoch"]`` the epoch kept.
        train_history: the history each training example's query sees.
            ``"before"``: the user's items strictly before it (next-item
            prediction). ``"leave_one_out"``: the user's most recent training
            items, the example's own item removed, which is what an
            evaluation query sees (all training items): train and test
            queries then look alike.
        **model_kwargs: passed to :func:`build_retrieval_model`
            (``hidden_units``, ``id_dropout``, ``user_dropout``,
            ``use_history``, ``use_context``, ``temperature``,
            ``popularity_prior``).

    Returns:
        :class:`RetrievalResult`.
    """
    config = dict(variant=variant, epochs=epochs, batch_size=batch_size,
                  embedding_dim=embedding_dim, learning_rate=learning_rate, seed=seed,
                  log_q=log_q, optimizer=optimizer, positives_only=positives_only,
                  early_stopping=early_stopping, patience=patience, **model_kwargs)
    train = dict(data.examples["train"])
    if positives_only:
        keep = train["label"] > 0
        train = {k: v[keep] for k, v in train.items()}
    if train_history == "leave_one_out":
        train["history"], train["history_mask"] = leave_one_out_history(data, train["user"],
                                                                        train["item"])
    elif train_history != "before":
        raise DataError(f"train_history must be 'before' or 'leave_one_out', got {train_history!r}")
    n = len(train["user"])
    if variant == "popularity":
        start = time.perf_counter()
        counts = np.bincount(train["item"], minlength=data.n_items).astype(np.int64)
        seconds = time.perf_counter() - start
        return RetrievalResult(variant, None, {}, seconds, n / max(seconds, 1e-9), config,
                               data.item_probability, counts)
    if n == 0:
        raise DataError("no training examples")

    tf.keras.utils.set_random_seed(seed)
    with _scope(strategy):
        model = build_retrieval_model(variant, data, item_content, embedding_dim=embedding_dim,
                                      log_q=log_q, seed=seed, **model_kwargs)
        model.compile(optimizer=_optimizer(optimizer, learning_rate))
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    keys = (*QUERY_KEYS, "item")
    dataset = to_dataset({k: train[k] for k in keys}, batch_size, seed=seed,
                         drop_remainder=replicas > 1)
    counts = np.bincount(train["item"], minlength=data.n_items).astype(np.int64)
    result = RetrievalResult(variant, model, {}, 0.0, 0.0, config, data.item_probability, counts)
    clock = EpochClock()  # first, so validation time is not counted as training time
    callbacks: list[tf.keras.callbacks.Callback] = [clock]
    stopper = None
    if early_stopping:
        if len(data.splits.get("validation", ())) == 0:
            raise DataError("early_stopping needs a non-empty validation split")
        stopper = ValidationRecall(result, data, patience=patience, metric=stopping_metric)
        callbacks.append(stopper)
    if progress:  # after the stopper, so the bar shows the validation recall
        callbacks.append(EpochBar(epochs, f"retrieval/{variant}"))
    start = time.perf_counter()
    fit = model.fit(dataset, epochs=epochs, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - start
    history = {k: [float(x) for x in v] for k, v in fit.history.items()}
    history["epoch_seconds"] = clock.seconds
    ran = len(history.get("loss", ()))
    if stopper is not None:
        history[f"val_{stopping_metric}"] = stopper.curve
        config["best_epoch"] = stopper.best_epoch
    result.history, result.train_seconds = history, seconds
    result.examples_per_second = ran * n / max(seconds, 1e-9)
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
        budgets: label -> :func:`train_retrieval` keywords, ``variant``
            included (e.g. ``{"id": dict(variant="id", epochs=3, ...)}``).
            There is no validation split: ``early_stopping`` is refused.
        history_length: ``H`` of the queries' history (the user's training
            ratings; a random split has no time order, so the history is a bag).

    Returns:
        DataFrame indexed by label with ``top_K_accuracy`` columns (the share of
        test ratings whose item is in the user's top K) and ``train_seconds``.
    """
    from types import SimpleNamespace

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
