"""Two-tower retrieval on a planted toy world: learning, warm and cold quality, log-Q."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recsys_utils import features as F
from recsys_utils import metrics
from recsys_utils import retrieval as R
from recsys_utils import two_tower as T
from recsys_utils.data import tfrs_protocol_split
from recsys_utils.profiles import RankingBudget, RetrievalBudget
from toy_world import make_toy

BUDGET = RetrievalBudget(epochs=8, batch_size=128, embedding_dim=32, learning_rate=0.01)
QUIET = dict(seed=0, progress=False)


@pytest.fixture(scope="module")
def world():
    toy = make_toy(seed=0)  # 200 users, 300 items, 4 categories x 5 colours
    return toy, F.build_features(toy.prepared, history_length=5)


@pytest.fixture(scope="module")
def trained(world):
    toy, data = world
    return {v: T.train_retrieval(v, data, toy.content, BUDGET, **QUIET) for v in T.VARIANTS}


@pytest.fixture(scope="module")
def table(world, trained):
    _, data = world
    frame = R.retrieval_table(trained.values(), data, ks=(10, 50, 100))
    return frame.set_index(["variant", "split", "candidates"])


def test_every_model_variant_learns(trained):
    for variant in ("id", "content", "fused"):
        loss = trained[variant].history["loss"]
        assert len(loss) == BUDGET.epochs
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
    budget = BUDGET.replace(epochs=2)
    with_q = T.train_retrieval("id", data, None, budget, **QUIET)
    without = T.train_retrieval("id", data, None, budget.replace(log_q=False), **QUIET)
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
    result = T.train_retrieval("popularity", data, progress=False)
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
    result = T.train_retrieval("fused", data, toy.content, BUDGET.replace(epochs=1),
                               strategy=strategy, **QUIET)
    assert np.isfinite(result.history["loss"]).all()

    interactions = toy.prepared.interactions
    train, test = tfrs_protocol_split(interactions, seed=42, n_train=int(0.8 * len(interactions)))
    budget = RetrievalBudget(epochs=2, batch_size=512, use_history=False, use_context=False)
    budgets = {name: (name, budget) for name in ("id", "fused")}
    out = R.tfrs_protocol_metrics(train, test, toy.prepared.items, budgets,
                                  item_content=toy.content, progress=False)
    assert list(out.index) == ["id", "fused"]
    for value in out["top_100_accuracy"]:
        assert 0.0 <= value <= 1.0
    assert (out["top_1_accuracy"] <= out["top_100_accuracy"]).all()
    # Top-100 of 300 items after training beats the 1/3 a random ranking gets.
    assert out["top_100_accuracy"].max() > 0.4


def test_early_stopping_keeps_the_best_validation_epoch(world):
    toy, data = world
    result = T.train_retrieval("fused", data, toy.content,
                               BUDGET.replace(epochs=6, early_stopping=True, patience=1), **QUIET)
    curve = result.history["val_recall@50"]
    best = result.config["best_epoch"]
    assert 1 <= best <= len(curve) <= 6
    assert curve[best - 1] == max(curve)
    # The restored weights are the best epoch's: evaluating again gives its value.
    again = R.evaluate_retrieval(result, data, "validation", ks=(50,))["recall@50"]
    assert again == pytest.approx(max(curve), abs=1e-9)


# ------------------------------------------------------------------ full softmax and its levers

FULL = BUDGET.replace(loss="full_softmax", item_bias=True, bias_dropout=0.5, log_q=False,
                     use_user_id=False, train_history="leave_one_out", history_dropout=0.5,
                     hidden_units=())


@pytest.fixture(scope="module")
def full_softmax(world):
    toy, data = world
    return {v: T.train_retrieval(v, data, toy.content, FULL, **QUIET)
            for v in ("id", "content", "fused")}


def test_full_softmax_loss_is_the_cross_entropy_over_the_training_items(world):
    toy, data = world
    model = T.build_retrieval_model("fused", data, toy.content, RetrievalBudget(
        embedding_dim=8, loss="full_softmax", item_bias=True, use_user_id=False))
    batch = {k: tf.constant(v[:16]) for k, v in data.examples["train"].items()
             if k in (*R.QUERY_KEYS, "item")}
    warm = np.flatnonzero(data.warm_items)
    model.item_bias.assign(np.linspace(-1, 1, data.n_items).astype(np.float32))
    query = model.query_tower(batch, training=False).numpy()
    logits = query @ model.item_tower(tf.constant(warm), training=False).numpy().T
    logits += model.item_bias.numpy()[warm]
    target = np.searchsorted(warm, batch["item"].numpy())
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(16), target])
    assert float(model.compute_loss(batch, training=False)) == pytest.approx(expected, rel=1e-5)
    # Keras' compile() must not switch the loss back to the in-batch one.
    model.compile(optimizer="adam")
    assert float(model.compute_loss(batch, training=False)) == pytest.approx(expected, rel=1e-5)


def test_item_bias_is_a_dot_product_column_and_cold_items_get_the_unknown_bias(world, full_softmax):
    _, data = world
    model = full_softmax["fused"].model
    items = full_softmax["fused"].item_embeddings()
    bias = model.item_bias.numpy()
    np.testing.assert_allclose(items[data.warm_items, -1], bias[data.warm_items], rtol=1e-6)
    np.testing.assert_allclose(items[~data.warm_items, -1], float(model.unknown_bias.numpy()))
    q = full_softmax["fused"].query_embeddings(data.queries("test").features)
    np.testing.assert_allclose(q[:, -1], 1.0)
    # Popular items earn larger biases than rare ones: the bias learned popularity.
    counts = data.item_counts[data.warm_items]
    top, rare = counts >= np.quantile(counts, 0.9), counts <= np.quantile(counts, 0.1)
    assert bias[data.warm_items][top].mean() > bias[data.warm_items][rare].mean()


def test_full_softmax_models_learn_warm_and_content_ones_rank_cold_items(world, full_softmax):
    _, data = world
    popularity = T.train_retrieval("popularity", data)
    frame = R.retrieval_table([popularity, *full_softmax.values()], data, ks=(10, 50),
                              settings=(("test", "all"), ("test_cold", "all")))
    at = frame.set_index(["variant", "split"])["recall@50"]
    for variant in ("id", "content", "fused"):
        assert at[(variant, "test")] > at[("popularity", "test")] + 0.2, frame
    for variant in ("content", "fused"):
        assert at[(variant, "test_cold")] > at[("id", "test_cold")] + 0.2, frame


def test_leave_one_out_history_drops_only_the_examples_own_item(world):
    _, data = world
    train = data.examples["train"]
    history, mask = R.leave_one_out_history(data, train["user"], train["item"])
    full, full_mask = data.history_for(train["user"], None)
    own = full == train["item"][:, None]
    assert own.any()  # the toy histories hold the example's item for recent rows
    assert not (history == train["item"][:, None]).any()
    np.testing.assert_array_equal(history[~own], full[~own])
    np.testing.assert_array_equal(mask, np.where(own, 0.0, full_mask))
    assert ((history >= 0) == (mask > 0)).all()


def test_bad_levers_raise_clear_errors(world):
    toy, data = world
    with pytest.raises(R.DataError, match="item_bias goes with"):
        T.build_retrieval_model("id", data, None, RetrievalBudget(item_bias=True))
    with pytest.raises(R.DataError, match="needs item_content"):
        T.build_retrieval_model("fused", data)
    with pytest.raises(R.DataError, match="stopping metric"):
        T.train_retrieval("id", data, None, BUDGET.replace(epochs=1, early_stopping=True,
                                                           stopping_metric="auc"), **QUIET)


def test_early_stopping_on_ndcg(world):
    toy, data = world
    result = T.train_retrieval("id", data, None, FULL.replace(
        epochs=4, early_stopping=True, patience=1, stopping_metric="ndcg@10"), **QUIET)
    curve = result.history["val_ndcg@10"]
    assert curve[result.config["best_epoch"] - 1] == max(curve)
    again = R.evaluate_retrieval(result, data, "validation", ks=(10,))["ndcg@10"]
    assert again == pytest.approx(max(curve), abs=1e-9)


def test_paired_comparison_and_choice_on_validation(world, full_softmax):
    _, data = world
    popularity = T.train_retrieval("popularity", data)
    row = R.paired_comparison(full_softmax["fused"], popularity, data, "test", "recall@50")
    per_user = [R.evaluate_retrieval(m, data, "test", ks=(50,), per_query=True)["recall@50"]
                for m in (full_softmax["fused"], popularity)]
    assert row["difference"] == pytest.approx(float((per_user[0] - per_user[1]).mean()))
    assert row["value_a"] - row["value_b"] == pytest.approx(row["difference"])
    assert row["low"] <= row["difference"] <= row["high"]
    assert row["low"] > 0  # a planted world: the trained model wins beyond noise
    same = R.paired_comparison(popularity, popularity, data, "test", "ndcg@10")
    assert same["low"] == same["high"] == same["difference"] == 0.0

    models = {"popularity": popularity, **full_softmax}
    chosen = R.best_by_validation(models, data, "ndcg@10")
    values = {n: R.evaluate_retrieval(m, data, "validation", ks=(10,))["ndcg@10"]
              for n, m in models.items()}
    assert values[chosen] == max(values.values())
    with pytest.raises(R.DataError):
        R.best_by_validation({}, data)


def test_new_item_boost_raises_new_items_and_matches_an_exposure_target(world, full_softmax):
    _, data = world
    model = full_softmax["fused"]
    new = ~data.warm_items
    assert new.any()
    boosted = R.NewItemBoost(model, data, 2.0)
    queries = data.queries("test_cold")
    plain = model.query_embeddings(queries.features) @ model.item_embeddings().T
    raised = boosted.query_embeddings(queries.features) @ boosted.item_embeddings().T
    np.testing.assert_allclose(raised - plain, np.where(new, 2.0, 0.0)[None, :].repeat(
        len(plain), 0), atol=1e-4)
    # Exposure counts new items in the top k of validation users, seen items removed.
    ranked = R.rank_items(boosted.query_embeddings(data.queries("validation").features),
                          boosted.item_embeddings(), 20,
                          exclude=data.queries("validation").exclude)
    expected = np.mean(new[ranked].mean(axis=1))
    assert R.new_item_exposure(boosted, data, k=20) == pytest.approx(expected)
    low, high = (R.new_item_exposure(R.NewItemBoost(model, data, s), data, k=20)
                 for s in (-5.0, 5.0))
    assert low < expected < high  # exposure grows with the shift
    target = (low + high) / 2
    matched = R.match_new_item_exposure(model, data, target, k=20, tolerance=0.01)
    assert R.new_item_exposure(matched, data, k=20) == pytest.approx(target, abs=0.01)
    assert isinstance(matched, R.NewItemBoost) and -5.0 < matched.shift < 5.0
    with pytest.raises(R.DataError, match="exposure"):
        R.match_new_item_exposure(model, data, 1.5)
    table = R.retrieval_table([matched], data, ks=(10,), settings=(("test_cold", "all"),))
    assert np.isnan(table["train_seconds"].iloc[0]) and table["variant"].iloc[0] == matched.variant


# ------------------------------------------------------------------ one's own data frames


def test_own_frames_without_timestamps_or_validation_fit_evaluate_and_recommend(world):
    toy, _ = world
    interactions = toy.prepared.interactions.sort_values("timestamp")
    train = interactions.iloc[:-300][["user_id", "item_id"]]  # no timestamp, no feedback column
    test = interactions.iloc[-300:][["user_id", "item_id"]]
    data = F.from_frames(toy.prepared.items, train, test, history_length=5)
    assert len(data.splits["validation"]) == 0
    assert len(data.splits["test"]) + len(data.splits["test_cold"]) == 300
    assert data.examples["train"]["label"].min() == 1.0  # every row a positive
    # Rows in time order: a training row's history is the user's earlier rows.
    assert (data.examples["train"]["history_mask"].sum(1) > 0).mean() > 0.8
    result = T.train_retrieval("fused", data, toy.content, FULL.replace(epochs=4), **QUIET)
    scores = R.evaluate_retrieval(result, data, "test", ks=(10,))
    popularity = R.evaluate_retrieval(T.train_retrieval("popularity", data), data, "test", ks=(10,))
    assert scores["recall@10"] > popularity["recall@10"]
    with pytest.raises(R.DataError, match="validation"):
        T.train_retrieval("id", data, None, BUDGET.replace(epochs=1, early_stopping=True),
                          **QUIET)

    users = [train["user_id"].iloc[0], "somebody new"]
    top = R.recommend(result, data, users, k=5)
    assert top.shape == (2, 5) and set(top.ravel()) <= set(toy.prepared.items["item_id"])
    seen = set(train.loc[train["user_id"] == users[0], "item_id"])
    assert not seen & set(top[0])
    # The same list as ranking the query embedding by hand.
    feats = data.user_features([users[0]])
    scores0 = result.query_embeddings(feats) @ result.item_embeddings().T
    scores0[0, data.vocab.item_index(sorted(seen))] = -np.inf
    assert list(top[0]) == list(data.vocab.item_ids[np.argsort(-scores0[0])[:5]])


def test_own_frames_with_constant_timestamps_warn_and_keep_histories(world):
    toy, _ = world
    frame = toy.prepared.interactions.sort_values("timestamp").assign(timestamp=7)
    with pytest.warns(UserWarning, match="same"):
        data = F.from_frames(toy.prepared.items, frame.iloc[:-200], frame.iloc[-200:],
                             history_length=5)
    assert (data.examples["train"]["history_mask"].sum(1) > 0).mean() > 0.8
    with pytest.raises(F.DataError, match="user_id"):
        F.from_frames(toy.prepared.items, frame.drop(columns="user_id"))


def _history_centre(unit: np.ndarray, history: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """NumPy reference: the mean unit-content row of each history's kept items."""
    total = (unit[np.maximum(history, 0)] * mask[..., None]).sum(1)
    return total / np.maximum(mask.sum(1, keepdims=True), 1)


