"""Tests of the generic behaviour simulator on a hand-made catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_utils.schema import EVENTS, validate_interactions
from recsys_utils.simulation import assign_launch_times, simulate_behaviour

START = 1_700_000_000
DAYS = 120
COLUMNS = {"category": 10, "colour": 12, "material": 8, "style": 6, "pattern": 5}


def make_catalogue(n_items: int, seed: int = 0, price: bool = True) -> pd.DataFrame:
    """Random categorical attributes (values 'colour03' ...) and lognormal prices."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{i:06d}" for i in range(n_items)]})
    items["title"] = "item"
    items["description"] = ""
    for column, k in COLUMNS.items():
        items[column] = [f"{column}{v:02d}" for v in rng.integers(0, k, n_items)]
    if price:
        items["price"] = rng.lognormal(4.0, 0.6, n_items)
    return items


@pytest.fixture(scope="module")
def small():
    items = make_catalogue(400)
    users, interactions = simulate_behaviour(items, list(COLUMNS), 300, seed=7)
    return items, users, interactions


@pytest.fixture(scope="module")
def medium():
    items = make_catalogue(1000, seed=1)
    users, interactions = simulate_behaviour(items, list(COLUMNS), 1000, seed=11)
    return items, users, interactions


def test_same_seed_gives_identical_tables(small):
    items, users, interactions = small
    users2, interactions2 = simulate_behaviour(items, list(COLUMNS), 300, seed=7)
    assert users.to_csv() == users2.to_csv()
    assert interactions.to_csv() == interactions2.to_csv()


def test_different_seed_gives_different_tables(small):
    items, users, interactions = small
    users2, interactions2 = simulate_behaviour(items, list(COLUMNS), 300, seed=8)
    assert interactions.to_csv() != interactions2.to_csv()
    assert users.to_csv() != users2.to_csv()


def test_columns_dtypes_and_schema(small):
    items, users, interactions = small
    assert list(interactions.columns) == ["user_id", "item_id", "timestamp", "event", "session_id"]
    assert interactions["timestamp"].dtype == np.int64
    assert set(interactions["event"]) <= set(EVENTS)
    assert set(interactions["event"]) == set(EVENTS)  # every funnel stage occurs
    validate_interactions(interactions.copy(), items)
    assert list(users.columns) == ["user_id", "segment", "signup_time", "region"]
    assert len(users) == 300 and users["user_id"].is_unique
    assert users["user_id"].iloc[17] == "u00017"
    assert users["signup_time"].dtype == np.int64
    assert set(users["segment"]) == {"light", "regular", "heavy"}
    # Latent tastes are not exported.
    assert not any("taste" in c or "latent" in c for c in users.columns)
    assert set(interactions["user_id"]) <= set(users["user_id"])
    assert set(interactions["item_id"]) <= set(items["item_id"])


def test_funnel_mix_is_plausible(medium):
    _, _, interactions = medium
    share = interactions["event"].value_counts(normalize=True)
    assert share["view"] > 0.5
    assert share["view"] > share["click"] > share["cart"]
    assert 0.01 < share["purchase"] < 0.2


def test_no_interaction_before_launch_or_outside_window(small):
    items, _, interactions = small
    launch = assign_launch_times(len(items), seed=7, start_time=START, days=DAYS)
    launch_of = pd.Series(launch, index=items["item_id"])
    ts = interactions["timestamp"].to_numpy()
    assert (ts >= launch_of.loc[interactions["item_id"]].to_numpy()).all()
    assert ts.min() >= START and ts.max() < START + DAYS * 86_400
    # 20 % of items launch during the window, and some of those are interacted with.
    new = launch_of[launch_of >= START]
    assert len(new) == 80
    assert interactions["item_id"].isin(new.index).any()


def test_launch_time_column_is_respected():
    items = make_catalogue(200, seed=3)
    # Half the catalogue launches in the middle of the window.
    mid = START + 60 * 86_400
    items["launch_time"] = np.where(np.arange(200) % 2 == 0, START - 86_400, mid)
    _, interactions = simulate_behaviour(items, list(COLUMNS), 200, seed=1)
    merged = interactions.merge(items[["item_id", "launch_time"]], on="item_id")
    assert (merged["timestamp"] >= merged["launch_time"]).all()
    late = merged["launch_time"] == mid
    assert late.any() and (merged.loc[late, "timestamp"] >= mid).all()


def test_all_items_new_still_works():
    items = make_catalogue(100, seed=4)
    _, interactions = simulate_behaviour(items, list(COLUMNS), 50, seed=2, new_item_fraction=1.0)
    launch = assign_launch_times(100, seed=2, start_time=START, days=DAYS, new_item_fraction=1.0)
    launch_of = pd.Series(launch, index=items["item_id"])
    assert (interactions["timestamp"].to_numpy()
            >= launch_of.loc[interactions["item_id"]].to_numpy()).all()


