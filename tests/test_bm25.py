"""Tests of recsys_utils.bm25: the tokenizer, BM25 against a hand computation, and bm25s against
the course's previous numpy/scipy BM25 (kept below as the reference) on a catalogue full of ties."""

import math

import numpy as np
import pytest
import scipy.sparse

from recsys_utils import bm25 as bm25_module
from recsys_utils import metrics
from recsys_utils.bm25 import BM25, tokenize
from recsys_utils.schema import DataError

DOCS = ["red shirt", "red red dress", "blue shirt for men"]


def test_tokenize_lowercases_and_stems_plurals():
    assert tokenize("Women's Navy-Blue SHIRTS") == ["women", "s", "navy", "blue", "shirt"]
    assert tokenize("dresses boots bus glass") == ["dresse", "boot", "bus", "glass"]
    assert tokenize("çà 日本語") == ["çà", "日本語"]
    assert tokenize("") == []


def test_bm25_scores_match_a_hand_computation():
    k1, b = 1.5, 0.75
    bm = BM25(k1=k1, b=b).fit(DOCS)
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
    bm = BM25().fit(DOCS)
    idx, val = bm.search(["dress", "hat", "", "çà日本語"], k=5)
    assert idx.shape == (4, 5) and val.shape == (4, 5)
    assert idx[0].tolist() == [1, -1, -1, -1, -1]
    assert (idx[1:] == -1).all() and np.isneginf(val[1:]).all()
    wordless = BM25().fit(["", "!!"])  # no item has a word: nothing ever matches
    assert (wordless.search(["red"], 2)[0] == -1).all()


def test_bm25_rejects_bad_input():
    with pytest.raises(DataError, match="not fitted"):
        BM25().search(["x"], 1)
    bm = BM25().fit(DOCS)
    with pytest.raises(DataError, match="sequence of strings"):
        bm.search("red", 1)
    with pytest.raises(DataError, match="not strings"):
        bm.search(["red", 3], 1)
    with pytest.raises(DataError, match="positive integer"):
        bm.search(["red"], 0)
    with pytest.raises(DataError, match="backend must be one of"):
        BM25(backend="jax")


# -- bm25s against the course's previous implementation ------------------------------


def _previous_scores(items_text, queries, k1=1.5, b=0.75):
    """The course's BM25 before bm25s (numpy/scipy, commit 3123537): Lucene idf and Robertson's
    (k1 + 1) numerator; dense float64 ``(n_queries, n_items)`` scores."""
    vocabulary = {}

    def counts(texts, grow):
        rows, cols = [], []
        for r, doc in enumerate(texts):
            for token in tokenize(doc):
                col = vocabulary.get(token)
                if col is None:
                    if not grow:
                        continue
                    col = vocabulary[token] = len(vocabulary)
                rows.append(r)
                cols.append(col)
        matrix = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                         shape=(len(texts), len(vocabulary)))
        matrix.sum_duplicates()
        return matrix

    tf_ = counts(items_text, True)
    n = tf_.shape[0]
    lengths = np.asarray(tf_.sum(axis=1)).ravel()
    avgdl = max(lengths.mean(), 1e-9)
    df = np.bincount(tf_.indices, minlength=tf_.shape[1])
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * lengths / avgdl)
    row_of = np.repeat(np.arange(n), np.diff(tf_.indptr))
    values = idf[tf_.indices] * tf_.data * (k1 + 1) / (tf_.data + norm[row_of])
    weights = scipy.sparse.csr_matrix((values, tf_.indices, tf_.indptr), shape=tf_.shape)
    return np.asarray((counts(queries, False) @ weights.T.tocsc()).todense(), np.float64)


def _previous_search(scores, k):
    """Its search: float32 scores ranked by metrics.top_k (ties: lower index), matches only."""
    block = scores.astype(np.float32)
    idx = metrics.top_k(block, min(k, block.shape[1]))
    val = np.take_along_axis(block, idx, axis=1)
    return np.where(val > 0, idx, -1), np.where(val > 0, val, -np.inf).astype(np.float32)


@pytest.fixture(scope="module")
def tied_catalogue():
    """2,000 titles from a Zipf-like vocabulary of 300 words, a third of them repeats of an
    earlier title (as in real catalogues: the 100th and 101st scores tie for 70% of the queries),
    and 300 queries: 1-4 words, some repeated, unknown or empty."""
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(300)]
    p = 1.0 / np.arange(1, 301)
    p /= p.sum()
    titles = []
    for i in range(2000):
        if i > 10 and rng.random() < 0.33:
            titles.append(titles[rng.integers(0, i)])
        else:
            titles.append(" ".join(rng.choice(words, size=rng.integers(2, 13), p=p)))
    queries = [" ".join(rng.choice(words, size=rng.integers(1, 5), p=p)) for _ in range(280)]
    queries += ["w1 w1 w1", "w2 zzz", "zzz", "", "W3 w3s"] * 4
    return titles, queries


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bm25s_gives_the_previous_implementations_lists_and_scores(tied_catalogue, backend):
    titles, queries = tied_catalogue
    previous = _previous_scores(titles, queries)
    bm = BM25(backend=backend).fit(titles)
    np.testing.assert_allclose(bm.scores(queries), previous, rtol=1e-12, atol=1e-12)
    for k in (10, 100, 2500):  # 2500 > catalogue: every match, then padding
        old_i, old_s = _previous_search(previous, k)
        new_i, new_s = bm.search(queries, k)
        kk = min(k, len(titles))
        assert new_i.shape == (len(queries), k)
        # Ties are everywhere (repeated titles), so equal lists mean the same tie rule too.
        np.testing.assert_array_equal(new_i[:, :kk], old_i)
        np.testing.assert_allclose(new_s[:, :kk], old_s, rtol=1e-6)
        assert (new_i[:, kk:] == -1).all()
    assert (old_i[:, 100:] >= 0).any()  # the lists run past 100 matches, through the ties


def test_auto_backend_compiles_numba_only_for_big_calls(monkeypatch):
    bm = BM25(backend="auto").fit(DOCS)
    monkeypatch.setattr(bm25_module, "_NUMBA_READY", False)
    monkeypatch.setattr(bm25_module, "AUTO_NUMBA_PAIRS", 100)
    assert not bm._use_numba(33)  # 33 queries x 3 items = 99 pairs
    assert bm._use_numba(34)
    monkeypatch.setattr(bm25_module, "_NUMBA_READY", True)
    assert bm._use_numba(1)  # once compiled, numba is free
    assert not BM25(backend="numpy").fit(DOCS)._use_numba(10**9)
