"""recsys_utils.metrics' pointwise metrics and bootstrap interval, now thin wrappers over
sklearn.metrics and scipy.stats.bootstrap, against the course's previous implementations
(commit 3123537, kept below as references): the same numbers on data the tests control."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from recsys_utils import metrics
from recsys_utils.schema import DataError


def _previous_auc(y, s):
    """Rank formula: (Σ ranks of positives - P(P+1)/2) / (P·N), average ranks for ties."""
    y, s = np.asarray(y, float), np.asarray(s, float)
    positive = y == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = scipy.stats.rankdata(s, method="average")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _previous_log_loss(y, p, eps=1e-7):
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _previous_rmse(y, p):
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(p, float)) ** 2)))


def _previous_bootstrap_ci(values, n_boot=1000, seed=0, alpha=0.05):
    values = np.asarray(values, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(n_boot)
    chunk = max(1, 2**22 // n)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@pytest.fixture(scope="module")
def predictions():
    """3,000 clicks with scores that know them a little, rounded (ties), and probabilities
    reaching exactly 0 and 1 (the clipping matters)."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=3000).astype(float)
    s = np.round(rng.normal(size=3000) + y, 1)
    p = 1 / (1 + np.exp(-2 * s))
    p[:20] = np.where(y[:20] == 1, 0.0, 1.0)  # confident misses
    p[20:40] = y[20:40]                          # confident hits
    return y, s, p


def test_auc_log_loss_rmse_give_the_previous_numbers(predictions):
    y, s, p = predictions
    assert metrics.auc(y, s) == pytest.approx(_previous_auc(y, s), abs=1e-12)
    assert metrics.log_loss(y, p) == pytest.approx(_previous_log_loss(y, p), abs=1e-12)
    assert metrics.log_loss(y, p, eps=1e-3) == pytest.approx(_previous_log_loss(y, p, 1e-3), abs=1e-12)
    assert metrics.rmse(5 * p, s) == pytest.approx(_previous_rmse(5 * p, s), abs=1e-12)
    # The confident misses cost -log(1e-7) each (sklearn alone would charge -log(2.2e-16)).
    assert metrics.log_loss(y[:20], p[:20]) == pytest.approx(-math.log(1e-7))


def test_one_class_conventions():
    with pytest.raises(DataError, match="both positive and negative"):
        metrics.auc([1, 1, 1], [0.2, 0.4, 0.9])
    # Log loss is defined with one class: -mean(log p) over the positives.
    assert metrics.log_loss([1, 1], [0.5, 0.25]) == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
    assert metrics.log_loss([0], [0.5]) == pytest.approx(math.log(2))


@pytest.mark.parametrize("n,n_boot,seed", [(400, 500, 0), (60, 2000, 3), (5000, 1000, 1)])
def test_bootstrap_ci_gives_the_previous_interval(n, n_boot, seed):
    # n = 5000: resamples come 838 at a time (2**22 // n), so the batching must match too.
    values = np.random.default_rng(n).binomial(1, 0.3, size=n) - 0.1 * np.random.default_rng(1).random(n)
    # The same resamples; scipy's quantile interpolates in another order (last-bit differences).
    for alpha in (0.05, 0.1):
        got = metrics.bootstrap_ci(values, n_boot=n_boot, seed=seed, alpha=alpha)
        want = _previous_bootstrap_ci(values, n_boot=n_boot, seed=seed, alpha=alpha)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
        assert got != _previous_bootstrap_ci(values, n_boot=n_boot, seed=seed + 1, alpha=alpha)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_bootstrap_ci_percentile_is_defined_where_bca_is_not():
    # Two systems that agree on every query: the paired difference is all zeros.
    same = np.zeros(50)
    assert metrics.bootstrap_ci(same) == (0.0, 0.0)
    with pytest.warns(Warning, match="BCa confidence interval cannot be calculated"):
        bca = scipy.stats.bootstrap((same,), np.mean, method="BCa", n_resamples=200, rng=0)
    assert np.isnan(bca.confidence_interval.low)
    assert metrics.bootstrap_ci([0.25]) == (0.25, 0.25)  # one query: every resample is it
