"""Two-tower retrieval on a planted toy world: learning, warm and cold quality, log-Q."""

from __future__ import annotations

from types import SimpleNamespace

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recsys_utils import features as F
from recsys_utils import metrics
from recsys_utils import retrieval as R
from recsys_utils.data import tfrs_protocol_split

BUDGET = dict(epochs=8, batch_size=128, embedding_dim=32, learning_rate=0.01, seed=0,
              progress=False)


@pytest.fixture(scope="module")
def world():
    toy = F.make_toy(seed=0)  # 200 users, 300 items, 4 categories x 5 colours
    return toy, F.build_features(toy.prepared, history_length=5)


@pytest.fixture(scope="module")
def trained(world):
    toy, data = world
    return {v: R.train_retrieval(v, data, toy.content, **BUDGET) for v in R.VARIANTS}


@pytest.fixture(scope="module")
def table(world, trained):
    _, data = world
    frame = R.retrieval_table(trained.values(), data, ks=(10, 50, 100))
    return frame.set_index(["variant", "split", "candidates"])


def test_every_model_variant_learns(trained):
    for variant in ("id", "content", "fused"):
        loss = trained[variant].history["loss"]
        assert len(loss) == BUDGET["epochs"]
        assert loss[-1] < 0.8 * loss[0], (variant, loss)
        assert trained[variant].examples_per_second > 0
    assert trained["popularity"].model is None


def test_models_beat_popularity_on_warm_items(table):
    popularity = table.loc[("popularity", "test", "all"), "recall@50"]
    for variant in ("id", "content", "fused"):
        assert table.loc[(variant, "test", "all"), "recall@50"] > popularity + 0.2, table


def test_content_beats_id_on_cold_items(table):
    id_cold = table.loc[("id", "test_cold", "all"), "recall@50"]
    for variant in ("content", "fused"):
        assert table.loc[(variant, "test_cold", "all"), "recall@50"] > id_cold + 0.3, table
    # Among cold items only, content still orders them far better than the id model.
    assert (table.loc[("content", "test_cold", "cold"), "ndcg@10"]
            > table.loc[("id", "test_cold", "cold"), "ndcg@10"] + 0.2)


def test_log_q_correction_is_passed_to_the_task(world, trained):
    _toy, data = world
    result = trained["content"]
    counts = np.bincount(data.examples["train"]["item"], minlength=data.n_items)
    np.testing.assert_allclose(result.item_probability, counts / counts.sum(), rtol=1e-6)
    assert "candidate_sampling_probability" in R.__doc__ and "log Q" in R.__doc__

    # The task loss equals a hand-computed softmax over logits - log(p), and differs from it
    # without the correction: the probabilities really reach the task.
    model = result.model
    train = data.examples["train"]
    _, first = np.unique(train["item"], return_index=True)  # distinct items: no accidental hits
    rows = np.sort(first)[:64]
    batch = {k: tf.constant(v[rows]) for k, v in train.items()}
    q = model.query_tower(batch, training=False).numpy()
    c = model.item_tower(batch["item"], training=False).numpy()
    p = result.item_probability[train["item"][rows]]

    def softmax_loss(logits):
        logits = logits - logits.max(axis=1, keepdims=True)
        return float(-(np.diag(logits) - np.log(np.exp(logits).sum(axis=1))).sum())

    corrected = softmax_loss(q @ c.T - np.log(np.clip(p, 1e-6, 1))[None, :])
    plain = softmax_loss(q @ c.T)
    assert model.log_q
    assert float(model.compute_loss(batch, training=False)) == pytest.approx(corrected, rel=1e-3)
    model.log_q = False
    try:
        assert float(model.compute_loss(batch, training=False)) == pytest.approx(plain, rel=1e-3)
    finally:
        model.log_q = True
    assert abs(corrected - plain) > 1e-3 * abs(plain)


def test_log_q_changes_training(world):
    _toy, data = world
    budget = dict(BUDGET, epochs=2)
    with_q = R.train_retrieval("id", data, **budget)
    without = R.train_retrieval("id", data, **budget, log_q=False)
    assert with_q.history["loss"] != without.history["loss"]
    assert not np.allclose(with_q.item_embeddings(), without.item_embeddings())