def test_content_profile_columns_add_the_weighted_profile_score_and_serve(world, tmp_path):
    """The profile's columns add weight x (mean unit content of the history) . (unit content)
    to every score, in the training loss and in the served embeddings alike."""
    from recsys_utils import baselines
    from recsys_utils import serving as S

    toy, data = world
    small = RetrievalBudget(embedding_dim=8, loss="full_softmax", item_bias=True,
                            use_user_id=False)
    plain = T.build_retrieval_model("content", data, toy.content, small)
    model = T.build_retrieval_model("content", data, toy.content,
                                    small.replace(profile_weight=3.0))
    assert plain.profile is None and model.profile is not None
    id_model = T.build_retrieval_model("id", data, None, small.replace(profile_weight=3.0))
    assert id_model.profile is None
    batch = {k: tf.constant(v[:16]) for k, v in data.examples["train"].items()
             if k in (*R.QUERY_KEYS, "item")}
    unit = toy.content / np.linalg.norm(toy.content, axis=1, keepdims=True)
    centre = _history_centre(unit, batch["history"].numpy(), batch["history_mask"].numpy())
    warm = np.flatnonzero(data.warm_items)
    logits = (model.query_tower(batch).numpy() @ model.item_tower(tf.constant(warm)).numpy().T
              + 3.0 * centre @ unit[warm].T)
    target = np.searchsorted(warm, batch["item"].numpy())
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(16), target])
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
    assert float(plain.compute_loss(batch)) != pytest.approx(expected, rel=1e-3)

    # Trained, the same columns serve: the item columns are the training-free baseline's
    # item vectors, the query columns the learned weight times its history centre.
    result = T.train_retrieval("content", data, toy.content, FULL.replace(profile_weight=3.0),
                               **QUIET)
    weight = float(result.model.profile.weight.numpy())
    assert weight != 3.0  # learned
    queries = data.queries("test").features
    q, items = result.query_embeddings(queries), result.item_embeddings()
    d = unit.shape[1]
    np.testing.assert_allclose(items[:, -d - 1:-1],
                               baselines.content_profile(data, toy.content).item_embeddings(),
                               atol=1e-6)
    np.testing.assert_allclose(q[:, -d - 1:-1], weight * _history_centre(
        unit, queries["history"], queries["history_mask"]), atol=1e-5)
    path = S.export_serving_model(S.build_brute_force(result, data, k=10), tmp_path / "serving")
    loaded = S.load_serving_model(path)
    users = data.queries("test").user_ids[:5]
    ids, _ = loaded.recommend(users, timestamps=[int(data.splits["test"]["timestamp"].max())] * 5)
    assert ids.shape == (5, 10)


