from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_utils import artifacts, prepare
from recsys_utils.schema import Dataset, LoadReport
from recsys_utils.splits import split_interactions


def tiny_dataset() -> Dataset:
    items = pd.DataFrame({
        "item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"],
        "description": ["", "x", "", "y"], "category": ["k1", "k1", "k2", "k2"],
        "colour": ["red", "blue", "red", "green"],
    })
    rng = np.random.default_rng(0)
    interactions = pd.DataFrame({
        "user_id": [f"u{k % 5}" for k in range(40)],
        "item_id": rng.choice(["a", "b", "c", "d"], 40, p=[0.6, 0.2, 0.1, 0.1]),
        "timestamp": np.arange(40, dtype="int64"),
        "event": rng.choice(["view", "click", "purchase"], 40),
    })
    return Dataset("tiny", items, interactions, ["colour"],
                   report=LoadReport(source="test", malformed_rows=2)).validate()


def test_write_and_load_round_trip(tmp_path):
    data = tiny_dataset()
    splits = split_interactions(data.interactions, cold_item_fraction=0.25)
    prepare.write_prepared(tmp_path, data, splits)
    prepared = artifacts.load_prepared(tmp_path)
    pd.testing.assert_frame_equal(prepared.items, data.items)
    pd.testing.assert_frame_equal(prepared.splits["test"], splits.test)
    assert prepared.cold_items == splits.cold_items
    assert prepared.attribute_columns == ["colour"] and prepared.feedback == "event"
    vocab = (tmp_path / "data" / "vocab" / "colour.txt").read_text().split()
    assert vocab == ["blue", "green", "red"]


def test_interrupted_preparation_is_not_trusted(tmp_path, monkeypatch):
    data = tiny_dataset()
    splits = split_interactions(data.interactions, cold_item_fraction=0.25)
    prepare.write_prepared(tmp_path, data, splits)  # an earlier, complete run
    calls = {"n": 0}
    real_save = artifacts.save_parquet

    def failing_save(df, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_save(df, path)

    monkeypatch.setattr(artifacts, "save_parquet", failing_save)
    with pytest.raises(KeyboardInterrupt):
        prepare.write_prepared(tmp_path, data, splits)
    with pytest.raises(Exception, match="notebook 01"):
        artifacts.load_prepared(tmp_path)


def test_summary_numbers():
    data = tiny_dataset()
    splits = split_interactions(data.interactions, cold_item_fraction=0.25)
    summary = prepare.summarise(data, splits)
    assert summary["n_items"] == 4 and summary["n_users"] == 5
    assert summary["n_interactions"] == 40
    pairs = len(data.interactions[["user_id", "item_id"]].drop_duplicates())
    assert summary["density"] == pytest.approx(pairs / 20)  # distinct pairs, not log rows
    assert summary["malformed_rows"] == 2
    assert sum(summary["events"].values()) == 40
    assert summary["top_10pct_items_share"] == pytest.approx(
        data.interactions["item_id"].value_counts().max() / 40)


def test_gini():
    assert prepare.gini(np.ones(10)) == pytest.approx(0.0)
    assert prepare.gini(np.array([0] * 99 + [1])) == pytest.approx(0.99)
    assert prepare.gini(np.zeros(3)) == 0.0
