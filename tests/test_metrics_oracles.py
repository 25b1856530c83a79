"""The course's ranking metrics (recsys_utils.metrics, its own numpy code) against ranx and,
where installed, pytrec_eval (trec_eval's C code): the libraries are the test oracles."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils import metrics

ranx = pytest.importorskip("ranx")

# ranx's numba kernels warn once when they compile (not the course's concern).
pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast from uint64 to int64")

KS = (1, 5, 20, 50)


def _qid(q: int) -> str:
    return f"q{q:05d}"  # zero-padded: the libraries' sorted query order is the row order


def _run(ranked, rows):
    """Result lists as {query: {item: score}}, scores falling with the list position
    (the libraries rank by score), padding (-1) dropped."""
    depth = ranked.shape[1]
    return {_qid(q): {f"d{int(i)}": float(depth - j) for j, i in enumerate(ranked[q]) if i >= 0}
            for q in rows}


@pytest.fixture(scope="module")
def binary_case():
    """300 queries, lists of 50 over 400 items (some shorter, padded with -1); 0-6 relevant
    items per query, some never retrieved; queries with none are excluded by the course."""
    rng = np.random.default_rng(11)
    n, depth, n_items = 300, 50, 400
    ranked = np.stack([rng.choice(n_items, depth, replace=False) for _ in range(n)])
    ranked[rng.random(n) < 0.2, 30:] = -1
    relevant = []
    for q in range(n):
        inside = rng.choice(ranked[q][ranked[q] >= 0], rng.integers(0, 4), replace=False)
        outside = rng.choice(n_items, rng.integers(0, 3), replace=False)
        relevant.append({int(i) for i in np.concatenate([inside, outside])})
    return ranked, relevant


def test_retrieval_metrics_equal_ranx(binary_case):
    ranked, relevant = binary_case
    frame = metrics.retrieval_metrics(ranked, relevant, ks=KS, per_query=True)
    rows = frame.index.to_numpy()
    assert 0 < len(rows) < len(relevant)  # some queries have nothing relevant: excluded
    qrels = ranx.Qrels({_qid(q): {f"d{i}": 1 for i in relevant[q]} for q in rows})
    run = ranx.Run(_run(ranked, rows))
    names = {f"{m}@{k}": f"{m}@{k}" for k in KS for m in ("recall", "ndcg", "hit_rate")}
    names["mrr"] = "mrr"
    oracle = ranx.evaluate(qrels, run, list(names.values()), return_mean=False)
    for ours, theirs in names.items():
        np.testing.assert_allclose(frame[ours].to_numpy(), oracle[theirs], rtol=0, atol=1e-12,
                                   err_msg=ours)


@pytest.fixture(scope="module")
def graded_case():
    """200 search queries with ESCI grades 0-3 on 2-12 judged items, lists of 100."""
    rng = np.random.default_rng(12)
    n, depth, n_items = 200, 100, 600
    ranked = np.stack([rng.choice(n_items, depth, replace=False) for _ in range(n)])
    gains = []
    for q in range(n):
        judged = np.concatenate([rng.choice(ranked[q][:40], rng.integers(1, 8), replace=False),
                                 rng.choice(n_items, rng.integers(1, 5), replace=False)])
        gains.append({int(i): float(rng.integers(0, 4)) for i in judged})
    return ranked, gains


def test_graded_metrics_equal_ranx(graded_case):
    ranked, gains = graded_case
    frame = metrics.graded_metrics(ranked, gains, ks=(5, 10), recall_ks=(10, 100),
                                   relevant_threshold=2, per_query=True)
    rows = frame.index.to_numpy()
    qrels = ranx.Qrels({_qid(q): {f"d{i}": int(r) for i, r in gains[q].items()} for q in rows})
    run = ranx.Run(_run(ranked, rows))
    # ndcg_burges: gain 2^rel - 1, the course's; "-l2": relevant from grade 2, its threshold.
    oracle = ranx.evaluate(qrels, run, ["ndcg_burges@5", "ndcg_burges@10", "recall@10-l2",
                                        "recall@100-l2", "mrr-l2"], return_mean=False)
    pairs = {"ndcg@5": "ndcg_burges@5", "ndcg@10": "ndcg_burges@10", "recall@10": "recall@10-l2",
             "recall@100": "recall@100-l2", "mrr": "mrr-l2"}
    for ours, theirs in pairs.items():
        np.testing.assert_allclose(frame[ours].to_numpy(), oracle[theirs], rtol=0, atol=1e-12,
                                   err_msg=ours)


def test_retrieval_metrics_equal_trec_eval(binary_case):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    ranked, relevant = binary_case
    frame = metrics.retrieval_metrics(ranked, relevant, ks=KS, per_query=True)
    rows = frame.index.to_numpy()
    qrels = {_qid(q): {f"d{i}": 1 for i in relevant[q]} for q in rows}
    cut = ",".join(map(str, KS))
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {f"ndcg_cut.{cut}", f"recall.{cut}", f"success.{cut}", "recip_rank"})
    out = evaluator.evaluate(_run(ranked, rows))
    for k in KS:
        for ours, theirs in ((f"recall@{k}", f"recall_{k}"), (f"ndcg@{k}", f"ndcg_cut_{k}"),
                             (f"hit_rate@{k}", f"success_{k}")):
            np.testing.assert_allclose(frame[ours].to_numpy(),
                                       [out[_qid(q)][theirs] for q in rows], atol=1e-12)
    np.testing.assert_allclose(frame["mrr"].to_numpy(),
                               [out[_qid(q)]["recip_rank"] for q in rows], atol=1e-12)
