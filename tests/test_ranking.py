"""DCN ranking on planted rating / click rules, the retrieve-then-rank chain, multitask."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest

from recsys_utils import features as F
from recsys_utils import dcn_ranker, metrics, two_tower
from recsys_utils import ranking as K
from recsys_utils import retrieval as R
from recsys_utils.profiles import RankingBudget, RetrievalBudget
from toy_world import make_toy

BUDGET = RankingBudget(epochs=12, batch_size=128, embedding_dim=32, learning_rate=0.005)


@pytest.fixture(scope="module")
def rated():
    toy = make_toy(feedback="rating", seed=0)
    data = F.build_features(toy.prepared, history_length=5)
    return toy, data, dcn_ranker.train_ranking(data, toy.content, BUDGET, seed=0, progress=False)


@pytest.fixture(scope="module")
def clicked():
    toy = make_toy(feedback="event", n_users=400, seed=0)  # clicks need more data than ratings
    data = F.build_features(toy.prepared, history_length=5)
    return toy, data, dcn_ranker.train_ranking(data, toy.content, BUDGET, seed=0, progress=False)


def test_dcn_beats_the_constant_rating_predictor(rated):
    _, data, result = rated
    assert result.target == "rating"
    assert result.baseline == pytest.approx(data.examples["train"]["rating"].mean(), rel=1e-5)
    assert result.history["loss"][-1] < result.history["loss"][0]
    out = K.evaluate_ranking(result, data, "test")
    assert out["n"] == len(data.splits["test"])
    assert out["rmse"] < 0.75 * out["rmse_constant"], out
    assert any(isinstance(layer, K.tfrs.layers.dcn.Cross) for layer in result.model.cross)


def test_dcn_beats_chance_on_clicks(clicked):
    _, data, result = clicked
    assert result.target == "click"
    out = K.evaluate_ranking(result, data, "test")
    assert out["auc"] > 0.7, out
    assert out["log_loss"] < 0.95 * out["log_loss_constant"], out
    p = result.predict(data.examples["test"])
    assert ((p > 0) & (p < 1)).all()


def test_sampled_negatives_are_unseen_items_labelled_zero(clicked):
    _, data, _ = clicked
    base = K.ranking_examples(data, "train")
    more = K.ranking_examples(data, "train", sampled_negatives=2, seed=1)
    n, extra = len(base["item"]), len(more["item"]) - len(base["item"])
    positives = int(base["label"].sum())
    assert 0.8 * 2 * positives < extra <= 2 * positives
    assert (more["target"][n:] == 0).all()
    seen = np.asarray(data.train_matrix[more["user"][n:], more["item"][n:]]).ravel()
    assert not seen.any()
    assert data.warm_items[more["item"][n:]].all()


@pytest.fixture(scope="module")
def rated_retrieval(rated):
    toy, data, _ = rated
    return two_tower.train_retrieval("fused", data, toy.content,
                                     RetrievalBudget(epochs=5, batch_size=128), seed=0,
                                     progress=False)


def test_chain_ndcg_reports_both_numbers(rated, rated_retrieval):
    toy, data, ranker = rated
    retrieval = rated_retrieval
    chain = K.chain_ndcg(retrieval, ranker, data, k_retrieve=100, k=10)
    assert 0.0 <= chain.retrieval_ndcg <= 1.0 and 0.0 <= chain.chain_ndcg <= 1.0
    assert chain.retrieval_ndcg > 0.05  # the retrieval model found something
    assert chain.n_queries == data.splits["test"]["user_id"].nunique()
    # Re-ranking permutes each user's candidates: same sets, same recall@100.
    assert chain.reranked.shape == chain.ranked.shape == (chain.n_queries, 100)
    np.testing.assert_array_equal(np.sort(chain.ranked, axis=1), np.sort(chain.reranked, axis=1))
    # Retrieval-only NDCG matches evaluate_retrieval (same queries, same seen-item removal).
    direct = R.evaluate_retrieval(retrieval, data, "test", ks=(10, 100))
    assert chain.retrieval_ndcg == pytest.approx(direct["ndcg@10"])
    assert chain.recall_at_retrieve == pytest.approx(direct["recall@100"])
    # Precision and F1 at 10 beside recall, for both orders, from the same evaluator.
    for name in ("recall@10", "precision@10", "f1@10", "ndcg@10"):
        assert chain.retrieval_at_k[name] == pytest.approx(direct[name]), name
    reranked = metrics.retrieval_metrics(chain.reranked, data.queries("test").relevant, ks=(10,))
    assert chain.chain_at_k["precision@10"] == pytest.approx(reranked["precision@10"])
    assert chain.chain_at_k["ndcg@10"] == pytest.approx(chain.chain_ndcg)
    assert chain.chain_at_k["f1@10"] > 0 and "recall@100" not in chain.chain_at_k


def test_the_blend_is_compared_with_retrieval_alone_user_by_user(rated, rated_retrieval):
    toy, data, ranker = rated
    candidates = K.chain_candidates(rated_retrieval, ranker, data, k_retrieve=100)
    # The ranker's order alone: the same means as the chain's table, the interval around them.
    row = candidates.compare(1.0, k=10, n_boot=500)
    chain = candidates.evaluate(k=10, ranker_weight=1.0)
    assert (row["split"], row["metric"], row["b"]) == ("test", "ndcg@10", "retrieval alone")
    assert row["value_a"] == pytest.approx(chain.chain_ndcg)
    assert row["value_b"] == pytest.approx(chain.retrieval_ndcg)
    assert row["difference"] == pytest.approx(chain.chain_ndcg - chain.retrieval_ndcg)
    assert row["low"] < row["difference"] < row["high"]  # users disagree: a real interval
    assert row["n_queries"] == chain.n_queries
    # w = 0 keeps the retrieval order: no difference for any user, an interval of one point.
    same = candidates.compare(0.0, k=10, n_boot=500)
    assert same["difference"] == same["low"] == same["high"] == 0.0


def test_multitask_trains_both_heads(rated):
    toy, data, _ = rated
    joint = K.train_multitask(data, toy.content, epochs=5, batch_size=128, seed=0,
                              progress=False, rating_weight=1.0, retrieval_weight=1.0)
    warm = R.evaluate_retrieval(joint.retrieval, data, "test", ks=(50,))
    popularity = R.evaluate_retrieval(two_tower.train_retrieval("popularity", data, progress=False),
                                      data, "test", ks=(50,))
    assert warm["recall@50"] > popularity["recall@50"] + 0.2
    out = K.evaluate_ranking(joint.ranking, data, "test")
    assert out["rmse"] < 0.85 * out["rmse_constant"], out


def test_exported_ranker_reproduces_the_scores(clicked, tmp_path):
    import tensorflow as tf

    _toy, data, result = clicked
    path = K.export_ranking_model(result, data, tmp_path / "ranker", n_calibration=16)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    sample = {k: v[:32] for k, v in K.ranking_examples(data, "test").items()}
    inputs = {k: tf.constant(sample[k], tf.float32 if k == "history_mask" else tf.int32)
              for k in K.FEATURE_KEYS}
    np.testing.assert_allclose(fn(**inputs)["score"].numpy(), result.predict(sample), atol=1e-5)
    assert set(np.load(path / "calibration.npz").files) == set(K.FEATURE_KEYS)


def test_blend_weight_is_tuned_on_validation_and_zero_keeps_the_retrieval_order(
        rated, rated_retrieval):
    _, data, ranker = rated
    best, curve = K.tune_ranker_weight(rated_retrieval, ranker, data, k_retrieve=100, k=10)
    assert set(curve) == set(K.BLEND_WEIGHTS) and best in curve
    assert curve[best] == max(curve.values())
    off = K.chain_ndcg(rated_retrieval, ranker, data, k_retrieve=100, ranker_weight=0.0)
    np.testing.assert_array_equal(off.reranked, off.ranked)
    assert off.chain_ndcg == pytest.approx(off.retrieval_ndcg)
    blended = K.chain_ndcg(rated_retrieval, ranker, data, k_retrieve=100, ranker_weight=best)
    assert blended.ranker_weight == best
    # A ranker that scores every candidate the same cannot win on validation.
    class Constant:
        def predict(self, pairs):
            return np.zeros(len(pairs["item"]), np.float32)
    flat_best, flat_curve = K.tune_ranker_weight(rated_retrieval, Constant(), data, k_retrieve=100)
    assert flat_best == 0.0 and flat_curve[0.0] >= max(flat_curve.values())
    with pytest.raises(K.DataError, match="non-empty 'nowhere' split"):
        K.tune_ranker_weight(rated_retrieval, ranker, data, split="nowhere")


def test_chain_candidates_score_once_and_order_many_ways(rated, rated_retrieval):
    _, data, ranker = rated

    class Counting:
        calls = 0

        def predict(self, pairs):
            Counting.calls += 1
            return ranker.predict(pairs)

    candidates = K.chain_candidates(rated_retrieval, Counting(), data, k_retrieve=50)
    alone, blend = candidates.evaluate(k=10), candidates.evaluate(k=10, ranker_weight=0.3)
    assert Counting.calls == 1
    assert candidates.ranked.shape == candidates.ranker_scores.shape == (alone.n_queries, 50)
    # Same numbers as the one-shot function, for either order.
    for result, weight in ((alone, 1.0), (blend, 0.3)):
        direct = K.chain_ndcg(rated_retrieval, ranker, data, k_retrieve=50, ranker_weight=weight)
        assert result.chain_ndcg == pytest.approx(direct.chain_ndcg)
        np.testing.assert_array_equal(result.reranked, direct.reranked)
    # Weight 1 orders by the ranker's scores, best first, padding last.
    first = candidates.ranker_scores[0][candidates.ranked[0] >= 0]
    by_ranker = candidates.ranked[0][np.argsort(-candidates.ranker_scores[0], kind="stable")]
    np.testing.assert_array_equal(alone.reranked[0][: len(first)], by_ranker[: len(first)])
    assert candidates.ndcg(0.3, k=10) == pytest.approx(blend.chain_ndcg)
    # Another ranker on the same candidates: no new retrieval, the same numbers as from scratch.
    constant = type("Constant", (), {"predict": lambda self, pairs: np.zeros(len(pairs["item"]))})()
    flat = candidates.rescored(constant)
    np.testing.assert_array_equal(flat.ranked, candidates.ranked)
    assert Counting.calls == 1 and not flat.ranker_scores.any()
    direct = K.chain_ndcg(rated_retrieval, constant, data, k_retrieve=50)
    assert flat.evaluate(k=10).chain_ndcg == pytest.approx(direct.chain_ndcg)
