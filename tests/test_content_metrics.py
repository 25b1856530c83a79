"""Item-to-item retrieval metrics of content vectors (recsys_utils.content_metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils.content_metrics import combine_keys, content_retrieval_metrics, item_retrieval_metrics


def test_combine_keys():
    assert list(combine_keys(["a", "b"], [1, 2])) == ["a|1", "b|2"]
    assert list(combine_keys(["a", "b"])) == ["a", "b"]
    with pytest.raises(ValueError, match="at least one"):
        combine_keys()


def test_content_retrieval_metrics_by_hand():
    # Two tight clusters of 3 items; item 5 is an outlier of cluster 0's key.
    emb = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99], [-1, 0.05]], np.float32)
    key = np.array(["x", "x", "x", "y", "y", "x"])
    m = content_retrieval_metrics(emb, np.arange(6), key, k=2)
    # Query 0: neighbours 1, 2 (both x) -> p=1, recall=2/3. Query 5 (x): neighbours 3/4 (y) -> 0.
    ranked_hits = {0: 2, 1: 2, 2: 2, 3: 1, 4: 1, 5: 0}
    n_rel = {0: 3, 1: 3, 2: 3, 3: 1, 4: 1, 5: 3}
    assert m["precision@2"] == pytest.approx(np.mean([h / 2 for h in ranked_hits.values()]))
    assert m["recall@2"] == pytest.approx(np.mean([ranked_hits[i] / n_rel[i] for i in range(6)]))
    assert m["n_queries"] == 6
    only_eval = content_retrieval_metrics(emb, np.array([0, 3]), key, k=1, candidates="eval")
    assert only_eval["n_queries"] == 0 and only_eval["n_excluded"] == 2



def test_candidates_limit_the_neighbours():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    key = np.array(["x", "x", "y", "y"])
    # Query 0 is no candidate (its nearest is 1); query 2 is one, and never its own neighbour.
    m = item_retrieval_metrics(emb, np.array([0, 2]), key, candidate_idx=np.array([1, 2, 3]), k=1)
    assert m["precision@1"] == pytest.approx(1.0) and m["n_queries"] == 2
