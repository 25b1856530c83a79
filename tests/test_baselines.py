"""Reference recommenders: closed forms, id mapping, quality on the toy world, honest tuning."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from recsys_utils import baselines as B
from recsys_utils import two_tower
from recsys_utils import features as F
from recsys_utils import retrieval as R
from recsys_utils.schema import DataError
from recsys_utils.synthetic import TRUTH_COLUMNS
from toy_world import make_toy

SMALL_GRIDS = {"ease": [{"l2": 10}, {"l2": 500}],
               "item_knn": [{"k": 20, "shrink": 0}, {"k": 200, "shrink": 10}],
               "bpr": [{"factors": 32, "learning_rate": 0.05, "lambda_reg": 0.01,
                        "max_iter": 100}]}


@pytest.fixture(scope="module")
def world():
    toy = make_toy(seed=0)  # 200 users, 300 items, 4 categories x 5 colours
    return toy, F.build_features(toy.prepared, history_length=5)


@pytest.fixture(scope="module")
def fitted(world):
    toy, data = world
    return B.fit_baselines(data, toy.content, grids=SMALL_GRIDS, seed=0)


@pytest.fixture(scope="module")
def table(world, fitted):
    _, data = world
    results = [two_tower.train_retrieval("popularity", data), *fitted.values()]
    return R.retrieval_table(results, data, ks=(10, 50)).set_index(["variant", "split",
                                                                     "candidates"])


def _planted(n_users: int = 24) -> F.RecData:
    """Two groups of 5 items; each user has 4 of their group's items in training and the
    fifth in test. The first user (sorted ids) is in group B, so cornac numbers group B's
    items first and its internal ids differ from ours."""
    rows, test = [], []
    for u in range(n_users):
        group = 5 if u % 2 == 0 else 0
        missing = group + (u // 2) % 5
        for t, i in enumerate(range(group, group + 5)):
            (test if i == missing else rows).append((f"u{u:02d}", f"i{i}", 10 + t))
    frame = lambda r: pd.DataFrame(r, columns=["user_id", "item_id", "timestamp"]).assign(
        rating=5.0)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(10)], "title": "t",
                          "description": "", "category": "c"})
    prepared = SimpleNamespace(items=items, feedback="rating", cold_items=None,
                               splits={"train": frame(rows), "test": frame(test)})
    return F.build_features(prepared, history_length=3)


def test_ease_matches_the_closed_form():
    data = _planted(8)
    x = data.train_matrix.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(x.shape[1]))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    model = B.ease(data, l2=7.0)
    b = model.item_embeddings().T  # item embedding i = column i of B
    assert np.all(np.diag(b) == 0)
    np.testing.assert_allclose(b, expected, rtol=1e-4, atol=1e-6)
    queries = data.queries("test")
    scores = model.query_embeddings(queries.features) @ model.item_embeddings().T
    np.testing.assert_allclose(scores, x[queries.features["user"]] @ expected, rtol=1e-4,
                               atol=1e-6)


def test_item_knn_keeps_the_top_k_shrunk_cosines_per_column():
    data = _planted(8)
    x = data.train_matrix.toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    cosine = (x.T @ x) / (norms[:, None] * norms[None, :] + 2.0)
    np.fill_diagonal(cosine, 0.0)
    s = B.item_knn(data, k=2, shrink=2.0).item_embeddings().T
    assert np.all((s > 0).sum(axis=0) <= 2)
    for col in range(s.shape[1]):
        kept = np.flatnonzero(s[:, col])
        np.testing.assert_allclose(s[kept, col], cosine[kept, col], rtol=1e-5)
        if len(kept):  # nothing dropped is larger than what was kept
            assert np.delete(cosine[:, col], kept).max() <= s[kept, col].min() + 1e-6


@pytest.mark.parametrize("name", ["bpr", "ease", "item_knn"])
def test_planted_groups_put_the_missing_item_first(name):
    """Also checks cornac's id mapping: a swapped user or item map ranks the other group."""
    data = _planted()
    builder = {"bpr": lambda d: B.bpr(d, factors=8, learning_rate=0.05, max_iter=200, seed=0),
               "ease": lambda d: B.ease(d, l2=1.0),
               "item_knn": lambda d: B.item_knn(d, k=4, shrink=0.0)}[name]
    model = builder(data)
    scores = R.evaluate_retrieval(model, data, "test", ks=(1, 5))
    assert scores["recall@1"] >= 0.9, scores