def test_content_profile_rank_keeps_the_best_low_rank_cosines():
    """``rank`` < d: the columns' products are the truncated SVD of the unit rows' cosines
    (what the best rank-r approximation keeps), and rank >= d changes nothing."""
    # A shared offset, as real embeddings have: the leading singular direction dominates.
    content = (np.random.default_rng(0).normal(size=(40, 12)) + 2.0).astype(np.float32)
    unit = content / np.linalg.norm(content, axis=1, keepdims=True)
    u, s, vt = np.linalg.svd(unit, full_matrices=False)
    best = (u[:, :5] * s[:5]) @ (u[:, :5] * s[:5]).T
    reduced = T.ContentProfile(content, 1.0, rank=5).unit_content.numpy()
    assert reduced.shape == (40, 5)
    np.testing.assert_allclose(reduced @ reduced.T, best, atol=1e-5)
    assert np.abs(reduced @ reduced.T - unit @ unit.T).max() > 1e-3  # it did cut something
    # Rotated: no column carries the leading direction alone (int8 has one scale per tensor).
    projected = unit @ vt[:5].T
    spread = lambda columns: np.abs(columns).max(0).max() / np.abs(columns).max(0).min()
    assert spread(reduced) < spread(projected)
    for rank in (None, 12, 50):
        np.testing.assert_allclose(T.ContentProfile(content, 1.0, rank=rank).unit_content.numpy(),
                                   unit, atol=1e-6)


