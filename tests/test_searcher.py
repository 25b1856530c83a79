"""Tests of recsys_utils.searcher: the argument checks and padding every searcher shares."""

import numpy as np
import pytest

from recsys_utils.schema import DataError
from recsys_utils.searcher import check_k, check_queries, pad_results


def test_pad_results_cuts_or_pads_to_k():
    idx, val = pad_results(np.array([[3, 1]]), np.array([[0.5, 0.25]]), 4)
    assert idx.tolist() == [[3, 1, -1, -1]] and idx.dtype == np.int64
    assert val.dtype == np.float32 and np.isneginf(val[0, 2:]).all()
    idx, val = pad_results(np.array([[3, 1, 2]]), np.array([[0.5, 0.25, 0.1]]), 2)
    assert idx.tolist() == [[3, 1]] and val.shape == (1, 2)


def test_checks_refuse_what_a_search_cannot_mean():
    assert check_k(np.int64(3)) == 3 and check_queries(("a", "b")) == ["a", "b"]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(DataError, match="positive integer"):
            check_k(bad)
    with pytest.raises(DataError, match="sequence of strings"):
        check_queries("red dress")
