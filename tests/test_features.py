"""Model inputs: vocabularies, leakage-free histories, masks, OOV users, exclusions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recsys_utils import features as F
from recsys_utils.schema import DataError
from toy_world import make_toy


def hand_prepared(feedback: str = "rating") -> SimpleNamespace:
    """User a: x1@10, x2@20, x3@20 (a tie), x4@30; user b: x2@5; b's test x5@50."""
    items = pd.DataFrame({"item_id": ["x1", "x2", "x3", "x4", "x5", "x6"], "title": "t",
                          "description": "", "category": "c"})
    train = pd.DataFrame({"user_id": ["a", "a", "a", "a", "b"],
                          "item_id": ["x1", "x2", "x3", "x4", "x2"],
                          "timestamp": [10, 20, 20, 30, 5]})
    test = pd.DataFrame({"user_id": ["a", "b", "zz"], "item_id": ["x5", "x5", "x6"],
                         "timestamp": [40, 50, 60]})
    if feedback == "rating":
        train["rating"] = [5.0, 1.0, 4.0, 3.0, 4.5]
        test["rating"] = [4.0, 2.0, 5.0]
    else:
        train["event"] = ["view", "click", "view", "purchase", "cart"]
        test["event"] = ["view", "click", "view"]
    return SimpleNamespace(items=items, feedback=feedback, cold_items=["x6"],
                           splits={"train": train, "test": test})


def test_vocab_item_index_is_row_and_users_start_after_oov():
    data = F.build_features(hand_prepared(), history_length=3)
    assert data.vocab.item_ids.tolist() == ["x1", "x2", "x3", "x4", "x5", "x6"]
    assert data.vocab.user_ids.tolist() == ["[OOV]", "a", "b"]
    assert data.vocab.user_index(["b", "a", "nobody"]).tolist() == [2, 1, F.OOV_USER]
    with pytest.raises(DataError, match="not in the items table"):
        data.vocab.item_index(["x9"])
    assert data.item_counts.tolist() == [1, 2, 1, 1, 0, 0]
    assert data.cold_items.tolist() == [5]


def test_history_is_strictly_before_the_target_with_ties_excluded():
    data = F.build_features(hand_prepared(), history_length=3)
    ex = data.examples["train"]
    rows = {(int(u), int(i)): h.tolist() for u, i, h in zip(ex["user"], ex["item"], ex["history"])}
    # Items x1..x4 are indices 0..3; most recent first, -1 padding at the end.
    assert rows[(1, 0)] == [-1, -1, -1]
    assert rows[(1, 1)] == [0, -1, -1]
    assert rows[(1, 2)] == [0, -1, -1]          # x2 has the same timestamp: not history
    assert rows[(1, 3)] == [2, 1, 0]            # x3 after x2 (row order among ties)
    assert rows[(2, 1)] == [-1, -1, -1]
    # Test rows: every training item of the user before the test time.
    test = data.examples["test"]
    assert test["history"].tolist() == [[3, 2, 1], [1, -1, -1], [-1, -1, -1]]


def test_history_never_leaks_on_random_data():
    world = make_toy(n_users=40, n_items=60, per_user=10, seed=3)
    data = F.build_features(world.prepared, history_length=4)
    ex = data.examples["train"]
    train = world.prepared.splits["train"]
    when = {(u, i): t for u, i, t in zip(data.vocab.user_index(train["user_id"]),
                                        data.vocab.item_index(train["item_id"]),
                                        train["timestamp"])}
    checked = 0
    for u, target_t, hist, mask in zip(ex["user"], ex["timestamp"], ex["history"],
                                       ex["history_mask"]):
        times = [when[(u, h)] for h in hist[mask > 0]]
        assert all(t < target_t for t in times)
        assert times == sorted(times, reverse=True)  # most recent first
        checked += len(times)
    assert checked > 500


def test_padding_and_mask_agree():
    world = make_toy(n_users=30, n_items=60, per_user=8, seed=1)
    data = F.build_features(world.prepared, history_length=6)
    for split in ("train", "test"):
        ex = data.examples[split]
        assert ex["history"].shape == ex["history_mask"].shape == (len(ex["user"]), 6)
        np.testing.assert_array_equal(ex["history_mask"] > 0, ex["history"] >= 0)
        # Padding only at the end: once a slot is empty, all later ones are.
        assert (np.diff(ex["history_mask"], axis=1) <= 0).all()
    # The first training interaction of every user has an empty history.
    first = pd.Series(data.examples["train"]["timestamp"]).groupby(
        data.examples["train"]["user"]).idxmin()
    assert (data.examples["train"]["history_mask"][first.to_numpy()] == 0).all()


