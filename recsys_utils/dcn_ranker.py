"""The deep & cross network ranker of notebook 05 (a ``tfrs.Model`` with its
``compute_loss``) and how it is built and trained.

Generated from ``notebooks/05_tfrs_ranking.ipynb`` (its cells marked ``# @save``):
edit the notebook, then run ``python -m recsys_utils.notebook_code``.
"""
import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_utils import ranking, training_logs
from recsys_utils.callbacks import EpochBar
from recsys_utils.features import RecData, check_item_content, to_dataset
from recsys_utils.profiles import RankingBudget
from recsys_utils.schema import DataError
from recsys_utils.two_tower import STEPS_PER_CALL, id_tokens


class RankingModel(tfrs.Model):
    """A deep & cross network: features of one (user, item) pair -> ``(B,)`` rating or click logit.

    ``x0`` concatenates the item id embedding (cold items: the OOV row, trained by
    ``id_dropout``), the item content vector and a projection of it, the same for the
    mean of the user's history items, a user id embedding and hour / weekday embeddings.
    """

    def __init__(self, target: str, n_users: int, id_tokens: np.ndarray,
                 content: np.ndarray | None, *, embedding_dim: int = 32, cross_layers: int = 1,
                 deep_units: Sequence[int] = (64, 32), projection_dim: int | None = None,
                 id_dropout: float = 0.1, use_history: bool = True, use_context: bool = True,
                 rating_offset: float = 0.0, l2: float = 1e-4, use_user_id: bool = True):
        super().__init__()
        if target not in ("rating", "click"):
            raise DataError(f"target must be 'rating' or 'click', got {target!r}")
        self.target, self.id_dropout = target, float(id_dropout)
        self.use_history, self.use_context, self.use_user_id = use_history, use_context, use_user_id
        self._tokens = tf.constant(np.asarray(id_tokens, np.int32))
        reg = tf.keras.regularizers.l2(l2) if l2 > 0 else None
        self.user_embedding = tf.keras.layers.Embedding(n_users, embedding_dim,
                                                        embeddings_regularizer=reg)
        self.item_embedding = tf.keras.layers.Embedding(int(np.max(id_tokens)) + 1, embedding_dim,
                                                        embeddings_regularizer=reg)
        self.content = None
        if content is not None:
            self.content = tf.Variable(np.asarray(content, np.float32), trainable=False,
                                       name="item_content")
            self.content_projection = tf.keras.layers.Dense(embedding_dim, activation="relu")
        if use_context:
            self.hour_embedding = tf.keras.layers.Embedding(24, 4)
            self.dow_embedding = tf.keras.layers.Embedding(7, 4)
        # x_{l+1} = x0 * (W x_l + b) + x_l: explicit crosses of every input with every other.
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=projection_dim,
                                            kernel_initializer="glorot_uniform")
                      for _ in range(cross_layers)]
        self.deep = [tf.keras.layers.Dense(u, activation="relu") for u in deep_units]
        self.head = tf.keras.layers.Dense(1, dtype="float32")
        # Ratings are predicted as offset + head: starting at the train mean speeds learning.
        self.rating_offset = float(rating_offset)
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")]
        ) if target == "rating" else tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")])

    def item_parts(self, item: tf.Tensor, training=None) -> list[tf.Tensor]:
        """The item's id embedding, content vector and content projection."""
        tokens = tf.gather(self._tokens, item)
        if training and self.id_dropout > 0:
            hidden = tf.random.uniform(tf.shape(tokens)) < self.id_dropout
            tokens = tf.where(hidden, tf.zeros_like(tokens), tokens)
        parts = [tf.cast(self.item_embedding(tokens), tf.float32)]
        if self.content is not None:
            raw = tf.gather(self.content, item)
            parts += [raw, tf.cast(self.content_projection(raw), tf.float32)]
        return parts

    def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
        item = tf.cast(features["item"], tf.int32)
        parts = self.item_parts(item, training)
        if self.use_user_id:
            parts.append(tf.cast(self.user_embedding(tf.cast(features["user"], tf.int32)),
                                 tf.float32))
        if self.use_history:
            parts += self.pool_history(features["history"], features["history_mask"], item)
        if self.use_context:
            parts.append(tf.cast(self.hour_embedding(tf.cast(features["hour"], tf.int32)),
                                 tf.float32))
            parts.append(tf.cast(self.dow_embedding(tf.cast(features["dow"], tf.int32)),
                                 tf.float32))
        x0 = x = tf.concat(parts, axis=-1)
        for layer in self.cross:
            x = layer(x0, x)
        for layer in self.deep:
            x = layer(x)
        out = tf.squeeze(self.head(x), axis=-1)
        return out + self.rating_offset if self.target == "rating" else out

    def pool_history(self, history: tf.Tensor, mask: tf.Tensor, item: tf.Tensor) -> list[tf.Tensor]:
        """The masked mean of each of :meth:`item_parts` over the user's history items."""
        history = tf.cast(history, tf.int32)
        mask = tf.cast(mask, tf.float32)[..., None]
        if history.shape[-1] == 0:
            return [tf.zeros_like(p) for p in self.item_parts(item)]
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        # Each distinct history item once per batch, then gathered into place.
        distinct, position = tf.unique(tf.reshape(tf.maximum(history, 0), [-1]))
        pooled = []
        for part in self.item_parts(distinct):
            part = tf.reshape(tf.gather(part, position), [-1, history.shape[-1], part.shape[-1]])
            pooled.append(tf.reduce_sum(part * mask, axis=1) / count)
        return pooled

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        predictions = self(features, training=training)
        return self.task(labels=tf.cast(features["target"], tf.float32), predictions=predictions)


