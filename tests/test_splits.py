from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_utils.schema import DataError
from recsys_utils.splits import select_cold_items, split_interactions


def random_log(n_users=60, n_items=80, n_rows=2000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in rng.integers(0, n_users, n_rows)],
        "item_id": [f"i{i}" for i in rng.integers(0, n_items, n_rows)],
        "timestamp": rng.integers(0, 10_000, n_rows),  # many ties on purpose
        "rating": rng.integers(1, 6, n_rows).astype(float),
    })


def test_hand_case_leave_last_out():
    log = pd.DataFrame({
        "user_id": ["a"] * 4 + ["b"] * 2 + ["c"],
        "item_id": ["x1", "x2", "x3", "x4", "x1", "x2", "x3"],
        "timestamp": [40, 10, 30, 20, 5, 6, 1],
    })
    splits = split_interactions(log, cold_item_fraction=0.0)
    train = splits.train.groupby("user_id")["item_id"].apply(list).to_dict()
    assert train == {"a": ["x2", "x4"], "b": ["x1"], "c": ["x3"]}
    assert splits.validation[["user_id", "item_id"]].values.tolist() == [["a", "x3"]]
    assert splits.test[["user_id", "item_id"]].values.tolist() == [["a", "x1"], ["b", "x2"]]
    assert splits.test_cold.empty and splits.cold_items == []


def test_equal_timestamps_keep_file_order():
    log = pd.DataFrame({"user_id": ["a"] * 3, "item_id": ["p", "q", "r"], "timestamp": [7, 7, 7]})
    splits = split_interactions(log, cold_item_fraction=0.0)
    assert splits.test["item_id"].tolist() == ["r"]
    assert splits.validation["item_id"].tolist() == ["q"]


def test_cold_items_are_the_newest_and_never_in_training():
    log = random_log()
    # Make items i70..i79 new: their first interaction is after everything else.
    new = log["item_id"].isin([f"i{k}" for k in range(70, 80)])
    log.loc[new, "timestamp"] += 20_000
    splits = split_interactions(log, cold_item_fraction=0.125, seed=3)
    assert len(splits.cold_items) == 10
    assert set(splits.cold_items) == {f"i{k}" for k in range(70, 80)}
    for name in ("train", "validation", "test"):
        assert not set(splits.as_dict()[name]["item_id"]) & set(splits.cold_items)
    assert set(splits.test_cold["item_id"]) <= set(splits.cold_items)
    assert len(splits.test_cold) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_test_interaction_precedes_training(seed):
    splits = split_interactions(random_log(seed=seed), cold_item_fraction=0.2, seed=seed)
    train_end = splits.train.groupby("user_id")["timestamp"].max()
    for name in ("validation", "test", "test_cold"):
        held_out = splits.as_dict()[name]
        assert (held_out["timestamp"].to_numpy()
                >= held_out["user_id"].map(train_end).to_numpy()).all(), name
    # Every row is accounted for: kept in one split or counted as dropped.
    kept = sum(len(df) for df in splits.as_dict().values())
    assert kept + splits.stats["cold_rows_dropped_before_train_end"] == len(random_log(seed=seed))


def test_splits_are_deterministic():
    a = split_interactions(random_log(), cold_item_fraction=0.1, seed=5)
    b = split_interactions(random_log(), cold_item_fraction=0.1, seed=5)
    for name in a.as_dict():
        pd.testing.assert_frame_equal(a.as_dict()[name], b.as_dict()[name])
    assert a.cold_items == b.cold_items


def test_cold_tie_break_follows_the_seed_not_row_order():
    log = pd.DataFrame({"user_id": ["u"] * 20, "item_id": [f"i{k}" for k in range(20)],
                        "timestamp": [0] * 20})
    picks = {tuple(select_cold_items(log, 0.25, seed)) for seed in range(5)}
    assert len(picks) > 1  # the seed matters
    shuffled = log.sample(frac=1.0, random_state=1)
    assert select_cold_items(shuffled, 0.25, 7) == select_cold_items(log, 0.25, 7)


def test_bad_input_is_named():
    with pytest.raises(DataError, match="cold_item_fraction"):
        split_interactions(random_log(), cold_item_fraction=1.0)
    with pytest.raises(DataError, match="timestamp"):
        split_interactions(random_log().drop(columns="timestamp"))
    with pytest.raises(DataError, match="empty"):
        split_interactions(random_log().iloc[:0])