def test_update_rounds_replay_the_training_periods(world):
    toy, data = world
    rounds = F.update_rounds(toy.prepared, 2, 0.15, history_length=5)
    train = toy.prepared.splits["train"]
    assert len(rounds) == 3
    sizes = [len(r.splits["train"]) for r in rounds]
    assert sizes[0] < sizes[1] < sizes[2] == len(train)
    for r in (0, 1):  # round r is tested on the period that round r + 1 adds
        assert len(rounds[r].splits["test"]) == sizes[r + 1] - sizes[r]
        assert rounds[r].splits["test"]["timestamp"].min() > rounds[r].splits["train"]["timestamp"].max()
    assert rounds[2].splits["test"].equals(toy.prepared.splits["test"].reset_index(drop=True))
    assert len(rounds[1].splits["test"]) == pytest.approx(0.15 * len(train), rel=0.1)
    frozen = toy.prepared.splits | {"train": train.assign(timestamp=1_700_000_000)}
    with pytest.raises(F.DataError, match="update period 1 of 2"):
        F.update_rounds(dataclasses.replace(toy.prepared, splits=frozen), 2, 0.15)


@pytest.mark.parametrize("budget", [BUDGET.replace(loss="full_softmax", item_bias=True),
                                    BUDGET.replace(loss="in_batch", use_user_id=True)],
                         ids=["item bias", "user ids"])