def test_bpr_unknown_user_and_cold_items(world):
    _, data = world
    model = B.bpr(data, factors=8, max_iter=20, seed=0)
    user0 = model.query_embeddings({"user": np.array([0])})[0]
    assert np.all(user0[:-1] == 0) and user0[-1] == 1
    items = model.item_embeddings()
    cold = data.cold_items
    assert np.all(items[cold, :-1] == 0)
    assert np.all(items[cold, -1] == items[data.warm_items, -1].min())
    again = B.bpr(data, factors=8, max_iter=20, seed=0)  # seeded: the same model
    np.testing.assert_array_equal(items, again.item_embeddings())


def test_content_profile_is_the_mean_of_normalised_item_vectors(world):
    toy, data = world
    model = B.content_profile(data, toy.content)
    unit = toy.content / np.linalg.norm(toy.content, axis=1, keepdims=True)
    np.testing.assert_allclose(model.item_embeddings(), unit, rtol=1e-5)
    user = 7
    seen = data.train_matrix[user].indices
    np.testing.assert_allclose(model.query_embeddings({"user": np.array([user])})[0],
                               unit[seen].mean(axis=0), rtol=1e-4, atol=1e-6)
    assert not model.query_embeddings({"user": np.array([0])}).any()


def test_baselines_beat_popularity_on_warm_items(table):
    # Measured (seed 0): popularity 0.095, EASE 0.725, kNN 0.735, BPR 0.74.
    popularity = table.loc[("popularity", "test", "all"), "recall@10"]
    for variant in ("ease", "item_knn", "bpr"):
        assert table.loc[(variant, "test", "all"), "recall@10"] > popularity + 0.45, table


def test_content_profile_beats_popularity_on_cold_items(table):
    # Measured: content profile 0.88 Recall@50 over the whole catalogue, popularity 0.
    popularity = table.loc[("popularity", "test_cold", "all"), "recall@50"]
    content = table.loc[("content_profile", "test_cold", "all"), "recall@50"]
    assert content > popularity + 0.6, table
    assert content > table.loc[("ease", "test_cold", "all"), "recall@50"] + 0.6, table


def test_fit_baselines_reports_configs_and_times(fitted):
    assert set(fitted) == {"ease", "item_knn", "bpr", "content_profile", "content_regression"}
    assert fitted["ease"].config["l2"] in (10.0, 500.0)
    assert set(fitted["bpr"].config) >= {"factors", "learning_rate", "lambda_reg", "max_iter"}
    for name, model in fitted.items():
        assert model.variant == name and model.train_seconds > 0
        assert model.examples_per_second > 0


def test_tuning_picks_the_best_validation_setting_and_never_sees_test(world, monkeypatch):
    _, data = world
    calls = []
    evaluate = R.evaluate_retrieval

    def spy(result, data, split="test", *args, **kwargs):
        calls.append(split)
        return evaluate(result, data, split, *args, **kwargs)

    monkeypatch.setattr(R, "evaluate_retrieval", spy)
    grid = [{"k": 5, "shrink": 0}, {"k": 50, "shrink": 10}, {"k": 200, "shrink": 0}]
    best, grid_table = B.tune("item_knn", data, grid)
    assert calls == ["validation"] * 3
    assert len(grid_table) == 3 and grid_table["ndcg@10"].nunique() > 1
    winner = grid_table.loc[grid_table["ndcg@10"].idxmax()]
    assert (best.config["k"], best.config["shrink"]) == (winner["k"], winner["shrink"])
    assert best.config["validation_ndcg@10"] == pytest.approx(grid_table["ndcg@10"].max())
    with pytest.raises(DataError, match="validation"):
        B.tune("ease", data, [{"l2": 10}], split="test")