def test_unknown_user_maps_to_oov_with_empty_history():
    data = F.build_features(hand_prepared(), history_length=3)
    q = data.queries("test")
    position = q.user_ids.tolist().index("zz")
    assert q.features["user"][position] == F.OOV_USER
    assert (q.features["history"][position] == -1).all()
    assert q.exclude[position].nnz == 0
    feats = data.user_features(["nobody", "a"])
    assert feats["user"].tolist() == [0, 1]
    assert feats["history"][0].tolist() == [-1, -1, -1]
    assert feats["history"][1].tolist() == [3, 2, 1]


def test_exclusion_marks_exactly_the_training_items():
    world = make_toy(n_users=50, n_items=80, per_user=10, seed=2)
    data = F.build_features(world.prepared, history_length=5)
    q = data.queries("test")
    train = world.prepared.splits["train"]
    expected = np.zeros((len(q), data.n_items), bool)
    row = {u: k for k, u in enumerate(q.user_ids)}
    for u, i in zip(train["user_id"], data.vocab.item_index(train["item_id"])):
        if u in row:
            expected[row[u], i] = True
    np.testing.assert_array_equal(q.exclude.toarray(), expected)
    # Relevant items are the user's test items.
    test = world.prepared.splits["test"]
    for u, i in zip(test["user_id"], data.vocab.item_index(test["item_id"])):
        assert i in q.relevant[row[u]]


def test_query_history_is_last_h_training_items():
    world = make_toy(n_users=30, n_items=60, per_user=12, seed=4)
    data = F.build_features(world.prepared, history_length=3)
    q = data.queries("test_cold")
    train = world.prepared.splits["train"].sort_values(["user_id", "timestamp"], kind="stable")
    for user, hist in zip(q.user_ids, q.features["history"]):
        last = train.loc[train["user_id"] == user, "item_id"].tolist()[::-1][:3]
        assert data.vocab.item_ids[hist[hist >= 0]].tolist() == last


def test_labels_context_and_cold_items():
    data = F.build_features(hand_prepared("event"), history_length=2)
    ex = data.examples["train"]
    assert ex["label"].tolist() == [0, 1, 0, 1, 1]
    assert "rating" not in ex
    rated = F.build_features(hand_prepared("rating"), history_length=2).examples["train"]
    assert rated["label"].tolist() == [1, 0, 1, 0, 1]
    assert rated["rating"].dtype == np.float32
    hour, dow = F._clock(np.array([0, 3600 * 25, 86400 * 4]))
    assert hour.tolist() == [0, 1, 0] and dow.tolist() == [3, 4, 0]  # Thu, Fri, Mon
    world = make_toy(n_users=60, n_items=90, per_user=10, seed=5)
    toy = F.build_features(world.prepared)
    assert toy.item_counts[toy.cold_items].sum() == 0
    assert set(toy.examples["test_cold"]["item"]) <= set(toy.cold_items.tolist())


def test_dataset_shuffle_is_deterministic():
    world = make_toy(n_users=30, n_items=60, per_user=8, seed=1)
    data = F.build_features(world.prepared, history_length=2)
    ex = data.examples["train"]

    def first_batch(seed):
        return next(iter(F.to_dataset(ex, 16, seed=seed)))["item"].numpy().tolist()

    assert first_batch(7) == first_batch(7)
    assert first_batch(7) != first_batch(8)
    unshuffled = next(iter(F.to_dataset(ex, 16, shuffle=False)))["item"].numpy()
    np.testing.assert_array_equal(unshuffled, ex["item"][:16])


