"""The tests' planted toy world: users who like one (category, colour) cell, content that reveals it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from recsys_utils.artifacts import Prepared
from recsys_utils.splits import split_interactions


@dataclasses.dataclass
class ToyWorld:
    """A tiny planted world.

    Attributes:
        prepared: a :class:`~recsys_utils.artifacts.Prepared` (splits made by
            :func:`~recsys_utils.splits.split_interactions`).
        content: ``(n_items, d)`` float32 item vectors (one-hot category and
            colour plus Gaussian noise), aligned with ``prepared.items``.
        user_taste: ``(n_users,)`` index of each user's favourite
            (category, colour) cell, ``category * n_colours + colour``.
    """

    prepared: Any
    content: np.ndarray
    user_taste: np.ndarray


def make_toy(
    n_users: int = 200,
    n_items: int = 300,
    *,
    n_categories: int = 4,
    n_colours: int = 5,
    per_user: int = 14,
    p_taste: float = 0.8,
    feedback: str = "rating",
    cold_fraction: float = 0.2,
    noise: float = 0.3,
    noise_dims: int = 7,
    seed: int = 0,
) -> ToyWorld:
    """Users who like one (category, colour) cell; content reveals the cell.

    Each user interacts ``per_user`` times: with probability ``p_taste`` with
    an item of their favourite cell, else with an item drawn by popularity
    (Zipf-like). Interactions are spread over time; cold items launch in the
    last fifth of the window, so :func:`~recsys_utils.splits.split_interactions`
    (newest items by first interaction) holds them out.

    Planted labels: ``rating`` = 5 in the favourite cell, 3.5 for the right
    category only, else 1.5, plus N(0, 0.3) noise, clipped to [1, 5];
    ``event`` = ``purchase`` in the favourite cell, else ``view`` (10% label
    noise).
    """
    rng = np.random.default_rng(seed)
    n_cells = n_categories * n_colours
    category = np.arange(n_items) % n_categories
    colour = (np.arange(n_items) // n_categories) % n_colours
    cell = category * n_colours + colour
    content = np.concatenate([
        np.eye(n_categories)[category], np.eye(n_colours)[colour],
        np.zeros((n_items, noise_dims)),
    ], axis=1) + noise * rng.standard_normal((n_items, n_categories + n_colours + noise_dims))
    n_cold = round(cold_fraction * n_items)
    cold = np.zeros(n_items, bool)
    cold[rng.choice(n_items, n_cold, replace=False)] = True
    popularity = 1.0 / (1 + rng.permutation(n_items)) ** 0.8

    taste = rng.integers(0, n_cells, n_users)
    horizon = 100 * 86400
    rows = []
    for u in range(n_users):
        times = np.sort(rng.integers(0, horizon, per_user))
        seen = np.zeros(n_items, bool)  # no repeats: "seen item removal" stays fair
        for t in times:
            # Cold items exist only in the last fifth of the window.
            launched = ~cold | (t >= 0.8 * horizon)
            pool = np.flatnonzero((cell == taste[u]) & launched & ~seen)
            if rng.random() >= p_taste or len(pool) == 0:
                pool = np.flatnonzero(launched & ~seen)
            w = popularity[pool] / popularity[pool].sum()
            i = int(rng.choice(pool, p=w))
            seen[i] = True
            rows.append((u, i, int(t)))
    u_, i_, t_ = map(np.asarray, zip(*rows))
    interactions = pd.DataFrame({
        "user_id": [f"u{u:04d}" for u in u_],
        "item_id": [f"i{i:04d}" for i in i_],
        "timestamp": t_.astype(np.int64) + 1_600_000_000,
    })
    match = cell[i_] == taste[u_]
    if feedback == "rating":
        base = np.where(match, 5.0, np.where(category[i_] == taste[u_] // n_colours, 3.5, 1.5))
        interactions["rating"] = np.clip(base + 0.3 * rng.standard_normal(len(base)), 1, 5).round(1)
    else:
        positive = match ^ (rng.random(len(match)) < 0.1)
        interactions["event"] = np.where(positive, "purchase", "view")
    cats = np.array([f"cat{c}" for c in range(n_categories)])
    cols = np.array([f"col{c}" for c in range(n_colours)])
    items = pd.DataFrame({
        "item_id": [f"i{i:04d}" for i in range(n_items)],
        "title": [f"{cols[colour[i]]} {cats[category[i]]} {i}" for i in range(n_items)],
        "description": "", "category": cats[category], "colour": cols[colour],
    })
    # The cold fraction among *interacted* items that split_interactions holds out.
    n_interacted = interactions["item_id"].nunique()
    n_cold_seen = interactions.loc[np.isin(i_, np.flatnonzero(cold)), "item_id"].nunique()
    splits = split_interactions(interactions, cold_item_fraction=(n_cold_seen + 0.5) / n_interacted,
                                seed=seed)
    prepared = Prepared(
        dataset="toy", items=items, interactions=interactions, attribute_columns=["colour"],
        splits=splits.as_dict(), cold_items=splits.cold_items, feedback=feedback,
    )
    return ToyWorld(prepared=prepared, content=content.astype(np.float32), user_taste=taste)
