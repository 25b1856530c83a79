"""The report's figures: matplotlib plots of the tables, and PNG bytes for the report files.

Each ``plot_*`` returns a Figure, or ``None`` when its notebook has not run.
matplotlib is imported inside the functions, so reading tables never needs it.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any, Mapping

import pandas as pd

from .reading import FUSION, dataset_name, dig
from .tables import chain_table, fusion_table, quantization_table, retrieval_table, search_table


#: Figures are drawn at most this many inches wide: at the report's dpi that is about the
#: 800 px a reader's window gives the page, so no figure is shrunk until its labels blur.
MAX_WIDTH_IN = 7.2


def _wrap(label: Any, width: int = 28) -> str:
    """A tick label on lines of at most ``width`` characters (long names never overlap)."""
    return "\n".join(textwrap.wrap(str(label), width)) or str(label)


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (for the report; the notebook still shows it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _finish(fig: Any, ax: Any, xlabel: str, title: str, grid: str = "x"):
    """``fig`` with its x label, title and a light grid along ``grid``, laid out."""
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis=grid, alpha=0.3)
    fig.tight_layout()
    return fig


def plot_retrieval(metrics: Mapping[str, Any]):
    """Horizontal grouped bars: Recall@50 of every retrieval model, warm and cold-start.

    One row per model, so the figure keeps its width however many models there are.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    table = retrieval_table(metrics)
    columns = [c for c in ("warm recall@50", "cold (all items) recall@50") if c in table]
    if table.empty or not columns:
        return None
    frame = table[columns].rename(columns=lambda c: c.replace(" recall@50", ""))
    labels = [_wrap(i, 30) for i in frame.index]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 0.2 * lines + 0.12 * len(frame) + 1.2))
    y = np.arange(len(frame))
    height = 0.8 / len(columns)
    for j, column in enumerate(frame.columns):
        ax.barh(y + (j - (len(columns) - 1) / 2) * height, frame[column].to_numpy(float),
                height=height, label=column)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # notebook 04's order, top to bottom
    ax.legend(loc="lower right", fontsize=8, frameon=True)
    return _finish(fig, ax, "Recall@50 (test users)",
                   f"Retrieval over the full catalogue ({dataset_name(metrics)})")


def plot_chain(metrics: Mapping[str, Any]):
    """Horizontal bars: NDCG@10 of retrieval alone and of each chain (None if absent)."""
    import matplotlib.pyplot as plt

    table = chain_table(metrics)
    if table.empty:
        return None
    labels = [_wrap(i, 34) for i in table.index]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 0.3 * lines + 0.2 * len(table) + 1.2))
    colors = ["tab:grey" if i == 0 else "tab:blue" for i in range(len(table))]
    ax.barh(labels[::-1], table["NDCG@10"].to_numpy()[::-1], color=colors[::-1])
    return _finish(fig, ax, "NDCG@10 (test users)", "Retrieval alone vs retrieve-then-rank")


def plot_fusion(metrics: Mapping[str, Any]):
    """Horizontal bars: each single modality (grey) and fusion (blue) on notebook 03's task."""
    import matplotlib.pyplot as plt

    table = fusion_table(metrics)
    metric = str(dig(metrics, FUSION, "metric") or "ndcg@10")
    if table.empty or metric not in table:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").dropna()
    kinds = table["kind"].loc[values.index] if "kind" in table else [""] * len(values)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(values) + 1.2))
    ax.barh([_wrap(i) for i in values.index[::-1]], values.to_numpy()[::-1],
            color=["tab:blue" if k == "fusion" else "tab:grey" for k in kinds[::-1]])
    return _finish(fig, ax, f"test-item {metric}", "Single modalities (grey) and fusions (blue)")


def plot_quantization(metrics: Mapping[str, Any], x: str = "size_mb"):
    """Quality against ``x`` (``size_mb`` or ``median_ms``), one panel per model.

    :func:`recsys_utils.plots.plot_tradeoff` of notebook 06's converted variants,
    two panels a row at the report's width.
    """
    from ..plots import plot_tradeoff

    table = quantization_table(metrics)
    if table.empty or x not in table or "quality" not in table:
        return None
    data = table.dropna(subset=[x, "quality"])
    if "ok" in data:
        data = data[data["ok"].astype(bool)]
    if data.empty:
        return None
    return plot_tradeoff(data, x, "quality", ncols=2, width=MAX_WIDTH_IN,
                         title="Quantization: " + ("size" if x == "size_mb" else "latency")
                         + " against quality")


def plot_search(metrics: Mapping[str, Any]):
    """Grouped bars: NDCG@10 of each search method per query kind (None if absent)."""
    import matplotlib.pyplot as plt

    table = search_table(metrics)
    columns = [c for c in table if c.endswith("ndcg@10")]
    if table.empty or not columns:
        return None
    frame = table[columns].rename(columns=lambda c: c.replace(" ndcg@10", "")).T
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 3.8))
    frame.plot.bar(ax=ax, rot=0)
    ax.set_xticklabels([_wrap(k, 14) for k in frame.index])
    ax.set_ylabel("NDCG@10 (test queries)")
    # Below the axes, one row: a legend inside would cover the bars.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(5, len(frame.columns)),
              fontsize=8, frameon=False)
    return _finish(fig, ax, "", "Product search by query kind", grid="y")


#: Figure name (as notebook 08 keeps it) -> (report section it belongs to, caption).
FIGURES: dict[str, tuple[str, str]] = {
    "retrieval": ("retrieval", "Recall@50 of every retrieval model, warm and cold-start"),
    "chain": ("chain", "NDCG@10 of retrieval alone and of each chain"),
    "fusion": ("fusion", "Held-out NDCG@10 of each modality and fusion"),
    "quantization_size": ("quantization", "Quantized variants: file size against quality"),
    "quantization_latency": ("quantization",
                             "Quantized variants: single-query latency against quality"),
    "search": ("search", "NDCG@10 of each search method per query kind"),
}
