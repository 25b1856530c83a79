"""Hand-computed checks of recsys_utils.metrics (arithmetic in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from recsys_utils import metrics
from recsys_utils.schema import DataError

LOG2_3 = math.log2(3)  # discount at rank 2 is 1/log2(3)
LOG2_5 = math.log2(5)  # rank 4


# --------------------------------------------------------------------------
# top_k / brute_force_top_k
# --------------------------------------------------------------------------


def test_top_k_orders_by_score_and_breaks_ties_by_lower_index():
    scores = np.array([
        [0.1, 0.5, 0.5, 0.9, 0.5],   # 3 first, then the three 0.5s by index: 1, 2, 4
        [1.0, 1.0, 1.0, 1.0, 1.0],   # all tied -> 0, 1, 2
    ])
    np.testing.assert_array_equal(metrics.top_k(scores, 3), [[3, 1, 2], [0, 1, 2]])
    # The tie straddles the cut: only the lowest-index 0.5s get in.
    np.testing.assert_array_equal(metrics.top_k(scores[:1], 2), [[3, 1]])
    np.testing.assert_array_equal(metrics.top_k(scores[:1], 5), [[3, 1, 2, 4, 0]])


def test_top_k_is_deterministic_with_many_ties_across_blocks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(37, 50)).astype(np.float32)  # heavy ties
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]  # stable == lower index first
    np.testing.assert_array_equal(metrics.top_k(scores, 7, batch_size=5), expected)


@pytest.mark.parametrize("levels", [3, 50, 10_000])
def test_top_k_matches_a_stable_sort_with_ties_exclusions_and_short_rows(levels):
    # The fast path (argpartition) must pick exactly what a stable sort picks: ties at the
    # k-th score to the lower index, excluded items last and reported as -1.
    rng = np.random.default_rng(levels)
    scores = rng.integers(0, levels, size=(300, 120)).astype(np.float32)
    exclude = rng.random(scores.shape) < 0.3
    exclude[:20, 5:] = True  # 5 allowed items in the first rows: fewer than k
    ranked, values = metrics.brute_force_top_k(scores, np.eye(120, dtype=np.float32), 10,
                                               exclude=scipy.sparse.csr_matrix(exclude),
                                               batch_size=64)
    key = np.where(exclude, np.inf, -scores)
    expected = np.argsort(key, axis=1, kind="stable")[:, :10]
    expected = np.where(np.take_along_axis(exclude, expected, axis=1), -1, expected)
    np.testing.assert_array_equal(ranked, expected)
    np.testing.assert_array_equal(values, np.where(
        expected >= 0, np.take_along_axis(scores, np.maximum(expected, 0), axis=1), -np.inf))


@pytest.mark.parametrize("as_sparse", [False, True])
def test_top_k_exclusion(as_sparse):
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4]])
    exclude = np.array([[True, False, True, False], [False, False, False, True]])
    mask = scipy.sparse.csr_matrix(exclude) if as_sparse else exclude
    # Row 0 loses items 0 and 2 -> 1, 3; row 1 loses item 3 -> 2, 1.
    np.testing.assert_array_equal(metrics.top_k(scores, 2, exclude=mask), [[1, 3], [2, 1]])
    # k=3 but row 0 has only 2 allowed items: padded with -1, never an excluded item.
    np.testing.assert_array_equal(metrics.top_k(scores, 3, exclude=mask), [[1, 3, -1], [2, 1, 0]])


def test_top_k_excluded_ranks_below_minus_infinity():
    scores = np.array([[-np.inf, 1.0, -np.inf]])
    exclude = np.array([[True, False, False]])
    # Item 2 (score -inf but allowed) beats excluded item 0 despite its lower index.
    np.testing.assert_array_equal(metrics.top_k(scores, 3, exclude=exclude), [[1, 2, -1]])


def test_top_k_rejects_bad_input():
    scores = np.zeros((2, 4))
    with pytest.raises(DataError, match="k=5 is out of range"):
        metrics.top_k(scores, 5)
    with pytest.raises(DataError, match="exclude has shape"):
        metrics.top_k(scores, 2, exclude=np.zeros((2, 3), bool))
    with pytest.raises(DataError, match="NaN"):
        metrics.top_k(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(DataError, match="2-D"):
        metrics.top_k(np.zeros(4), 1)


@pytest.mark.parametrize("n_queries,batch_size", [(1, 1024), (64, 16), (65, 16), (63, 16), (50, 1)])
def test_brute_force_top_k_matches_full_argsort(n_queries, batch_size):
    rng = np.random.default_rng(n_queries)
    queries = rng.normal(size=(n_queries, 8))
    items = rng.normal(size=(301, 8))
    full = queries @ items.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :20]
    idx, sc = metrics.brute_force_top_k(queries, items, 20, batch_size=batch_size)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sc, np.take_along_axis(full, expected, axis=1), rtol=1e-12)
    assert idx.shape == sc.shape == (n_queries, 20)


def test_brute_force_top_k_with_exclusion_and_float32():
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(40, 4)).astype(np.float32)
    items = rng.normal(size=(30, 4)).astype(np.float32)
    exclude = scipy.sparse.random(40, 30, density=0.2, format="csr", random_state=2)
    full = (queries.astype(np.float64) @ items.T.astype(np.float64))
    full[exclude.toarray() != 0] = -np.inf
    expected = np.argsort(-full, axis=1, kind="stable")[:, :5]
    idx, sc = metrics.brute_force_top_k(queries, items, 5, exclude=exclude, batch_size=7)
    np.testing.assert_array_equal(idx, expected)
    assert sc.dtype == np.float32
    assert not np.isin(idx, -1).any()


def test_brute_force_top_k_dimension_mismatch():
    with pytest.raises(DataError, match="embedding sizes differ"):
        metrics.brute_force_top_k(np.zeros((2, 3)), np.zeros((5, 4)), 1)


# --------------------------------------------------------------------------
# retrieval_metrics
# --------------------------------------------------------------------------


def test_retrieval_metrics_hand_case():
    ranked = np.array([
        [5, 1, 7, 2],   # q0: relevant {5, 7} at ranks 1 and 3
        [0, 1, 2, 3],   # q1: relevant {3} at rank 4; {9} never retrieved
        [4, 3, 2, 1],   # q2: relevant {8}, not in the list
    ])
    relevant = [{5, 7}, [3, 9], {8}]
    out = metrics.retrieval_metrics(ranked, relevant, ks=(2, 4))
    # q0: recall@2 = 1/2, recall@4 = 2/2
    #     ndcg@2 = 1 / (1 + 1/log2 3)           (one hit at rank 1; ideal 2 hits)
    #     ndcg@4 = (1 + 1/log2 4) / (1 + 1/log2 3) = (1 + 1/2) / (1 + 1/log2 3)
    #     rr = 1
    # q1: recall@2 = 0, recall@4 = 1/2, ndcg@2 = 0
    #     ndcg@4 = (1/log2 5) / (1 + 1/log2 3)  (hit at rank 4; ideal min(2,4)=2 hits)
    #     rr = 1/4
    # q2: everything 0
    ideal2 = 1 + 1 / LOG2_3
    assert out["recall@2"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert out["recall@4"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert out["hit_rate@2"] == pytest.approx(1 / 3)
    assert out["hit_rate@4"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((1 / ideal2) / 3)
    assert out["ndcg@4"] == pytest.approx(((1 + 0.5) / ideal2 + (1 / LOG2_5) / ideal2) / 3)
    assert out["mrr"] == pytest.approx((1 + 0.25 + 0) / 3)
    assert out["n_queries"] == 3 and out["n_excluded"] == 0
    # precision@K = hits / K; F1 per query (0 without a hit), then averaged:
    # q0: P@2 = 1/2, F1@2 = 1/2; P@4 = 2/4, R@4 = 1, F1@4 = 2/3
    # q1: P@4 = 1/4, R@4 = 1/2, F1@4 = 1/3
    assert out["precision@2"] == pytest.approx(0.5 / 3)
    assert out["precision@4"] == pytest.approx((0.5 + 0.25) / 3)
    assert out["f1@2"] == pytest.approx(0.5 / 3)
    assert out["f1@4"] == pytest.approx((2 / 3 + 1 / 3) / 3)


def test_precision_recall_and_f1_match_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(7)
    n_queries, n_items, k = 40, 60, 10
    ranked = np.stack([rng.permutation(n_items)[:20] for _ in range(n_queries)])
    relevant = [set(rng.choice(n_items, rng.integers(1, 8), replace=False).tolist())
                for _ in range(n_queries)]
    ours = metrics.retrieval_metrics(ranked, relevant, ks=(k,))
    qrels = ranx.Qrels({f"q{q:03d}": {f"d{i:03d}": 1 for i in rel}
                        for q, rel in enumerate(relevant)})
    run = ranx.Run({f"q{q:03d}": {f"d{int(i):03d}": float(20 - r) for r, i in enumerate(row)}
                    for q, row in enumerate(ranked)})
    theirs = ranx.evaluate(qrels, run, [f"precision@{k}", f"recall@{k}", f"f1@{k}"])
    for name in ("precision", "recall", "f1"):
        assert ours[f"{name}@{k}"] == pytest.approx(theirs[f"{name}@{k}"]), name


def test_retrieval_metrics_one_relevant_ndcg():
    # Single target at rank 2: ndcg@K = (1/log2 3) / 1 for K >= 2 (ideal: one hit at rank 1).
    out = metrics.retrieval_metrics(np.array([[4, 9, 1]]), np.array([9]), ks=(1, 3))
    assert out["ndcg@1"] == 0
    assert out["ndcg@3"] == pytest.approx(1 / LOG2_3)
    assert out["mrr"] == pytest.approx(0.5)
    assert out["recall@3"] == 1 and out["hit_rate@1"] == 0


def test_retrieval_metrics_ideal_capped_at_k():
    # 3 relevant, K = 2, both top-2 relevant -> ndcg@2 = 1 (ideal uses min(3, 2) = 2 hits)
    # while recall@2 = 2/3.
    out = metrics.retrieval_metrics(np.array([[1, 2, 0]]), [{0, 1, 2}], ks=(2,))
    assert out["ndcg@2"] == pytest.approx(1.0)
    assert out["recall@2"] == pytest.approx(2 / 3)


def test_queries_without_relevant_items_are_excluded_and_counted():
    ranked = np.array([[0, 1], [1, 0], [2, 3]])
    out = metrics.retrieval_metrics(ranked, [{0}, set(), []], ks=(1,))
    # Only q0 counts: hit at rank 1 -> all metrics 1.
    assert out == {"recall@1": 1.0, "precision@1": 1.0, "f1@1": 1.0, "hit_rate@1": 1.0,
                   "ndcg@1": 1.0, "mrr": 1.0, "n_queries": 1, "n_excluded": 2}


def test_relevant_beyond_the_list_scores_zero():
    out = metrics.retrieval_metrics(np.array([[0, 1, 2]]), [{7}], ks=(3,))
    assert out["recall@3"] == 0 and out["ndcg@3"] == 0 and out["mrr"] == 0


def test_minus_one_padding_never_hits():
    out = metrics.retrieval_metrics(np.array([[3, -1, -1]]), [{3}], ks=(3,))
    assert out["recall@3"] == 1
    out = metrics.retrieval_metrics(np.array([[2, -1, -1], [-1, -1, -1]]), [{0}, {1}], ks=(3,))
    assert out["recall@3"] == 0 and out["n_queries"] == 2


def test_relevant_formats_agree():
    ranked = np.array([[0, 1, 2], [2, 1, 0]])
    as_sets = metrics.retrieval_metrics(ranked, [{1, 2}, {0}], ks=(2,))
    dense = np.array([[False, True, True], [True, False, False]])
    assert metrics.retrieval_metrics(ranked, dense, ks=(2,)) == as_sets
    assert metrics.retrieval_metrics(ranked, scipy.sparse.csr_matrix(dense), ks=(2,)) == as_sets


def test_k_larger_than_list_is_a_clear_error():
    with pytest.raises(DataError, match=r"3 item\(s\) per query but ks=\[10\] needs 10"):
        metrics.retrieval_metrics(np.zeros((2, 3), int) + [[0, 1, 2]], [{0}, {1}], ks=(10,))


def test_retrieval_metrics_input_errors():
    ranked = np.array([[0, 1], [1, 0]])
    with pytest.raises(DataError, match="relevant has 1 entries but ranked has 2"):
        metrics.retrieval_metrics(ranked, [{0}], ks=(1,))
    with pytest.raises(DataError, match="more than once"):
        metrics.retrieval_metrics(np.array([[0, 0]]), [{0}], ks=(2,))
    with pytest.raises(DataError, match="integer"):
        metrics.retrieval_metrics(ranked.astype(float), [{0}, {1}], ks=(1,))


def test_per_query_frame_and_mean_agree():
    rng = np.random.default_rng(3)
    ranked = np.stack([rng.permutation(50)[:20] for _ in range(30)])
    relevant = [set(rng.choice(50, size=rng.integers(0, 4), replace=False).tolist()) for _ in range(30)]
    summary = metrics.retrieval_metrics(ranked, relevant, ks=(5, 20))
    frame = metrics.retrieval_metrics(ranked, relevant, ks=(5, 20), per_query=True)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == summary["n_queries"] == sum(bool(r) for r in relevant)
    assert list(frame.index) == [i for i, r in enumerate(relevant) if r]
    for column in ("recall@5", "ndcg@20", "hit_rate@20", "mrr"):
        assert frame[column].mean() == pytest.approx(summary[column])
    assert (frame["n_relevant"] == [len(r) for r in relevant if r]).all()


def test_per_group():
    ranked = np.array([[0, 1], [1, 0], [0, 1]])
    table = metrics.per_group(metrics.retrieval_metrics, ["a", "b", "a"],
                              ranked=ranked, relevant=np.array([0, 0, 1]), ks=(1,))
    # a: q0 hit at 1 (rr 1), q2 hit at 2 (rr 1/2) -> recall@1 = 1/2, mrr = 3/4
    # b: q1 hit at 2 -> recall@1 = 0, mrr = 1/2
    assert table.loc["a", "recall@1"] == pytest.approx(0.5)
    assert table.loc["a", "mrr"] == pytest.approx(0.75)
    assert table.loc["b", "mrr"] == pytest.approx(0.5)
    assert table.loc["all", "mrr"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert table["n_queries"].to_dict() == {"a": 2, "b": 1, "all": 3}


# --------------------------------------------------------------------------
# graded_metrics
# --------------------------------------------------------------------------


def test_graded_ndcg_hand_case():
    # Judged: item 10 rel 3 (gain 7), item 11 rel 2 (gain 3), item 12 rel 0 (gain 0).
    # Ranked: 12, 10, 99 (unjudged), 11
    # DCG@4  = 0/1 + 7/log2 3 + 0/2 + 3/log2 5
    # IDCG@4 = 7/1 + 3/log2 3 + 0/2        (all judged, sorted by gain)
    # DCG@2 = 7/log2 3; IDCG@2 = 7 + 3/log2 3
    ranked = np.array([[12, 10, 99, 11]])
    gains = [{10: 3, 11: 2, 12: 0}]
    out = metrics.graded_metrics(ranked, gains, ks=(2, 4), recall_ks=(1, 4))
    assert out["ndcg@4"] == pytest.approx((7 / LOG2_3 + 3 / LOG2_5) / (7 + 3 / LOG2_3))
    assert out["ndcg@2"] == pytest.approx((7 / LOG2_3) / (7 + 3 / LOG2_3))
    # relevant (rel >= 1): {10, 11}; recall@1 = 0/2; recall@4 = 2/2; first relevant at rank 2.
    assert out["recall@1"] == 0 and out["recall@4"] == 1
    assert out["mrr"] == pytest.approx(0.5)
    # threshold 3: only item 10 is relevant -> recall@4 = 1, mrr 1/2 still
    strict = metrics.graded_metrics(ranked, gains, ks=(2,), recall_ks=(4,), relevant_threshold=3)
    assert strict["recall@4"] == 1 and strict["mrr"] == pytest.approx(0.5)


def test_graded_ideal_includes_unretrieved_judged_items():
    # The best item (rel 3) is never retrieved: DCG@2 = 1/1 (rel 1 at rank 1, gain 2^1-1 = 1)
    # IDCG@2 = 7 + 1/log2 3  (gains 7 and 1 ideally at ranks 1 and 2)
    out = metrics.graded_metrics(np.array([[5, 6]]), [{5: 1, 8: 3}], ks=(2,), recall_ks=(2,))
    assert out["ndcg@2"] == pytest.approx(1 / (7 + 1 / LOG2_3))
    assert out["recall@2"] == pytest.approx(0.5)


def test_graded_excludes_queries_without_relevant_items():
    ranked = np.array([[0, 1], [0, 1]])
    frame = metrics.graded_metrics(ranked, [{0: 2}, {1: 0}, ], ks=(1,), recall_ks=(2,), per_query=True)
    assert list(frame.index) == [0]
    out = metrics.graded_metrics(ranked, [{0: 2}, {}], ks=(1,), recall_ks=(2,))
    assert out["n_queries"] == 1 and out["n_excluded"] == 1 and out["ndcg@1"] == 1


def test_graded_errors():
    with pytest.raises(DataError, match="needs 100"):
        metrics.graded_metrics(np.array([[0, 1]]), [{0: 1}], ks=(1,))
    with pytest.raises(DataError, match="one"):
        metrics.graded_metrics(np.array([[0, 1]]), [{0: 1}, {1: 1}], ks=(1,), recall_ks=(2,))


# --------------------------------------------------------------------------
# Pointwise metrics and bootstrap
# --------------------------------------------------------------------------


def test_rmse_hand_case():
    # errors 1, -1, 2 -> mean square (1 + 1 + 4)/3 = 2 -> sqrt 2
    assert metrics.rmse([1, 2, 3], [2, 1, 5]) == pytest.approx(math.sqrt(2))
    with pytest.raises(DataError, match="3 values"):
        metrics.rmse([1, 2, 3], [1, 2])


def test_auc_hand_case_with_ties():
    # pairs (pos, neg): pos scores 0.8, 0.4; neg scores 0.4, 0.1
    # 0.8>0.4 ✓, 0.8>0.1 ✓, 0.4=0.4 ½, 0.4>0.1 ✓ -> 3.5 / 4
    assert metrics.auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    with pytest.raises(DataError, match="both"):
        metrics.auc([1, 1], [0.1, 0.2])


def test_log_loss_hand_case():
    # -(log 0.8 + log(1 - 0.4)) / 2 = -(log 0.8 + log 0.6) / 2
    assert metrics.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # p = 0 for a positive is clipped to eps: -log(1e-7)
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))
    with pytest.raises(DataError, match="sigmoid"):
        metrics.log_loss([1, 0], [2.5, -1.0])


def test_bootstrap_ci():
    values = np.random.default_rng(5).normal(loc=0.3, scale=0.1, size=400)
    low, high = metrics.bootstrap_ci(values, n_boot=500, seed=0)
    assert low < values.mean() < high
    # Standard error 0.1/sqrt(400) = 0.005 -> 95% width ≈ 2 * 1.96 * 0.005 ≈ 0.0196
    assert high - low == pytest.approx(0.0196, rel=0.2)
    assert metrics.bootstrap_ci(values, n_boot=500, seed=0) == (low, high)  # seeded
    assert metrics.bootstrap_ci(np.full(10, 0.5)) == (0.5, 0.5)
    with pytest.raises(DataError, match="NaN"):
        metrics.bootstrap_ci(np.array([0.1, np.nan]))


# --------------------------------------------------------------------------
# top_k_overlap
# --------------------------------------------------------------------------


def test_top_k_overlap_counts_shared_items_and_never_padding():
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    approx = np.array([[3, 1, 9, 8], [6, -1, 5, -1]])
    np.testing.assert_allclose(metrics.top_k_overlap(approx, exact, 2), [0.5, 0.5])
    # Padding (-1) in both lists is not a shared item.
    np.testing.assert_allclose(metrics.top_k_overlap(approx, exact, 4), [0.5, 0.5])
    strings = metrics.top_k_overlap([["a", "b"], ["c", "d"]], [["b", "a"], ["x", "c"]], 2)
    np.testing.assert_allclose(strings, [1.0, 0.5])


def test_top_k_overlap_rejects_mismatched_lists():
    with pytest.raises(DataError, match="same rows"):
        metrics.top_k_overlap(np.zeros((2, 3)), np.zeros((3, 3)), 2)
    with pytest.raises(DataError, match="k=4 is out of range"):
        metrics.top_k_overlap(np.zeros((2, 3)), np.zeros((2, 3)), 4)


@pytest.mark.parametrize("low, high, difference, verdict", [
    (-0.01, 0.02, 0.005, "ties with"), (0.001, 0.02, 0.01, "beats"),
    (-0.03, -0.002, -0.01, "loses to"), (0.0, 0.02, 0.01, "ties with")])
def test_describe_comparison_reads_the_interval(low, high, difference, verdict):
    row = {"a": "warm start", "b": "retrain", "split": "test", "metric": "recall@10",
           "value_a": 0.2 + difference, "value_b": 0.2, "difference": difference,
           "low": low, "high": high}
    assert metrics.describe_comparison(row) == (
        f"warm start {verdict} retrain on test recall@10: {0.2 + difference:.4f} vs 0.2000 "
        f"(difference {difference:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}])")


def test_describe_comparison_says_how_many_queries_a_tie_needs():
    row = {"a": "fused", "b": "profile", "split": "test_cold", "metric": "recall@50",
           "value_a": 0.21, "value_b": 0.2, "difference": 0.01, "low": -0.01, "high": 0.03,
           "n_queries": 400}
    # Half-width 0.02 is twice the difference: four times the queries halve it.
    assert metrics.queries_to_resolve(row) == 1600
    assert metrics.describe_comparison(row).endswith(
        "(difference +0.0100, 95% interval [-0.0100, +0.0300]); a difference this size would "
        "need about 1,600 queries, not 400, to tell from zero")
    # A decided comparison, or a difference of exactly 0, says nothing of the sort.
    assert "would need" not in metrics.describe_comparison({**row, "low": 0.001})
    assert "would need" not in metrics.describe_comparison({**row, "difference": 0.0})
    with pytest.raises(DataError, match="exactly 0"):
        metrics.queries_to_resolve({**row, "difference": 0.0})


def test_queries_to_resolve_predicts_when_a_tie_becomes_a_win():
    rng = np.random.default_rng(3)
    b = rng.random(100)
    noise = rng.normal(0, 0.3, 100)
    a = b + 0.02 + noise - noise.mean()  # a beats b by 0.02, with a wide spread per query

    def compare(copies):  # the same queries repeated: the same difference and per-query spread
        return metrics.paired_difference("a", "b", "test", "recall@50", np.tile(a, copies),
                                         np.tile(b, copies), seed=1)

    tie = compare(1)
    assert tie["low"] <= 0 <= tie["high"]
    needed = metrics.queries_to_resolve(tie)
    assert needed > 100
    assert compare(int(np.ceil(1.3 * needed / 100)))["low"] > 0  # past the estimate: a win
    fewer = compare(max(1, int(0.7 * needed / 100)))  # short of it: still a tie
    assert fewer["low"] <= 0 <= fewer["high"]


def test_paired_difference_is_the_mean_difference_with_its_interval():
    rng = np.random.default_rng(0)
    a = rng.random(400)
    b = a - 0.05 + rng.normal(0, 0.01, 400)  # a beats b by 0.05 on every query, give or take
    row = metrics.paired_difference("a", "b", "test", "ndcg@10", a, b, seed=1)
    assert row["difference"] == pytest.approx(np.mean(a - b))
    assert row["value_a"] == pytest.approx(a.mean()) and row["n_queries"] == 400
    assert 0.0 < row["low"] < row["difference"] < row["high"] < 0.1
    # A difference of noise alone: the interval holds 0.
    tie = metrics.paired_difference("a", "b", "test", "ndcg@10", a, a + rng.normal(0, 0.01, 400))
    assert tie["low"] < 0 < tie["high"]
    with pytest.raises(DataError, match="same queries: got shapes"):
        metrics.paired_difference("a", "b", "test", "ndcg@10", a, b[:-1])
