"""The two-tower retrieval model of notebook 04: the item and query towers,
the ``tfrs.Model`` with its ``compute_loss``, and how each variant is built and trained.

Generated from ``notebooks/04_tfrs_retrieval.ipynb`` (its cells marked ``# @save``):
edit the notebook, then run ``python -m recsys_utils.notebook_code``.
"""
import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_utils import retrieval, training_logs
from recsys_utils.callbacks import EpochBar, EpochClock
from recsys_utils.features import RecData, check_item_content, to_dataset
from recsys_utils.metrics import unit_rows
from recsys_utils.profiles import RetrievalBudget
from recsys_utils.schema import DataError


class ItemTower(tf.keras.layers.Layer):
    """Item indices ``(...)`` -> embeddings ``(..., dim)``.

    ``id_tokens`` ``(n_items,)``: each item's row of the id table, 0 (out of vocabulary)
    for items unseen in training. ``content`` ``(n_items, d)``: the items' content vectors.
    ``id_dropout``: the share of ids hidden in training; ``content_dropout``: the share of
    content inputs zeroed at each training call, the same inputs for every item.
    """

    def __init__(self, variant: str, id_tokens: np.ndarray, content: np.ndarray | None,
                 embedding_dim: int, hidden_units: Sequence[int] = (), id_dropout: float = 0.0,
                 content_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.use_id = variant in ("id", "fused")
        self.use_content = variant in ("content", "fused")
        self.id_dropout, self.content_dropout = float(id_dropout), float(content_dropout)
        self._tokens = tf.constant(np.asarray(id_tokens, np.int32))
        if self.use_id:
            self.id_embedding = tf.keras.layers.Embedding(int(np.max(id_tokens)) + 1,
                                                          embedding_dim, name="item_id")
        if self.use_content:
            # A non-trainable variable, not a constant: a large table stays out of the graph.
            self.content = tf.Variable(np.asarray(content, np.float32), trainable=False,
                                       name="item_content")
            self.mlp = tf.keras.Sequential(
                [*(tf.keras.layers.Dense(h, activation="relu") for h in hidden_units),
                 tf.keras.layers.Dense(embedding_dim, dtype="float32")], name="content_mlp")

    def call(self, item_idx: tf.Tensor, training=None) -> tf.Tensor:
        item_idx = tf.cast(item_idx, tf.int32)
        tokens = tf.gather(self._tokens, item_idx) if self.use_id else None
        if training and self.use_id and self.id_dropout > 0:
            # Hide some ids behind the OOV row: it learns what an unknown item is.
            hidden = tf.random.uniform(tf.shape(tokens)) < self.id_dropout
            tokens = tf.where(hidden, tf.zeros_like(tokens), tokens)
        content = tf.gather(self.content, item_idx) if self.use_content else None
        if training and self.use_content and self.content_dropout > 0:
            # One mask for all rows (noise_shape): as good on validation as a mask per item
            # and input, without drawing (n_items, d) random numbers at every step.
            content = tf.nn.dropout(content, self.content_dropout,
                                    noise_shape=[1, content.shape[-1]])
        return self.embed(tokens, content)

    def embed(self, tokens: tf.Tensor | None, content: tf.Tensor | None) -> tf.Tensor:
        """Id-table rows ``(n,)`` and content rows ``(n, d)`` -> ``(n, dim)``, each read only
        when the tower uses it; a new item comes in as row 0 with its own content."""
        parts = []
        if self.use_id:
            parts.append(tf.cast(self.id_embedding(tokens), tf.float32))
        if self.use_content:
            parts.append(self.mlp(content))
        return tf.add_n(parts)


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``(B, H, d)`` values, ``(B, H)`` 0/1 mask -> ``(B, d)``: the mean of the kept rows."""
    mask = tf.cast(mask, values.dtype)
    total = tf.reduce_sum(values * mask[..., None], axis=1)
    return total / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)


class QueryTower(tf.keras.layers.Layer):
    """Query features -> ``(B, dim)``.

    Features: ``user`` ``(B,)``, ``history`` ``(B, H)`` item indices (-1: empty slot),
    ``history_mask`` ``(B, H)``, ``hour`` ``(B,)``, ``dow`` ``(B,)``. The history items go
    through the item tower, so a user is described in the items' own space.
    """

    def __init__(self, n_users: int, item_tower: ItemTower, embedding_dim: int, *,
                 use_history: bool = True, use_context: bool = True, use_user_id: bool = True,
                 user_dropout: float = 0.0, history_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.item_tower, self.use_history, self.use_context = item_tower, use_history, use_context
        self.user_dropout, self.history_dropout = float(user_dropout), float(history_dropout)
        # Only the layers the model calls: an unbuilt layer is a warning at every export.
        self.user_embedding = (tf.keras.layers.Embedding(n_users, embedding_dim, name="user_id")
                               if use_user_id else None)
        if use_context:
            self.hour_embedding = tf.keras.layers.Embedding(24, 8, name="hour")
            self.dow_embedding = tf.keras.layers.Embedding(7, 4, name="dow")
        self.project = tf.keras.layers.Dense(embedding_dim, dtype="float32", name="project")

    def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
        parts = []
        if self.user_embedding is not None:
            user = tf.cast(features["user"], tf.int32)
            if training and self.user_dropout > 0:  # train the OOV row unknown users get
                hidden = tf.random.uniform(tf.shape(user)) < self.user_dropout
                user = tf.where(hidden, tf.zeros_like(user), user)
            parts.append(tf.cast(self.user_embedding(user), tf.float32))
        if self.use_history:
            parts.append(self.pool_history(features["history"], features["history_mask"],
                                           training))
        if self.use_context:
            parts.append(tf.cast(self.hour_embedding(tf.cast(features["hour"], tf.int32)),
                                 tf.float32))
            parts.append(tf.cast(self.dow_embedding(tf.cast(features["dow"], tf.int32)),
                                 tf.float32))
        return self.project(tf.concat(parts, axis=-1))

    def pool_history(self, history: tf.Tensor, mask: tf.Tensor, training=None) -> tf.Tensor:
        """The masked mean ``(B, dim)`` of the history items' embeddings."""
        history, mask = tf.cast(history, tf.int32), tf.cast(mask, tf.float32)
        if training and self.history_dropout > 0:
            # Drop history items at random: a denoising input, as in Mult-DAE.
            mask *= tf.cast(tf.random.uniform(tf.shape(mask)) >= self.history_dropout, tf.float32)
        # Each distinct item of the batch through the tower once, then gathered into place.
        distinct, position = tf.unique(tf.reshape(tf.maximum(history, 0), [-1]))
        embedded = self.item_tower(distinct, training=training)
        items = tf.reshape(tf.gather(embedded, position),
                           [-1, history.shape[-1], embedded.shape[-1]])
        return masked_mean(items, mask)


class ContentProfile(tf.keras.layers.Layer):
    """The training-free content profile as embedding columns, scaled by one learned weight.

    ``content`` ``(n_items, d)``: each item's row is its L2-normalised content. A query is
    ``weight`` x the mean row of its history items, so query . item = ``weight`` x the
    profile score (the cosine of the item with the history's centre, up to its norm).
    ``rank``: keep ``min(rank, d)`` columns, the unit rows projected on their top right
    singular vectors (then rotated), whose products are the best rank-``rank``
    approximation of the cosines.
    """

    def __init__(self, content: np.ndarray, initial_weight: float, rank: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        # The rows of the training-free baseline (baselines.content_profile), as columns;
        # with a rank, their best low-rank stand-in (the same products up to the cut).
        # The map from content to columns is kept (`project`), so that a new item's content
        # takes the same path without retraining: none at full width, else cut then rotation.
        self.cut = self.rotation = None
        if rank is not None and rank < content.shape[1]:
            unit = unit_rows(content)
            self.cut = np.linalg.svd(unit, full_matrices=False)[2][:rank].T  # (d, rank)
            # A fixed random rotation keeps every product and spreads the leading direction
            # over all columns: int8 (notebook 06) has one scale per tensor.
            self.rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(rank, rank)))[0]
        self.unit_content = tf.Variable(self.project(content), trainable=False,
                                        name="unit_content")
        self.weight = self.add_weight(name="profile_weight", shape=(), trainable=True,
                                      initializer=tf.keras.initializers.Constant(initial_weight))

    def project(self, content: np.ndarray) -> np.ndarray:
        """Content rows ``(n, d)`` -> their columns ``(n, rank or d)`` float32, new items' too."""
        unit = unit_rows(content)
        if self.cut is not None:
            unit = unit @ self.cut @ self.rotation  # (n, rank)
        return unit.astype(np.float32)

    def centre(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """``(B, d)``: the mean row of the ``history`` ``(B, H)`` items (``history_mask``)."""
        history = tf.maximum(tf.cast(features["history"], tf.int32), 0)
        return masked_mean(tf.gather(self.unit_content, history), features["history_mask"])

    def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The query columns ``(B, d)``."""
        return self.weight * self.centre(features)

    def items(self, item_idx: tf.Tensor) -> tf.Tensor:
        """The item columns ``(..., d)``."""
        return tf.gather(self.unit_content, tf.cast(item_idx, tf.int32))

    def scores(self, features: Mapping[str, tf.Tensor], item_idx: tf.Tensor) -> tf.Tensor:
        """``(B, n)``: query columns . item columns, the weight applied after the product, so
        training back-propagates one number per score instead of two ``d``-wide products."""
        return self.weight * tf.matmul(self.centre(features), self.items(item_idx),
                                       transpose_b=True)


class RetrievalModel(tfrs.Model):
    """The two towers and the retrieval loss.

    ``loss="full_softmax"``: every query against every item seen in training, with an
    optional learned per-item bias. ``loss="in_batch"``: ``tfrs.tasks.Retrieval``, the
    other positives of the batch as negatives, log-Q corrected when ``log_q``. ``profile``:
    a :class:`ContentProfile` whose columns extend both towers' embeddings.
    """

    def __init__(self, query_tower: QueryTower, item_tower: ItemTower,
                 item_probability: np.ndarray, *, loss: str = "full_softmax", log_q: bool = True,
                 softmax_items: np.ndarray | None = None, item_bias: bool = False,
                 bias_dropout: float = 0.0, profile: ContentProfile | None = None):
        super().__init__()
        if loss not in ("full_softmax", "in_batch"):
            raise DataError(f"loss must be 'full_softmax' or 'in_batch', got {loss!r}")
        if item_bias and loss != "full_softmax":
            raise DataError("item_bias goes with loss='full_softmax'")
        self.query_tower, self.item_tower, self.profile = query_tower, item_tower, profile
        self.loss_kind, self.log_q = loss, log_q  # not "loss": compile() sets that attribute
        n_items = len(item_probability)
        self._probability = tf.constant(np.asarray(item_probability, np.float32))  # (n_items,)
        # The full softmax runs over the items seen in training: an item that is never a
        # positive would only ever be pushed down, and cold items would inherit that.
        items = np.arange(n_items) if softmax_items is None else np.asarray(softmax_items)
        position = np.full(n_items, -1, np.int32)
        position[items] = np.arange(len(items))
        self._softmax_items, self._softmax_position = tf.constant(items, tf.int32), tf.constant(position)
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True) if loss == "in_batch" else None
        self.item_bias, self.bias_dropout = None, float(bias_dropout)
        if item_bias:
            # Popularity goes into one number per item, so the towers learn taste. Items
            # without a trained bias (cold ones) get the learned "unknown item" bias.
            self.item_bias = self.add_weight(name="item_bias", shape=(n_items,),
                                             initializer="zeros", trainable=True)
            self.unknown_bias = self.add_weight(name="unknown_item_bias", shape=(),
                                                initializer="zeros", trainable=True)
            self._bias_trained = tf.constant(np.isin(np.arange(n_items), items))

    def embed_query(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
        """``(B, d)``: the query tower, then the profile's columns when there is one."""
        query = self.query_tower(features, training=training)
        return query if self.profile is None else tf.concat([query, self.profile(features)], -1)

    def embed_items(self, item_idx: tf.Tensor, training=None) -> tf.Tensor:
        """``(..., d)``: the item tower, then the profile's columns when there is one."""
        items = self.item_tower(item_idx, training=training)
        return items if self.profile is None else tf.concat([items, self.profile.items(item_idx)],
                                                            -1)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        item = tf.cast(features["item"], tf.int32)                       # (B,)
        if self.loss_kind == "in_batch":
            # log-Q: subtract each candidate's log sampling probability (its training
            # frequency), or the softmax over-penalises the popular items of every batch.
            probability = tf.gather(self._probability, item) if self.log_q else None
            return self.task(self.embed_query(features, training=training),
                             self.embed_items(item, training=training),
                             candidate_sampling_probability=probability, candidate_ids=item,
                             compute_metrics=not training)
        query = self.query_tower(features, training=training)                 # (B, d)
        candidates = self.item_tower(self._softmax_items, training=training)  # (n_softmax, d)
        logits = tf.matmul(query, candidates, transpose_b=True)               # (B, n_softmax)
        if self.profile is not None:  # the profile's columns, multiplied on their own
            logits += self.profile.scores(features, self._softmax_items)
        if self.item_bias is not None:
            bias = tf.gather(self.item_bias, self._softmax_items)
            if training and self.bias_dropout > 0:
                # Hide some biases behind the unknown-item bias: DropoutNet's idea, on biases.
                hidden = tf.random.uniform(tf.shape(bias)) < self.bias_dropout
                bias = tf.where(hidden, self.unknown_bias, bias)
            logits += bias[None, :]
        labels = tf.gather(self._softmax_position, item)
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))

    # Serving is one dot product: the bias becomes an extra item column against a query 1.
    def query_embedding(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """``(B, dim)``, or ``(B, dim + 1)`` with a 1 appended when there is an item bias."""
        query = self.embed_query(features, training=False)
        if self.item_bias is None:
            return query
        # tf.pad, not a concat with tf.ones_like(query): in full int8 (notebook 06) that 1 came
        # out as 1.3-2.0, scaling every item bias; the padded 1 stays within 0.004.
        return tf.pad(query, [[0, 0], [0, 1]], constant_values=1.0)

    def candidate_embedding(self, item_idx: tf.Tensor) -> tf.Tensor:
        """``(B, dim)``, or ``(B, dim + 1)`` with the item's bias appended."""
        item_idx = tf.cast(item_idx, tf.int32)
        items = self.embed_items(item_idx, training=False)
        if self.item_bias is None:
            return items
        bias = tf.where(tf.gather(self._bias_trained, item_idx),
                        tf.gather(self.item_bias, item_idx), self.unknown_bias)
        return tf.concat([items, bias[:, None]], axis=-1)

    def new_item_embedding(self, content: np.ndarray) -> tf.Tensor:
        """``(n, dim)`` like :meth:`candidate_embedding`, for items the model has never seen,
        from their content rows ``(n, d)``: the out-of-vocabulary id row, the content path,
        the profile's columns and the unknown-item bias. No weight changes."""
        content = np.asarray(content, np.float32)
        items = self.item_tower.embed(tf.zeros(len(content), tf.int32), tf.constant(content))
        if self.profile is not None:
            items = tf.concat([items, self.profile.project(content)], -1)
        if self.item_bias is None:
            return items
        return tf.concat([items, tf.fill([tf.shape(items)[0], 1], self.unknown_bias)], -1)


VARIANTS = ("popularity", "id", "content", "fused")


def id_tokens(data: RecData) -> np.ndarray:
    """``(n_items,)`` int32: rows 1.. of the id table for items seen in training, 0 (OOV) else."""
    tokens = np.zeros(data.n_items, np.int32)
    warm = np.flatnonzero(data.warm_items)
    tokens[warm] = np.arange(1, len(warm) + 1)
    return tokens


def build_retrieval_model(variant: str, data: RecData, item_content: np.ndarray | None = None,
                          budget: RetrievalBudget = RetrievalBudget()) -> RetrievalModel:
    """One variant's towers and model (untrained), shaped by the budget's tower and loss fields.

    ``id_dropout`` None: 0.25 for ``fused``, else 0. ``shared_history=False`` gives the query
    tower its own copy of the item tower for the history items (separate weights): "bought
    before" and "buys next" may then differ. ``profile_weight`` > 0 adds a
    :class:`ContentProfile` of the variant's content with that initial weight (content
    variants only), cut to ``profile_rank`` columns.
    """
    if variant not in VARIANTS[1:]:
        raise DataError(f"unknown model variant {variant!r}; choose from {list(VARIANTS[1:])}")
    if variant in ("content", "fused"):
        if item_content is None:
            raise DataError(f"variant {variant!r} needs item_content (n_items, d)")
        item_content = check_item_content(item_content, data.n_items)
    b = budget
    id_dropout = b.id_dropout if b.id_dropout is not None else 0.25 if variant == "fused" else 0.0
    towers = dict(hidden_units=b.hidden_units, id_dropout=id_dropout,
                  content_dropout=b.content_dropout)
    item_tower = ItemTower(variant, id_tokens(data), item_content, b.embedding_dim, **towers,
                           name="item_tower")
    history_tower = item_tower if b.shared_history else ItemTower(
        variant, id_tokens(data), item_content, b.embedding_dim, **towers, name="history_tower")
    query_tower = QueryTower(data.n_users, history_tower, b.embedding_dim,
                             use_history=b.use_history, use_context=b.use_context,
                             use_user_id=b.use_user_id, user_dropout=b.user_dropout,
                             history_dropout=b.history_dropout, name="query_tower")
    profile = (ContentProfile(item_content, b.profile_weight, b.profile_rank, name="profile")
               if b.profile_weight > 0 and variant in ("content", "fused") else None)
    return RetrievalModel(query_tower, item_tower, data.item_probability, loss=b.loss,
                          log_q=b.log_q and b.loss == "in_batch",
                          softmax_items=np.flatnonzero(data.warm_items),
                          item_bias=b.item_bias, bias_dropout=b.bias_dropout, profile=profile)


OPTIMIZERS = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad}
# Batches per call into the compiled training step: the same updates in the same order,
# without a Python round trip per batch (a fifth of an epoch for towers this small).
STEPS_PER_CALL = 32


