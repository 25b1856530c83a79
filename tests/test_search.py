"""Tests of recsys_utils.search: BM25, dense, fusion, weight choice, fashion queries, two-tower, export."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import math

import numpy as np
import pandas as pd
import pytest

from recsys_utils import metrics, search, text
from recsys_utils.schema import DataError

DOCS = ["red shirt", "red red dress", "blue shirt for men"]


# -- BM25 ---------------------------------------------------------------------------


def test_tokenize_lowercases_and_stems_plurals():
    assert search.tokenize("Women's Navy-Blue SHIRTS") == ["women", "s", "navy", "blue", "shirt"]
    assert search.tokenize("dresses boots bus glass") == ["dresse", "boot", "bus", "glass"]
    assert search.tokenize("çà 日本語") == ["çà", "日本語"]
    assert search.tokenize("") == []


def test_bm25_scores_match_a_hand_computation():
    k1, b = 1.5, 0.75
    bm = search.BM25(k1=k1, b=b).fit(DOCS)
    lengths = [2, 3, 4]
    avgdl = 3.0

    def term(tf, df, dl):
        idf = math.log(1 + (3 - df + 0.5) / (df + 0.5))
        return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    # "red": df 2, tf 1 in doc 0 (len 2), tf 2 in doc 1 (len 3); "shirt": df 2, docs 0 and 2.
    expected = [term(1, 2, lengths[0]) + term(1, 2, lengths[0]),
                term(2, 2, lengths[1]),
                term(1, 2, lengths[2])]
    scores = bm.scores(["red shirts"])[0]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    # Hand values, so a change of formula shows: idf(df=2, N=3) = ln(1 + 1.5 / 2.5).
    assert expected[0] == pytest.approx(2 * math.log(1.6) * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / 3)))
    idx, val = bm.search(["red shirts"], k=3)
    assert idx[0].tolist() == np.argsort(-np.array(expected), kind="stable").tolist()
    np.testing.assert_allclose(val[0], np.sort(expected)[::-1], rtol=1e-6)


def test_bm25_returns_only_matching_items_and_pads():
    bm = search.BM25().fit(DOCS)
    idx, val = bm.search(["dress", "hat", "", "çà日本語"], k=5)
    assert idx.shape == (4, 5) and val.shape == (4, 5)
    assert idx[0].tolist() == [1, -1, -1, -1, -1]
    assert (idx[1:] == -1).all() and np.isneginf(val[1:]).all()


def test_bm25_rejects_bad_input():
    with pytest.raises(DataError, match="not fitted"):
        search.BM25().search(["x"], 1)
    bm = search.BM25().fit(DOCS)
    with pytest.raises(DataError, match="sequence of strings"):
        bm.search("red", 1)
    with pytest.raises(DataError, match="not strings"):
        bm.search(["red", 3], 1)
    with pytest.raises(DataError, match="positive integer"):
        bm.search(["red"], 0)


# -- dense --------------------------------------------------------------------------


def test_dense_searcher_with_precomputed_vectors():
    items = np.eye(3, dtype=np.float32)
    encode = search.precomputed(["a", "b"], np.array([[0, 1, 0], [0.6, 0, 0.8]], np.float32))
    dense = search.DenseSearcher(items, encode)
    idx, val = dense.search(["b", "a"], k=4)
    assert idx.tolist() == [[2, 0, 1, -1], [1, 0, 2, -1]]
    np.testing.assert_allclose(val[0, :3], [0.8, 0.6, 0.0])
    with pytest.raises(DataError, match="no precomputed vector"):
        dense.search(["c"], 1)
    fallback = search.precomputed(["a"], np.array([[1, 0, 0]], np.float32),
                                  fallback=lambda qs: np.tile([[0, 0, 1]], (len(qs), 1)))
    assert search.DenseSearcher(items, fallback).search(["a", "zzz"], 1)[0].ravel().tolist() == [0, 2]


# -- fusion -------------------------------------------------------------------------


def test_reciprocal_rank_fusion_hand_case():
    lexical = (np.array([[0, 1, 2, -1]]), np.array([[9.0, 5.0, 1.0, -np.inf]]))
    dense = (np.array([[2, 3, 0, 1]]), np.array([[0.9, 0.8, 0.7, 0.1]]))
    idx, val = search.reciprocal_rank_fusion([lexical, dense], k=4, k_rrf=60)
    expected = {0: 1 / 61 + 1 / 63, 1: 1 / 62 + 1 / 64, 2: 1 / 63 + 1 / 61, 3: 1 / 62}
    # Items 0 and 2 tie: the lower index first.
    assert idx[0].tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(val[0], [expected[i] for i in [0, 2, 1, 3]], rtol=1e-6)


def test_interpolation_ends_are_the_pure_rankings_and_middle_mixes():
    lexical = (np.array([[0, 1, -1]]), np.array([[4.0, 2.0, -np.inf]]))
    dense = (np.array([[2, 1, 0]]), np.array([[0.9, 0.5, 0.1]]))
    assert search.interpolate(lexical, dense, 0.0, 3)[0][0, :2].tolist() == [0, 1]
    assert search.interpolate(lexical, dense, 1.0, 3)[0][0].tolist() == [2, 1, 0]
    idx, val = search.interpolate(lexical, dense, 0.5, 3)
    # Normalised: lexical {0: 1, 1: 0}; dense {2: 1, 1: 0.5, 0: 0} -> 0: .5, 1: .25, 2: .5
    assert idx[0].tolist() == [0, 2, 1]
    np.testing.assert_allclose(val[0], [0.5, 0.5, 0.25])
    with pytest.raises(DataError, match="weight"):
        search.interpolate(lexical, dense, 1.5, 3)


class _Fixed:
    """A searcher returning fixed lists (query text -> row of a table)."""

    def __init__(self, name, table, n_items):
        self.name, self.table, self.n_items = name, table, n_items

    def search(self, queries, k):
        rows = [self.table[q] for q in queries]
        idx = np.array([r[0] for r in rows])[:, :k]
        val = np.array([r[1] for r in rows], dtype=np.float32)[:, :k]
        return search._pad(idx, val, k)


def test_choose_weight_picks_the_better_weight_on_validation():
    # Lexical is right on "q1" and dense on "q2"; dense is only slightly unsure
    # on q1 and lexical's q2 list is flat, so only a dense-leaning mix (0.9)
    # gets both right: 0.5 lets lexical's flat runners-up in on q2.
    n = 12
    others = list(range(3, n))
    lexical = _Fixed("bm25", {
        "q1": ([0] + others[:9] + [1, 2], [5.0] + [1.0] * 9 + [0.5, 0.4]),
        "q2": ([1] + others[:9] + [0, 2], [5.0] + [4.9] * 9 + [0.5, 0.4]),
    }, n)
    dense = _Fixed("dense", {
        "q1": ([1, 0] + others[:9] + [2], [0.60, 0.59] + [0.1] * 9 + [0.0]),
        "q2": ([2] + others[:9] + [0, 1], [0.9] + [0.2] * 9 + [0.1, 0.0]),
    }, n)
    gains = [{0: 3.0}, {2: 3.0}]
    hybrid = search.HybridSearcher(lexical, dense, method="interpolation", depth=12)
    weight = hybrid.choose_weight(["q1", "q2"], gains, grid=[0.0, 0.5, 0.9, 1.0])
    table = hybrid.validation.set_index("weight")["ndcg@10"]
    assert table[0.9] == pytest.approx(1.0)
    assert (table.drop(0.9) < 0.9).all()
    assert weight == 0.9
    idx, _ = hybrid.search(["q1", "q2"], k=1)
    assert idx.ravel().tolist() == [0, 2]


def test_hybrid_rejects_mismatched_catalogues():
    a = search.BM25().fit(DOCS)
    b = search.DenseSearcher(np.eye(4, dtype=np.float32), lambda q: np.zeros((len(q), 4)))
    with pytest.raises(DataError, match="different catalogues"):
        search.HybridSearcher(a, b)


# -- queries, splits, gains, evaluation ---------------------------------------------


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

    queries, judgements = search.fashion_queries(fashion_items, seed=3, n_queries=60)
    again, judged_again = search.fashion_queries(fashion_items, seed=3, n_queries=60)
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
        search.fashion_queries(fashion_items.drop(columns="usage"), seed=0, n_queries=5)


def test_split_queries_is_deterministic_and_stratified():
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(80)],
                            "kind": ["exact"] * 40 + ["vague"] * 40})
    split = search.split_queries(queries, seed=1)
    assert (split == search.split_queries(queries, seed=1)).all()
    assert not (split == search.split_queries(queries, seed=2)).all()
    counts = pd.crosstab(queries["kind"], split)
    assert counts.loc["exact"].tolist() == [10, 20, 10]  # test, train, validation
    assert counts.loc["vague"].tolist() == [10, 20, 10]


def test_query_gains_pairs_and_evaluate():
    items = pd.DataFrame({"item_id": ["a", "b", "c"]})
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "kind": ["exact", "vague"]})
    judgements = pd.DataFrame({"query_id": ["q1", "q1", "q2"], "item_id": ["c", "a", "b"],
                               "relevance": [3, 1, 2]})
    gains = search.query_gains(queries, judgements, items)
    assert gains == [{2: 3.0, 0: 1.0}, {1: 2.0}]
    pairs = search.training_pairs(gains)
    assert pairs[["query", "item"]].values.tolist() == [[0, 2], [1, 1]]
    ranked = np.array([[2, 0, 1], [0, 1, 2]])
    table = search.evaluate({"m": ranked}, gains, queries["kind"])
    row = table.set_index("kind").loc["vague"]
    assert row["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert row["mrr"] == pytest.approx(0.5)
    assert table.set_index("kind").loc["all", "n_queries"] == 2
    with pytest.raises(DataError, match="not in the items table"):
        search.query_gains(queries, judgements.assign(item_id=["c", "a", "zz"]), items)


# -- two-tower, export --------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_world():
    """Items in 8 groups; a query names its group by a word; text vectors know the group only
    roughly, the fused features know it exactly, so a trained model should beat zero-shot."""
    rng = np.random.default_rng(0)
    n_items, n_groups, dim = 160, 8, 16
    group = np.arange(n_items) % n_groups
    centres = rng.normal(size=(n_groups, dim))
    item_text = centres[group] + 1.6 * rng.normal(size=(n_items, dim))
    item_text /= np.linalg.norm(item_text, axis=1, keepdims=True)
    fused = np.eye(n_groups)[group] + 0.05 * rng.normal(size=(n_items, n_groups))
    q_group = np.arange(96) % n_groups
    query_vectors = centres[q_group] + 0.8 * rng.normal(size=(96, dim))
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    gains = [{int(i): 3.0 for i in np.flatnonzero(group == g)} for g in q_group]
    return (item_text.astype(np.float32), fused.astype(np.float32),
            query_vectors.astype(np.float32), gains)


def test_search_model_starts_at_zero_shot_and_learns(toy_world):
    item_text, fused, query_vectors, gains = toy_world
    train, test = np.arange(64), np.arange(64, 96)
    pairs = search.training_pairs([gains[i] for i in train])
    result = search.train_search_model(query_vectors[train], pairs, item_text, fused, epochs=40,
                                       batch_size=16, learning_rate=3e-3, seed=0, progress=False)
    assert len(result.losses) == 40 and result.losses[-1] < result.losses[0]
    fresh = search.SearchModel(item_text, fused, seed=0)
    np.testing.assert_allclose(fresh.item_embeddings(), item_text, atol=1e-6)  # zero corrections
    texts = [f"q{i}" for i in range(len(query_vectors))]
    encode = search.precomputed(texts, query_vectors)
    trained = search.TwoTowerSearcher(result.model, encode)
    zero_shot = search.DenseSearcher(item_text, encode)
    test_texts = [texts[i] for i in test]
    test_gains = [gains[i] for i in test]
    scores = {s.name: metrics.graded_metrics(s.search(test_texts, 20)[0], test_gains, ks=(10,),
                                             recall_ks=(20,))["ndcg@10"]
              for s in (trained, zero_shot)}
    assert scores["two-tower"] > scores["dense"] + 0.1, scores


def test_train_search_model_rejects_bad_input(toy_world):
    item_text, fused, query_vectors, gains = toy_world
    pairs = search.training_pairs(gains[:4])
    with pytest.raises(DataError, match="no training pairs"):
        search.train_search_model(query_vectors, pairs.iloc[:0], item_text, fused)
    with pytest.raises(DataError, match="query vectors' space"):
        search.train_search_model(query_vectors, pairs, item_text[:, :8], fused)
    with pytest.raises(DataError, match="NaN"):
        search.train_search_model(query_vectors, pairs, item_text, fused * np.nan)


@pytest.fixture(scope="module")
def exported_encoder(tmp_path_factory):
    from recsys_utils.profiles import get_profile

    encoder = text.load_text_encoder(**get_profile("smoke").text)
    path = text.export_encoder(encoder, tmp_path_factory.mktemp("enc") / "text_encoder")
    return encoder, path


def test_exported_search_model_answers_any_string(exported_encoder, tmp_path):
    encoder, path = exported_encoder
    titles = [f"{c} {k}" for c in ("red", "blue", "green", "black", "white", "grey", "pink", "brown")
              for k in ("shirt", "dress", "boots", "scarf", "handbag", "watch", "jeans")]
    item_vectors = encoder.encode(titles, progress=False)
    ids = [f"i{i:03d}" for i in range(len(titles))]
    model = search.SearchModel(item_vectors, np.zeros((len(titles), 2), np.float32))
    tower = search.build_query_tower(path, model.query_tower)
    out = search.export_search_model(tower, model.item_embeddings(), ids, tmp_path / "search", k=5)
    loaded = search.load_search_model(out)
    queries = ["", "x" * 5000, "çà日本語", "red dress", "a blue scarf " * 400]
    found, scores = loaded.search(queries)
    assert found.shape == (len(queries), 5) and scores.shape == (len(queries), 5)
    assert set(found.ravel()) <= set(ids) and np.isfinite(scores).all()
    assert titles[ids.index(found[3, 0])] == "red dress"
    # The served ranking agrees with brute force over the same vectors.
    exact, _ = search.DenseSearcher(item_vectors, encoder.encode).search(["red dress"], 5)
    assert found[3].tolist()[:3] == [ids[i] for i in exact[0, :3]]
    with pytest.raises(DataError, match="sequence of strings"):
        loaded.search("red dress")
    with pytest.raises(DataError, match="no SavedModel"):
        search.load_search_model(tmp_path / "nothing")


def test_exported_search_index_searches_the_fewest_leaves_that_keep_the_target(
        exported_encoder, tmp_path):
    encoder, path = exported_encoder
    titles = [f"{c} {m} {k}" for c in ("red", "blue", "green", "black", "white", "grey")
              for m in ("cotton", "wool", "leather", "silk")
              for k in ("shirt", "dress", "boots", "scarf", "handbag", "watch", "jeans")]
    item_vectors = encoder.encode(titles, progress=False)
    ids = [f"i{i:03d}" for i in range(len(titles))]
    tower = search.build_query_tower(path)
    queries = ["warm wool scarf", "black leather boots", "a silk dress for a party",
               "white cotton shirt", "green handbag", "grey jeans", "red watch"]
    out = search.export_search_model(tower, item_vectors, ids, tmp_path / "search", k=10,
                                     validation_queries=queries, target_recall=0.9)
    info = search.load_search_model(out).index_info
    assert info["num_leaves"] == round(len(titles) ** 0.5) and info["n_queries"] == len(queries)
    sweep = info["sweep"]
    assert [row["num_leaves_to_search"] for row in sweep] == sorted(
        {max(1, round(info["num_leaves"] * f)) for f in search.LEAF_SHARES})[: len(sweep)]
    assert info["num_leaves_to_search"] == sweep[-1]["num_leaves_to_search"]
    # It stopped at the first setting that reached the target (searching every leaf, with
    # every item re-scored exactly, reaches it for sure).
    assert all(row["recall_at_k"] < 0.9 for row in sweep[:-1])
    assert sweep[-1]["recall_at_k"] >= 0.9
    # The recorded recall is the exported index's: the same share on the same queries.
    loaded = search.load_search_model(out)
    exact, _ = search.DenseSearcher(item_vectors, encoder.encode).search(queries, 10)
    assert search.served_overlap(loaded, queries, exact, ids, k=10) == pytest.approx(
        sweep[-1]["recall_at_k"], abs=0.02)
    # Without validation queries: two thirds of the leaves, recorded the same way.
    fixed = search.export_search_model(tower, item_vectors, ids, tmp_path / "fixed", k=10)
    fixed_info = search.load_search_model(fixed).index_info
    assert fixed_info["num_leaves_to_search"] == max(min(10, fixed_info["num_leaves"]),
                                                     2 * fixed_info["num_leaves"] // 3)
    with pytest.raises(DataError, match="at least one validation query"):
        search.export_search_model(tower, item_vectors, ids, tmp_path / "none", k=10,
                                   validation_queries=[])
