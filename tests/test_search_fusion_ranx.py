"""Notebook 07's fusions (recsys_utils.search_models) against ranx.fuse, the library oracle.

The course keeps its own vectorised fusion: ranx.fuse gives the same numbers but costs
~25x more per call through its string-keyed Runs (measured, issue 15). Reciprocal rank
fusion equals ranx's "rrf"; score interpolation equals ranx's min-max "wsum" except on a
list whose scores are all equal (one item, or BM25 ties), where ranx's min-max (its
denominator floored at 1e-9) gives 0 and the course gives 1: each item counts as its
list's best.
"""

import numpy as np
import pytest

from recsys_utils.search_models import interpolate, reciprocal_rank_fusion

ranx = pytest.importorskip("ranx")

# ranx's numba kernels warn once when they compile (not the course's concern).
pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast from uint64 to int64")

WIDTH = 6  # one doc-id width for every Run: ranx's numba code is compiled per string width


def _run(indices, values):
    """``(n, depth)`` result lists (-1 padding) as a ranx.Run; every query present."""
    return ranx.Run({f"q{q:0{WIDTH}d}": {f"{int(i):0{WIDTH}d}": float(v)
                                          for i, v in zip(row_i, row_v) if i >= 0}
                     for q, (row_i, row_v) in enumerate(zip(indices, values))})


def _scores(run, n):
    """A fused Run as ``[{item: score}]`` per query."""
    d = run.to_dict()
    return [{int(item): s for item, s in d.get(f"q{q:0{WIDTH}d}", {}).items()} for q in range(n)]


def _ranked(scores, k):
    """Top ``k`` of ``{item: score}`` by score, ties to the lower item, -1 padded."""
    top = sorted(scores.items(), key=lambda p: (-p[1], p[0]))[:k]
    return [i for i, _ in top] + [-1] * (k - len(top)), [s for _, s in top]


@pytest.fixture(scope="module")
def lists():
    """Lexical and dense result lists for 80 queries over 500 items, depth 40: overlapping
    items, -1 padding, tied lexical scores, a query with no lexical match, and queries where
    a list is one item or all-equal scores (the degenerate min-max case)."""
    rng = np.random.default_rng(3)
    n, depth, n_items = 80, 40, 500

    def one(tied):
        idx = np.stack([rng.choice(n_items // 4 if tied else n_items, depth, replace=False)
                        for _ in range(n)]).astype(np.int64)
        val = np.sort(rng.gamma(2.0, 3.0, (n, depth)), axis=1)[:, ::-1]
        if tied:
            val = np.round(val)  # BM25-like ties
        cut = rng.integers(depth // 2, depth + 1, n)  # each list ends somewhere: padding after
        pad = np.arange(depth)[None, :] >= cut[:, None]
        idx[pad], val[pad] = -1, -np.inf
        return idx, val

    lexical, dense = one(True), one(False)
    lexical[0][3], lexical[1][3] = -1, -np.inf                  # q3: no lexical match
    lexical[0][4, 1:], lexical[1][4, 1:] = -1, -np.inf          # q4: one lexical item
    lexical[1][5, lexical[0][5] >= 0] = 7.0                     # q5: all-equal lexical scores
    dense[0][6, 1:], dense[1][6, 1:] = -1, -np.inf              # q6: one dense item
    return lexical, dense


def test_reciprocal_rank_fusion_equals_ranx_rrf(lists):
    lexical, dense = lists
    n, depth = lexical[0].shape
    idx, val = reciprocal_rank_fusion([lexical, dense], k=2 * depth, k_rrf=60)
    # ranx ranks a Run by its scores: give it scores that fall with the list position.
    position = np.broadcast_to(-np.arange(depth, dtype=float), (n, depth))
    fused = ranx.fuse([_run(lexical[0], position), _run(dense[0], position)], norm=None,
                      method="rrf", params={"k": 60})
    oracle = _scores(fused, n)
    gaps = []
    for q in range(n):
        want_i, want_s = _ranked(oracle[q], 2 * depth)
        assert idx[q].tolist() == want_i, q
        gaps.append(np.abs(val[q][:len(want_s)] - np.array(want_s)).max(initial=0))
        assert (idx[q] >= 0).sum() == len(oracle[q])
    assert max(gaps) < 1e-8  # float32 scores out


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0])
def test_interpolation_equals_ranx_minmax_wsum_but_for_all_equal_lists(lists, weight):
    lexical, dense = lists
    n, depth = lexical[0].shape
    idx, val = interpolate(lexical, dense, weight, k=2 * depth)
    fused = ranx.fuse([_run(*lexical), _run(*dense)], norm="min-max", method="wsum",
                      params={"weights": [1 - weight, weight]})
    oracle = _scores(fused, n)
    # Where a list's scores are all equal, ranx gives its items 0 and the course 1 x weight.
    corrected = 0
    for (indices, scores), w in ((lexical, 1 - weight), (dense, weight)):
        for q in range(n):
            real = scores[q][indices[q] >= 0]
            if len(real) and real.max() == real.min():
                for item in indices[q][indices[q] >= 0]:
                    oracle[q][int(item)] += w
                corrected += 1
    assert corrected == 3  # q4, q5 (lexical) and q6 (dense)
    for q in range(n):
        got = {int(i): float(s) for i, s in zip(idx[q], val[q]) if i >= 0}
        assert got.keys() == oracle[q].keys(), q
        np.testing.assert_allclose([got[i] for i in oracle[q]], list(oracle[q].values()),
                                   rtol=1e-6, atol=1e-7)
        want_i, want_s = _ranked(oracle[q], 2 * depth)
        # Same order wherever the oracle's scores are apart (float32 out, float64 inside).
        apart = np.diff(want_s) < -1e-9
        assert all(idx[q][j] == want_i[j] for j in range(len(want_s) - 1)
                   if apart[j] and (j == 0 or apart[j - 1])), q


def test_all_equal_lists_count_as_their_lists_best():
    # q0's lexical list is flat (three BM25 ties), q1's holds one item: each item gets 1 there.
    lexical = (np.array([[4, 5, 6], [8, -1, -1]]), np.array([[2.0, 2.0, 2.0], [9.0, -np.inf, -np.inf]]))
    dense = (np.array([[6, 7, 4], [9, 8, 7]]), np.array([[0.9, 0.5, 0.1], [0.8, 0.4, 0.2]]))
    idx, val = interpolate(lexical, dense, 0.5, k=4)
    # q0: lexical 1 each -> 4: .5 + 0, 5: .5, 6: .5 + .5 * 1, 7: .5 * .5 = .25
    assert idx[0].tolist() == [6, 4, 5, 7]
    np.testing.assert_allclose(val[0], [1.0, 0.5, 0.5, 0.25])
    # q1: 8 gets .5 (lexical) + .5 * (0.4 - 0.2) / 0.6; 9 gets .5 * 1; 7 gets 0.
    assert idx[1].tolist() == [8, 9, 7, -1]
    np.testing.assert_allclose(val[1][:3], [0.5 + 0.5 / 3, 0.5, 0.0], atol=1e-7)
    lexical_only = interpolate(lexical, dense, 0.0, k=3)[0]
    assert lexical_only[0].tolist() == [4, 5, 6]  # all tied at 1: lower index first
