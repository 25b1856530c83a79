"""How product search is scored (notebook 07): NDCG@10, Recall@100 and MRR per query kind.

Relevance is graded the ESCI way (3 exact, 2 substitute, 1 complement, 0 irrelevant);
NDCG uses gains ``2^rel - 1``, Recall and MRR count items graded at least
:data:`RELEVANT_AT` as relevant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import metrics

__all__ = ["NDCG_K", "RECALL_K", "RELEVANT_AT", "evaluate", "example_results", "plot_by_kind"]

#: Cut-offs of the search evaluation (NDCG@10, Recall@100), and the grade from which an
#: item counts as relevant for Recall and MRR: substitutes and exact matches.
NDCG_K = 10
RECALL_K = 100
RELEVANT_AT = 2


def evaluate(rankings: Mapping[str, np.ndarray], gains: Sequence[Mapping[int, float]],
             kinds: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """NDCG@10 (graded gains), Recall@100 and MRR per method and query kind.

    ``rankings``: method name -> ``(n_queries, L)`` item rows (-1 padding; lists shorter
    than 100 count as misses); ``gains``: per query ``{item row: relevance}``
    (:func:`recsys_utils.search_queries.query_gains`); ``kinds``: ``(n_queries,)`` labels.
    Returns a long table: ``method``, ``kind`` (each kind plus ``"all"``), ``ndcg@10``,
    ``recall@100``, ``mrr``, ``n_queries``.
    """
    frames = []
    for name, ranked in rankings.items():
        table = metrics.per_group(metrics.graded_metrics, np.asarray(kinds),
                                  ranked=_to_recall_depth(ranked), gains=list(gains),
                                  ks=(NDCG_K,), recall_ks=(RECALL_K,),
                                  relevant_threshold=RELEVANT_AT)
        frames.append(table.rename_axis("kind").reset_index().assign(method=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["method", "kind", f"ndcg@{NDCG_K}", f"recall@{RECALL_K}", "mrr", "n_queries"]]


def per_query_ndcg(ranked: np.ndarray, gains: Sequence[Mapping[int, float]]) -> pd.Series:
    """NDCG@10 of each query of ``ranked`` ``(n_queries, L)``, scored as :func:`evaluate`
    scores it, indexed by query row (queries without a relevant item left out): the per-query
    values a paired bootstrap interval between two methods needs."""
    per_query = metrics.graded_metrics(_to_recall_depth(ranked), list(gains), ks=(NDCG_K,),
                                       recall_ks=(RECALL_K,), relevant_threshold=RELEVANT_AT,
                                       per_query=True)
    return per_query[f"ndcg@{NDCG_K}"]


def _to_recall_depth(ranked: np.ndarray) -> np.ndarray:
    """``ranked`` padded with -1 to :data:`RECALL_K` columns: shorter lists miss the rest."""
    ranked = np.asarray(ranked)
    if ranked.ndim == 2 and ranked.shape[1] < RECALL_K:
        ranked = np.pad(ranked, ((0, 0), (0, RECALL_K - ranked.shape[1])), constant_values=-1)
    return ranked


def plot_by_kind(table: pd.DataFrame, metric: str = f"ndcg@{NDCG_K}") -> Any:
    """Grouped bars of ``metric`` from an :func:`evaluate` table: one group per query kind
    (and all), one bar per method. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt  # only the notebook plots: off the module's import path

    wide = table.pivot(index="kind", columns="method", values=metric)
    order = [k for k in wide.index if k != "all"] + (["all"] if "all" in wide.index else [])
    wide = wide.loc[order, list(dict.fromkeys(table["method"]))]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(wide), 3.4))
    n = len(wide.columns)
    width = 0.8 / n
    x = np.arange(len(wide))
    for i, method in enumerate(wide.columns):
        ax.bar(x + (i - (n - 1) / 2) * width, wide[method].to_numpy(), width, label=method)
    ax.set_xticks(x, wide.index)
    ax.set(ylabel=metric, ylim=(0, 1), title=f"{metric} by query kind (test queries)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def example_results(queries: Sequence[str], indices: np.ndarray, items: pd.DataFrame,
                    gains: Sequence[Mapping[int, float]], k: int = 5,
                    labels: Sequence[str] | None = None) -> pd.DataFrame:
    """The top ``k`` results of some queries as a long table (what
    :func:`recsys_utils.plots.neighbour_grid` reads): ``query``, ``rank``, ``item_id``,
    ``title``, ``relevance``. ``indices`` is ``(len(queries), >= k)`` item rows (-1 skipped).
    """
    labels = list(labels) if labels is not None else list(queries)
    return pd.DataFrame([
        {"query": label, "rank": rank, "item_id": items["item_id"].iloc[item],
         "title": items["title"].iloc[item], "relevance": int(gains[q].get(int(item), 0))}
        for q, label in enumerate(labels)
        for rank, item in enumerate(np.asarray(indices)[q, :k], start=1) if item >= 0])