def train_retrieval(variant: str, data: RecData, item_content: np.ndarray | None = None,
                    budget: RetrievalBudget = RetrievalBudget(), *,
                    warm_start: retrieval.RetrievalResult | None = None, seed: int = 42,
                    strategy: tf.distribute.Strategy | None = None,
                    progress: bool = True) -> retrieval.RetrievalResult:
    """Build, compile and fit one variant on the training interactions.

    ``budget.train_history``: ``"before"`` (each example's query is the user's items strictly
    before it) or ``"leave_one_out"`` (the user's training items minus the example's own,
    what an evaluation query sees). ``budget.early_stopping`` ranks the validation users
    after each epoch and keeps the best epoch's weights. ``warm_start``: a model trained on
    the interactions up to its ``trained_until``; the new model starts from its weights
    (:func:`carry_weights`) and fits only the later interactions.
    """
    config = dict(variant=variant, seed=seed, **dataclasses.asdict(budget))
    train = retrieval.training_examples(data, budget.train_history)  # {feature: (N, ...)}
    if warm_start is not None:  # only what the previous model has not seen
        newer = data.examples["train"]["timestamp"] > warm_start.trained_until
        if variant == "popularity" or not newer.any():
            raise DataError("a warm start needs a trained variant and training interactions "
                            f"after {warm_start.trained_until}")
        train = {name: values[newer] for name, values in train.items()}
        config["warm_start_after"] = warm_start.trained_until
    if variant == "popularity":
        return retrieval.popularity(data, train, config)
    tf.keras.utils.set_random_seed(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_retrieval_model(variant, data, item_content, budget)
        if warm_start is not None:
            carry_weights(warm_start, model, data)
        model.compile(optimizer=OPTIMIZERS[budget.optimizer](budget.learning_rate),
                      steps_per_execution=STEPS_PER_CALL)
    result = retrieval.RetrievalResult.of(variant, model, data, train, config)
    callbacks = [EpochClock()]  # first, so validation time is not counted as training time
    if budget.early_stopping:
        callbacks.append(retrieval.ValidationRecall(result, data, patience=budget.patience,
                                                    metric=budget.stopping_metric))
    if progress:  # after the stopper, so the bar shows the validation metric
        callbacks.append(EpochBar(budget.epochs, f"retrieval/{variant}"))
    callbacks += training_logs.callbacks(f"retrieval/{variant}")  # TensorBoard, after the stopper
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    dataset = to_dataset(train, budget.batch_size, seed=seed, drop_remainder=replicas > 1)
    started = time.perf_counter()
    fit = model.fit(dataset, epochs=budget.epochs, verbose=0, callbacks=callbacks)
    return result.record(fit.history, time.perf_counter() - started, callbacks)


def carry_weights(previous: retrieval.RetrievalResult, model: RetrievalModel,
                  data: RecData) -> None:
    """Start ``model``, built for a later period's ``data``, from ``previous``'s weights.

    A later period knows more items and users, so their id rows move to their new places;
    items and users new in the period start from the out-of-vocabulary row (what the old
    model learned for "something never seen") and new items from the old "unknown item"
    bias. Every other weight has the same shape in both models and is copied as it is; the
    optimizer starts afresh.
    """
    model.compute_loss({k: v[:2] for k, v in retrieval.training_examples(data).items()})  # build
    old, moves = previous.model, {}  # new table -> the old row each of its rows starts from
    towers = {id(t): (t, o) for t, o in ((model.item_tower, old.item_tower),
                                         (model.query_tower.item_tower, old.query_tower.item_tower))}
    for tower, old_tower in towers.values():
        if tower.use_id:
            rows = np.zeros(tower.id_embedding.input_dim, np.int64)
            rows[tower._tokens.numpy()] = old_tower._tokens.numpy()  # by item: new row <- old row
            moves[tower.id_embedding.embeddings.ref()] = rows
    if model.query_tower.user_embedding is not None:
        old_row = {user: row for row, user in enumerate(previous.user_ids)}
        moves[model.query_tower.user_embedding.embeddings.ref()] = np.array(
            [old_row.get(user, 0) for user in data.vocab.user_ids])
    if len(old.weights) != len(model.weights):
        raise DataError("a warm start needs a previous model of the same variant and budget")
    for source, target in zip(old.weights, model.weights):
        value = source.numpy()
        if target.ref() in moves:
            value = value[moves[target.ref()]]
        elif target is model.item_bias:
            value = np.where(old._bias_trained.numpy(), value, old.unknown_bias.numpy())
        if value.shape != tuple(target.shape):
            raise DataError(f"a warm start cannot fill {target.name} {tuple(target.shape)} "
                            f"from {value.shape}: another variant or budget?")
        target.assign(value)
