"""Plots the notebooks share. Each returns a matplotlib Figure and shows nothing itself.

Image plots draw only files that decode: notebook 01 sets the ``image_path``
of every unreadable image to ``None`` (:func:`recsys_utils.prepare.verify_images`),
and a file that still fails to open (changed on disk since) is drawn as an
empty cell marked "unreadable", never raised.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter
from PIL import Image


def popularity_long_tail(interactions: pd.DataFrame, items: pd.DataFrame) -> plt.Figure:
    """Interactions per item, items ranked by popularity, on log-log axes,
    with the cumulative share of interactions on a second axis."""
    counts = (interactions.groupby("item_id").size()
              .reindex(items["item_id"], fill_value=0).sort_values(ascending=False).to_numpy())
    rank = np.arange(1, len(counts) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.loglog(rank, np.maximum(counts, 0.8), color="tab:blue")
    ax.set_xlabel("item popularity rank")
    ax.set_ylabel("interactions per item (log)")
    share = np.cumsum(counts) / max(1, counts.sum())
    twin = ax.twinx()
    twin.plot(rank, share, color="tab:orange")
    twin.set_ylabel("cumulative share of interactions", color="tab:orange")
    twin.set_ylim(0, 1.02)
    ax.set_title("The long tail of item popularity")
    fig.tight_layout()
    return fig


def interactions_per_user(interactions: pd.DataFrame) -> plt.Figure:
    """Histogram of interactions per user (log-spaced bins)."""
    counts = interactions.groupby("user_id").size().to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.unique(np.logspace(0, np.log10(max(2, counts.max())), 30).astype(int))
    ax.hist(counts, bins=bins, color="tab:green")
    ax.set_xscale("log")
    ax.axvline(np.median(counts), color="black", linestyle="--",
               label=f"median {np.median(counts):.0f}")
    ax.set_xlabel("interactions per user (log)")
    ax.set_ylabel("users")
    ax.legend()
    ax.set_title("How active users are")
    fig.tight_layout()
    return fig


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
    ax.set_xlabel("share")
    ax.set_title(f"Category mix (top {len(order)} categories)")
    fig.tight_layout()
    return fig


def _show_image(ax: plt.Axes, path: str | None) -> bool:
    """Draw the image at ``path`` on ``ax``; False (and a grey "unreadable") if it does not decode."""
    if not isinstance(path, str) or not path:
        return False
    try:
        with Image.open(path) as image:
            ax.imshow(image.convert("RGB"))
        return True
    except (OSError, ValueError, SyntaxError):  # missing, truncated, not an image
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=6, color="grey",
                transform=ax.transAxes)
        return False


def image_grid(
    image_paths: Sequence[str],
    captions: Sequence[str] | None = None,
    *,
    columns: int = 8,
    size: float = 1.4,
) -> plt.Figure:
    """Show product images in a grid, with optional short captions."""
    n = len(image_paths)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * (size + 0.3)))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i >= n:
            continue
        _show_image(ax, image_paths[i])
        if captions is not None:
            ax.set_title(captions[i][:22], fontsize=7)
    fig.tight_layout()
    return fig


def sample_image_grid(items: pd.DataFrame, n: int = 24, seed: int = 0, **kwargs) -> plt.Figure | None:
    """A seeded sample of items that have images, shown with their titles; None if none do."""
    if "image_path" not in items:
        return None
    with_images = items[items["image_path"].notna()]
    if with_images.empty:
        return None
    sample = with_images.sample(min(n, len(with_images)), random_state=seed)
    return image_grid(sample["image_path"].tolist(), sample["title"].tolist(), **kwargs)


def embedding_map(
    vectors: np.ndarray,
    labels: Sequence[str],
    *,
    method: str = "tsne",
    max_points: int = 2000,
    top_labels: int = 20,
    seed: int = 0,
    title: str = "Item embeddings in 2-D",
) -> plt.Figure:
    """2-D projection (t-SNE or PCA) of vectors, coloured by label.

    At most ``max_points`` seeded-sampled rows are projected (t-SNE is
    quadratic); labels beyond the ``top_labels`` most frequent are grey.
    """
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
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(f"{title} ({method.upper()}, {len(x):,} items)")
    fig.tight_layout()
    return fig


def neighbour_grid(neighbours: pd.DataFrame, items: pd.DataFrame,
                   query_items: Sequence[str] | None = None, size: float = 1.3) -> plt.Figure | None:
    """Images of each query's nearest items, a row per query.

    ``neighbours`` is a :func:`recsys_utils.probes.nearest_items` table. When
    ``query_items`` gives the query's own item id per row of queries, its image
    comes first. Returns None when the items have no images.
    """
    if "image_path" not in items or items["image_path"].isna().all():
        return None
    paths = items.set_index("item_id")["image_path"]
    titles = items.set_index("item_id")["title"]
    queries = list(dict.fromkeys(neighbours["query"]))
    k = int(neighbours["rank"].max())
    lead = 1 if query_items is not None else 0
    fig, axes = plt.subplots(len(queries), k + lead,
                             figsize=((k + lead) * size, len(queries) * (size + 0.35)),
                             squeeze=False)
    for r, query in enumerate(queries):
        row = neighbours[neighbours["query"] == query].sort_values("rank")
        ids = ([query_items[r]] if query_items is not None else []) + row["item_id"].tolist()
        for c, item_id in enumerate(ids):
            ax = axes[r, c]
            ax.axis("off")
            path = paths.get(item_id)
            _show_image(ax, path)
            caption = ("query: " if c == 0 and lead else "") + str(titles.get(item_id, ""))
            ax.set_title(caption[:20], fontsize=6, color="tab:red" if c == 0 and lead else "black")
    fig.tight_layout()
    return fig


_AXIS_LABELS = {"size_mb": "file size (MB)", "median_ms": "single-query latency, median (ms)",
                "p95_ms": "single-query latency, p95 (ms)", "throughput": "rows per second"}


#: The smallest quality range a trade-off panel shows (cosine, recall and RMSE alike).
MIN_QUALITY_SPAN = 0.05


def _labels_above(ys: np.ndarray) -> list[bool]:
    """For points in x order, whether each one's label goes above it (else below).

    Neighbours alternate sides, so two close points never share one; of the two
    alternations, the one that puts the higher of two neighbours' labels above
    more often (the first label above on a tie), so no label sits on the other point.
    """
    higher = np.sign(ys[:-1] - ys[1:])  # +1 where a point is above its right-hand neighbour
    first_above = float(np.sum(higher * (-1.0) ** np.arange(len(higher)))) >= 0
    return [(i % 2 == 0) == first_above for i in range(len(ys))]


def plot_tradeoff(df: pd.DataFrame, x: str, y: str, *, label: str = "variant",
                  group: str = "model", logx: bool = True, title: str | None = None,
                  ncols: int | None = None, width: float | None = None,
                  stagger: bool = False) -> plt.Figure:
    """Scatter ``y`` (quality) against ``x`` (size or latency), one panel per ``group``.

    Each point is annotated with its ``label``; quality metrics differ between
    models (cosine, recall, RMSE), hence one panel each with its own y axis,
    labelled with the rows' ``quality_metric``. ``logx`` applies to panels
    whose x values span more than a factor of 10. Notebook 06 draws
    :func:`recsys_utils.tflite_variants.size_quality_table` with it.

    By default the panels sit in one row, 4.4 inches each, labels up and to
    the right of their points. ``ncols`` wraps them after that many panels a
    row, ``width`` sets the figure's width in inches, and ``stagger`` puts the
    labels of neighbours in x alternately above and below their points, so
    close points' labels never sit on each other (the evaluation report's
    :func:`recsys_utils.report.plot_quantization` uses all three).
    """
    data = df.dropna(subset=[x, y])
    groups = list(dict.fromkeys(data[group])) if group in data else [None]
    n = max(len(groups), 1)
    ncols = min(ncols or n, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width or 4.4 * ncols, 3.6 * nrows),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, groups):
        part = data if name is None else data[data[group] == name]
        ax.scatter(part[x], part[y], s=36)
        points = part.sort_values(x, kind="stable") if stagger else part
        above = _labels_above(points[y].to_numpy(float)) if stagger else []
        for i, (_, row) in enumerate(points.iterrows()):
            ax.annotate(str(row[label]), (row[x], row[y]), textcoords="offset points",
                        xytext=((0, 7 if above[i] else -13) if stagger else (4, 4)),
                        ha="center" if stagger else "left", fontsize=8)
        values = part[x].to_numpy(float)
        # Log only when the points span a decade; otherwise no tick would be labelled.
        if logx and len(values) and values.min() > 0 and values.max() / values.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25)
        # At least MIN_QUALITY_SPAN tall: a 0.001 difference must not look like a cliff.
        low, high = part[y].min(), part[y].max()
        half = max(high - low, MIN_QUALITY_SPAN) * 0.6
        ax.set_ylim((low + high) / 2 - half, (low + high) / 2 + half)
        ax.set_xlabel(_AXIS_LABELS.get(x, x))
        metric = part["quality_metric"].iloc[0] if "quality_metric" in part and len(part) else y
        ax.set_ylabel(str(metric))
        ax.set_title(str(name) if name is not None else (title or ""))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
