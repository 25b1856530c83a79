"""Notebook 04's reference recommenders: EASE, item-kNN, BPR and content profiles, each a
:class:`Baseline`, a factorised scorer :func:`~recsys_utils.retrieval.evaluate_retrieval`
ranks exactly like a model; hyper-parameters are chosen on validation users (:func:`tune`)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse

from . import retrieval
from .features import RecData, check_item_content, hold_out_new_items, item_attribute_matrix
from .metrics import unit_rows
from .schema import DataError
from .synthetic import TRUTH_COLUMNS

__all__ = ["Baseline", "DEFAULT_GRIDS", "bpr", "content_profile", "content_regression",
           "content_regression_map", "ease", "fit_baselines", "item_knn",
           "oracle_content", "tune"]


@dataclasses.dataclass
class Baseline:
    """A fitted reference recommender: ``users`` ``(n_users, d)`` (dense or CSR; row 0 = the
    unknown user) and float32 ``items`` ``(n_items, d)``. ``train_seconds`` times the chosen
    setting's fit; ``config`` holds hyper-parameters (and ``tuning_seconds``), ``tuning``
    the validation grid, one row per setting, when tuned."""

    variant: str
    users: np.ndarray | scipy.sparse.csr_matrix
    items: np.ndarray
    train_seconds: float
    examples_per_second: float
    config: dict[str, Any]
    tuning: pd.DataFrame | None = None

    def query_embeddings(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        rows = self.users[np.asarray(features["user"], dtype=np.int64)]
        rows = rows.toarray() if scipy.sparse.issparse(rows) else rows
        return np.asarray(rows, dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        return self.items


def _train_matrix(data: RecData) -> scipy.sparse.csr_matrix:
    matrix = data.train_matrix
    if matrix is None or matrix.nnz == 0:
        raise DataError("the training matrix is empty: a baseline needs training interactions")
    return scipy.sparse.csr_matrix(matrix, dtype=np.float32)


def _finish(variant: str, data: RecData, users: Any, items: np.ndarray, start: float,
            config: dict[str, Any]) -> Baseline:
    seconds = time.perf_counter() - start
    return Baseline(variant, users, np.asarray(items, np.float32), seconds,
                    data.train_matrix.nnz / max(seconds, 1e-9), config)


def ease(data: RecData, l2: float = 500.0) -> Baseline:
    """EASE (Steck 2019): ``B = -P / diag(P)``, ``diag(B) = 0``, ``P = (XᵀX + λI)⁻¹``;
    score ``X_u · B[:, i]``. Dense ``(n_items, n_items)``: fine up to ~10k items."""
    start = time.perf_counter()
    x = _train_matrix(data)
    gram = (x.T @ x).toarray().astype(np.float64)  # float64 for the solve
    gram[np.diag_indices_from(gram)] += l2
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    b = (p / -np.diag(p)[None, :]).astype(np.float32)  # column j divided by P_jj
    del p
    np.fill_diagonal(b, 0.0)  # an item may not explain itself
    return _finish("ease", data, x, b.T, start, {"l2": float(l2)})


def item_knn(data: RecData, k: int = 100, shrink: float = 10.0) -> Baseline:
    """Item-item cosine kNN, score ``X_u · S[:, i]``: ``S_ij = x_i · x_j / (|x_i| |x_j| +
    shrink)`` (shrinkage damps similarities resting on few co-occurrences), zero diagonal,
    the ``k`` largest of each column kept."""
    if k < 1:
        raise DataError(f"item_knn needs k >= 1, got {k}")
    start = time.perf_counter()
    x = _train_matrix(data)
    sim = (x.T @ x).toarray()
    norms = np.sqrt(np.diag(sim)).astype(np.float32)
    sim /= np.maximum(norms[:, None] * norms[None, :] + shrink, 1e-12)
    np.fill_diagonal(sim, 0.0)
    n = sim.shape[0]
    if k < n:
        for lo in range(0, n, 1024):  # column blocks keep the argpartition buffer small
            block = sim[:, lo:lo + 1024]
            drop = np.argpartition(-block, k, axis=0)[k:]
            np.put_along_axis(block, drop, 0.0, axis=0)
    return _finish("item_knn", data, x, sim.T, start, {"k": int(k), "shrink": float(shrink)})


def bpr(data: RecData, factors: int = 64, learning_rate: float = 0.05,
        lambda_reg: float = 0.01, max_iter: int = 100, seed: int = 42) -> Baseline:
    """Bayesian personalised ranking, ``cornac.models.BPR`` (seeded: one thread).

    Query ``[u, 1]``, item ``[v, b]``: the dot product is cornac's ``u · v + b``. Users and items
    cornac never saw get zero factors, items the lowest bias (below every trained one)."""
    import cornac  # only this baseline needs it
    start = time.perf_counter()
    x = _train_matrix(data).tocoo()
    triples = list(zip(x.row.tolist(), x.col.tolist(), [1.0] * x.nnz))
    train = cornac.data.Dataset.from_uir(triples, seed=seed)
    model = cornac.models.BPR(k=factors, max_iter=max_iter, learning_rate=learning_rate,
                              lambda_reg=lambda_reg, seed=seed, verbose=False)
    model.fit(train)
    # cornac renumbers users and items in order of appearance: map back to ours.
    ours_u, theirs_u = map(np.asarray, zip(*train.uid_map.items()))
    ours_i, theirs_i = map(np.asarray, zip(*train.iid_map.items()))
    users = np.zeros((data.n_users, factors + 1), np.float32)
    users[ours_u, :factors] = model.u_factors[theirs_u]
    users[:, factors] = 1.0
    items = np.zeros((data.n_items, factors + 1), np.float32)
    items[:, factors] = float(np.min(model.i_biases))
    items[ours_i, :factors] = model.i_factors[theirs_i]
    items[ours_i, factors] = model.i_biases[theirs_i]
    config = {"factors": int(factors), "learning_rate": float(learning_rate),
              "lambda_reg": float(lambda_reg), "max_iter": int(max_iter), "seed": seed}
    return _finish("bpr", data, users, items, start, config)


def content_profile(data: RecData, content: np.ndarray, *, variant: str = "content_profile"
                    ) -> Baseline:
    """Training-free content baseline: user = mean of their training items' L2-normalised
    ``content`` rows ``(n_items, d)``. No item id is read, so cold items score like warm
    ones: the bar for a cold-start content tower."""
    content = check_item_content(content, data.n_items, "content")
    start = time.perf_counter()
    x = _train_matrix(data)
    items = unit_rows(content)
    counts = np.asarray(x.sum(axis=1)).ravel()
    users = np.asarray(x @ items) / np.maximum(counts, 1.0)[:, None]
    return _finish(variant, data, users.astype(np.float32), items, start,
                   {"content_dim": int(content.shape[1])})


def content_regression_map(train_matrix: Any, rows: np.ndarray, l2: float) -> np.ndarray:
    """``(d, d)`` float32 ``W``: the ridge regression from a user's mean item row to the rows of
    the items they take. ``rows`` ``(n_items, d)`` (unit content); ``A`` ``(n_users, d)`` the
    users' mean rows over ``train_matrix`` ``X`` ``(n_users, n_items)``; ``W`` minimises
    ``||X_w - A W R_wᵀ||²`` over the items with interactions (``w``), ridge ``l2`` on both
    sides relative to the mean diagonal of ``AᵀA`` and ``R_wᵀR_w`` (scale free):
    ``W = (AᵀA + l2·a·I)⁻¹ Aᵀ X R (R_wᵀR_w + l2·r·I)⁻¹``. Scores ``A W rᵢᵀ`` need only item
    ``i``'s content, so new items score like old ones."""
    if not l2 > 0:
        raise DataError(f"the content regression's l2 must be > 0, got {l2}")
    x = scipy.sparse.csr_matrix(train_matrix, dtype=np.float64)
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[0] != x.shape[1]:
        raise DataError(f"content rows {rows.shape} do not match the training matrix's "
                        f"{x.shape[1]} items")
    taken = np.asarray(x @ rows)  # (n_users, d): sum of each user's item rows
    users = taken / np.maximum(np.asarray(x.sum(axis=1)), 1.0)
    warm = rows[np.asarray(x.sum(axis=0)).ravel() > 0]
    user_gram, item_gram = users.T @ users, warm.T @ warm
    eye = np.eye(rows.shape[1])
    left = np.linalg.solve(user_gram + l2 * np.trace(user_gram) / len(eye) * eye, users.T @ taken)
    right = np.linalg.inv(item_gram + l2 * np.trace(item_gram) / len(eye) * eye)
    return (left @ right).astype(np.float32)


