from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_utils import artifacts, prepare
from recsys_utils.schema import DataError, Dataset, LoadReport
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


# ---------------------------------------------------------------- the data gate


CSV_GOOD = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "csv_good"


def shop(n_items: int = 80, n_users: int = 60, per_user: int = 5, seed: int = 0) -> Dataset:
    """A small event data set in memory: ``per_user`` interactions per user, in time order."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{k:03d}" for k in range(n_items)],
                          "title": [f"Item {k}" for k in range(n_items)],
                          "description": ["a thing"] * n_items,
                          "category": [f"c{k % 4}" for k in range(n_items)]})
    rows = [(f"u{u:03d}", f"i{rng.integers(n_items):03d}", 1_700_000_000 + 1000 * u + t, "click")
            for u in range(n_users) for t in range(per_user)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    return Dataset("csv", items, interactions, [],
                   report=LoadReport(source="/data/shop")).validate()


def gate(dataset: Dataset, profile: str = "smoke") -> pd.DataFrame:
    splits = split_interactions(dataset.interactions, cold_item_fraction=0.1, seed=1)
    return prepare.check_usable(dataset, splits, profile)


def test_gate_passes_usable_data_without_warnings():
    assert gate(shop()).empty


def test_gate_refuses_empty_validation_naming_file_column_and_user():
    with pytest.raises(DataError) as info:
        gate(shop(per_user=2))  # train + test at most: no validation interaction
    message = str(info.value)
    for fragment in ("/data/shop/interactions.csv", "column 'user_id'", "validation split is empty",
                     "at least 3 interactions", "example row", "'u000'"):
        assert fragment in message, message


def test_gate_refuses_empty_test_split():
    with pytest.raises(DataError, match="test split is empty"):
        gate(shop(per_user=1))


def test_gate_refuses_too_few_items_and_users_for_the_profile():
    with pytest.raises(DataError) as info:
        gate(shop(n_items=10))
    message = str(info.value)
    assert "/data/shop/items.csv, column 'item_id': 10 item(s)" in message
    assert "needs at least 50" in message and "example row: {'item_id': 'i000'" in message
    with pytest.raises(DataError) as info:
        gate(shop(n_users=30))
    message = str(info.value)
    assert "/data/shop/interactions.csv, column 'user_id': 30 user(s)" in message
    assert "at least 50" in message and "example row: {'user_id': 'u000'" in message
    with pytest.raises(DataError, match="'full' profile needs at least 500.*use the smoke profile"):
        gate(shop(), profile="full")


def test_gate_refuses_too_few_validation_users():
    data = shop(n_users=60)
    # Only 5 users keep a history long enough for validation.
    light = data.interactions.groupby("user_id").cumcount() >= 2
    keep = ~light | data.interactions["user_id"].isin([f"u{u:03d}" for u in range(5)])
    data.interactions = data.interactions[keep].reset_index(drop=True)
    with pytest.raises(DataError, match="only [0-9] user\\(s\\) in the validation split"):
        gate(data)


def test_gate_refuses_an_empty_cold_start_test():
    """Each user meets a new item only first: every cold row precedes training, none is kept."""
    data = shop(n_users=60)
    new = pd.DataFrame({"item_id": [f"z{u:03d}" for u in range(60)], "title": "New",
                        "description": "", "category": "c0"})
    old = data.items["item_id"].tolist()
    rows = [("early", item, t, "view") for t, item in enumerate(old)]
    for u in range(60):
        rows.append((f"u{u:03d}", f"z{u:03d}", 1000 + 10 * u, "click"))
        rows += [(f"u{u:03d}", old[(u + k) % len(old)], 1000 + 10 * u + k, "click")
                 for k in range(1, 6)]
    data = Dataset("csv", pd.concat([data.items, new], ignore_index=True),
                   pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"]), [],
                   report=LoadReport(source="/data/shop")).validate()
    with pytest.raises(DataError) as info:
        gate(data)
    message = str(info.value)
    assert "cold-start test is empty" in message and "interactions.csv, column 'item_id'" in message
    assert "'item_id': 'z0" in message  # an example row with a cold item


def test_gate_warns_on_suspicious_but_usable_data():
    data = shop()
    data.interactions = pd.concat([data.interactions, data.interactions.head(3)], ignore_index=True)
    data.items["description"] = ""
    warnings = gate(data)
    assert {"duplicate rows", "empty descriptions"} <= set(warnings["check"])
    assert (warnings["level"] == "warning").all()
    row = warnings.set_index("check").loc["duplicate rows"]
    assert row["source"].endswith("interactions.csv") and row["example"]["user_id"] == "u000"


def test_gate_names_the_record_and_line_of_a_csv_example(tmp_path):
    """A gate error on a csv folder says where its example row is: record and file line."""
    from recsys_utils.data import load_dataset

    data = shop(n_users=60, per_user=5)
    # Users u010.. keep two interactions: 10 validation users, below the smoke minimum.
    keep = (data.interactions["user_id"] < "u010") | (
        data.interactions.groupby("user_id").cumcount() < 2)
    interactions = data.interactions[keep].reset_index(drop=True)
    folder = tmp_path / "shop"
    folder.mkdir()
    data.items.to_csv(folder / "items.csv", index=False)
    # A quoted note spanning two lines: record k starts on line 2k.
    interactions.assign(note="seen\ntwice").to_csv(folder / "interactions.csv", index=False)
    with pytest.raises(DataError) as info:
        gate(load_dataset("csv", folder))
    message = str(info.value)
    assert "only 10 user(s) in the validation split" in message
    assert str(folder / "interactions.csv") in message
    # The first light user's first row: 50 rows of heavy users before it.
    assert "record 51 (line 102): {'user_id': 'u010'" in message


def test_gate_on_the_tiny_csv_fixture_names_the_fix():
    from recsys_utils.data import load_dataset

    tiny = load_dataset("csv", CSV_GOOD.parent / "csv_tiny")
    with pytest.raises(DataError, match="items.csv, column 'item_id': 3 item\\(s\\)"):
        gate(tiny)


# ------------------------------------------------------------------ images


def _png(path, colour=(200, 0, 0)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return str(path)


def image_shop(folder) -> Dataset:
    data = shop()
    paths = [None] * len(data.items)
    paths[0] = _png(folder / "images" / "good.png")
    bad = folder / "images" / "bad.png"
    bad.write_text("not an image")
    paths[1] = str(bad)
    truncated = folder / "images" / "cut.png"
    truncated.write_bytes((folder / "images" / "good.png").read_bytes()[:40])
    paths[2] = str(truncated)
    data.items["image_path"] = pd.Series(paths, dtype=object)
    data.data_root = folder
    return data


def test_verify_images_records_and_drops_unreadable_files(tmp_path):
    data = image_shop(tmp_path)
    bad = prepare.verify_images(data)
    assert bad["item_id"].tolist() == ["i001", "i002"]
    assert bad["problem"].str.startswith("unreadable").all()
    assert data.items["image_path"].notna().tolist()[:3] == [True, False, False]
    assert data.report.unreadable_images == 2
    assert [b["item_id"] for b in data.report.bad_images] == ["i001", "i002"]
    warnings = gate(data)
    assert "bad images" in set(warnings["check"])


def test_image_paths_are_stored_relative_and_resolved_against_the_copy(tmp_path):
    import shutil

    data_dir = tmp_path / "raw"
    data = image_shop(data_dir)
    prepare.verify_images(data)
    splits = split_interactions(data.interactions, cold_item_fraction=0.1, seed=1)
    run = tmp_path / "run" / "artifacts"
    prepare.write_prepared(run, data, splits)
    stored = pd.read_parquet(run / "data" / "items.parquet")["image_path"]
    assert stored.iloc[0] == "images/good.png"
    assert artifacts.read_json(run / "data" / "dataset.json")["image_root"] == "data_dir"
    assert artifacts.read_json(run / "data" / "dataset.json")["report"]["bad_images"][0][
        "image_path"] == "images/bad.png"

    # A copied run directory with the data in another place reads that place's files.
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    shutil.copytree(data_dir, tmp_path / "moved")
    items = prepare.resolve_image_paths(pd.read_parquet(tmp_path / "copy" / "artifacts" / "data" /
                                                        "items.parquet"),
                                        tmp_path / "copy" / "artifacts", tmp_path / "moved")
    assert items["image_path"].iloc[0] == str(tmp_path / "moved" / "images" / "good.png")
    assert items["image_path"].iloc[1:3].isna().all()


def test_generated_images_are_relative_to_the_artifact_dir(tmp_path):
    data = shop()
    run = tmp_path / "run"
    data.items["image_path"] = pd.Series([_png(run / "images" / "g.png")] + [None] * 79,
                                         dtype=object)
    splits = split_interactions(data.interactions, cold_item_fraction=0.1, seed=1)
    prepare.write_prepared(run, data, splits)
    (tmp_path / "run").rename(tmp_path / "copied")
    items = prepare.resolve_image_paths(
        pd.read_parquet(tmp_path / "copied" / "data" / "items.parquet"), tmp_path / "copied")
    assert items["image_path"].iloc[0] == str(tmp_path / "copied" / "images" / "g.png")