def test_oracle_content_needs_the_truth_columns(world):
    toy, data = world
    with pytest.raises(DataError, match="truth columns"):
        B.oracle_content(toy.prepared, toy.content)  # the toy world has colour only
    items = toy.prepared.items.assign(**{c: ["a", "b", "c"] * 100 for c in TRUTH_COLUMNS})
    oracle = B.oracle_content(SimpleNamespace(items=items), toy.content)
    assert oracle.shape == (300, toy.content.shape[1] + 12)
    np.testing.assert_array_equal(oracle[:, :toy.content.shape[1]], toy.content)
    assert B.content_profile(data, oracle, variant="oracle").variant == "oracle"


def test_bad_input_raises_data_error(world):
    toy, data = world
    with pytest.raises(DataError, match="n_items=300"):
        B.content_profile(data, toy.content[:-1])
    nan = toy.content.copy()
    nan[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        B.fit_baselines(data, nan, grids=SMALL_GRIDS)
    with pytest.raises(DataError, match="unknown baseline"):
        B.tune("svd", data)
    with pytest.raises(DataError, match="unknown baseline"):
        B.fit_baselines(data, grids={"svd": [{}]})
    empty = dataclasses.replace(data, train_matrix=scipy.sparse.csr_matrix(
        data.train_matrix.shape, dtype=bool))
    for build in (B.ease, B.item_knn, B.bpr):
        with pytest.raises(DataError, match="training matrix is empty"):
            build(empty)


def test_content_regression_solves_its_ridge_normal_equations(world):
    toy, data = world
    l2 = 0.05
    rows = toy.content / np.linalg.norm(toy.content, axis=1, keepdims=True)
    w = B.content_regression_map(data.train_matrix, rows, l2).astype(np.float64)
    x = data.train_matrix.astype(np.float64)
    users = (x @ rows) / np.maximum(np.asarray(x.sum(axis=1)), 1.0)
    warm = rows[np.asarray(x.sum(axis=0)).ravel() > 0]
    a, r, eye = users.T @ users, warm.T @ warm, np.eye(rows.shape[1])
    # (AᵀA + l2·a·I) W (R_wᵀR_w + l2·r·I) = Aᵀ X R, the ridges relative to the mean diagonal.
    left = (a + l2 * np.trace(a) / len(eye) * eye) @ w @ (r + l2 * np.trace(r) / len(eye) * eye)
    np.testing.assert_allclose(left, users.T @ (x @ rows), rtol=1e-4, atol=1e-6)
    model = B.content_regression(data, toy.content, l2)
    np.testing.assert_allclose(model.item_embeddings(), rows, rtol=1e-5)
    np.testing.assert_allclose(model.query_embeddings({"user": np.array([7])})[0],
                               users[7] @ w, rtol=1e-4, atol=1e-6)


def test_content_regression_learns_which_content_predicts_taste(world):
    toy, data = world
    # Loud content that says nothing about taste drowns the cosine of the plain profile; the
    # regression learns from the training matrix to look past it, on items it never saw.
    loud = np.random.default_rng(1).normal(size=(data.n_items, 40)).astype(np.float32)
    content = np.concatenate([toy.content, 1.5 * loud], axis=1)
    profile = B.content_profile(data, content)
    regression = B.content_regression(data, content, 0.01)
    cold = {m.variant: R.evaluate_retrieval(m, data, "test_cold", ks=(50,))["recall@50"]
            for m in (profile, regression)}
    assert cold["content_regression"] > cold["content_profile"] + 0.2, cold


def test_fit_baselines_tunes_the_content_regression_on_validation_recall(world):
    toy, data = world
    grid = [{"l2": 0.001}, {"l2": 0.1}, {"l2": 10.0}]
    fitted = B.fit_baselines(data, toy.content, grids={**SMALL_GRIDS, "content_regression": grid})
    chosen = fitted["content_regression"]
    # Fitted without the held-out items, scored on the validation events that take them.
    held = F.hold_out_new_items(data, seed=42)
    recalls = [R.evaluate_retrieval(B.content_regression(held, toy.content, **g), held,
                                    "validation_new", ks=(50,))["recall@50"] for g in grid]
    assert len(set(recalls)) > 1, recalls
    assert chosen.config["l2"] == grid[int(np.argmax(recalls))]["l2"]
    assert chosen.config["validation_recall@50"] == pytest.approx(max(recalls))
    # A held-out copy the caller built is the one the choice is made on (notebook 04 builds
    # it once, for the regression and the towers).
    other = F.hold_out_new_items(data, share=0.5, seed=42)
    given = B.fit_baselines(data, toy.content, held_out=other,
                            grids={**SMALL_GRIDS, "content_regression": grid})["content_regression"]
    on_other = [R.evaluate_retrieval(B.content_regression(other, toy.content, **g), other,
                                     "validation_new", ks=(50,))["recall@50"] for g in grid]
    assert max(on_other) != max(recalls), (on_other, recalls)  # the two copies differ
    assert given.config["l2"] == grid[int(np.argmax(on_other))]["l2"]
    assert given.config["validation_recall@50"] == pytest.approx(max(on_other))
    # Then refitted on every training interaction.
    np.testing.assert_allclose(chosen.users, B.content_regression(
        data, toy.content, chosen.config["l2"]).users, atol=1e-6)
    with pytest.raises(DataError, match="l2 must be > 0"):
        B.content_regression(data, toy.content, 0.0)
    with pytest.raises(DataError, match="do not match"):
        B.content_regression_map(data.train_matrix, toy.content[:-1], 0.1)


def test_hold_out_new_items_turns_warm_items_into_new_ones(world):
    _, data = world
    held = F.hold_out_new_items(data, share=0.3, seed=1)
    gone = np.flatnonzero(data.warm_items & ~held.warm_items)
    assert len(gone) == int(0.3 * data.warm_items.sum())
    assert held.train_matrix[:, gone].nnz == 0 and held.item_counts[gone].sum() == 0
    assert not np.isin(held.examples["train"]["item"], gone).any()  # nor any example
    assert not np.isin(held.examples["train"]["history"], gone).any()  # nor any history
    assert held.train_matrix.dtype == data.train_matrix.dtype
    kept = np.flatnonzero(held.warm_items)
    assert (held.item_counts[kept] == data.item_counts[kept]).all()
    # They are the items first seen last, as new items are.
    first_seen = data.splits["train"].groupby("item_id")["timestamp"].min()
    ids = data.vocab.item_ids
    assert first_seen[ids[gone]].min() >= first_seen[ids[kept]].max()
    # "validation_new" asks only about them, and "validation" keeps every other event.
    taken = held.vocab.item_index(held.splits["validation_new"]["item_id"].to_numpy())
    assert len(taken) and np.isin(taken, gone).all()
    everything = data.vocab.item_index(data.splits["validation"]["item_id"].to_numpy())
    others = held.vocab.item_index(held.splits["validation"]["item_id"].to_numpy())
    assert not np.isin(others, gone).any()
    assert len(others) == (~np.isin(everything, gone)).sum()
    assert len(taken) <= np.isin(everything, gone).sum()  # users with training left
    pd.testing.assert_frame_equal(held.splits["test"], data.splits["test"])
    with pytest.raises(DataError, match="share"):
        F.hold_out_new_items(data, share=1.0)
