"""Plots the notebooks share. Each returns a matplotlib Figure and shows nothing itself. Image
plots draw only files that decode (notebook 01 sets unreadable ``image_path``s to ``None``); a
file that still fails to open is drawn as an empty cell marked "unreadable"."""

from __future__ import annotations

import textwrap
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter
from PIL import Image


def _finish(fig: plt.Figure, ax: plt.Axes, title: str, **labels: str) -> plt.Figure:
    ax.set(title=title, **labels)
    fig.tight_layout()
    return fig


def popularity_long_tail(interactions: pd.DataFrame, items: pd.DataFrame) -> plt.Figure:
    """Interactions per item by popularity rank on log-log axes, with the cumulative
    share of interactions on a second axis."""
    counts = (interactions.groupby("item_id").size()
              .reindex(items["item_id"], fill_value=0).sort_values(ascending=False).to_numpy())
    rank = np.arange(1, len(counts) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.loglog(rank, np.maximum(counts, 0.8), color="tab:blue")
    twin = ax.twinx()
    twin.plot(rank, np.cumsum(counts) / max(1, counts.sum()), color="tab:orange")
    twin.set_ylabel("cumulative share of interactions", color="tab:orange")
    twin.set_ylim(0, 1.02)
    return _finish(fig, ax, "The long tail of item popularity", xlabel="item popularity rank",
                   ylabel="interactions per item (log)")


def interactions_per_user(interactions: pd.DataFrame) -> plt.Figure:
    """Histogram of interactions per user (log-spaced bins)."""
    counts = interactions.groupby("user_id").size().to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.unique(np.logspace(0, np.log10(max(2, counts.max())), 30).astype(int))
    ax.hist(counts, bins=bins, color="tab:green")
    ax.set_xscale("log")
    ax.axvline(np.median(counts), color="black", linestyle="--",
               label=f"median {np.median(counts):.0f}")
    ax.legend()
    return _finish(fig, ax, "How active users are", xlabel="interactions per user (log)",
                   ylabel="users")


def category_mix(items: pd.DataFrame, interactions: pd.DataFrame, top: int = 20) -> plt.Figure:
    """Share of catalogue items and of interactions per category, side by side."""
    catalogue = items["category"].value_counts(normalize=True)
    engaged = (interactions.merge(items[["item_id", "category"]], on="item_id")["category"]
               .value_counts(normalize=True))
    order = catalogue.index[:top]
    frame = pd.DataFrame({"catalogue": catalogue.reindex(order),
                          "interactions": engaged.reindex(order).fillna(0.0)})
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(order))))
    frame.iloc[::-1].plot.barh(ax=ax)
    return _finish(fig, ax, f"Category mix (top {len(order)} categories)", xlabel="share")


def _show_image(ax: plt.Axes, path: str | None, caption: str, **caption_style: Any) -> None:
    """Draw the image at ``path`` (if any) on ``ax`` without axes, or a grey "unreadable";
    ``caption`` above it."""
    ax.axis("off")
    ax.set_title(caption, **caption_style)
    if not isinstance(path, str) or not path:
        return
    try:
        with Image.open(path) as image:
            ax.imshow(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError):  # missing, truncated, not an image
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=6, color="grey",
                transform=ax.transAxes)


def _caption(text: str, width: int) -> str:
    """``text`` on at most two lines of ``width`` characters, shortened with "…" past that."""
    return textwrap.fill(str(text), width, max_lines=2, placeholder=" …")


