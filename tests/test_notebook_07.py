"""Notebook 07 (product search) on the smoke profile: where lexical and dense retrieval win,
the hybrid, the two-tower model and the exported search model."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
import pytest

from recsys_utils import artifacts, search_serving

pytestmark = pytest.mark.notebook

#: The kind of query where word overlap fails and a sentence encoder should win:
#: synthetic has paraphrases; the fashion queries' closest kind is "vague"
#: (usage and gender said indirectly).
SEMANTIC_KIND = {"synthetic": "paraphrase", "fashion": "vague"}
METHODS = ("bm25", "dense", "hybrid_rrf", "hybrid_interpolation", "two_tower")


def _metrics(series_runs, dataset: str):
    artifact_dir = series_runs.upto(dataset, "07")
    return artifacts.read_metrics(artifact_dir)["07_product_search"], artifact_dir


@pytest.mark.parametrize("dataset", ["synthetic", "fashion"])
def test_metrics_are_complete_and_in_range(series_runs, dataset):
    m, _ = _metrics(series_runs, dataset)
    assert m["has_queries"] is True
    assert set(m["test"]) == set(METHODS)
    for method, by_kind in m["test"].items():
        assert "all" in by_kind and len(by_kind) >= 4, (method, by_kind.keys())
        for kind, row in by_kind.items():
            for name in ("ndcg@10", "recall@100", "mrr"):
                assert 0.0 <= row[name] <= 1.0, (method, kind, name, row[name])
            assert row["n_queries"] >= 1
    splits = m["n_queries_by_split"]
    assert set(splits) == {"train", "validation", "test"} and sum(splits.values()) == m["n_queries"]
    assert 0.0 <= m["hybrid_weight"] <= 1.0


@pytest.mark.parametrize("dataset", ["synthetic", "fashion"])
def test_dense_wins_on_semantic_queries_and_bm25_on_exact_ones(series_runs, dataset):
    """Measured on all queries: neither method trains on any of them."""
    m, _ = _metrics(series_runs, dataset)
    ndcg = {method: {k: row["ndcg@10"] for k, row in by_kind.items()}
            for method, by_kind in m["all_queries"].items()}
    kind = SEMANTIC_KIND[dataset]
    assert ndcg["dense"][kind] > ndcg["bm25"][kind] + 0.03, (kind, ndcg)
    # "Competitive" on exact attribute queries: within 0.02 of dense, or better.
    assert ndcg["bm25"]["exact"] >= ndcg["dense"]["exact"] - 0.02, ndcg


@pytest.mark.parametrize("dataset", ["synthetic", "fashion"])
def test_hybrid_is_at_least_as_good_as_the_better_single_method(series_runs, dataset):
    m, _ = _metrics(series_runs, dataset)
    test = {method: by_kind["all"]["ndcg@10"] for method, by_kind in m["test"].items()}
    best = max(test["bm25"], test["dense"])
    tolerance = m["hybrid_tolerance"]
    assert tolerance <= 0.02
    assert test["hybrid_interpolation"] >= best - tolerance, test
    assert test["hybrid_rrf"] >= best - tolerance, test


@pytest.mark.parametrize("dataset", ["synthetic", "fashion"])
def test_two_tower_learned_and_stays_near_zero_shot(series_runs, dataset):
    m, _ = _metrics(series_runs, dataset)
    tt = m["two_tower"]
    assert tt["n_pairs"] > 0 and tt["n_train_queries"] > 0
    assert tt["last_loss"] < tt["first_loss"]
    test = {method: by_kind["all"]["ndcg@10"] for method, by_kind in m["test"].items()}
    # It starts at zero-shot dense retrieval; training must not wreck it.
    assert test["two_tower"] >= test["dense"] - 0.08, test


@pytest.mark.parametrize("dataset", ["synthetic", "fashion"])
def test_the_judged_differences_carry_paired_intervals_on_the_test_queries(series_runs, dataset):
    m, _ = _metrics(series_runs, dataset)
    test = {method: by_kind["all"] for method, by_kind in m["test"].items()}
    pairs = {(row["a"], row["b"]): row for row in m["intervals"]}
    assert set(pairs) == {("two_tower", "bm25"), ("two_tower", "dense"), ("dense", "bm25")}
    for (a, b), row in pairs.items():
        assert row["split"] == "test" and row["metric"] == "ndcg@10"
        # The same queries as the test table, the values its NDCG@10 (queries with a relevant
        # item: every test query here), and an interval around the mean difference.
        assert row["n_queries"] == test[a]["n_queries"] == test[b]["n_queries"]
        assert row["value_a"] == pytest.approx(test[a]["ndcg@10"])
        assert row["value_b"] == pytest.approx(test[b]["ndcg@10"])
        assert row["low"] <= row["difference"] <= row["high"] and row["low"] < row["high"]


@pytest.mark.parametrize("dataset", ["synthetic", "fashion"])
def test_exported_search_model_answers_raw_strings(series_runs, dataset):
    m, artifact_dir = _metrics(series_runs, dataset)
    assert m["served_odd_queries_ok"] is True
    assert m["served_overlap_at_k"] >= 0.8
    loaded = search_serving.load_search_model(artifacts.model_dir(artifact_dir, "search"))
    queries = ["", "x" * 5000, "çà日本語", "black shirt for men"]
    ids, scores = loaded.search(queries)
    assert ids.shape == scores.shape == (len(queries), m["served_k"])
    items = set(artifacts.load_prepared(artifact_dir).items["item_id"].astype(str))
    assert set(ids.ravel()) <= items


@pytest.mark.xdist_group("series-movielens-100k")  # the series it reads
def test_movielens_has_no_queries_and_says_so(series_runs):
    m, artifact_dir = _metrics(series_runs, "movielens-100k")
    assert m["has_queries"] is False
    assert "no search queries" in m["note"]
    assert not artifacts.model_dir(artifact_dir, "search").exists()
