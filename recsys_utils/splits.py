"""Deterministic evaluation splits, the same protocol for every data set.

The ``cold_item_fraction`` of items first seen last are held out of training entirely
(``test_cold``: their interactions after the user's last training one; earlier ones are
dropped). On the warm rest, per user by time then row order: the last interaction is
``test``, the one before ``validation``, the rest ``train``. The TFRS tutorial protocol for
MovieLens is :func:`recsys_utils.data.tfrs_protocol_split`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from .schema import DataError, require_columns


@dataclasses.dataclass
class Splits:
    """The evaluation splits of one interactions table (same columns as the input), the
    held-out cold items (newest first) and counts for the report (``stats``)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    test_cold: pd.DataFrame
    cold_items: list[str]
    stats: dict[str, Any]

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation,
                "test": self.test, "test_cold": self.test_cold}


def select_cold_items(interactions: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """The newest ``fraction`` of interacted items by first-interaction time, newest first;
    ties are broken by a key drawn from ``seed`` over the sorted ids, not by row order."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"cold_item_fraction must be in [0, 1); got {fraction}")
    first_seen = interactions.groupby("item_id", sort=True)["timestamp"].min()
    n_cold = int(math.floor(fraction * len(first_seen)))
    if n_cold == 0:
        return []
    tie_break = np.random.default_rng(seed).random(len(first_seen))
    order = np.lexsort((tie_break, -first_seen.to_numpy()))
    return first_seen.index[order[:n_cold]].astype(str).tolist()


def split_interactions(interactions: pd.DataFrame, *, cold_item_fraction: float = 0.1,
                       seed: int = 42) -> Splits:
    """Split ``interactions`` (``user_id``, ``item_id``, ``timestamp``, ...) as the module
    docstring says; ``seed`` breaks ties between cold items. Each split keeps the input's
    columns and is sorted by user, then time."""
    require_columns(interactions, ("user_id", "item_id", "timestamp"), source="interactions")
    if len(interactions) == 0:
        raise DataError("cannot split an empty interactions table", source="interactions")
    cold_items = select_cold_items(interactions, cold_item_fraction, seed)

    # A stable sort on (user, time, row) makes "last" well defined for equal timestamps.
    ordered = interactions.reset_index(drop=True)
    ordered = ordered.assign(_row=np.arange(len(ordered)))
    ordered = ordered.sort_values(["user_id", "timestamp", "_row"], kind="stable")
    is_cold = ordered["item_id"].isin(set(cold_items))

    warm = ordered[~is_cold]
    from_end = warm.groupby("user_id", sort=False).cumcount(ascending=False)
    n_warm = warm.groupby("user_id", sort=False)["item_id"].transform("size")
    test_mask = (from_end == 0) & (n_warm >= 2)
    validation_mask = (from_end == 1) & (n_warm >= 3)
    train = warm[~(test_mask | validation_mask)]
    validation, test = warm[validation_mask], warm[test_mask]

    cold = ordered[is_cold]
    train_end = train.groupby("user_id")["timestamp"].max()
    cold_train_end = cold["user_id"].map(train_end).astype("float64")  # NaN: no training
    keep_cold = cold_train_end.notna() & (cold["timestamp"] >= cold_train_end)
    test_cold = cold[keep_cold]

    tables = [df.drop(columns="_row").reset_index(drop=True)
              for df in (train, validation, test, test_cold)]
    named = dict(zip(("train", "validation", "test", "test_cold"), tables))
    stats = {
        "interactions": int(len(interactions)), **{k: len(df) for k, df in named.items()},
        "cold_items": len(cold_items),
        "cold_rows_dropped_before_train_end": int((~keep_cold).sum()),
        **{f"users_in_{k}": int(named[k]["user_id"].nunique()) for k in ("test", "test_cold")},
    }
    return Splits(*tables, cold_items=cold_items, stats=stats)
