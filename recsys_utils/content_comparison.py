"""Notebook 03's experiment: which item representation finds similar items best?

* :func:`content_task`: what the content model of a data set predicts (the
  labels), what makes two items relevant to each other, and which attribute
  columns may be inputs (:data:`CONTENT_TASKS`; columns that give a label away
  are left out), with :func:`encode_attributes` and :func:`price_bands`;
* :func:`holdout_items`: the items the models never train on (every
  cold-start item plus a seeded draw);
* :func:`compare_content_models`: every single modality and every fusion
  trained alike (:func:`recsys_utils.content_model.fit_content_model`) and
  scored on the held-out items (:func:`recsys_utils.content_metrics.content_retrieval_metrics`);
* :func:`modality_weight_table` and :func:`neighbour_changes`: what the
  fusions learned to weigh, and whose neighbours changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
import tensorflow as tf

from .content_metrics import combine_keys, content_retrieval_metrics
from .content_model import FUSION_METHODS, ContentModel, fit_content_model
from .progress import track
from .schema import UNKNOWN_VALUES, DataError, is_placeholder


# --------------------------------------------------------------------------
# Item attributes as integer codes
# --------------------------------------------------------------------------
def price_bands(prices: Sequence[float] | np.ndarray, n_bands: int = 5) -> np.ndarray:
    """Quantile bands of price as codes ``0..n_bands-1``; missing price -> -1.

    Returns int32 ``(n,)``; use vocabulary size ``n_bands``.
    """
    prices = np.asarray(prices, dtype=np.float64)
    codes = np.full(prices.shape, -1, dtype=np.int32)
    ok = np.isfinite(prices)
    if ok.any():
        edges = np.quantile(prices[ok], np.linspace(0, 1, n_bands + 1)[1:-1])
        codes[ok] = np.searchsorted(edges, prices[ok], side="right")
    return codes


def encode_attributes(items: pd.DataFrame, columns: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Integer codes of categorical item columns, for labels or attribute inputs.

    Returns ``(codes, vocabularies)``: ``codes[col]`` int32 ``(n,)`` with -1 for
    missing values; ``vocabularies[col]`` the sorted category strings.
    """
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise DataError(f"attribute columns {missing} not in the item table "
                        f"(columns: {list(items.columns)})", source="items")
    codes, vocabularies = {}, {}
    for col in columns:
        cat = pd.Categorical(items[col].astype("string"))
        codes[col] = np.asarray(cat.codes, dtype=np.int32)
        vocabularies[col] = [str(c) for c in cat.categories]
    return codes, vocabularies


# --------------------------------------------------------------------------
# The content task of a data set
# --------------------------------------------------------------------------
#: Per data set: the attributes the content model predicts (``labels``), the
#: ones two items must share to count as relevant to each other
#: (``relevance``), and the ones a product photo can show (``image``: labels
#: of the supervised image encoder and the key of its score). Synthetic labels
#: are planted truth (colour, material): labels only, never inputs. Colour +
#: material is the key because the text states colour for only half the items
#: and the image never shows material, so no single modality suffices.
CONTENT_TASKS: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": {"labels": ("category", "colour", "material"), "relevance": ("colour", "material"),
                  "image": ("category", "colour")},
    "fashion": {"labels": ("category", "colour"), "relevance": ("category", "colour"),
                "image": ("category", "colour")},
    "movielens-100k": {"labels": ("category",), "relevance": ("category",), "image": ()},
}
#: Any other data set (e.g. a csv catalogue): predict and match the category.
DEFAULT_CONTENT_TASK: dict[str, tuple[str, ...]] = {"labels": ("category",), "relevance": ("category",),
                                                     "image": ("category",)}
#: An attribute whose values pin down a label on at least this share of items
#: would hand the model the answer (movielens ``genres`` contains the first genre).
LEAK_PURITY = 0.98