def test_evaluation_uses_retrieval_metrics_on_controlled_data():
    """Popularity scores with known counts: check the ranking, exclusion and the metric."""
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "title": "t",
                          "description": "", "category": "c"})
    # Counts: i0 x3, i1 x2, i2 x1; i4 and i5 are cold.
    train = pd.DataFrame({"user_id": ["a", "b", "c", "a", "b", "c"],
                          "item_id": ["i0", "i0", "i0", "i1", "i1", "i2"],
                          "timestamp": [1, 2, 3, 4, 5, 6], "rating": 5.0})
    test = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["i2", "i3", "i1"],
                         "timestamp": [10, 10, 10], "rating": 5.0})
    test_cold = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["i5", "i4"],
                              "timestamp": [11, 11], "rating": 5.0})
    data = F.build_features(SimpleNamespace(
        items=items, feedback="rating", cold_items=["i4", "i5"],
        splits={"train": train, "test": test, "test_cold": test_cold}), history_length=2)
    result = R.train_retrieval("popularity", data, progress=False)
    assert result.item_embeddings()[:, 0].tolist() == pytest.approx(
        np.log1p([3, 2, 1, 0, 0, 0]).tolist())

    got = R.evaluate_retrieval(result, data, "test", ks=(1, 2))
    # Seen items removed: a -> [i2, i3, ...], b -> [i2, i3, ...], c -> [i1, i3, ...]
    ranked = np.array([[2, 3], [2, 3], [1, 3]])
    expected = metrics.retrieval_metrics(ranked, [{2}, {3}, {1}], ks=(1, 2))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert got["recall@1"] == pytest.approx(2 / 3) and got["recall@2"] == 1.0
    # Without seen-item removal the popular, already-seen i0 takes rank 1 for everybody.
    assert R.evaluate_retrieval(result, data, "test", ks=(1,), exclude_seen=False)["recall@1"] == 0

    # Cold candidates only: i4 then i5 (tie broken by lower index), mapped back to catalogue ids.
    ranked_cold = R.rank_items(np.ones((1, 1), np.float32), result.item_embeddings(), 3,
                               candidates=data.cold_items)
    assert ranked_cold.tolist() == [[4, 5, -1]]
    cold = R.evaluate_retrieval(result, data, "test_cold", ks=(1, 2), candidates="cold")
    assert cold["recall@1"] == pytest.approx(0.5) and cold["recall@2"] == 1.0
    assert cold["n_queries"] == 2


def test_strategy_scope_and_protocol_smoke(world):
    toy, data = world
    from recsys_utils.hardware import choose_strategy

    strategy, _ = choose_strategy(apply_mixed_precision=False)
    result = R.train_retrieval("fused", data, toy.content, strategy=strategy,
                               **dict(BUDGET, epochs=1))
    assert np.isfinite(result.history["loss"]).all()

    interactions = toy.prepared.interactions
    train, test = tfrs_protocol_split(interactions, seed=42, n_train=int(0.8 * len(interactions)))
    out = R.tfrs_protocol_metrics(train, test, toy.prepared.items, item_content=toy.content,
                                  epochs=2, batch_size=512, progress=False)
    assert list(out.index) == ["id", "fused"]
    for value in out["top_100_accuracy"]:
        assert 0.0 <= value <= 1.0
    assert (out["top_1_accuracy"] <= out["top_100_accuracy"]).all()
    # Top-100 of 300 items after training beats the 1/3 a random ranking gets.
    assert out["top_100_accuracy"].max() > 0.4


def test_popularity_prior_is_an_extra_dot_product_column(world):
    _toy, data = world
    result = R.train_retrieval("fused", data, _toy.content, **dict(BUDGET, epochs=2),
                               log_q=False, popularity_prior=True)
    prior = R.log_prior(data)
    assert np.allclose(prior[data.warm_items], np.log1p(data.item_counts[data.warm_items]))
    assert np.allclose(prior[~data.warm_items], np.median(prior[data.warm_items]))
    items = result.item_embeddings()
    np.testing.assert_allclose(items[:, -1], prior, rtol=1e-6)
    q = result.query_embeddings(data.queries("test").features)
    np.testing.assert_allclose(q[:, -1], 1.0)
    assert items.shape[1] == q.shape[1] == BUDGET["embedding_dim"] + 1


def test_early_stopping_keeps_the_best_validation_epoch(world):
    toy, data = world
    result = R.train_retrieval("fused", data, toy.content, **dict(BUDGET, epochs=6),
                               early_stopping=True, patience=1)
    curve = result.history["val_recall@50"]
    best = result.config["best_epoch"]
    assert 1 <= best <= len(curve) <= 6
    assert curve[best - 1] == max(curve)
    # The restored weights are the best epoch's: evaluating again gives its value.
    again = R.evaluate_retrieval(result, data, "validation", ks=(50,))["recall@50"]
    assert again == pytest.approx(max(curve), abs=1e-9)
