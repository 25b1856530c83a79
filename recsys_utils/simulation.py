"""A generic, vectorised simulator of shopping behaviour over any catalogue.

Used by :mod:`recsys_utils.synthetic` (the embedded default world) and for the
``fashion`` catalogue, which comes without interactions of its own.

What is simulated
-----------------
* **Items** get a launch time and a latent, long-tailed base popularity, both
  fixed by the seed. ``1 - new_item_fraction`` of the items exist before the
  window starts (launch time up to two years earlier); the rest are launched
  uniformly over the window. An item is never interacted with before its
  launch. :func:`assign_launch_times` reproduces the launch times, so a caller
  can put them into the items table (``launch_time``); if the items table
  already has a ``launch_time`` column, it is used as is.
* **Users** have latent tastes: for each attribute column a sparse preference
  vector over its values (Dirichlet with a small concentration, so a user likes
  a few values and ignores the rest), a per-user importance of each column, a
  price sensitivity (only when ``price`` exists) and a long-tailed activity
  level. The latent variables are NOT exported: the users table holds only
  observable features (``segment`` - a loyalty tier derived from activity,
  ``signup_time`` and ``region``, which is pure noise), so models cannot cheat.
* **Utility** of item *i* for user *u*::

      U(u, i) = sum_c w_c * imp(u, c) * taste_c(u, value_c(i))   # attributes, dominant
              + POPULARITY_WEIGHT * log_popularity(i)              # second
              - sens(u) * z(log price(i))                           # if price exists

  ``log_popularity`` is right-skewed (Zipf-like: a few hits, a long tail) and
  standardised. Over the catalogue the taste part has about 2.3 times the
  standard deviation of the popularity part (about 2.5 vs 1.1 with six or
  seven attribute columns), so content (attributes) predicts preference, also
  for new items, which have no history; popularity comes second.
* **Sessions** (a long-tailed number per user, at least 1) are spread
  uniformly over the window after the user's sign-up. In a session the user
  views a few items drawn from softmax(U) among the items launched by then
  (sampling with replacement; repeated draws collapse). Each viewed item then
  goes down the funnel click -> cart -> purchase with probabilities rising with
  the user's affinity (the taste and price part of U, standardised per user).
* **One row per (session, item)** with ``event`` = the deepest stage reached.
  Emitting view, click and cart rows for the same item in the same session
  would let a model trivially "predict" the purchase from the cart row when
  the rows fall on both sides of a split; one row per (session, item) avoids
  that leakage. Re-interacting with an item seen in an earlier session is
  kept rare (most such repeats are dropped) but possible.

Everything uses ``np.random.default_rng`` streams derived from ``seed``; the
same inputs and seed give byte-identical tables.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

__all__ = [
    "COLUMN_WEIGHT",
    "POPULARITY_WEIGHT",
    "assign_launch_times",
    "simulate_behaviour",
]

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

# Independent random streams: changing how one part is drawn does not shift
# the others (and assign_launch_times reproduces the simulator's launch times).
_STREAM_LAUNCH, _STREAM_POPULARITY, _STREAM_USERS, _STREAM_SESSIONS = range(4)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 7919, stream])


def _id_width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n - 1, 0))))


def assign_launch_times(
    n_items: int,
    *,
    seed: int = 42,
    start_time: int = 1_700_000_000,
    days: int = 120,
    new_item_fraction: float = 0.2,
) -> np.ndarray:
    """Launch time (int64 unix seconds) for each of ``n_items`` items, in order.

    ``round(new_item_fraction * n_items)`` items (chosen at random) launch
    uniformly over ``[start_time, start_time + days)``; the others launched up
    to two years before ``start_time``. Same arguments -> same array, and the
    same array :func:`simulate_behaviour` uses when ``launch_time`` is absent.
    """
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
    items: pd.DataFrame,
    attribute_columns: list[str],
    n_users: int,
    *,
    seed: int = 42,
    start_time: int = 1_700_000_000,
    days: int = 120,
    sessions_per_user: float = 6.0,
    new_item_fraction: float = 0.2,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate users and their shopping sessions over a catalogue.

    Args:
        items: the one-schema items table (n_items rows). Uses ``item_id``, the
            ``attribute_columns``, ``price`` if present and ``launch_time`` if
            present (otherwise :func:`assign_launch_times` is used).
        attribute_columns: categorical columns users have tastes over, e.g.
            ``["category", "colour", "material", "style", "pattern", "gender"]``.
        n_users: number of users to simulate.
        seed: fixes everything; same inputs and seed -> identical tables.
        start_time: window start, unix seconds.
        days: window length in days.
        sessions_per_user: mean number of sessions per user; per user it is
            ``1 + Poisson(activity * (mean - 1))`` with lognormal activity.
        new_item_fraction: share of items launched during the window.

    Returns:
        ``(users, interactions)``.

        * users (n_users rows): ``user_id`` (str, ``"u00017"``), ``segment``
          (``"light"``/``"regular"``/``"heavy"``, a loyalty tier from the
          latent activity), ``signup_time`` (int64), ``region`` (str, noise).
        * interactions (one row per (session, item), sorted by time):
          ``user_id``, ``item_id`` (str), ``timestamp`` (int64 seconds,
          strictly increasing within a session), ``event`` (deepest funnel
          stage: ``view``/``click``/``cart``/``purchase``), ``session_id``
          (str, ``"s0000042"``).
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

    # ---- items: launch times and latent popularity ---------------------------
    if "launch_time" in items.columns:
        launch = items["launch_time"].to_numpy(dtype=np.int64)
    else:
        launch = assign_launch_times(
            n_items, seed=seed, start_time=start_time, days=days,
            new_item_fraction=new_item_fraction,
        )
    log_pop = _popularity(seed, n_items)
    # Items sorted by launch: the items available at time t are a prefix.
    launch_order = np.argsort(launch, kind="stable")
    launch_sorted = launch[launch_order]

    # sort=True: codes do not depend on the order values first appear in.
    codes, n_values = [], []
    for column in attribute_columns:
        values = items[column].astype(str).to_numpy()
        code, uniques = pd.factorize(values, sort=True)
        codes.append(code.astype(np.int64))
        n_values.append(len(uniques))

    if "price" in items.columns:
        log_price = np.log(np.maximum(pd.to_numeric(items["price"], errors="coerce")
                                      .fillna(1.0).to_numpy(dtype=float), 0.01))
        price_z = (log_price - log_price.mean()) / (log_price.std() + 1e-9)
    else:
        price_z = None

    # ---- users: latent tastes, activity, sign-up -----------------------------
    urng = _rng(seed, _STREAM_USERS)
    tastes = []
    for k in n_values:
        p = urng.dirichlet(np.full(k, TASTE_CONCENTRATION), size=n_users)
        # log keeps a liked value far above the rest; the floor bounds dislike.
        t = np.log(p + 0.15 / k)
        tastes.append((t - t.mean(axis=1, keepdims=True)).astype(np.float32))
    importance = urng.gamma(4.0, 0.25, size=(n_users, len(attribute_columns))).astype(np.float32)
    # The taste log-scale spans a few units per column; scale so that the sum
    # over columns stays comparable across catalogues with different numbers
    # of columns (taste spread ~2.5 standard deviations over the items).
    column_scale = COLUMN_WEIGHT * 0.85 / np.sqrt(max(len(attribute_columns), 1) / 6.0)
    price_sens = (urng.normal(0.4, 0.4, size=n_users) if price_z is not None
                  else np.zeros(n_users))
    activity = urng.lognormal(-ACTIVITY_SIGMA**2 / 2, ACTIVITY_SIGMA, size=n_users)
    extra_sessions = max(float(sessions_per_user) - 1.0, 0.0)
    n_sessions = 1 + urng.poisson(activity * extra_sessions)
    joins_late = urng.random(n_users) < 0.3
    signup = np.where(
        joins_late,
        start_time + (urng.random(n_users) * 0.8 * (end_time - start_time)).astype(np.int64),
        start_time - urng.integers(0, 1000 * DAY, size=n_users),
    ).astype(np.int64)
    region = urng.choice(np.array(["north", "south", "east", "west", "central"]), size=n_users)
    tier_cut = np.quantile(activity, [0.5, 0.9])
    segment = np.where(activity >= tier_cut[1], "heavy",
                       np.where(activity >= tier_cut[0], "regular", "light"))

    # ---- sessions ------------------------------------------------------------
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

    # Users are processed in chunks: the dense (users x items) utility matrix
    # is the memory bottleneck.
    chunk = int(max(1, 4_000_000 // n_items))
    # Draws are sorted by user (sessions are), so each chunk is a slice.
    bounds = np.searchsorted(draw_user, np.arange(0, n_users + chunk, chunk))
    for c0, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        u0 = c0 * chunk
        u1 = min(u0 + chunk, n_users)
        if u0 >= n_users:
            break
        m = u1 - u0
        affinity = np.zeros((m, n_items), dtype=np.float32)
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
        if hi <= lo:
            continue
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

    # ---- one row per (session, item); rare cross-session repeats -------------
    keep = ~pd.DataFrame({"s": draw_session, "i": draw_item}).duplicated().to_numpy()
    row_session, row_item, row_aff = draw_session[keep], draw_item[keep], draw_affinity[keep]
    row_user = sess_user[row_session]
    repeat = pd.DataFrame({"u": row_user, "i": row_item}).duplicated().to_numpy()
    keep = ~repeat | (srng.random(len(repeat)) < REPEAT_KEEP)
    row_session, row_item, row_aff, row_user = (
        row_session[keep], row_item[keep], row_aff[keep], row_user[keep])

    # ---- funnel: deeper stages more likely for items the user likes ----------
    n_rows = len(row_session)
    funnel = srng.random((n_rows, 3))
    clicked = funnel[:, 0] < _sigmoid(-3.0 + 1.2 * row_aff)
    carted = clicked & (funnel[:, 1] < _sigmoid(-2.0 + 0.8 * row_aff))
    bought = carted & (funnel[:, 2] < _sigmoid(-1.0 + 0.6 * row_aff))
    depth = clicked.astype(np.int64) + carted + bought
    events = np.array(["view", "click", "cart", "purchase"])[depth]

    # ---- timestamps: strictly increasing within a session --------------------
    gaps = 15 + srng.exponential(70.0, size=n_rows).astype(np.int64)
    new_session = np.r_[True, row_session[1:] != row_session[:-1]]
    cum = np.cumsum(gaps)
    # Offset of each row from its session start: cumsum restarted per session.
    session_base = np.maximum.accumulate(np.where(new_session, cum - gaps, 0))
    offset = cum - gaps - session_base
    timestamp = sess_start[row_session] + offset

    uw = _id_width(n_users, 5)
    sw = _id_width(n_total, 7)
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
    users = pd.DataFrame({
        "user_id": user_ids,
        "segment": segment,
        "signup_time": signup,
        "region": region,
    })
    return users, interactions