@dataclasses.dataclass
class ContentTask:
    """What notebook 03's content model learns and how it is scored.

    Attributes:
        label_columns: attributes predicted by the content model.
        labels: their int codes ``(n,)`` (-1 = unknown, ignored in the loss).
        relevance_columns: two items are relevant to each other when they share all of these.
        relevance_key: ``(n,)`` str; items with an unknown value get a unique
            key (never relevant, excluded as queries).
        image_columns / image_labels / image_key: the same for the image
            encoder (empty when the data set has no images or nothing visual).
        attribute_columns: inputs of the attribute modality (``price_band``
            from ``price`` included when there is a price).
        attributes: their int codes ``(n,)``.
        excluded: attribute column -> why it is not an input.
    """

    label_columns: list[str]
    labels: dict[str, np.ndarray]
    relevance_columns: list[str]
    relevance_key: np.ndarray
    image_columns: list[str]
    image_labels: dict[str, np.ndarray]
    image_key: np.ndarray | None
    attribute_columns: list[str]
    attributes: dict[str, np.ndarray]
    excluded: dict[str, str]

    def describe(self) -> str:
        return (f"predict {', '.join(self.label_columns)}; relevant = same "
                f"{' + '.join(self.relevance_columns)}; attribute inputs: "
                f"{', '.join(self.attribute_columns) or 'none'}")

    def summary(self) -> pd.DataFrame:
        """One row per column involved: its role(s) and its number of values."""
        rows = []
        for col in dict.fromkeys([*self.label_columns, *self.relevance_columns, *self.image_columns,
                                  *self.attribute_columns, *self.excluded]):
            roles = [role for role, cols in (("label", self.label_columns), ("relevance", self.relevance_columns),
                                             ("image label", self.image_columns),
                                             ("attribute input", self.attribute_columns)) if col in cols]
            codes = self.labels.get(col, self.attributes.get(col, self.image_labels.get(col)))
            rows.append({"column": col, "role": ", ".join(roles) or "excluded",
                         "values": None if codes is None else len(np.unique(codes[codes >= 0])),
                         "note": self.excluded.get(col, "")})
        return pd.DataFrame(rows).set_index("column")


def _missing(values: pd.Series) -> np.ndarray:
    return is_placeholder(values, UNKNOWN_VALUES).to_numpy()