def build_ranking_model(target: str, data: RecData, item_content: np.ndarray | None,
                        budget: RankingBudget, rating_offset: float = 0.0) -> RankingModel:
    """The ranker (untrained), shaped by the budget's architecture fields."""
    b = budget
    return RankingModel(target, data.n_users, id_tokens(data), item_content,
                        embedding_dim=b.embedding_dim, cross_layers=b.cross_layers,
                        deep_units=b.deep_units, projection_dim=b.projection_dim,
                        id_dropout=b.id_dropout, use_history=b.use_history,
                        use_context=b.use_context, use_user_id=b.use_user_id, l2=b.l2,
                        rating_offset=rating_offset)


def train_ranking(data: RecData, item_content: np.ndarray | None = None,
                  budget: RankingBudget = RankingBudget(), *, seed: int = 42,
                  strategy: tf.distribute.Strategy | None = None, progress: bool = True,
                  examples: Mapping[str, np.ndarray] | None = None) -> ranking.RankingResult:
    """Build, compile and fit the ranker: a :class:`RankingModel` shaped by the budget.

    The target follows ``data.feedback`` (rating regression, or click classification with
    ``budget.sampled_negatives`` random unseen items per positive). ``examples`` (e.g.
    ``ranking.hard_negative_examples``) replaces the training rows with a 0/1 target;
    early stopping is then off (the validation split has no such negatives). Otherwise
    training stops when the validation loss stops falling and keeps the best epoch.
    """
    b = budget
    target = "rating" if data.feedback == "rating" and examples is None else "click"
    content = None if item_content is None else check_item_content(item_content, data.n_items)
    early_stopping = b.early_stopping and examples is None
    if examples is not None:
        train = dict(examples)
    else:
        train = ranking.ranking_examples(data, "train", sampled_negatives=b.sampled_negatives,
                                         seed=seed)
    if len(train["target"]) == 0:
        raise DataError("no training examples")
    baseline = float(train["target"].mean())  # the constant predictor
    if target == "click" and not 0 < baseline < 1:
        raise DataError("click training needs positives and negatives (views or sampled_negatives)")
    config = {"target": target, "seed": seed, "content": content is not None,
              **dataclasses.asdict(b), "early_stopping": early_stopping}
    tf.keras.utils.set_random_seed(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_ranking_model(target, data, content, b,
                                    rating_offset=baseline if target == "rating" else 0.0)
        model.compile(optimizer=tf.keras.optimizers.Adam(b.learning_rate),
                      steps_per_execution=STEPS_PER_CALL)
    keys = (*ranking.FEATURE_KEYS, "target")
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    dataset = to_dataset({k: train[k] for k in keys}, b.batch_size, seed=seed,
                         drop_remainder=replicas > 1)
    callbacks = [EpochBar(b.epochs, f"ranking/{target}")] if progress else []
    validation = None
    if early_stopping and len(data.examples.get("validation", {}).get("item", ())):
        val = ranking.ranking_examples(data, "validation")
        validation = to_dataset({k: val[k] for k in keys}, 4096, shuffle=False)
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=b.patience, restore_best_weights=True))
    callbacks += training_logs.callbacks(f"ranking/{target}")  # epoch losses for TensorBoard
    started = time.perf_counter()
    fit = model.fit(dataset, epochs=b.epochs, verbose=0, callbacks=callbacks,
                    validation_data=validation)
    seconds = time.perf_counter() - started
    history = {k: [float(x) for x in v] for k, v in fit.history.items()}
    return ranking.RankingResult(target, model, history, seconds,
                                 len(history["loss"]) * len(train["target"]) / seconds,
                                 baseline, config)