def test_a_warm_start_begins_where_the_previous_model_ended(world, budget):
    toy, _ = world
    train = toy.prepared.splits["train"]
    # Some users arrive late: the later period's user rows move (the vocabulary is sorted).
    late = train["user_id"].isin(train["user_id"].drop_duplicates().iloc[::10])
    train = train[~late | (train["timestamp"] > train["timestamp"].quantile(0.8))]
    prepared = dataclasses.replace(toy.prepared, splits=toy.prepared.splits | {"train": train})
    base_data, later = F.update_rounds(prepared, 1, 0.3, history_length=5)
    budget = budget.replace(epochs=2)
    base = T.train_retrieval("fused", base_data, toy.content, budget, **QUIET)

    model = T.build_retrieval_model("fused", later, toy.content, budget)
    T.carry_weights(base, model, later)
    # Every item scores as before: known items keep their rows, new items take the row (and
    # the bias) the old model gave every item it had not seen; users follow their ids.
    np.testing.assert_allclose(R.catalogue(model.candidate_embedding, later.n_items, 256),
                               R.catalogue(base.model.candidate_embedding, later.n_items, 256),
                               atol=1e-6)
    assert (later.warm_items & ~base_data.warm_items).any()  # the later period has new items
    queries = {k: later.queries("test").features[k] for k in R.QUERY_KEYS}
    old_index = {user: row for row, user in enumerate(base.user_ids)}
    old_users = np.array([old_index.get(user, 0) for user in later.vocab.user_ids[queries["user"]]])
    assert 0 < (old_users > 0).sum() < len(old_users)  # users seen before, and new ones
    np.testing.assert_allclose(
        R.in_batches(model.query_embedding, queries, R.QUERY_KEYS, 256, None),
        R.in_batches(base.model.query_embedding, queries | {"user": old_users}, R.QUERY_KEYS,
                     256, None), atol=1e-5)
    if budget.item_bias:
        new = later.warm_items & ~base_data.warm_items
        assert np.allclose(model.item_bias.numpy()[new], base.model.unknown_bias.numpy())

    # Training on from there fits the later interactions only.
    warm = T.train_retrieval("fused", later, toy.content, budget, warm_start=base, **QUIET)
    newer = later.examples["train"]["timestamp"] > base.trained_until
    assert warm.item_counts.sum() == newer.sum() < len(newer)
    assert warm.trained_until == later.examples["train"]["timestamp"].max()
    with pytest.raises(F.DataError, match="same variant"):
        T.carry_weights(base, T.build_retrieval_model("id", later, None, budget), later)
    with pytest.raises(F.DataError, match="after"):
        T.train_retrieval("fused", later, toy.content, budget, warm_start=warm, **QUIET)