def _label_codes(items: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    codes, _ = encode_attributes(items, columns)
    for col in columns:                      # placeholders like "unknown" are unknown, not a class
        codes[col] = np.where(_missing(items[col]), -1, codes[col]).astype(np.int32)
        if (codes[col] >= 0).any():          # re-number the known classes densely
            _, dense = np.unique(codes[col][codes[col] >= 0], return_inverse=True)
            codes[col][codes[col] >= 0] = dense.astype(np.int32)
    return codes


def relevance_key(items: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``combine_keys`` of ``columns``; rows with an unknown value get a key of
    their own (``"?<row>"``), so they are never relevant to anything."""
    if not columns:
        raise ValueError("relevance_key needs at least one column")
    key = combine_keys(*[items[c].astype("string").fillna("") for c in columns])
    unknown = np.zeros(len(items), dtype=bool)
    for col in columns:
        unknown |= _missing(items[col])
    key = key.astype(object)
    key[unknown] = [f"?{i}" for i in np.flatnonzero(unknown)]
    return key.astype(str)


def label_purity(attribute: pd.Series | np.ndarray, label: pd.Series | np.ndarray) -> float:
    """Share of items whose label is the most frequent label of their attribute
    value (rows with either unknown left out); 1.0 = the attribute determines the label."""
    frame = pd.DataFrame({"a": np.asarray(attribute, dtype=object), "l": np.asarray(label, dtype=object)})
    known = ~(_missing(frame["a"]) | _missing(frame["l"]))
    frame = frame[known]
    if frame.empty:
        return 0.0
    majority = frame.groupby("a")["l"].agg(lambda s: s.value_counts().iloc[0]).sum()
    return float(majority / len(frame))


def content_task(dataset: str, items: pd.DataFrame, attribute_columns: Sequence[str],
                 *, has_images: bool = True, n_price_bands: int = 5,
                 leak_purity: float = LEAK_PURITY) -> ContentTask:
    """The content task of a prepared data set (see :data:`CONTENT_TASKS`).

    The attribute modality is ``attribute_columns`` (the seller-filled ones;
    never truth columns) minus the label columns, minus any column that
    determines a label on ``>= leak_purity`` of the items (:func:`label_purity`),
    plus quantile ``price_band`` codes of ``price`` when the items have one.

    Example: ``content_task(prepared.dataset, prepared.items,
    prepared.attribute_columns, has_images=prepared.has_images)``.
    """
    spec = CONTENT_TASKS.get(dataset, DEFAULT_CONTENT_TASK)
    label_columns = list(spec["labels"])
    relevance_columns = list(spec["relevance"])
    image_columns = list(spec["image"]) if has_images else []
    needed = set(label_columns) | set(relevance_columns) | set(image_columns)
    absent = sorted(c for c in needed if c not in items.columns)
    if absent:
        raise DataError(f"content task of {dataset!r} needs item columns {absent} "
                        f"(columns: {list(items.columns)})", source="items")
    labels = _label_codes(items, label_columns)
    for col, codes in labels.items():
        if (codes < 0).all():
            raise DataError(f"label column {col!r} is unknown for every item", source="items")
    excluded: dict[str, str] = {}
    inputs = []
    for col in attribute_columns:
        if col in label_columns or col in relevance_columns:
            excluded[col] = "a label of the content task"
            continue
        purity = {lab: label_purity(items[col], items[lab]) for lab in label_columns}
        leaky = {lab: p for lab, p in purity.items() if p >= leak_purity}
        if leaky:
            lab, p = max(leaky.items(), key=lambda kv: kv[1])
            excluded[col] = f"determines {lab} on {p:.0%} of items (would leak the label)"
            continue
        inputs.append(col)
    attributes, _ = encode_attributes(items, inputs) if inputs else ({}, {})
    if "price" in items.columns:
        bands = price_bands(pd.to_numeric(items["price"], errors="coerce").to_numpy(), n_bands=n_price_bands)
        if (bands >= 0).any():
            # Synthetic items already carry a seller's price_band (quartile within
            # the category); these are catalogue-wide quantiles of the price.
            name = "price_band" if "price_band" not in attributes else "price_quantile"
            attributes[name] = bands
            inputs.append(name)
    image_labels = _label_codes(items, image_columns) if image_columns else {}
    return ContentTask(
        label_columns=label_columns, labels=labels,
        relevance_columns=relevance_columns, relevance_key=relevance_key(items, relevance_columns),
        image_columns=image_columns, image_labels=image_labels,
        image_key=relevance_key(items, image_columns) if image_columns else None,
        attribute_columns=inputs, attributes=attributes, excluded=excluded)


# --------------------------------------------------------------------------
# Held-out items
# --------------------------------------------------------------------------
def holdout_items(item_ids: Sequence[str], cold_items: Sequence[str], *, share: float = 0.2,
                  seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Rows to train the content model on, and held-out rows to evaluate it on.

    The held-out set is every cold-start item (never interacted with in
    training, the items content features exist for) plus a seeded random draw
    of the other items, so that it holds ``share`` of the catalogue (or just
    the cold items, if they are more). Returns ``(train_idx, eval_idx)``,
    sorted int64 row indices into the items table, disjoint and covering it.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share}")
    ids = pd.Index(np.asarray(item_ids).astype(str))
    n = len(ids)
    cold = np.flatnonzero(ids.isin(pd.Index(np.asarray(cold_items).astype(str))))
    others = np.setdiff1d(np.arange(n), cold)
    extra = max(0, min(len(others) - 1, round(share * n) - len(cold)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=extra, replace=False) if extra else np.array([], dtype=np.int64)
    eval_idx = np.sort(np.concatenate([cold, chosen]).astype(np.int64))
    train_idx = np.setdiff1d(np.arange(n), eval_idx).astype(np.int64)
    if len(train_idx) == 0 or len(eval_idx) == 0:
        raise DataError(f"cannot split {n} items into training and held-out items", source="holdout_items")
    return train_idx, eval_idx


# --------------------------------------------------------------------------
# Every single modality and every fusion, trained alike
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Comparison:
    """What :func:`compare_content_models` trained and measured.

    Attributes:
        table: one row per model (index ``text``, ``image``, ``attributes``,
            ``concat``, ``gated``, ``attention``): ``kind`` (single modality or
            fusion), ``modalities``, held-out retrieval metrics, ``seconds``.
        embeddings: model -> L2-normalised item vectors ``(n, output_dim)``.
        models: model -> :class:`ContentModel`.
        metric: the column that picks the winners.
    """

    table: pd.DataFrame
    embeddings: dict[str, np.ndarray]
    models: dict[str, ContentModel]
    metric: str

    def _best(self, kind: str) -> str:
        rows = self.table[self.table["kind"] == kind]
        return str(rows[self.metric].astype(float).idxmax())

    @property
    def best_fusion(self) -> str:
        return self._best("fusion")

    @property
    def best_single(self) -> str:
        return self._best("single modality")

    @property
    def margin(self) -> dict[str, float]:
        """Best fusion minus best single modality on :attr:`metric`: absolute and relative."""
        fused = float(self.table.loc[self.best_fusion, self.metric])
        single = float(self.table.loc[self.best_single, self.metric])
        return {"absolute": fused - single, "relative": (fused - single) / single if single > 0 else float("inf")}


def compare_content_models(
    modalities: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    masks: Mapping[str, np.ndarray] | None,
    labels: Mapping[str, np.ndarray],
    relevance: np.ndarray,
    *,
    train_idx: np.ndarray,
    eval_idx: np.ndarray,
    methods: Sequence[str] = FUSION_METHODS,
    metric: str = "ndcg@10",
    k: int = 10,
    progress: bool = True,
    **fit_kwargs: Any,
) -> Comparison:
    """Train each modality alone and each fusion of all of them; score on held-out items.

    Every model is :func:`fit_content_model` on ``train_idx`` with the same
    ``fit_kwargs`` (epochs, widths, seed...); its vectors are scored by
    :func:`content_retrieval_metrics` for the ``eval_idx`` queries against all
    items, relevant = same ``relevance`` key. A modality whose mask is all 0
    (e.g. no images at all) is left out, with a note in the table.
    """
    masks = dict(masks or {})
    usable = [m for m in modalities if m not in masks or np.asarray(masks[m]).any()]
    if not usable:
        raise DataError("no modality has any present rows", source="compare_content_models")
    fused_names = {m: usable for m in methods} if len(usable) > 1 else {}
    plan = [(m, None, [m]) for m in modalities] + [(m, m, names) for m, names in fused_names.items()]
    rows, embeddings, models = {}, {}, {}
    bar = track(plan, desc="content models", unit="model", disable=not progress)
    # Each fresh model traces its own predict function; TF's "retracing"
    # warning about that is expected here, so it is muted for the loop.
    with _tf_log_level("ERROR"):
        for name, method, names in bar:
            bar.set_postfix(model=name)
            row = {"kind": "fusion" if method else "single modality", "modalities": " + ".join(names)}
            if not set(names) <= set(usable):
                rows[name] = {**row, "note": "no item has this modality"}
                continue
            started = time.perf_counter()
            model, emb, _ = fit_content_model({m: modalities[m] for m in names},
                                              {m: v for m, v in masks.items() if m in names}, labels,
                                              method=method, train_idx=train_idx, progress=False, **fit_kwargs)
            scores = content_retrieval_metrics(emb, eval_idx, relevance, k=k)
            rows[name] = {**row, **scores, "seconds": round(time.perf_counter() - started, 2)}
            embeddings[name], models[name] = emb, model
    table = pd.DataFrame.from_dict(rows, orient="index")
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not one of {sorted(table.columns)}")
    return Comparison(table=table, embeddings=embeddings, models=models, metric=metric)


@contextlib.contextmanager
def _tf_log_level(level: str) -> Iterator[None]:
    logger = tf.get_logger()
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --------------------------------------------------------------------------
# What the fusions learned
# --------------------------------------------------------------------------
def modality_weight_table(comparison: Comparison, modalities: Mapping[str, Any],
                          masks: Mapping[str, np.ndarray] | None, rows: np.ndarray) -> pd.DataFrame:
    """Learned modality weights of the gated and attention fusions.

    Index: ``gated (prior)`` = softmax of the gate bias, the input-independent
    part; ``gated (mean)`` and ``attention (mean)`` = per-item weights averaged
    over ``rows`` (absent modalities weigh 0 for that item). Columns: modalities.
    """
    out = {}
    for method in ("gated", "attention"):
        model = comparison.models.get(method)
        if model is None:
            continue
        if method == "gated":
            out["gated (prior)"] = dict(zip(model.modality_names, model.fusion.prior_weights))
        feed_mods = {m: modalities[m] for m in model.modality_names}
        feed_masks = {m: v for m, v in (masks or {}).items() if m in model.modality_names}
        with _tf_log_level("ERROR"):       # another fresh predict function: expected retracing
            weights = model.modality_weights(feed_mods, feed_masks)[np.asarray(rows)]
        out[f"{method} (mean)"] = dict(zip(model.modality_names, weights.mean(axis=0)))
    return pd.DataFrame.from_dict(out, orient="index").astype(float)


def neighbour_changes(before: np.ndarray, after: np.ndarray, query_idx: np.ndarray, relevance: np.ndarray,
                      *, k: int = 5) -> pd.DataFrame:
    """How each query item's k nearest neighbours change from ``before`` to ``after`` vectors.

    Returns one row per query (index = item row) with ``overlap`` (share of
    the k neighbours in both lists), ``relevant_before`` / ``relevant_after``
    (neighbours sharing the query's relevance key) and ``gain``, sorted by gain
    (largest first) then overlap (smallest first): the top rows are the items
    whose neighbourhood changed most for the better.
    """
    from .metrics import brute_force_top_k, top_k_overlap

    query_idx = np.asarray(query_idx, dtype=np.int64)
    relevance = np.asarray(relevance)
    exclude = scipy.sparse.csr_matrix((np.ones(len(query_idx), bool), (np.arange(len(query_idx)), query_idx)),
                                      shape=(len(query_idx), len(before)))
    lists = []
    for vectors in (before, after):
        vectors = np.asarray(vectors, dtype=np.float32)
        ranked, _ = brute_force_top_k(vectors[query_idx], vectors, k, exclude=exclude)
        lists.append(ranked)
    overlap = top_k_overlap(lists[1], lists[0], k)
    hits = [(relevance[r] == relevance[query_idx][:, None]).sum(axis=1) for r in lists]
    table = pd.DataFrame({"overlap": overlap, "relevant_before": hits[0], "relevant_after": hits[1]},
                         index=pd.Index(query_idx, name="row"))
    table["gain"] = table["relevant_after"] - table["relevant_before"]
    return table.sort_values(["gain", "overlap"], ascending=[False, True], kind="stable")
