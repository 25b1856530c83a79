"""Tests of recsys_utils.bm25: the tokenizer and BM25 against a hand computation."""

import math

import numpy as np
import pytest

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
