"""Tests of recsys_utils.dense_search: exact dot-product retrieval of encoded queries."""

import numpy as np
import pytest

from recsys_utils.dense_search import DenseSearcher, precomputed
from recsys_utils.schema import DataError


def test_dense_searcher_with_precomputed_vectors():
    items = np.eye(3, dtype=np.float32)
    encode = precomputed(["a", "b"], np.array([[0, 1, 0], [0.6, 0, 0.8]], np.float32))
    dense = DenseSearcher(items, encode)
    idx, val = dense.search(["b", "a"], k=4)
    assert idx.tolist() == [[2, 0, 1, -1], [1, 0, 2, -1]]
    np.testing.assert_allclose(val[0, :3], [0.8, 0.6, 0.0])
    with pytest.raises(DataError, match="no precomputed vector"):
        dense.search(["c"], 1)
    fallback = precomputed(["a"], np.array([[1, 0, 0]], np.float32),
                           fallback=lambda qs: np.tile([[0, 0, 1]], (len(qs), 1)))
    assert DenseSearcher(items, fallback).search(["a", "zzz"], 1)[0].ravel().tolist() == [0, 2]


def test_dense_searcher_rejects_bad_vectors():
    with pytest.raises(DataError, match="NaN or inf"):
        DenseSearcher(np.full((2, 3), np.nan, np.float32), lambda q: np.zeros((len(q), 3)))
    dense = DenseSearcher(np.eye(3, dtype=np.float32), lambda q: np.zeros((len(q), 2)))
    with pytest.raises(DataError, match="encode returned"):
        dense.search(["a"], 1)
    empty = DenseSearcher(np.eye(3, dtype=np.float32), lambda q: np.zeros((len(q), 3)))
    assert empty.search([], 2)[0].shape == (0, 2)