def content_regression(data: RecData, content: np.ndarray, l2: float = 0.01, *,
                       variant: str = "content_regression") -> Baseline:
    """Closed-form content model: the content profile through :func:`content_regression_map`
    (users = mean unit row x ``W``, items = unit rows), which learns from the training matrix
    which content directions predict what users take. Like the profile it reads no item id."""
    start = time.perf_counter()
    profile = content_profile(data, content)
    users = profile.users @ content_regression_map(data.train_matrix, profile.items, l2)
    return _finish(variant, data, users, profile.items, start, {"l2": float(l2)})


def oracle_content(prepared: Any, content: np.ndarray) -> np.ndarray:
    """``content`` next to one-hot codes of the planted truth columns
    (:data:`~recsys_utils.synthetic.TRUTH_COLUMNS`): an upper reference for
    content models, ``(n_items, d + t)`` float32. Synthetic data only."""
    if missing := [c for c in TRUTH_COLUMNS if c not in prepared.items.columns]:
        raise DataError(f"the oracle needs the synthetic world's planted truth columns "
                        f"{TRUTH_COLUMNS}; the items table lacks {missing} (only the synthetic "
                        "data set has them)", source="items")
    content = check_item_content(content, len(prepared.items), "content")
    truth, _ = item_attribute_matrix(prepared.items, TRUTH_COLUMNS)
    return np.concatenate([content, truth], axis=1)


BUILDERS: dict[str, Callable[..., Baseline]] = {"ease": ease, "item_knn": item_knn, "bpr": bpr}
#: What :func:`tune` fits: the behaviour references and the content regression (``content=``).
_TUNABLE = {**BUILDERS, "content_regression": content_regression}

