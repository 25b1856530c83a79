from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from recsys_utils import plots, probes
from recsys_utils.schema import DataError


def separable(n_per_class=40, n_classes=3, dim=8, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat([f"c{k}" for k in range(n_classes)], n_per_class)
    x = centres[np.repeat(np.arange(n_classes), n_per_class)] + noise * rng.normal(
        size=(n_classes * n_per_class, dim))
    return x.astype(np.float32), labels


def test_probe_split_is_stratified_and_respects_shots():
    labels = np.array(["a"] * 20 + ["b"] * 10 + ["lonely"])
    train, test = probes.probe_split(labels, shots=3, seed=1)
    assert not set(train) & set(test)
    assert pd.Series(labels[train]).value_counts().to_dict() == {"a": 3, "b": 3}
    assert pd.Series(labels[test]).value_counts().to_dict() == {"a": 6, "b": 3}
    again = probes.probe_split(labels, shots=3, seed=1)
    assert (again[0] == train).all() and (again[1] == test).all()


def test_linear_probe_learns_separable_classes_and_not_noise():
    x, labels = separable()
    learned = probes.linear_probe(x, labels, shots=5, seed=0)
    assert learned["accuracy"] > 0.95 and learned["n_classes"] == 3
    noise = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    chance = probes.linear_probe(noise, labels, seed=0)
    assert chance["accuracy"] < 0.6  # 3 balanced classes: about 1/3


def test_tfidf_cannot_generalise_to_unseen_synonyms():
    # Train sentences say "red"/"blue"; test ones only synonyms: bag of words is lost.
    train = ["a red shirt", "red shoes", "a blue shirt", "blue shoes"] * 3
    test = ["a crimson shirt", "scarlet shoes", "a navy shirt", "cobalt shoes"]
    features = probes.tfidf_features(train + test).toarray()
    assert features.shape[0] == 16
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    # The test rows share no colour word with any training row.
    vocab_overlap = features[12:] @ features[:12].T
    assert vocab_overlap.max() < 0.99


def test_linear_probe_takes_sparse_tfidf():
    texts = ["red shirt", "red shoes", "red hat", "blue shirt", "blue shoes", "blue hat"] * 4
    labels = [("red" if "red" in t else "blue") for t in texts]
    result = probes.linear_probe(probes.tfidf_features(texts), labels, shots=3, seed=0)
    assert result["accuracy"] == 1.0


def test_probe_errors_are_clear():
    x, labels = separable()
    with pytest.raises(DataError, match="rows"):
        probes.linear_probe(x[:5], labels)
    with pytest.raises(DataError, match="two classes"):
        probes.linear_probe(x, np.array(["same"] * len(x)))


def test_nearest_items_excludes_self_and_orders_by_score():
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"]})
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    table = probes.nearest_items(vectors[[0, 2]], vectors, items, k=2,
                                 query_labels=["A", "C"], exclude_index=[0, 2])
    assert table[table["query"] == "A"]["item_id"].tolist() == ["b", "d"]
    assert table[table["query"] == "C"]["item_id"].tolist() == ["d", "b"]
    assert (table.groupby("query")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_map_draws_every_frequent_label(method):
    x, labels = separable(n_per_class=30)
    fig = plots.embedding_map(x, labels, method=method, max_points=60, seed=0)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert set(legend) >= {"c0", "c1", "c2"}


def test_compare_probes_table_has_a_row_per_label_and_shots():
    x, labels = separable()
    items = pd.DataFrame({"category": labels, "constant": ["same"] * len(labels)})
    noise = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    comparison = probes.compare_probes({"good": x, "noise": noise}, items,
                                       ["category", "constant"], shots=(5, None), draws=3)
    table = comparison.table
    assert table["label"].tolist() == ["category", "category"]  # "constant" has one class
    assert (table["good"] > table["noise"]).all()
    # The few-shot row is the mean of three draws (seeds 0, 1, 2); the full one, one probe.
    draws = [probes.linear_probe(x, labels, shots=5, seed=s)["accuracy"] for s in range(3)]
    assert table.loc[0, "good"] == round(np.mean(draws), 3)
    assert table.loc[1, "good"] == round(probes.linear_probe(x, labels, seed=0)["accuracy"], 3)
    for regime, n_draws in (("5 per class", 3), ("all", 1)):
        row = comparison.difference("good", "noise", regime)
        assert row["split"] == f"probe, {regime}" and row["draws"] == n_draws
        assert row["difference"] == pytest.approx(row["value_a"] - row["value_b"])
        assert 0 < row["low"] < row["difference"] < row["high"], row     # good beats noise
    same = probes.compare_probes({"a": x, "b": x}, items, ["category"], draws=3)
    for regime in ("5 per class", "all"):                              # one model twice: no gap
        row = same.difference("a", "b", regime)
        assert row["low"] == row["difference"] == row["high"] == 0.0
    with pytest.raises(DataError, match="no probe row"):
        comparison.difference("good", "noise", "7 per class")
    with pytest.raises(DataError, match="draws"):
        probes.compare_probes({"good": x}, items, ["category"], draws=0)
    assert probes.probe_columns(["gender"], ["colour"]) == ["category", "colour"]
    assert probes.probe_columns(["gender"], []) == ["category", "gender"]