def test_dataset_batches_are_those_of_shuffling_the_rows():
    import tensorflow as tf
    world = make_toy(n_users=30, n_items=60, per_user=8, seed=1)
    ex = F.build_features(world.prepared, history_length=3).examples["train"]
    n = len(ex["item"])
    row_wise = tf.data.Dataset.from_tensor_slices(dict(ex)).shuffle(
        n, seed=3, reshuffle_each_iteration=True).batch(16)
    gathered = F.to_dataset(ex, 16, seed=3)
    for _ in range(2):  # two epochs: reshuffled alike
        pairs = list(zip(row_wise, gathered, strict=True))
        assert len(pairs) == -(-n // 16)
        for expected, batch in pairs:
            assert set(batch) == set(ex)
            for name in ex:  # every column of a row stays with its row
                np.testing.assert_array_equal(batch[name].numpy(), expected[name].numpy())
    dropped = list(F.to_dataset(ex, 16, seed=3, drop_remainder=True))
    assert len(dropped) == n // 16 and all(len(b["item"]) == 16 for b in dropped)


def test_item_attribute_matrix_one_hot_multi_valued_and_capped():
    items = pd.DataFrame({
        "genres": ["Action|Comedy", "Comedy", None, "Drama"],
        "year": [1995.0, 1996.0, np.nan, 1995.0],   # floats because of the NaN
        "brand": ["a", "b", "c", "a"],
    })
    matrix, names = F.item_attribute_matrix(items, ["genres", "year", "brand"], max_values=2)
    assert matrix.shape == (4, len(names)) and matrix.dtype == np.float32
    assert "year=1995" in names and "year=1995.0" not in names
    assert "brand=other" in names and "brand=c" not in names  # the rarest value is folded
    row = dict(zip(names, matrix[0]))
    # A two-genre film splits its genre block's unit weight between both genres.
    assert row["genres=Action"] == pytest.approx(2 ** -0.5) == row["genres=Comedy"]
    # Each column's block has unit norm (or is empty when the value is missing).
    genre_cols = [i for i, n in enumerate(names) if n.startswith("genres=")]
    assert np.allclose(np.linalg.norm(matrix[:, genre_cols], axis=1), [1, 1, 0, 1])
    assert matrix[2, [i for i, n in enumerate(names) if n.startswith("year=")]].sum() == 0


def test_item_content_appends_catalogue_facts_and_names_bad_columns():
    items = pd.DataFrame({"item_id": ["i1", "i2"], "category": ["hat", "bag"],
                          "gender": ["women", "men"], "colour": ["red", "blue"]})
    prepared = SimpleNamespace(items=items, attribute_columns=["gender"])
    assert F.fact_columns(prepared) == ["category", "gender"]  # truth columns never join
    content = F.item_content(np.ones((2, 3), np.float32), prepared)
    assert content.shape == (2, 3 + 4)
    assert np.allclose(content[:, :3], 1.0)
    with pytest.raises(DataError, match="missing column.*'gendr'.*found 'gender'"):
        F.item_content(np.ones((2, 3)), prepared, columns=["gendr"])
    with pytest.raises(DataError, match=r"n_items=2"):
        F.item_content(np.ones((3, 3)), prepared)
    with pytest.raises(DataError, match="item content is empty"):
        F.item_content(np.zeros((2, 0)), SimpleNamespace(items=items[["item_id"]],
                                                        attribute_columns=[]))


def test_item_attribute_matrix_rows_follow_position_and_values_are_stripped():
    items = pd.DataFrame({"genres": ["Drama", "Action| Comedy", "Comedy"]}, index=[10, 3, 7])
    matrix, names = F.item_attribute_matrix(items, ["genres"])
    assert names == ["genres=Action", "genres=Comedy", "genres=Drama"]  # no " Comedy"
    expected = np.array([[0, 0, 1], [2 ** -0.5, 2 ** -0.5, 0], [0, 1, 0]], np.float32)
    np.testing.assert_allclose(matrix, expected, rtol=1e-6)


def test_check_item_content_is_the_one_shape_and_finiteness_check():
    from recsys_utils.features import check_item_content

    ok = check_item_content(np.ones((3, 2), np.float64), 3)
    assert ok.dtype == np.float32 and ok.shape == (3, 2)
    with pytest.raises(DataError, match=r"item_content must be \(n_items=4, d\)"):
        check_item_content(np.ones((3, 2)), 4)
    with pytest.raises(DataError, match="oracle content contains NaN"):
        check_item_content(np.array([[np.nan], [1.0]]), 2, "oracle content")