def test_content_dropout_zeroes_the_same_inputs_of_every_item_in_training_only():
    """Training: each content input (column) kept with probability 1 - rate for all items at
    once and scaled by 1 / (1 - rate) (the expected vector is unchanged), a new mask at each
    call; inference and a new item's embedding: the content as it is."""
    n_items, d, rate = 50, 400, 0.5
    content = np.ones((n_items, d), np.float32)
    tower = T.ItemTower("content", np.zeros(n_items, np.int32), content, embedding_dim=d,
                        content_dropout=rate)
    items = tf.range(n_items)
    tower(items)  # build, then make the projection the identity: the output is its input
    tower.mlp.layers[-1].set_weights([np.eye(d, dtype=np.float32), np.zeros(d, np.float32)])
    np.testing.assert_array_equal(tower(items, training=False).numpy(), content)
    tf.random.set_seed(0)
    dropped = tower(items, training=True).numpy()
    assert set(np.unique(dropped)) == {0.0, 1.0 / (1.0 - rate)}
    assert (dropped == dropped[:1]).all()                     # the same inputs for every item
    assert abs(np.mean(dropped[0] == 0.0) - rate) < 0.1       # 400 inputs
    assert not (dropped == tower(items, training=True).numpy()).all()  # a new mask each call
    np.testing.assert_array_equal(tower.embed(None, tf.constant(content[:3])).numpy(), content[:3])


@pytest.mark.parametrize("budget, name", [(RetrievalBudget, "content_dropout"),
                                          (RetrievalBudget, "id_dropout"),
                                          (RetrievalBudget, "history_dropout"),
                                          (RankingBudget, "id_dropout")])
def test_dropout_rates_outside_zero_one_are_clear_errors(budget, name):
    with pytest.raises(R.DataError, match=f"{budget.__name__}.{name} is a share of inputs dropped"):
        budget(**{name: 1.0})
    with pytest.raises(R.DataError, match=f"{name} is a share"):
        budget(**{name: -0.1})


def test_evaluation_breaks_ties_by_a_fixed_random_order_not_the_item_index():
    """A model that gives every item one score must score about chance, whatever the
    numbering: here the held-out item is the second of the catalogue, which ties to the lower
    index would put in every top 2."""
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [f"i{i:02d}" for i in range(100)]})
    users = [f"u{u}" for u in range(30)]
    train = pd.DataFrame([(u, f"i{i:02d}") for u in users for i in rng.choice(50, 5) + 50]
                         + [("other", "i01")], columns=["user_id", "item_id"])
    test = pd.DataFrame({"user_id": users, "item_id": "i01"})
    data = F.from_frames(items, train, test)

    class Constant:
        variant = "constant"

        def query_embeddings(self, features):
            return np.ones((len(features["user"]), 1), np.float32)

        def item_embeddings(self):
            return np.ones((data.n_items, 1), np.float32)

    first = R.evaluate_retrieval(Constant(), data, "test", ks=(2,))
    assert first["recall@2"] <= 0.2  # chance is 2 of ~95 items; the index order gave 1.0
    assert R.evaluate_retrieval(Constant(), data, "test", ks=(2,)) == first  # reproducible


def test_a_model_of_an_earlier_period_reads_users_in_its_own_vocabulary():
    """Evaluated on later data (more users, other indices), a model looks each user up in the
    vocabulary it was trained with; users it never saw get the out-of-vocabulary row 0."""
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(6)]})
    train = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "item_id": ["i0", "i1", "i2", "i3"]})
    test = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "item_id": ["i1", "i2", "i3", "i0"]})
    data = F.from_frames(items, train, test)
    seen = []

    class EarlierModel:  # trained when only users "b" and "d" existed
        variant, user_ids = "earlier", np.array(["[OOV]", "b", "d"])

        def query_embeddings(self, features):
            seen.append(features["user"].tolist())
            return np.ones((len(features["user"]), 1), np.float32)

        def item_embeddings(self):
            return np.ones((data.n_items, 1), np.float32)

    R.evaluate_retrieval(EarlierModel(), data, "test", ks=(2,))
    queries = data.queries("test")
    expected = {"a": 0, "b": 1, "c": 0, "d": 2}
    assert seen == [[expected[u] for u in queries.user_ids]]
