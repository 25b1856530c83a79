"""Plots the notebooks share. Each returns a matplotlib Figure and shows nothing itself."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
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
        with Image.open(image_paths[i]) as image:
            ax.imshow(image.convert("RGB"))
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