def test_sessions_are_ordered_and_have_one_row_per_item(small):
    _, _, interactions = small
    assert not interactions.duplicated(["session_id", "item_id"]).any()
    assert (interactions.groupby("session_id")["user_id"].nunique() == 1).all()
    per_session = interactions.groupby("session_id", sort=False)["timestamp"]
    # Rows come sorted by time, so within a session timestamps must strictly increase.
    assert per_session.apply(lambda s: bool((np.diff(s.to_numpy()) > 0).all())).all()
    assert interactions["timestamp"].is_monotonic_increasing


def test_repeats_across_sessions_are_rare_but_possible(medium):
    _, _, interactions = medium
    pairs = interactions.groupby(["user_id", "item_id"]).size()
    assert 0 < (pairs > 1).mean() < 0.1


def test_sessions_per_user_is_long_tailed_with_the_right_mean(medium):
    _, users, interactions = medium
    sessions = interactions.groupby("user_id")["session_id"].nunique()
    assert sessions.min() >= 1
    # Every user has at least one session, nearly all of them leave a row.
    assert len(sessions) >= 0.99 * len(users)
    assert 4.5 < sessions.mean() < 7.5
    rows = interactions["user_id"].value_counts()
    assert rows.quantile(0.95) >= 3 * rows.median()
    assert rows.max() >= 6 * rows.median()


def test_popularity_is_long_tailed(medium):
    items, _, interactions = medium
    counts = interactions["item_id"].value_counts().reindex(items["item_id"], fill_value=0)
    top = np.sort(counts.to_numpy())[::-1][: len(items) // 10]
    assert top.sum() / counts.sum() > 0.4
    # Popularity is a stable item property: first-half counts predict second-half counts.
    halves = interactions["timestamp"] < interactions["timestamp"].median()
    c1 = interactions[halves]["item_id"].value_counts().reindex(items["item_id"], fill_value=0)
    c2 = interactions[~halves]["item_id"].value_counts().reindex(items["item_id"], fill_value=0)
    assert c1.rank().corr(c2.rank()) > 0.4


def _top_value_lift(items, interactions, column, min_rows=10):
    """Share of a user's later interactions with the value they chose most early on,
    divided by that value's share of the catalogue (1.0 = no taste)."""
    merged = interactions.merge(items[["item_id", column]], on="item_id")
    size = merged.groupby("user_id")["user_id"].transform("size")
    merged = merged[size >= min_rows]
    early = merged.groupby("user_id").cumcount() < merged.groupby("user_id")["user_id"].transform("size") / 2
    favourite = merged[early].groupby("user_id")[column].agg(lambda s: s.value_counts().index[0])
    late = merged[~early]
    hit = (late[column] == late["user_id"].map(favourite)).mean()
    base = items[column].value_counts(normalize=True)
    expected = late["user_id"].map(favourite).map(base).mean()
    return hit / expected


@pytest.mark.parametrize("column", ["category", "colour", "material", "style"])
def test_tastes_drive_choices(medium, column):
    items, _, interactions = medium
    # A user's favourite value early on is chosen far more than its base rate later.
    assert _top_value_lift(items, interactions, column) > 1.6


def test_no_taste_signal_for_an_unused_column(medium):
    items, _, interactions = medium
    rng = np.random.default_rng(5)
    items = items.assign(noise=[f"n{v}" for v in rng.integers(0, 12, len(items))])
    assert _top_value_lift(items, interactions, "noise") < 1.25


def test_deeper_events_for_liked_items(medium):
    items, _, interactions = medium
    merged = interactions.merge(items[["item_id", "category"]], on="item_id")
    favourite = merged.groupby("user_id")["category"].agg(lambda s: s.value_counts().index[0])
    liked = merged["category"] == merged["user_id"].map(favourite)
    positive = merged["event"] != "view"
    assert positive[liked].mean() > positive[~liked].mean() + 0.03


def test_works_without_price_and_validates_columns():
    items = make_catalogue(150, price=False)
    users, interactions = simulate_behaviour(items, ["category", "colour"], 40, seed=0)
    assert len(users) == 40 and len(interactions) > 40
    with pytest.raises(ValueError, match="not in items"):
        simulate_behaviour(items, ["category", "fabric"], 10)


def test_scale_twenty_thousand_users():
    items = make_catalogue(3000, seed=9)
    users, interactions = simulate_behaviour(items, list(COLUMNS), 20_000, seed=3)
    assert len(users) == 20_000
    assert users["user_id"].iloc[-1] == "u19999"
    assert len(interactions) > 20_000 * 6
