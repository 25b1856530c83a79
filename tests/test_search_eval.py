"""Tests of recsys_utils.search_eval: NDCG@10, Recall@100 and MRR per query kind."""

import math

import numpy as np
import pandas as pd
import pytest

from recsys_utils.search_eval import evaluate, example_results, per_query_ndcg


def test_evaluate_per_kind_and_overall():
    kinds = pd.Series(["exact", "vague"])
    gains = [{2: 3.0, 0: 1.0}, {1: 2.0}]
    ranked = np.array([[2, 0, 1], [0, 1, 2]])
    table = evaluate({"m": ranked}, gains, kinds)
    assert table.columns.tolist() == ["method", "kind", "ndcg@10", "recall@100", "mrr", "n_queries"]
    row = table.set_index("kind").loc["vague"]
    assert row["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert row["mrr"] == pytest.approx(0.5)
    assert table.set_index("kind").loc["exact", "ndcg@10"] == pytest.approx(1.0)
    assert table.set_index("kind").loc["all", "n_queries"] == 2
    # Per query, the same scores (the paired bootstrap's input), short lists padded alike.
    per_query = per_query_ndcg(ranked, gains)
    assert per_query.tolist() == pytest.approx([1.0, 1 / math.log2(3)])
    assert per_query.mean() == pytest.approx(table.set_index("kind").loc["all", "ndcg@10"])


def test_example_results_skip_padding_and_carry_the_grade():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]})
    shown = example_results(["q"], np.array([[2, -1, 0]]), items, [{2: 3.0}], k=3)
    assert shown[["rank", "item_id", "relevance"]].values.tolist() == [[1, "c", 3], [3, "a", 0]]
