"""A vectorised simulator of shopping behaviour over any catalogue (for ``synthetic`` and
``fashion``, which has no interactions of its own).

Users have latent, sparse tastes over the attribute columns, a price sensitivity and an
activity level; only observable features (``segment``, ``signup_time``, noise ``region``) are
exported. Utility = weighted tastes (dominant, about 2.3 times the spread of the rest) +
``POPULARITY_WEIGHT`` * long-tailed log-popularity - price sensitivity * z(log price), so
content predicts preference, also for new items. Sessions view items drawn from softmax(utility)
among those launched by then; each viewed item goes down the funnel (click, cart, purchase)
with probabilities rising with the user's affinity. One row per (session, item) carries the
deepest stage, so no cart row gives a purchase away across a split. Same inputs and seed ->
byte-identical tables.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

__all__ = ["COLUMN_WEIGHT", "POPULARITY_WEIGHT", "assign_launch_times", "simulate_behaviour"]

DAY = 86_400
#: Weight of the (standard normal) log-popularity in the utility.
POPULARITY_WEIGHT = 1.1
#: Weight of each attribute column's taste term in the utility (default 1.0).
COLUMN_WEIGHT = 1.0
#: Dirichlet concentration of the per-column tastes: small = few liked values.
TASTE_CONCENTRATION = 0.35
#: Fraction of cross-session repeats (same user, same item) that are kept.
REPEAT_KEEP = 0.1
#: Mean number of draws per session beyond the first (Poisson).
EXTRA_VIEWS_PER_SESSION = 3.5
#: Standard deviation of the lognormal activity level.
ACTIVITY_SIGMA = 1.0

# Independent random streams: changing how one part is drawn does not shift the others.
_STREAM_LAUNCH, _STREAM_POPULARITY, _STREAM_USERS, _STREAM_SESSIONS = range(4)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 7919, stream])


def assign_launch_times(n_items: int, *, seed: int = 42, start_time: int = 1_700_000_000,
                        days: int = 120, new_item_fraction: float = 0.2) -> np.ndarray:
    """Launch time (int64 unix seconds) per item: ``new_item_fraction`` of them launch
    uniformly in the window, the rest up to two years before ``start_time``. The same array
    :func:`simulate_behaviour` uses when ``launch_time`` is absent."""
    rng = _rng(seed, _STREAM_LAUNCH)
    window = int(days) * DAY
    old = start_time - rng.integers(0, 730 * DAY, size=n_items)
    new = start_time + rng.integers(0, max(window, 1), size=n_items)
    n_new = round(float(np.clip(new_item_fraction, 0.0, 1.0)) * n_items)
    is_new = np.zeros(n_items, dtype=bool)
    is_new[rng.permutation(n_items)[:n_new]] = True
    return np.where(is_new, new, old).astype(np.int64)


def _popularity(seed: int, n_items: int) -> np.ndarray:
    """Latent log-popularity per item: right-skewed (a few hits, a long tail)."""
    prng = _rng(seed, _STREAM_POPULARITY)
    # Exp(1) log-popularity is Zipf-like (popularity ~ rank^-w); the normal
    # part blurs the ranks and the cap keeps a single hit from dominating.
    raw = np.minimum(prng.exponential(1.0, n_items), 6.0) + 0.5 * prng.standard_normal(n_items)
    return (raw - raw.mean()) / (raw.std() + 1e-9)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_behaviour(
    items: pd.DataFrame, attribute_columns: list[str], n_users: int, *, seed: int = 42,
    start_time: int = 1_700_000_000, days: int = 120, sessions_per_user: float = 6.0,
    new_item_fraction: float = 0.2,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate users and their shopping sessions over a catalogue.

    ``items`` needs ``item_id`` and the ``attribute_columns`` (users' tastes are over those);
    ``price`` and ``launch_time`` are used when present. The window is ``days`` from
    ``start_time`` (unix seconds). Returns ``(users, interactions)``: users with ``user_id``,
    ``segment``, ``signup_time``, ``region``; interactions sorted by time with ``user_id``,
    ``item_id``, ``timestamp`` (int64, increasing within a session), ``event``, ``session_id``.
    """
    n_items = len(items)
    if n_items == 0:
        raise ValueError("simulate_behaviour needs at least one item")
    if n_users < 1:
        raise ValueError("simulate_behaviour needs at least one user")
    missing = [c for c in attribute_columns if c not in items.columns]
    if missing:
        raise ValueError(f"attribute column(s) {missing} not in items; found {list(items.columns)}")
    item_ids = items["item_id"].astype(str).to_numpy()
    end_time = int(start_time) + int(days) * DAY

    launch = (items["launch_time"].to_numpy(dtype=np.int64) if "launch_time" in items.columns
              else assign_launch_times(n_items, seed=seed, start_time=start_time, days=days,
                                       new_item_fraction=new_item_fraction))
    log_pop = _popularity(seed, n_items)
    # Items sorted by launch: the items available at time t are a prefix.
    launch_order = np.argsort(launch, kind="stable")
    launch_sorted = launch[launch_order]

    # sort=True: codes do not depend on the order values first appear in.
    factorized = [pd.factorize(items[c].astype(str).to_numpy(), sort=True)
                  for c in attribute_columns]
    codes = [code.astype(np.int64) for code, _ in factorized]
    n_values = [len(uniques) for _, uniques in factorized]

    price_z = None
    if "price" in items.columns:
        log_price = np.log(np.maximum(pd.to_numeric(items["price"], errors="coerce")
                                      .fillna(1.0).to_numpy(dtype=float), 0.01))
        price_z = (log_price - log_price.mean()) / (log_price.std() + 1e-9)

    # Users: latent tastes, activity, sign-up.
    urng = _rng(seed, _STREAM_USERS)
    tastes = []
    for k in n_values:
        p = urng.dirichlet(np.full(k, TASTE_CONCENTRATION), size=n_users)
        # log keeps a liked value far above the rest; the floor bounds dislike.
        t = np.log(p + 0.15 / k)
        tastes.append((t - t.mean(axis=1, keepdims=True)).astype(np.float32))
    importance = urng.gamma(4.0, 0.25, size=(n_users, len(attribute_columns))).astype(np.float32)
    # Keep the taste spread (~2.5 sd over the items) comparable whatever the number of columns.
    column_scale = COLUMN_WEIGHT * 0.85 / np.sqrt(max(len(attribute_columns), 1) / 6.0)
    price_sens = (urng.normal(0.4, 0.4, size=n_users) if price_z is not None
                  else np.zeros(n_users))
    activity = urng.lognormal(-ACTIVITY_SIGMA**2 / 2, ACTIVITY_SIGMA, size=n_users)
    n_sessions = 1 + urng.poisson(activity * max(float(sessions_per_user) - 1.0, 0.0))
    signup = np.where(
        urng.random(n_users) < 0.3,  # joins during the window
        start_time + (urng.random(n_users) * 0.8 * (end_time - start_time)).astype(np.int64),
        start_time - urng.integers(0, 1000 * DAY, size=n_users),
    ).astype(np.int64)
    region = urng.choice(np.array(["north", "south", "east", "west", "central"]), size=n_users)
    tier_cut = np.quantile(activity, [0.5, 0.9])
    segment = np.where(activity >= tier_cut[1], "heavy",
                       np.where(activity >= tier_cut[0], "regular", "light"))

    # Sessions, and the items viewed in them.
    srng = _rng(seed, _STREAM_SESSIONS)
    n_total = int(n_sessions.sum())
    sess_user = np.repeat(np.arange(n_users), n_sessions)
    first = np.maximum(signup, start_time)[sess_user]
    sess_start = first + (srng.random(n_total) * (end_time - 3600 - first).clip(1)).astype(np.int64)
    # Never before the very first launch (only matters if every item is new).
    sess_start = np.maximum(sess_start, launch_sorted[0])
    order = np.lexsort((sess_start, sess_user))
    sess_user, sess_start = sess_user[order], sess_start[order]
    n_avail = np.searchsorted(launch_sorted, sess_start, side="right")
    n_draws = 1 + srng.poisson(EXTRA_VIEWS_PER_SESSION, size=n_total)

    draw_session = np.repeat(np.arange(n_total), n_draws)
    draw_item = np.empty(len(draw_session), dtype=np.int64)
    draw_affinity = np.empty(len(draw_session), dtype=np.float64)
    uniforms = srng.random(len(draw_session))
    draw_user = sess_user[draw_session]
    draw_avail = n_avail[draw_session]

    # Users go in chunks, since the dense (users x items) utility matrix bounds memory.
    # Draws are sorted by user (sessions are), so each chunk of users is a slice of draws.
    chunk = int(max(1, 4_000_000 // n_items))
    bounds = np.searchsorted(draw_user, np.arange(0, n_users + chunk, chunk))
    for c0, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi <= lo:
            continue
        u0, u1 = c0 * chunk, min(c0 * chunk + chunk, n_users)
        affinity = np.zeros((u1 - u0, n_items), dtype=np.float32)
        for j, (code, taste) in enumerate(zip(codes, tastes)):
            affinity += (importance[u0:u1, j:j + 1] * column_scale) * taste[u0:u1][:, code]
        if price_z is not None:
            affinity -= price_sens[u0:u1, None].astype(np.float32) * price_z.astype(np.float32)
        # Affinity standardised per user drives the funnel depth.
        mean = affinity.mean(axis=1, keepdims=True)
        std = affinity.std(axis=1, keepdims=True) + 1e-6
        utility = affinity + np.float32(POPULARITY_WEIGHT) * log_pop.astype(np.float32)
        utility = utility[:, launch_order].astype(np.float64)
        utility -= utility.max(axis=1, keepdims=True)
        prob = np.exp(utility)
        prob /= prob.sum(axis=1, keepdims=True)
        # One global cumsum over the chunk: row r occupies (r, r + 1].
        flat = np.cumsum(prob.ravel())
        rows = draw_user[lo:hi] - u0
        avail = draw_avail[lo:hi]
        row_start = rows * n_items
        base = np.where(row_start > 0, flat[np.maximum(row_start - 1, 0)], 0.0)
        prefix_mass = flat[row_start + avail - 1] - base
        target = base + uniforms[lo:hi] * prefix_mass
        pos = np.searchsorted(flat, target, side="right")
        pos = np.clip(pos, row_start, row_start + avail - 1) - row_start
        item = launch_order[pos]
        draw_item[lo:hi] = item
        draw_affinity[lo:hi] = (affinity[rows, item] - mean[rows, 0]) / std[rows, 0]

    # One row per (session, item); rare cross-session repeats.
    kept = np.flatnonzero(~pd.DataFrame({"s": draw_session, "i": draw_item}).duplicated())
    repeat = pd.DataFrame({"u": draw_user[kept], "i": draw_item[kept]}).duplicated().to_numpy()
    kept = kept[~repeat | (srng.random(len(repeat)) < REPEAT_KEEP)]
    row_session, row_item, row_aff = draw_session[kept], draw_item[kept], draw_affinity[kept]
    row_user = sess_user[row_session]

    # Funnel: deeper stages are more likely for items the user likes.
    n_rows = len(row_session)
    funnel = srng.random((n_rows, 3))
    clicked = funnel[:, 0] < _sigmoid(-3.0 + 1.2 * row_aff)
    carted = clicked & (funnel[:, 1] < _sigmoid(-2.0 + 0.8 * row_aff))
    bought = carted & (funnel[:, 2] < _sigmoid(-1.0 + 0.6 * row_aff))
    depth = clicked.astype(np.int64) + carted + bought
    events = np.array(["view", "click", "cart", "purchase"])[depth]

    # Timestamps strictly increasing within a session.
    gaps = 15 + srng.exponential(70.0, size=n_rows).astype(np.int64)
    new_session = np.r_[True, row_session[1:] != row_session[:-1]]
    cum = np.cumsum(gaps)
    # Offset of each row from its session start: cumsum restarted per session.
    session_base = np.maximum.accumulate(np.where(new_session, cum - gaps, 0))
    offset = cum - gaps - session_base
    timestamp = sess_start[row_session] + offset

    uw, sw = max(5, len(str(n_users - 1))), max(7, len(str(n_total - 1)))
    user_ids = np.array([f"u{u:0{uw}d}" for u in range(n_users)])
    interactions = pd.DataFrame({
        "user_id": user_ids[row_user],
        "item_id": item_ids[row_item],
        "timestamp": timestamp.astype(np.int64),
        "event": events,
        "session_id": np.char.add("s", np.char.zfill(row_session.astype(str), sw)),
    })
    order = np.lexsort((row_session, timestamp))
    interactions = interactions.iloc[order].reset_index(drop=True)
    users = pd.DataFrame({"user_id": user_ids, "segment": segment, "signup_time": signup,
                          "region": region})
    return users, interactions