def sample_image_grid(items: pd.DataFrame, n: int = 24, seed: int = 0, *, columns: int = 8,
                      size: float = 1.4) -> plt.Figure | None:
    """A seeded sample of items with images in a grid, titles as captions; None if none has."""
    with_images = items[items["image_path"].notna()] if "image_path" in items else items[:0]
    if with_images.empty:
        return None
    sample = with_images.sample(min(n, len(with_images)), random_state=seed)
    rows = max(1, int(np.ceil(len(sample) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * (size + 0.5)),
                             squeeze=False)
    for ax in axes.flat[len(sample):]:
        ax.axis("off")
    for ax, path, title in zip(axes.flat, sample["image_path"], sample["title"]):
        _show_image(ax, path, _caption(title, 22), fontsize=7)
    fig.tight_layout()
    return fig


def embedding_map(vectors: np.ndarray, labels: Sequence[str], *, method: str = "tsne",
                  max_points: int = 2000, top_labels: int = 20, seed: int = 0,
                  title: str = "Item embeddings in 2-D") -> plt.Figure:
    """2-D projection (``method`` "tsne" or "pca") of at most ``max_points`` seeded-sampled
    ``(n, d)`` vectors (t-SNE is quadratic), coloured by label; labels beyond the
    ``top_labels`` most frequent are grey."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(vectors), min(max_points, len(vectors)), replace=False))
    x, y = vectors[keep], labels[keep]
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, init="pca", random_state=seed,
                  perplexity=min(30.0, max(5.0, len(x) / 50))).fit_transform(x)
    elif method == "pca":
        centred = x - x.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ components[:2].T
    else:
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    frequent = pd.Series(y).value_counts().index[:top_labels]
    fig, ax = plt.subplots(figsize=(8, 6))
    other = ~np.isin(y, frequent)
    ax.scatter(xy[other, 0], xy[other, 1], s=4, c="lightgrey", label="other")
    cmap = plt.get_cmap("tab20")
    for i, label in enumerate(frequent):
        mask = y == label
        ax.scatter(xy[mask, 0], xy[mask, 1], s=5, color=cmap(i % 20), label=label)
    ax.set(xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    return _finish(fig, ax, f"{title} ({method.upper()}, {len(x):,} items)")


def neighbour_grid(neighbours: pd.DataFrame, items: pd.DataFrame,
                   query_items: Sequence[str] | None = None,
                   size: float = 1.3) -> plt.Figure | None:
    """Images of each query's nearest items (a :func:`recsys_utils.probes.nearest_items`
    table), a row per query, led by the query's own item when ``query_items`` gives its id
    per query. None when the items have no images."""
    if "image_path" not in items or items["image_path"].isna().all():
        return None
    by_id = items.set_index("item_id")
    paths, titles = by_id["image_path"], by_id["title"]
    queries = list(dict.fromkeys(neighbours["query"]))
    k = int(neighbours["rank"].max())
    lead = 1 if query_items is not None else 0
    fig, axes = plt.subplots(len(queries), k + lead,
                             figsize=((k + lead) * size, len(queries) * (size + 0.55)),
                             squeeze=False)
    for r, query in enumerate(queries):
        row = neighbours[neighbours["query"] == query].sort_values("rank")
        ids = ([query_items[r]] if query_items is not None else []) + row["item_id"].tolist()
        for c, item_id in enumerate(ids):
            is_query = c == 0 and lead
            caption = ("query: " if is_query else "") + str(titles.get(item_id, ""))
            _show_image(axes[r, c], paths.get(item_id), _caption(caption, 22), fontsize=6,
                        color="tab:red" if is_query else "black")
    fig.tight_layout()
    return fig


_AXIS_LABELS = {"size_mb": "file size (MB)", "median_ms": "single-query latency, median (ms)",
                "p95_ms": "single-query latency, p95 (ms)", "throughput": "rows per second"}
#: The smallest quality range a trade-off panel shows (cosine, recall and RMSE alike).
MIN_QUALITY_SPAN = 0.05


def _variant_styles(labels: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Label -> (colour, marker): the colour by the label's last word (the format, e.g.
    ``dynamic_int8``), the marker by its first when it has more (e.g. ``pruned50``), so a
    variant looks the same in every panel and related variants look related."""
    words = {str(label): str(label).split() for label in labels}
    formats = list(dict.fromkeys(w[-1] for w in words.values()))
    prefixes = list(dict.fromkeys(w[0] for w in words.values() if len(w) > 1))
    markers = "sD^vP*X"
    return {label: (f"C{formats.index(w[-1]) % 10}",
                    "o" if len(w) == 1 else markers[prefixes.index(w[0]) % len(markers)])
            for label, w in words.items()}


def plot_tradeoff(df: pd.DataFrame, x: str, y: str, *, label: str = "variant",
                  title: str | None = None, ncols: int | None = None,
                  width: float | None = None) -> plt.Figure:
    """Scatter ``y`` (quality) against ``x`` (size or latency), a panel per ``model`` since
    quality metrics differ (its y label: the rows' ``quality_metric``); x is logarithmic on
    panels whose x spans over 10x. Each ``label`` has one colour and marker in every panel,
    named in one legend under the panels (labels beside the points collide when variants
    sit close). Panels sit in one row, 4.4 inches each, unless ``ncols`` wraps them;
    ``width`` in inches.
    """
    from matplotlib.lines import Line2D

    data = df.dropna(subset=[x, y])
    groups = list(dict.fromkeys(data["model"])) if "model" in data else [None]
    n = max(len(groups), 1)
    ncols = min(ncols or n, n)
    nrows = -(-n // ncols)
    names = list(dict.fromkeys(data[label].astype(str)))
    styles = _variant_styles(names)
    legend_rows = -(-len(names) // 4)
    height = 3.6 * nrows + 0.25 * legend_rows + 0.2
    fig, axes = plt.subplots(nrows, ncols, figsize=(width or 4.4 * ncols, height), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, groups):
        part = data if name is None else data[data["model"] == name]
        for variant, x_value, y_value in zip(part[label].astype(str), part[x], part[y]):
            colour, marker = styles[variant]
            ax.scatter(x_value, y_value, s=44, color=colour, marker=marker, alpha=0.85,
                       edgecolors="white", linewidths=0.5)
        values = part[x].to_numpy(float)
        # Log only when the points span a decade; otherwise no tick would be labelled.
        if len(values) and values.min() > 0 and values.max() / values.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.15)
        # At least MIN_QUALITY_SPAN tall: a 0.001 difference must not look like a cliff.
        low, high = part[y].min(), part[y].max()
        half = max(high - low, MIN_QUALITY_SPAN) * 0.6
        ax.set_ylim((low + high) / 2 - half, (low + high) / 2 + half)
        metric = part["quality_metric"].iloc[0] if "quality_metric" in part and len(part) else y
        ax.set(xlabel=_AXIS_LABELS.get(x, x), ylabel=str(metric),
               title=str(name) if name is not None else (title or ""))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", color=styles[v][0], marker=styles[v][1], markersize=7,
                      label=v) for v in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(names)), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.25 * legend_rows + 0.1) / height, 1, 1))
    return fig