#: Small validation grids (BPR: each setting well under a minute on 3k x 3k x 50k, 1 core).
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "ease": [{"l2": v} for v in (10, 50, 100, 250, 500, 1000, 2500)],
    "item_knn": [{"k": k, "shrink": s} for k, s in itertools.product((20, 50, 100, 200, 500),
                                                                      (0, 10))],
    # Larger / longer BPR kept winning on the synthetic world's validation users.
    "bpr": [{"factors": f, "learning_rate": 0.05, "lambda_reg": reg, "max_iter": it}
            for f, reg, it in ((64, 0.01, 100), (128, 0.01, 200), (128, 0.01, 400),
                               (256, 0.01, 400), (256, 0.001, 400))],
    "content_regression": [{"l2": v} for v in (0.003, 0.01, 0.03, 0.1, 0.3)],
}


def tune(name: str, data: RecData, grid: Sequence[Mapping[str, Any]] | None = None, *,
         metric: str = "ndcg@10", split: str = "validation", **fixed: Any
         ) -> tuple[Baseline, pd.DataFrame]:
    """Fit ``name`` (``ease``, ``item_knn``, ``bpr``, ``content_regression``) at every ``grid``
    setting (default :data:`DEFAULT_GRIDS`) plus the ``fixed`` arguments (``content=`` for the
    content regression); keep the first best on ``split`` (never a test split) by ``metric``,
    a key of ``evaluate_retrieval``'s output.
    Returns ``(best, table)``: ``best.config["tuning_seconds"]`` is the whole grid's time;
    ``table`` one row per setting with its metric and fit seconds."""
    if name not in _TUNABLE:
        raise DataError(f"unknown baseline {name!r}; choose from {sorted(_TUNABLE)}")
    if split.startswith("test"):
        raise DataError(f"hyper-parameters are tuned on validation users, not on {split!r}")
    grid = list(DEFAULT_GRIDS[name] if grid is None else grid)
    if not grid:
        raise DataError(f"the grid for {name!r} is empty")
    k = int(metric.split("@")[1]) if "@" in metric else 10
    start, rows, best, best_value = time.perf_counter(), [], None, -np.inf
    for params in grid:
        candidate = _TUNABLE[name](data, **fixed, **params)
        scores = retrieval.evaluate_retrieval(candidate, data, split, ks=(k,))
        if metric not in scores:
            raise DataError(f"unknown metric {metric!r}; have {sorted(scores)}")
        value = float(scores[metric])
        rows.append({**params, metric: value, "train_seconds": candidate.train_seconds})
        if value > best_value:  # strict: the first of equal settings wins
            best, best_value = candidate, value
    best.config["tuning_seconds"] = time.perf_counter() - start
    best.config[f"{split}_{metric}"] = best_value
    best.tuning = pd.DataFrame(rows)
    return best, best.tuning


def fit_baselines(data: RecData, content: np.ndarray | None = None,
                  oracle: np.ndarray | None = None, *,
                  grids: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                  seed: int = 42, metric: str = "ndcg@10", held_out: RecData | None = None
                  ) -> dict[str, Baseline]:
    """Every reference, tuned on validation users: ``{"ease", "item_knn", "bpr"}``, plus
    ``"content_profile"`` and ``"content_regression"`` given ``(n_items, d)`` ``content`` and
    ``"oracle"`` given ``oracle`` content (:func:`oracle_content`). ``grids`` replace
    :data:`DEFAULT_GRIDS`. The content regression's ridge is chosen on validation Recall@50
    of items it did not see (``held_out``: :func:`.features.hold_out_new_items` of ``data``,
    built here when not given), the metric and the items it is the reference for."""
    grids = dict(grids or {})
    if unknown := sorted(set(grids) - set(_TUNABLE)):
        raise DataError(f"unknown baseline {unknown[0]!r} in grids; "
                        f"choose from {sorted(_TUNABLE)}")
    _train_matrix(data)  # fail before any fitting
    profiles = {name: check_item_content(c, data.n_items, what) for name, c, what in (
        ("content_profile", content, "content"), ("oracle", oracle, "oracle content"))
        if c is not None}
    out = {name: tune(name, data, grids.get(name), metric=metric,
                      **({"seed": seed} if name == "bpr" else {}))[0] for name in BUILDERS}
    out.update({name: content_profile(data, c, variant=name) for name, c in profiles.items()})
    if content is not None:
        # Its ridge is chosen on items the map did not see, as new items are.
        held_out = held_out if held_out is not None else hold_out_new_items(data, seed=seed)
        best, table = tune("content_regression", held_out,
                           grids.get("content_regression"), metric="recall@50",
                           split="validation_new", content=profiles["content_profile"])
        refit = content_regression(data, profiles["content_profile"], best.config["l2"])
        refit.config.update({"tuning_seconds": best.config["tuning_seconds"],
                             "validation_recall@50": best.config["validation_new_recall@50"]},
                            validated_on="held-out items")
        refit.tuning = table
        out["content_regression"] = refit
    return out
