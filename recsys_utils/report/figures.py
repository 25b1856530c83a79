"""The report's figures: matplotlib plots of the tables, and PNG bytes for the report files.

Each ``plot_*`` returns a Figure, or ``None`` when its notebook has not run.
matplotlib is imported inside the functions, so reading tables never needs it.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping

import pandas as pd

from ._read import FUSION, _dataset
from .tables import chain_table, fusion_table, quantization_table, retrieval_table, search_table


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (for the report; the notebook still shows it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def plot_retrieval(metrics: Mapping[str, Any], metric: str = "recall@50"):
    """Grouped bars: ``metric`` of every retrieval model on warm and cold-start items (None if absent)."""
    import matplotlib.pyplot as plt

    table = retrieval_table(metrics, columns=(metric,))
    columns = [c for c in (f"warm {metric}", f"cold (all items) {metric}") if c in table]
    if table.empty or not columns:
        return None
    frame = table[columns].rename(columns=lambda c: c.replace(f" {metric}", ""))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(frame) + 2), 3.6))
    frame.plot.bar(ax=ax)
    ax.set_xticklabels(frame.index, rotation=25, ha="right")
    ax.set_xlabel("")
    ax.set_ylabel(metric.capitalize())
    ax.set_title(f"Retrieval over the full catalogue: warm vs cold-start ({_dataset(metrics)})")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_chain(metrics: Mapping[str, Any]):
    """Horizontal bars: NDCG@10 of retrieval alone and of each chain (None if absent)."""
    import matplotlib.pyplot as plt

    table = chain_table(metrics)
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.2))
    colors = ["tab:grey" if i == 0 else "tab:blue" for i in range(len(table))]
    ax.barh(table.index[::-1], table["NDCG@10"].to_numpy()[::-1], color=colors[::-1])
    ax.set_xlabel("NDCG@10 (test users)")
    ax.set_title("Retrieval alone vs retrieve-then-rank")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_fusion(metrics: Mapping[str, Any]):
    """Horizontal bars: each single modality (grey) and fusion (blue) on notebook 03's task."""
    import matplotlib.pyplot as plt

    table = fusion_table(metrics)
    metric = str(metrics.get(FUSION, {}).get("metric", "ndcg@10")) if isinstance(
        metrics.get(FUSION), Mapping) else "ndcg@10"
    if table.empty or metric not in table:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").dropna()
    kinds = table.loc[values.index, "kind"] if "kind" in table else pd.Series("", index=values.index)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(values) + 1.2))
    ax.barh(values.index[::-1], values.to_numpy()[::-1],
            color=["tab:blue" if k == "fusion" else "tab:grey" for k in kinds[::-1]])
    ax.set_xlabel(f"held-out {metric}")
    ax.set_title("Single modalities (grey) and fusions (blue)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_quantization(metrics: Mapping[str, Any], x: str = "size_mb"):
    """Quality against ``x`` (``size_mb`` or ``median_ms``), one panel per model (None if absent).

    The same picture as notebook 06's ``compress.plot_tradeoff``, drawn here
    because importing :mod:`recsys_utils.compress` loads TensorFlow, which the
    report must not need.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    table = quantization_table(metrics)
    if table.empty or x not in table or "quality" not in table:
        return None
    data = table.dropna(subset=[x, "quality"])
    if "ok" in data:
        data = data[data["ok"].astype(bool)]
    models = list(dict.fromkeys(data["model"]))
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(4.3 * len(models), 3.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = data[data["model"] == model]
        ax.scatter(part[x], part["quality"], s=36)
        for _, row in part.iterrows():
            ax.annotate(str(row["variant"]), (row[x], row["quality"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        values = part[x].to_numpy(float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25, y=0.2)
        ax.set_xlabel({"size_mb": "file size (MB)",
                       "median_ms": "single-query latency, median (ms)"}.get(x, x))
        ax.set_ylabel(str(part["quality_metric"].iloc[0]) if "quality_metric" in part else "quality")
        ax.set_title(str(model))
        ax.grid(alpha=0.3)
    fig.suptitle("Quantization: " + ("size" if x == "size_mb" else "latency") + " against quality")
    fig.tight_layout()
    return fig


def plot_search(metrics: Mapping[str, Any]):
    """Grouped bars: NDCG@10 of each search method per query kind (None if absent)."""
    import matplotlib.pyplot as plt

    table = search_table(metrics)
    columns = [c for c in table if c.endswith("ndcg@10")]
    if table.empty or not columns:
        return None
    frame = table[columns].rename(columns=lambda c: c.replace(" ndcg@10", "")).T
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(frame) + 2), 3.6))
    frame.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("NDCG@10 (test queries)")
    ax.set_title("Product search by query kind")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


#: Figure name -> (plot function, report section it belongs to, caption).
_FIGURES: dict[str, tuple[Callable[[Mapping[str, Any]], Any], str, str]] = {
    "retrieval": (plot_retrieval, "retrieval", "Recall@50 of every retrieval model, warm and cold-start"),
    "chain": (plot_chain, "chain", "NDCG@10 of retrieval alone and of each chain"),
    "fusion": (plot_fusion, "fusion", "Held-out NDCG@10 of each modality and fusion"),
    "quantization_size": (lambda m: plot_quantization(m, "size_mb"), "quantization",
                          "Quantized variants: file size against quality"),
    "quantization_latency": (lambda m: plot_quantization(m, "median_ms"), "quantization",
                             "Quantized variants: single-query latency against quality"),
    "search": (plot_search, "search", "NDCG@10 of each search method per query kind"),
}


def default_figures(metrics: Mapping[str, Any]) -> dict[str, bytes]:
    """Every report figure the metrics allow, as PNG bytes (figures are closed after rendering)."""
    import matplotlib.pyplot as plt

    out = {}
    for name, (plot, _, _) in _FIGURES.items():
        fig = plot(metrics)
        if fig is not None:
            out[name] = figure_png(fig)
            plt.close(fig)
    return out
