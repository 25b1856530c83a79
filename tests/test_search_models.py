"""Tests of recsys_utils.search_models (written from notebook 07): the fusions, the hybrid,
the two-tower search model and its training; and that the notebook shows them, once."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import json

import numpy as np
import pytest

from recsys_utils import metrics, notebook_code
from recsys_utils.bm25 import BM25
from recsys_utils.dense_search import DenseSearcher, precomputed
from recsys_utils.schema import DataError
from recsys_utils.search_models import (HybridSearcher, SearchModel, TwoTowerSearcher, interpolate,
                                        reciprocal_rank_fusion, train_search_model)
from recsys_utils.search_queries import training_pairs
from recsys_utils.searcher import pad_results

# -- fusion -------------------------------------------------------------------------


def test_reciprocal_rank_fusion_hand_case():
    lexical = (np.array([[0, 1, 2, -1]]), np.array([[9.0, 5.0, 1.0, -np.inf]]))
    dense = (np.array([[2, 3, 0, 1]]), np.array([[0.9, 0.8, 0.7, 0.1]]))
    idx, val = reciprocal_rank_fusion([lexical, dense], k=4, k_rrf=60)
    expected = {0: 1 / 61 + 1 / 63, 1: 1 / 62 + 1 / 64, 2: 1 / 63 + 1 / 61, 3: 1 / 62}
    # Items 0 and 2 tie: the lower index first.
    assert idx[0].tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(val[0], [expected[i] for i in [0, 2, 1, 3]], rtol=1e-6)


def test_interpolation_ends_are_the_pure_rankings_and_middle_mixes():
    lexical = (np.array([[0, 1, -1]]), np.array([[4.0, 2.0, -np.inf]]))
    dense = (np.array([[2, 1, 0]]), np.array([[0.9, 0.5, 0.1]]))
    assert interpolate(lexical, dense, 0.0, 3)[0][0, :2].tolist() == [0, 1]
    assert interpolate(lexical, dense, 1.0, 3)[0][0].tolist() == [2, 1, 0]
    idx, val = interpolate(lexical, dense, 0.5, 3)
    # Normalised: lexical {0: 1, 1: 0}; dense {2: 1, 1: 0.5, 0: 0} -> 0: .5, 1: .25, 2: .5
    assert idx[0].tolist() == [0, 2, 1]
    np.testing.assert_allclose(val[0], [0.5, 0.5, 0.25])
    with pytest.raises(DataError, match="weight"):
        interpolate(lexical, dense, 1.5, 3)


class _Fixed:
    """A searcher returning fixed lists (query text -> row of a table)."""

    def __init__(self, name, table, n_items):
        self.name, self.table, self.n_items = name, table, n_items

    def search(self, queries, k):
        rows = [self.table[q] for q in queries]
        idx = np.array([r[0] for r in rows])[:, :k]
        val = np.array([r[1] for r in rows], dtype=np.float32)[:, :k]
        return pad_results(idx, val, k)


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
    hybrid = HybridSearcher(lexical, dense, method="interpolation", depth=12)
    weight = hybrid.choose_weight(["q1", "q2"], gains, grid=[0.0, 0.5, 0.9, 1.0])
    table = hybrid.validation.set_index("weight")["ndcg@10"]
    assert table[0.9] == pytest.approx(1.0)
    assert (table.drop(0.9) < 0.9).all()
    assert weight == 0.9
    idx, _ = hybrid.search(["q1", "q2"], k=1)
    assert idx.ravel().tolist() == [0, 2]


def test_hybrid_rejects_mismatched_catalogues():
    a = BM25().fit(["red shirt", "red red dress", "blue shirt for men"])
    b = DenseSearcher(np.eye(4, dtype=np.float32), lambda q: np.zeros((len(q), 4)))
    with pytest.raises(DataError, match="different catalogues"):
        HybridSearcher(a, b)


# -- two-tower ----------------------------------------------------------------------


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
    pairs = training_pairs([gains[i] for i in train])
    result = train_search_model(query_vectors[train], pairs, item_text, fused, epochs=40,
                                batch_size=16, learning_rate=3e-3, seed=0, progress=False)
    assert len(result.losses) == 40 and result.losses[-1] < result.losses[0]
    fresh = SearchModel(item_text, fused, seed=0)
    np.testing.assert_allclose(fresh.item_embeddings(), item_text, atol=1e-6)  # zero corrections
    texts = [f"q{i}" for i in range(len(query_vectors))]
    encode = precomputed(texts, query_vectors)
    trained = TwoTowerSearcher(result.model, encode)
    zero_shot = DenseSearcher(item_text, encode)
    test_texts = [texts[i] for i in test]
    test_gains = [gains[i] for i in test]
    scores = {s.name: metrics.graded_metrics(s.search(test_texts, 20)[0], test_gains, ks=(10,),
                                             recall_ks=(20,))["ndcg@10"]
              for s in (trained, zero_shot)}
    assert scores["two-tower"] > scores["dense"] + 0.1, scores


def test_train_search_model_rejects_bad_input(toy_world):
    item_text, fused, query_vectors, gains = toy_world
    pairs = training_pairs(gains[:4])
    with pytest.raises(DataError, match="no training pairs"):
        train_search_model(query_vectors, pairs.iloc[:0], item_text, fused)
    with pytest.raises(DataError, match="query vectors' space"):
        train_search_model(query_vectors, pairs, item_text[:, :8], fused)
    with pytest.raises(DataError, match="NaN"):
        train_search_model(query_vectors, pairs, item_text, fused * np.nan)


# -- shown in notebook 07, defined once ---------------------------------------------


def test_notebook_07_shows_the_models_and_their_training_in_cells():
    path = notebook_code.ROOT / "notebooks" / "07_product_search.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    shown = ["def reciprocal_rank_fusion(", "def interpolate(", "class HybridSearcher",
             "class ResidualTower(tf.keras.layers.Layer)", "class SearchModel(tfrs.Model)",
             "def compute_loss(", "tfrs.tasks.Retrieval(", "def train_search_model(",
             "model.compile(", "model.fit("]
    assert not [s for s in shown if s not in code]
    assert "recsys_utils/search_models.py" in notebook_code.SAVED


def test_the_search_models_are_defined_once():
    # Only the generated module defines them: no second copy in the package to drift.
    names = ("class HybridSearcher", "def reciprocal_rank_fusion", "def interpolate",
             "class ResidualTower", "class SearchModel", "def train_search_model",
             "class TwoTowerSearcher")
    package = notebook_code.ROOT / "recsys_utils"
    for module in package.rglob("*.py"):
        if module.name == "search_models.py":
            continue
        text = module.read_text(encoding="utf-8")
        assert not [n for n in names if n in text], module
