"""Notebook 03's experiment (recsys_utils.content_comparison): the content task, held-out items,
the comparison of single modalities with fusions, and what changed."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest

from recsys_utils import content_comparison as C
from recsys_utils.schema import DataError


# ---------------------------------------------------------------- notebook-03 helpers
def small_catalogue(n: int = 40, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "item_id": [f"i{i:03d}" for i in range(n)],
        "category": rng.choice(["hat", "bag", "shoe"], n),
        "colour": rng.choice(["red", "blue", "unknown"], n, p=[0.45, 0.45, 0.1]),
        "material": rng.choice(["wool", "silk"], n),
        "gender": rng.choice(["men", "women"], n),
        "price": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(5, 100, n)),
    })
    items["genres"] = items["category"] + "|" + items["gender"]     # determines the category
    return items


def test_content_task_labels_relevance_and_attribute_inputs():
    items = small_catalogue()
    task = C.content_task("synthetic", items, ["gender", "genres"])
    assert task.label_columns == ["category", "colour", "material"]
    assert task.relevance_columns == ["colour", "material"]
    # Label columns never become inputs; "genres" gives the category away; price -> bands.
    assert task.attribute_columns == ["gender", "price_band"]
    assert "category" in task.excluded["genres"] and set(task.attributes) == {"gender", "price_band"}
    unknown = (items["colour"] == "unknown").to_numpy()
    assert (task.labels["colour"][unknown] == -1).all() and (task.labels["colour"][~unknown] >= 0).all()
    assert set(task.labels["colour"][~unknown]) == {0, 1}        # dense codes without the placeholder
    # An unknown relevance value makes a key of its own: never relevant to anything.
    assert len(set(task.relevance_key[unknown])) == unknown.sum()
    assert not set(task.relevance_key[unknown]) & set(task.relevance_key[~unknown])
    assert task.image_columns == ["category", "colour"] and task.image_key is not None
    summary = task.summary()
    assert summary.loc["genres", "role"] == "excluded" and summary.loc["colour", "values"] == 2
    assert "colour + material" in task.describe()


def test_content_task_without_images_and_unknown_dataset():
    items = small_catalogue()
    task = C.content_task("movielens-100k", items, ["genres", "gender"], has_images=False)
    assert task.label_columns == ["category"] and task.image_columns == [] and task.image_key is None
    assert task.attribute_columns == ["gender", "price_band"]
    other = C.content_task("my-shop", items.drop(columns="price"), ["colour", "gender"])
    assert other.label_columns == ["category"] and other.attribute_columns == ["colour", "gender"]
    with pytest.raises(DataError, match="material"):
        C.content_task("synthetic", items.drop(columns="material"), ["gender"])


def test_label_purity():
    assert C.label_purity(["a", "a", "b", "b"], ["x", "x", "y", "y"]) == 1.0
    assert C.label_purity(["a", "a", "a", "a"], ["x", "x", "y", "y"]) == 0.5
    assert C.label_purity(["a", "unknown"], ["x", "y"]) == 1.0          # unknowns left out


def test_holdout_items_splits_cold_and_drawn_items_alike_into_validation_and_test():
    ids = [f"i{i}" for i in range(50)]
    cold = ["i3", "i7", "i11"]
    train, validation, test = C.holdout_items(ids, cold, share=0.2, seed=1)
    held = np.union1d(validation, test)
    assert len(held) == 10 and {3, 7, 11} <= set(held) and not set(train) & set(held)
    assert not set(validation) & set(test) and len(train) + len(held) == 50
    # Half the three cold items (one) and half the seven drawn ones (three) validate.
    assert len(validation) == 4 and len({3, 7, 11} & set(validation)) == 1
    again = C.holdout_items(ids, cold, share=0.2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test)))
    assert not np.array_equal(C.holdout_items(ids, cold, share=0.2, seed=2)[1], validation)
    many_cold = [f"i{i}" for i in range(20)]                            # more cold items than the share
    _, validation, test = C.holdout_items(ids, many_cold, share=0.2)
    assert len(validation) == len(test) == 10                         # none drawn: cold ones only
    with pytest.raises(ValueError, match="share"):
        C.holdout_items(ids, cold, share=1.5)
    with pytest.raises(DataError, match="validation and test"):
        C.holdout_items(["a", "b"], ["a"], share=0.5)


def test_compare_content_models_fusion_beats_single_modalities(content_world):
    w = content_world
    comparison = C.compare_content_models(
        {"text": w["text"], "image": w["image"]}, {"image": w["image_present"]},
        {"a": w["a"], "b": w["b"]}, w["key"], train_idx=w["train"],
        validation_idx=w["validation"], test_idx=w["test"],
        methods=("concat", "gated"), metric="precision@10", seed=0, progress=False,
        output_dim=16, epochs=15, batch_size=64, learning_rate=3e-3)
    table = comparison.table
    assert list(table.index) == ["text", "image", "concat", "gated"]
    assert list(table["kind"]) == ["single modality"] * 2 + ["fusion"] * 2
    assert set(comparison.embeddings) == set(table.index)
    # a is only in the text, b only in the image: fusion must win clearly.
    assert comparison.best_fusion in ("concat", "gated") and comparison.margin["absolute"] > 0.2, table
    # The winners are the best on the validation items, which score every model too.
    chooses = table["validation precision@10"]
    assert chooses.notna().all() and comparison.best_fusion == chooses[["concat", "gated"]].idxmax()
    assert comparison.best_single == chooses[["text", "image"]].idxmax()
    # Per test query item, the same items for every model: their means are the table's,
    # and the fusion's gain over a single modality has an interval above zero.
    for name in table.index:
        assert comparison.per_item[name].mean() == pytest.approx(table.loc[name, "precision@10"])
    row = comparison.paired(comparison.best_fusion, comparison.best_single, seed=0)
    assert row["split"] == "test" and row["metric"] == "precision@10"
    assert row["difference"] == pytest.approx(comparison.margin["absolute"])
    assert 0 < row["low"] <= row["difference"] <= row["high"]
    assert row["n_queries"] == len(comparison.per_item["text"]) == table.loc["text", "n_queries"]
    weights = C.modality_weight_table(comparison, {"text": w["text"], "image": w["image"]},
                                      {"image": w["image_present"]}, w["test"])
    assert list(weights.index) == ["gated (prior)", "gated (mean)"]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)


def test_the_winners_are_the_best_on_validation_and_scored_on_test():
    import pandas as pd

    # On the test items the order is the other way round: the validation column decides.
    table = pd.DataFrame({"kind": ["single modality", "single modality", "fusion", "fusion"],
                          "ndcg@10": [0.5, 0.3, 0.6, 0.4],
                          "validation ndcg@10": [0.2, 0.4, 0.3, 0.5]},
                         index=["text", "image", "concat", "gated"])
    comparison = C.Comparison(table=table, embeddings={}, models={}, metric="ndcg@10")
    assert (comparison.best_single, comparison.best_fusion) == ("image", "gated")
    assert comparison.margin["absolute"] == pytest.approx(0.4 - 0.3)
    table["validation ndcg@10"] = np.nan           # no validation item had a relevant item
    with pytest.raises(DataError, match="validation"):
        C.Comparison(table=table, embeddings={}, models={}, metric="ndcg@10").best_fusion


def test_compare_content_models_skips_an_absent_modality(content_world):
    w = content_world
    comparison = C.compare_content_models(
        {"text": w["text"], "image": w["image"]}, {"image": np.zeros(w["n"], bool)}, {"a": w["a"]},
        w["key"], train_idx=w["train"], validation_idx=w["validation"], test_idx=w["test"],
        progress=False, epochs=1, output_dim=8)
    assert comparison.table.loc["image", "note"] == "no item has this modality"
    assert list(comparison.embeddings) == ["text"] and comparison.best_single == "text"
    with pytest.raises(DataError, match="no modality"):
        C.compare_content_models({"image": w["image"]}, {"image": np.zeros(w["n"], bool)}, {"a": w["a"]},
                                 w["key"], train_idx=w["train"], validation_idx=w["validation"],
                                 test_idx=w["test"], progress=False)


def test_neighbour_changes_by_hand():
    # Items 0-1-2 close in "before"; in "after" item 0 moves next to its relevant partner 3.
    before = np.array([[1, 0], [0.7, 0.7], [0.72, 0.7], [0, 1]], np.float32)
    after = np.array([[0, 1], [0.7, 0.7], [0.72, 0.7], [0.1, 0.9]], np.float32)
    key = np.array(["x", "y", "y", "x"])
    table = C.neighbour_changes(before, after, np.array([0, 1]), key, k=1)
    assert table.index[0] == 0
    assert table.loc[0].to_dict() == {"overlap": 0.0, "relevant_before": 0, "relevant_after": 1, "gain": 1}
    assert table.loc[1, "overlap"] == 1.0 and table.loc[1, "gain"] == 0


def test_price_bands():
    codes = C.price_bands([1.0, 2.0, 3.0, 4.0, np.nan, 100.0, 5.0, 6.0], n_bands=4)
    assert codes[4] == -1 and sorted(set(codes[np.arange(8) != 4])) == [0, 1, 2, 3]


def test_encode_attributes():
    import pandas as pd

    codes, vocabularies = C.encode_attributes(pd.DataFrame({"colour": ["red", None, "blue", "red"]}),
                                              ["colour"])
    assert list(codes["colour"]) == [1, -1, 0, 1] and vocabularies["colour"] == ["blue", "red"]
    with pytest.raises(DataError, match="size"):
        C.encode_attributes(pd.DataFrame({"colour": ["red"]}), ["size"])
