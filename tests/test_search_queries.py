"""Tests of recsys_utils.search_queries: fashion queries, splits, gains and training pairs."""

import numpy as np
import pandas as pd
import pytest

from recsys_utils.schema import DataError
from recsys_utils.search_queries import (fashion_queries, query_gains, search_queries,
                                         split_queries, training_pairs)


@pytest.fixture(scope="module")
def fashion_items() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    cats = {"Shirts": "Topwear", "Tshirts": "Topwear", "Jeans": "Bottomwear",
            "Casual Shoes": "Shoes", "Handbags": "Bags"}
    category = rng.choice(list(cats), n)
    return pd.DataFrame({
        "item_id": [str(1000 + i) for i in range(n)],
        "title": [f"item {i}" for i in range(n)],
        "description": "",
        "category": category,
        "sub_category": [cats[c] for c in category],
        "gender": rng.choice(["Men", "Women", "Unisex"], n),
        "colour": rng.choice(["Navy Blue", "Black", "Red", "unknown"], n),
        "usage": rng.choice(["Casual", "Formal", "Sports", "unknown"], n),
    })


def test_fashion_queries_are_deterministic_graded_and_valid(fashion_items):
    from recsys_utils.schema import validate_queries

    queries, judgements = fashion_queries(fashion_items, seed=3, n_queries=60)
    again, judged_again = fashion_queries(fashion_items, seed=3, n_queries=60)
    pd.testing.assert_frame_equal(queries, again)
    pd.testing.assert_frame_equal(judgements, judged_again)
    assert len(queries) == 60 and queries["query_id"].is_unique
    assert set(queries["kind"]) == {"exact", "partial", "vague"}
    validate_queries(queries.copy(), judgements.copy(), fashion_items)
    assert "unknown" not in " ".join(queries["text"])
    # Every query has an exact (3) item, and the grades follow attribute agreement.
    assert (judgements.groupby("query_id")["relevance"].max() == 3).all()
    items = fashion_items.set_index("item_id")
    sub_category = dict(zip(fashion_items["category"].str.lower(), fashion_items["sub_category"]))
    graded = set()
    for _, q in queries.head(40).iterrows():
        head = "category" if q["kind"] != "vague" else "sub_category"
        stated = [c for c in ("gender", "colour", "usage") if pd.notna(q[f"target_{c}"])]
        rows = judgements[judgements["query_id"] == q["query_id"]]
        for item_id, rel in zip(rows["item_id"], rows["relevance"]):
            item = items.loc[item_id]
            agree = sum(item[c].lower() == q[f"target_{c}"] or
                        (c == "gender" and item[c] == "Unisex" and q["target_gender"] in ("men", "women"))
                        for c in stated)
            if item[head].lower() != q[f"target_{head}"]:
                sibling = head == "category" and item["sub_category"] == sub_category[q["target_category"]]
                assert rel == (1 if sibling and agree == len(stated) else 0)
                graded.add(("sibling", rel))
                continue
            assert rel == (3 if agree == len(stated) else 2 if agree >= len(stated) - 1 else 1)
            graded.add((head, rel))
    assert {("sibling", 0), ("sibling", 1), ("category", 1), ("category", 2),
            ("sub_category", 3)} <= graded  # every branch of the grading was checked
    exact = queries[queries["kind"] == "exact"].iloc[0]
    assert exact["text"].endswith(exact["target_category"])


def test_fashion_queries_name_missing_columns(fashion_items):
    with pytest.raises(DataError, match="usage"):
        fashion_queries(fashion_items.drop(columns="usage"), seed=0, n_queries=5)


def test_split_queries_is_deterministic_and_stratified():
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(80)],
                            "kind": ["exact"] * 40 + ["vague"] * 40})
    split = split_queries(queries, seed=1)
    assert (split == split_queries(queries, seed=1)).all()
    assert not (split == split_queries(queries, seed=2)).all()
    counts = pd.crosstab(queries["kind"], split)
    assert counts.loc["exact"].tolist() == [10, 20, 10]  # test, train, validation
    assert counts.loc["vague"].tolist() == [10, 20, 10]


def test_query_gains_and_training_pairs():
    items = pd.DataFrame({"item_id": ["a", "b", "c"]})
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "kind": ["exact", "vague"]})
    judgements = pd.DataFrame({"query_id": ["q1", "q1", "q2"], "item_id": ["c", "a", "b"],
                               "relevance": [3, 1, 2]})
    gains = query_gains(queries, judgements, items)
    assert gains == [{2: 3.0, 0: 1.0}, {1: 2.0}]
    pairs = training_pairs(gains)
    assert pairs[["query", "item"]].values.tolist() == [[0, 2], [1, 1]]
    with pytest.raises(DataError, match="not in the items table"):
        query_gains(queries, judgements.assign(item_id=["c", "a", "zz"]), items)


def test_search_queries_says_where_the_queries_come_from(fashion_items):
    class Prepared:  # the three fields search_queries reads
        def __init__(self, dataset, queries=None, judgements=None):
            self.dataset, self.items = dataset, fashion_items
            self.queries, self.judgements = queries, judgements

    own = pd.DataFrame({"query_id": ["q1"], "text": ["red shirt"], "kind": ["exact"]})
    judged = pd.DataFrame({"query_id": ["q1"], "item_id": ["1000"], "relevance": [3]})
    assert search_queries(Prepared("csv", own, judged), 0, 10)[2] == "the data set's own queries"
    queries, _, origin = search_queries(Prepared("fashion"), 0, 10)
    assert len(queries) == 10 and "fashion_queries" in origin
    assert search_queries(Prepared("movielens-100k"), 0, 10) is None
