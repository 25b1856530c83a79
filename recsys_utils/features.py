"""Model inputs for retrieval and ranking (notebooks 04 and 05), built once as numpy arrays.

Item index = row of the items table; user index = position among the sorted *training*
users, from 1 (0 is the OOV user every unknown id maps to). An example's history is the
user's last ``H`` training items *strictly* before its timestamp (an item of the same
second could be the target: it is left out), most recent first, ``-1``-padded. An
evaluation query (one per user of a split) has all the user's training history, the time
of their first interaction in the split, and all their items in the split as relevant.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse

from .schema import DataError, implicit_label, require_columns
from .splits import select_cold_items

if TYPE_CHECKING:  # TensorFlow is imported lazily: building features needs no TF.
    import tensorflow as tf

__all__ = [
    "OOV_USER", "QuerySet", "RecData", "Vocab", "build_features", "check_item_content",
    "fact_columns", "from_frames", "hold_out_new_items", "item_attribute_matrix",
    "item_content", "to_dataset", "update_rounds",
]

#: Index every unknown user maps to.
OOV_USER = 0
#: Value of an empty history slot.
PAD = -1


@dataclasses.dataclass
class Vocab:
    """String id <-> integer index maps: ``item_ids`` ``(n_items,)`` and ``user_ids``
    ``(n_users + 1,)`` (``"[OOV]"``, then the training users sorted)."""

    item_ids: np.ndarray
    user_ids: np.ndarray

    def __post_init__(self) -> None:
        self._items = {s: i for i, s in enumerate(self.item_ids.tolist())}
        self._users = {s: i for i, s in enumerate(self.user_ids.tolist()) if i != OOV_USER}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        """Number of user indices including the OOV index 0."""
        return len(self.user_ids)

    def user_index(self, user_ids: Any) -> np.ndarray:
        """``(n,)`` int32 user indices; unknown users map to :data:`OOV_USER` (0)."""
        return _lookup(self._users, user_ids, OOV_USER)

    def item_index(self, item_ids: Any) -> np.ndarray:
        """``(n,)`` int32 item indices; an id not in the items table raises DataError."""
        ids = np.asarray(item_ids)
        out = _lookup(self._items, ids, -1)
        if (out < 0).any():  # argmin: the first unknown id
            raise DataError(f"item id {ids[np.argmin(out)]!r} is not in the items table",
                            column="item_id")
        return out


def _lookup(index: Mapping[str, int], ids: Any, default: int) -> np.ndarray:
    ids = np.asarray(ids)
    return np.fromiter((index.get(str(i), default) for i in ids), dtype=np.int32, count=len(ids))


@dataclasses.dataclass
class QuerySet:
    """Evaluation queries of one split, one per user (``user_ids`` ``(n_q,)``).

    Attributes:
        features: model inputs, each ``(n_q, ...)``: ``user``, ``hour``, ``dow`` int32,
            ``history`` int32 and ``history_mask`` float32 ``(n_q, H)``, ``timestamp`` int64.
        relevant: per query the set of relevant item indices (the user's items in the split).
        exclude: CSR ``(n_q, n_items)`` bool, the user's training items.
    """

    split: str
    user_ids: np.ndarray
    features: dict[str, np.ndarray]
    relevant: list[set[int]]
    exclude: scipy.sparse.csr_matrix

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclasses.dataclass
class RecData:
    """Everything the retrieval and ranking models consume.

    Attributes:
        items: the items table (row order = item index).
        feedback: ``"rating"`` or ``"event"``.
        splits: ``train``, ``validation``, ``test``, ``test_cold`` (missing ones empty).
        examples: per split, the interaction examples (:func:`build_features`).
        item_counts: ``(n_items,)`` int64 training interactions per item.
        warm_items: ``(n_items,)`` bool, item seen in training.
        cold_items: ``(n_cold,)`` int64 indices of the held-out cold items.
        train_matrix: CSR ``(n_users, n_items)`` bool training items (row 0, OOV, empty).
    """

    items: pd.DataFrame
    vocab: Vocab
    feedback: str
    history_length: int
    splits: dict[str, pd.DataFrame]
    examples: dict[str, dict[str, np.ndarray]]
    item_counts: np.ndarray
    warm_items: np.ndarray
    cold_items: np.ndarray
    train_matrix: scipy.sparse.csr_matrix
    seed: int
    _train_sorted: dict[str, np.ndarray] = dataclasses.field(repr=False, default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.vocab.n_items

    @property
    def n_users(self) -> int:
        return self.vocab.n_users

    @property
    def item_probability(self) -> np.ndarray:
        """``(n_items,)`` float32 empirical training frequency ``count / total``."""
        return (self.item_counts / max(self.item_counts.sum(), 1)).astype(np.float32)

    def history_for(self, user_idx: np.ndarray, timestamps: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``(history, mask)`` ``(n, H)`` int32 (most recent first, -1-padded) and float32:
        the last ``H`` training items of each user (``user_idx`` ``(n,)``) strictly before
        ``timestamps`` (``(n,)`` int64 seconds; ``None``: after all training)."""
        user_idx, length, train = np.asarray(user_idx), self.history_length, self._train_sorted
        if length <= 0:
            return np.zeros((len(user_idx), 0), np.int32), np.zeros((len(user_idx), 0), np.float32)
        begin, end = train["starts"][user_idx], train["starts"][user_idx + 1]
        if timestamps is not None:
            ts = train["ts"]
            # Within each user's block (sorted by time), count rows with ts < t: one
            # searchsorted over (user, time) pairs encoded as a single key.
            lo, hi = ts.min(initial=0), ts.max(initial=0)
            span = int(hi - lo) + 3
            key = train["users"].astype(np.int64) * span + (ts - lo + 1)
            q = np.clip(np.asarray(timestamps, dtype=np.int64), lo - 1, hi + 1)
            stop = np.searchsorted(key, user_idx.astype(np.int64) * span + (q - lo + 1))
            end = np.clip(stop, begin, end)
        # Slot j holds the (j+1)-th most recent item: position end - 1 - j.
        pos = end[:, None] - 1 - np.arange(length)[None, :]
        valid = pos >= begin[:, None]
        items = train["items"]
        history = np.where(valid, items[np.clip(pos, 0, max(len(items) - 1, 0))] if len(items)
                           else PAD, PAD).astype(np.int32)
        return history, valid.astype(np.float32)

    def queries(self, split: str) -> QuerySet:
        """One query per user of ``split`` (see :class:`QuerySet`)."""
        frame = self.splits.get(split)
        if frame is None:
            raise DataError(f"unknown split {split!r}; have {sorted(self.splits)}")
        if len(frame) == 0:
            raise DataError(f"split {split!r} is empty: nothing to evaluate")
        first = frame.sort_values(["user_id", "timestamp"], kind="stable").groupby(
            "user_id", sort=True).first()
        user_ids = first.index.to_numpy().astype(str)
        features = self.user_features(user_ids, first["timestamp"].to_numpy(np.int64))
        items = self.vocab.item_index(frame["item_id"].to_numpy())
        position = pd.Index(user_ids).get_indexer(frame["user_id"].astype(str))
        relevant: list[set[int]] = [set() for _ in user_ids]
        for q, i in zip(position.tolist(), items.tolist()):
            relevant[q].add(i)
        exclude = self.train_matrix[features["user"]]
        return QuerySet(split, user_ids, features, relevant, exclude.tocsr())

    def user_features(self, user_ids: Any, timestamps: Any | None = None) -> dict[str, np.ndarray]:
        """Query-tower inputs for any users (unknown ones: the OOV index, empty history),
        with all their training history."""
        user_ids = np.asarray(user_ids).astype(str)
        ts = np.zeros(len(user_ids), np.int64) if timestamps is None else timestamps
        return self._features(self.vocab.user_index(user_ids), np.asarray(ts, np.int64), None)

    def _features(self, user: np.ndarray, ts: np.ndarray, before: np.ndarray | None
                  ) -> dict[str, np.ndarray]:
        """Query features at times ``ts``, the history taken before ``before`` (or all)."""
        history, mask = self.history_for(user, before)
        hour, dow = _clock(ts)
        return {"user": user, "history": history, "history_mask": mask,
                "hour": hour, "dow": dow, "timestamp": ts}


def _clock(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day (0-23) and day of week (Monday 0) of UTC unix seconds."""
    ts = np.asarray(ts, dtype=np.int64)
    hour = (ts // 3600) % 24
    dow = (ts // 86400 + 3) % 7  # 1970-01-01 was a Thursday (3)
    return hour.astype(np.int32), dow.astype(np.int32)


def _sorted_train(train_users: np.ndarray, train_items: np.ndarray, train_ts: np.ndarray,
                  n_users: int) -> dict[str, np.ndarray]:
    """Training rows sorted by (user, time, row), with per-user start offsets."""
    order = np.lexsort((np.arange(len(train_users)), train_ts, train_users))
    users = train_users[order]
    return {"users": users, "items": train_items[order], "ts": train_ts[order],
            "starts": np.searchsorted(users, np.arange(n_users + 1), side="left")}


def build_features(prepared: Any, *, history_length: int = 10, seed: int = 42) -> RecData:
    """Build :class:`RecData` from a prepared data set.

    Args:
        prepared: a :class:`~recsys_utils.artifacts.Prepared` (or anything with ``items``,
            ``splits``, ``feedback``; without ``cold_items``, cold = items of ``test_cold``
            absent from training).
        history_length: ``H``, how many recent training items describe a user.

    Returns:
        :class:`RecData`. Example arrays per split, ``(n_rows,)`` unless noted: ``user``,
        ``item``, ``hour``, ``dow`` (Monday 0, UTC) int32, ``history`` int32 and
        ``history_mask`` float32 ``(n, H)``, ``timestamp`` int64, ``label`` float32 (0/1),
        and ``rating`` float32 for rating feedback.

    Raises:
        DataError: no training split, or interactions with unknown item ids.
    """
    if history_length < 0:
        raise DataError(f"history_length must be >= 0, got {history_length}")
    items, feedback = prepared.items.reset_index(drop=True), prepared.feedback
    if feedback not in ("rating", "event"):
        raise DataError(f"feedback must be 'rating' or 'event', got {feedback!r}")
    splits = {name: frame.reset_index(drop=True) for name, frame in prepared.splits.items()}
    if "train" not in splits or len(splits["train"]) == 0:
        raise DataError("the prepared data has no training interactions", source="splits")
    train = splits["train"]
    for name in ("validation", "test", "test_cold"):
        splits.setdefault(name, train.iloc[:0])

    item_ids = items["item_id"].astype(str).to_numpy()
    user_ids = np.concatenate([["[OOV]"], np.sort(train["user_id"].astype(str).unique())])
    vocab = Vocab(item_ids=item_ids, user_ids=user_ids.astype(object).astype(str))

    t_users = vocab.user_index(train["user_id"].to_numpy())
    t_items = vocab.item_index(train["item_id"].to_numpy())
    t_ts = train["timestamp"].to_numpy(np.int64)
    sorted_train = _sorted_train(t_users, t_items, t_ts, vocab.n_users)

    counts = np.bincount(t_items, minlength=vocab.n_items).astype(np.int64)
    train_matrix = scipy.sparse.csr_matrix(  # duplicates summed: still True
        (np.ones(len(t_items), dtype=bool), (t_users, t_items)),
        shape=(vocab.n_users, vocab.n_items))

    if getattr(prepared, "cold_items", None) is not None and len(prepared.cold_items):
        cold = vocab.item_index(np.asarray(prepared.cold_items, dtype=str))
    else:
        seen_cold = vocab.item_index(splits["test_cold"]["item_id"].to_numpy())
        cold = np.unique(seen_cold[counts[seen_cold] == 0])
    if counts[cold].any():
        raise DataError("a cold-start item appears in the training split", source="splits")

    data = RecData(
        items=items, vocab=vocab, feedback=feedback, history_length=history_length,
        splits=splits, examples={}, item_counts=counts, warm_items=counts > 0,
        cold_items=np.sort(cold).astype(np.int64), train_matrix=train_matrix, seed=seed,
        _train_sorted=sorted_train,
    )
    for name, frame in splits.items():
        data.examples[name] = _examples(data, frame)
    return data


def from_frames(items: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame | None = None, *,
                validation: pd.DataFrame | None = None, history_length: int = 20,
                seed: int = 42) -> RecData:
    """:class:`RecData` from one's own DataFrames: the entry point outside the course's data sets.

    Args:
        items: ``item_id`` and any other columns; every interaction's item must be here.
        train, test, validation: ``user_id``, ``item_id``, optionally ``timestamp`` (seconds)
            and a ``rating`` or an ``event`` column (without either: ``"purchase"``). Without
            ``validation``, train with ``early_stopping=False``. Test rows whose item is not
            in ``train`` become ``test_cold``.

    Without timestamps, or when all training timestamps are equal (a warning), the rows are
    taken to be in time order: train, then validation, then test, each top to bottom.

    Raises:
        DataError: a missing ``user_id`` / ``item_id`` column, or an item id not in ``items``.
    """
    require_columns(items, ["item_id"], source="items")
    frames = {"train": train, "validation": validation, "test": test}
    frames = {name: frame.reset_index(drop=True).copy() for name, frame in frames.items()
              if frame is not None}
    for name, frame in frames.items():
        require_columns(frame, ["user_id", "item_id"], source=name)
    feedback = "rating" if "rating" in train else "event"
    stamped = "timestamp" in train and all("timestamp" in f for f in frames.values())
    if stamped and train["timestamp"].nunique() <= 1 and len(train) > 1:
        warnings.warn("every training timestamp is the same: taking the rows to be in time "
                      "order instead (train, then validation, then test)", stacklevel=2)
        stamped = False
    offset = 0
    for frame in frames.values():
        if not stamped:
            frame["timestamp"] = np.arange(offset, offset + len(frame), dtype=np.int64)
            offset += len(frame)
        if "rating" not in frame and "event" not in frame:
            frame["event"] = "purchase"
    splits = {k: v for k, v in frames.items() if k != "test"}
    if "test" in frames:
        seen = frames["test"]["item_id"].astype(str).isin(set(train["item_id"].astype(str)))
        splits["test"] = frames["test"][seen.to_numpy()]
        splits["test_cold"] = frames["test"][~seen.to_numpy()]
    prepared = SimpleNamespace(items=items, splits=splits, feedback=feedback, cold_items=None)
    return build_features(prepared, history_length=history_length, seed=seed)


def hold_out_new_items(data: RecData, share: float = 0.2, seed: int = 42) -> RecData:
    """``data`` rebuilt without the ``share`` of warm items first seen last in training, which
    play new items as the cold items do (chosen the same way: :func:`.splits.select_cold_items`).
    Their training interactions are dropped; their validation events, of users with training
    left, become the split ``"validation_new"``; ``"validation"`` keeps the others (early
    stopping). A model fitted on the copy and scored on ``"validation_new"`` ranks items it
    never saw: a cold-start validation without a cold split."""
    if not 0.0 < share < 1.0:
        raise DataError(f"the share of items held out must be in (0, 1), got {share}")
    train, validation = data.splits["train"], data.splits["validation"]
    held = set(select_cold_items(train, share, seed))
    kept = train[~train["item_id"].astype(str).isin(held)]
    new = validation["item_id"].astype(str).isin(held).to_numpy()
    scorable = new & validation["user_id"].astype(str).isin(
        set(kept["user_id"].astype(str))).to_numpy()  # users with training left
    if not scorable.any():
        raise DataError("no validation event takes a held-out item: too few validation events "
                        "or too small a share to validate on new items")
    prepared = SimpleNamespace(items=data.items, feedback=data.feedback, cold_items=None, splits={
        **data.splits, "train": kept, "validation": validation[~new],
        "validation_new": validation[scorable]})
    return build_features(prepared, history_length=data.history_length, seed=data.seed)


def _examples(data: RecData, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    user = data.vocab.user_index(frame["user_id"].to_numpy())
    ts = frame["timestamp"].to_numpy(np.int64)
    out = {"user": user, "item": data.vocab.item_index(frame["item_id"].to_numpy()),
           **data._features(user, ts, ts),
           "label": (implicit_label(frame).to_numpy().astype(np.float32) if len(frame)
                     else np.zeros(0, np.float32))}
    if data.feedback == "rating":
        out["rating"] = frame["rating"].to_numpy(np.float32)
    return out


def check_item_content(content: Any, n_items: int, what: str = "item_content") -> np.ndarray:
    """``content`` as float32 ``(n_items, d)`` rows in items-table order, or DataError: the
    one check every reader of item content vectors runs."""
    content = np.asarray(content, dtype=np.float32)
    if content.ndim != 2 or len(content) != n_items:
        raise DataError(f"{what} must be (n_items={n_items}, d) aligned with the items table, "
                        f"got shape {content.shape}")
    if not np.isfinite(content).all():
        raise DataError(f"{what} contains NaN or inf")
    return content


def item_attribute_matrix(items: pd.DataFrame, columns: Sequence[str], *, max_values: int = 50,
                          separator: str = "|") -> tuple[np.ndarray, list[str]]:
    """One-hot codes of categorical item ``columns``: one indicator per value (cells such as
    ``"Action|Comedy"`` split on ``separator``), a column's ``max_values`` most frequent values
    kept and the rest folded into ``"<column>=other"``, none for a missing value; each
    column's block scaled to unit row norm (many values weigh as much as two).

    Returns:
        ``(matrix, names)``: float32 ``(n_items, n_indicators)`` and each indicator's
        ``"column=value"``.

    Raises:
        DataError: a column is not in the items table (with close-name hints).
    """
    require_columns(items, list(columns), source="items")
    items = items.reset_index(drop=True)  # row position = item index, whatever the labels were
    blocks, names = [], []
    for column in columns:
        raw = items[column]
        if pd.api.types.is_float_dtype(raw) and (raw.dropna() % 1 == 0).all():
            raw = raw.astype("Int64")  # years read with NaNs are floats: "1995", not "1995.0"
        cells = raw.astype("string").fillna("").str.split(separator, regex=False)
        exploded = cells.explode().str.strip()  # "Action| Comedy": one value "Comedy"
        exploded = exploded[exploded.astype(bool)]
        top = exploded.value_counts().index[:max_values]
        kept = exploded.where(exploded.isin(top), "other")
        vocabulary = sorted(kept.unique().tolist())
        position = {v: j for j, v in enumerate(vocabulary)}
        block = np.zeros((len(items), len(vocabulary)), np.float32)
        block[kept.index.to_numpy(), kept.map(position).to_numpy()] = 1.0
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        blocks.append(block / np.maximum(norms, 1.0))
        names += [f"{column}={v}" for v in vocabulary]
    if not blocks:
        return np.zeros((len(items), 0), np.float32), []
    return np.concatenate(blocks, axis=1), names


def fact_columns(prepared: Any) -> list[str]:
    """The catalogue facts a model may read: ``category`` (when present) and the
    seller-filled ``attribute_columns`` (never the synthetic world's truth columns)."""
    columns = list(prepared.attribute_columns)
    if "category" in prepared.items.columns and "category" not in columns:
        columns.insert(0, "category")
    return columns


def item_content(vectors: np.ndarray, prepared: Any,
                 columns: Sequence[str] | None = None) -> np.ndarray:
    """``(n_items, d + a)`` float32: content ``vectors`` ``(n_items, d)`` next to
    :func:`item_attribute_matrix` of ``columns`` (default :func:`fact_columns`): exact facts a
    shopper filters on (category, gender) need not survive in the fused vector."""
    vectors = check_item_content(vectors, len(prepared.items), "content vectors")
    attributes, _ = item_attribute_matrix(prepared.items, fact_columns(prepared)
                                          if columns is None else columns)
    if vectors.shape[1] + attributes.shape[1] == 0:
        raise DataError("item content is empty: no content vectors (width 0) and no catalogue "
                        "fact columns to encode; a content tower needs at least one of them")
    return np.concatenate([vectors, attributes], axis=1)


def update_rounds(prepared: Any, periods: int, period_share: float, *, history_length: int = 10,
                  seed: int = 42) -> list[RecData]:
    """The training interactions replayed as a base period and ``periods`` later ones.

    The last ``periods`` x ``period_share`` of the training interactions (by timestamp) are cut
    into ``periods`` equal periods. Round ``r`` trains on everything up to the end of period
    ``r`` (round 0: the base period alone) and is tested on what came next: period ``r + 1``,
    or for the last round the test split (the validation split, which chooses epochs, is
    left out).

    Returns:
        ``periods + 1`` :class:`RecData`, each with ``train`` and ``test`` splits.

    Raises:
        DataError: a period without interactions (timestamps that do not spread over time).
    """
    train = prepared.splits["train"]
    stamps = train["timestamp"].to_numpy(np.int64)
    cuts = np.quantile(stamps, 1 - period_share * np.arange(periods, 0, -1), method="lower")
    upto = [train[stamps <= cut] for cut in cuts] + [train]
    nexts = [*(train[(stamps > a) & (stamps <= b)] for a, b in zip(cuts, [*cuts[1:], np.inf])),
             prepared.splits.get("test", train.iloc[:0])]
    for r, frame in enumerate([upto[0], *nexts]):
        if len(frame) == 0:
            what = ("the base period" if r == 0 else "the test split" if r > periods
                    else f"update period {r} of {periods}")
            raise DataError(f"no interactions in {what}: incremental updates need training "
                            "timestamps that spread over time", source="splits")
    return [build_features(dataclasses.replace(prepared, splits={"train": a, "test": b}),
                           history_length=history_length, seed=seed)
            for a, b in zip(upto, nexts)]


def to_dataset(features: Mapping[str, np.ndarray], batch_size: int, *, shuffle: bool = True,
               seed: int = 42, drop_remainder: bool = False) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of feature dicts, shuffled from ``seed`` each epoch
    (two runs with the same seed see the same batches).

    The row numbers are shuffled and batched, then each batch gathers its rows in one call:
    the same batches as shuffling the rows themselves, without tf.data's per-row cost.
    """
    import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    import tensorflow as tf
    columns = {name: tf.constant(values) for name, values in features.items()}
    n = len(next(iter(features.values())))
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda rows: {name: tf.gather(values, rows) for name, values in columns.items()},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
