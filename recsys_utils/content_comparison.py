"""Notebook 03's experiment: which item representation finds similar items best?
:func:`compare_content_models` trains every single modality and every fusion alike (the
:func:`content_task` of the data set) and scores them on :func:`holdout_items`."""

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

from . import metrics
from .content_metrics import combine_keys, content_retrieval_metrics
from .content_model import FUSION_METHODS, ContentModel, fit_content_model
from .progress import track
from .schema import UNKNOWN_VALUES, DataError, is_placeholder


def price_edges(prices: Sequence[float] | np.ndarray, n_bands: int = 5) -> np.ndarray:
    """The ``n_bands - 1`` inner quantile edges of the finite ``prices`` (none if no price)."""
    prices = np.asarray(prices, dtype=np.float64)
    ok = np.isfinite(prices)
    return (np.quantile(prices[ok], np.linspace(0, 1, n_bands + 1)[1:-1]) if ok.any()
            else np.zeros(0))


def price_bands(prices: Sequence[float] | np.ndarray, n_bands: int = 5,
                edges: Sequence[float] | None = None) -> np.ndarray:
    """Price bands as int32 codes ``0..n_bands-1`` ``(n,)``, missing -> -1: quantile bands of
    ``prices`` themselves, or of the given ``edges`` (:func:`price_edges` of a catalogue)."""
    prices = np.asarray(prices, dtype=np.float64)
    edges = price_edges(prices, n_bands) if edges is None else np.asarray(edges)
    codes = np.searchsorted(edges, prices, side="right")
    return np.where(np.isfinite(prices), codes, -1).astype(np.int32)


def encode_attributes(items: pd.DataFrame, columns: Sequence[str]
                      ) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """``(codes, vocabularies)`` of categorical item columns: ``codes[col]`` int32 ``(n,)``
    (-1 = missing), ``vocabularies[col]`` the sorted category strings."""
    if missing := [c for c in columns if c not in items.columns]:
        raise DataError(f"attribute columns {missing} not in the item table "
                        f"(columns: {list(items.columns)})", source="items")
    cats = {col: pd.Categorical(items[col].astype("string")) for col in columns}
    return ({col: np.asarray(cat.codes, dtype=np.int32) for col, cat in cats.items()},
            {col: [str(c) for c in cat.categories] for col, cat in cats.items()})


#: Per data set: the attributes predicted (``labels``), shared by relevant items
#: (``relevance``) and shown by a photo (``image``). Synthetic labels are planted truth,
#: never inputs; its key is colour + material since the text states colour for only half
#: the items and the image never shows material: no single modality suffices.
CONTENT_TASKS: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": {"labels": ("category", "colour", "material"),
                  "relevance": ("colour", "material"), "image": ("category", "colour")},
    "fashion": {"labels": ("category", "colour"), "relevance": ("category", "colour"),
                "image": ("category", "colour")},
    "movielens-100k": {"labels": ("category",), "relevance": ("category",), "image": ()},
}
#: Any other data set (e.g. a csv catalogue): predict and match the category.
DEFAULT_CONTENT_TASK: dict[str, tuple[str, ...]] = {
    "labels": ("category",), "relevance": ("category",), "image": ("category",)}
#: An attribute whose values pin down a label on at least this share of items
#: would hand the model the answer (movielens ``genres`` contains the first genre).
LEAK_PURITY = 0.98


@dataclasses.dataclass
class ContentTask:
    """What notebook 03's content model learns and how it is scored.

    ``labels``, ``image_labels``, ``attributes``: column -> int codes ``(n,)`` (-1 =
    unknown, ignored in the loss). Items share a ``relevance_key`` (``image_key``) when
    they share all ``relevance_columns`` (``image_columns``); one with an unknown value
    has a unique key. ``excluded``: attribute column -> why it is not an input."""

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
        roles = {"label": self.label_columns, "relevance": self.relevance_columns,
                 "image label": self.image_columns, "attribute input": self.attribute_columns}
        rows = []
        for col in dict.fromkeys([*self.label_columns, *self.relevance_columns,
                                  *self.image_columns, *self.attribute_columns, *self.excluded]):
            codes = self.labels.get(col, self.attributes.get(col, self.image_labels.get(col)))
            role = ", ".join(r for r, cols in roles.items() if col in cols) or "excluded"
            rows.append({"column": col, "role": role,
                         "values": None if codes is None else len(np.unique(codes[codes >= 0])),
                         "note": self.excluded.get(col, "")})
        return pd.DataFrame(rows).set_index("column")


def _missing(values: pd.Series) -> np.ndarray:
    return is_placeholder(values, UNKNOWN_VALUES).to_numpy()


def _label_codes(items: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Codes of the sorted known classes; placeholders like "unknown" are -1, not a class."""
    return {col: np.asarray(pd.Categorical(items[col].astype("string").mask(_missing(items[col])))
                            .codes, dtype=np.int32) for col in columns}


def relevance_key(items: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``combine_keys`` of ``columns``; rows with an unknown value get a key of
    their own (``"?<row>"``), so they are never relevant to anything."""
    if not columns:
        raise ValueError("relevance_key needs at least one column")
    key = combine_keys(*[items[c].astype("string").fillna("") for c in columns]).astype(object)
    unknown = np.logical_or.reduce([_missing(items[c]) for c in columns])
    key[unknown] = [f"?{i}" for i in np.flatnonzero(unknown)]
    return key.astype(str)


def label_purity(attribute: pd.Series | np.ndarray, label: pd.Series | np.ndarray) -> float:
    """Share of items whose label is the most frequent label of their attribute value
    (rows with either unknown left out); 1.0 = the attribute determines the label."""
    frame = pd.DataFrame({"a": np.asarray(attribute, dtype=object),
                          "l": np.asarray(label, dtype=object)})
    frame = frame[~(_missing(frame["a"]) | _missing(frame["l"]))]
    if frame.empty:
        return 0.0
    majority = frame.groupby("a")["l"].agg(lambda s: s.value_counts().iloc[0]).sum()
    return float(majority / len(frame))


def content_task(dataset: str, items: pd.DataFrame, attribute_columns: Sequence[str],
                 *, has_images: bool = True, n_price_bands: int = 5,
                 leak_purity: float = LEAK_PURITY) -> ContentTask:
    """The content task of a prepared data set (see :data:`CONTENT_TASKS`). The attribute
    inputs are ``attribute_columns`` (seller-filled) minus labels and any column that
    determines a label on ``>= leak_purity`` of the items (:func:`label_purity`), plus
    quantile ``price_band`` codes of ``price``."""
    spec = CONTENT_TASKS.get(dataset, DEFAULT_CONTENT_TASK)
    label_columns, relevance_columns = list(spec["labels"]), list(spec["relevance"])
    image_columns = list(spec["image"]) if has_images else []
    needed = set(label_columns) | set(relevance_columns) | set(image_columns)
    if absent := sorted(c for c in needed if c not in items.columns):
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
        lab, p = max(purity.items(), key=lambda kv: kv[1])
        if p >= leak_purity:
            excluded[col] = f"determines {lab} on {p:.0%} of items (would leak the label)"
            continue
        inputs.append(col)
    attributes, _ = encode_attributes(items, inputs) if inputs else ({}, {})
    if "price" in items.columns:
        bands = price_bands(pd.to_numeric(items["price"], errors="coerce").to_numpy(),
                            n_bands=n_price_bands)
        if (bands >= 0).any():
            # Synthetic items already carry a seller's price_band (quartile within
            # the category); these are catalogue-wide quantiles of the price.
            name = "price_band" if "price_band" not in attributes else "price_quantile"
            attributes[name] = bands
            inputs.append(name)
    return ContentTask(
        label_columns=label_columns, labels=labels, relevance_columns=relevance_columns,
        relevance_key=relevance_key(items, relevance_columns), image_columns=image_columns,
        image_labels=_label_codes(items, image_columns) if image_columns else {},
        image_key=relevance_key(items, image_columns) if image_columns else None,
        attribute_columns=inputs, attributes=attributes, excluded=excluded)


def holdout_items(item_ids: Sequence[str], cold_items: Sequence[str], *, share: float = 0.2,
                  seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train_idx, validation_idx, test_idx)``: sorted int64 rows of the items table,
    disjoint, covering it.

    Held out are all cold-start items plus a seeded draw of the others, so that they make
    ``share`` of the catalogue (or just the cold items, if they are more). A seeded half of
    the held-out cold-start items and half of the drawn ones are the validation items, on
    which a model is chosen; the others are the test items, on which it is scored: both sets
    mix cold-start and drawn items alike."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share}")
    ids = pd.Index(np.asarray(item_ids).astype(str))
    n = len(ids)
    cold = np.flatnonzero(ids.isin(pd.Index(np.asarray(cold_items).astype(str))))
    others = np.setdiff1d(np.arange(n), cold)
    extra = max(0, min(len(others) - 1, round(share * n) - len(cold)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=extra, replace=False) if extra else np.array([], np.int64)
    validation_idx = np.sort(np.concatenate(
        [rng.choice(part, size=len(part) // 2, replace=False) for part in (cold, chosen)]
    )).astype(np.int64)
    held = np.concatenate([cold, chosen]).astype(np.int64)
    test_idx = np.setdiff1d(held, validation_idx).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(n), held).astype(np.int64)
    if not (len(train_idx) and len(validation_idx) and len(test_idx)):
        raise DataError(f"cannot split {n} items ({len(cold)} cold-start) into training, "
                        "validation and test items", source="holdout_items")
    return train_idx, validation_idx, test_idx


@dataclasses.dataclass
class Comparison:
    """What :func:`compare_content_models` trained and measured: ``table`` (a row per model:
    ``kind``, ``modalities``, test retrieval metrics, ``validation <metric>``, ``seconds``),
    each model's L2-normalised item vectors ``(n, output_dim)`` (``embeddings``),
    :class:`ContentModel` (``models``) and ``metric`` per test query item (``per_item``, the
    same items for every model). The winners are picked by ``validation <metric>``."""

    table: pd.DataFrame
    embeddings: dict[str, np.ndarray]
    models: dict[str, ContentModel]
    metric: str
    per_item: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def paired(self, a: str, b: str, *, seed: int = 0) -> dict[str, Any]:
        """Model ``a`` against ``b`` on the same test query items: the difference of
        ``metric`` with its paired 95% bootstrap interval (:func:`metrics.paired_difference`,
        split ``"test"``)."""
        return metrics.paired_difference(a, b, "test", self.metric, self.per_item[a],
                                         self.per_item[b], seed=seed)

    @property
    def selection_column(self) -> str:
        """The table column the winners are chosen by: ``metric`` on the validation items."""
        return f"validation {self.metric}"

    def _best(self, kind: str) -> str:
        scores = self.table.loc[self.table["kind"] == kind, self.selection_column].astype(float)
        if scores.isna().all():
            raise DataError(f"no {kind} has a validation {self.metric}: no validation item has "
                            "a relevant item to find", source="compare_content_models")
        return str(scores.idxmax())

    @property
    def best_fusion(self) -> str:
        return self._best("fusion")

    @property
    def best_single(self) -> str:
        return self._best("single modality")

    @property
    def margin(self) -> dict[str, float]:
        """Best fusion minus best single modality (both chosen on validation) on :attr:`metric`
        over the test items: absolute and relative."""
        fused = float(self.table.loc[self.best_fusion, self.metric])
        single = float(self.table.loc[self.best_single, self.metric])
        relative = (fused - single) / single if single > 0 else float("inf")
        return {"absolute": fused - single, "relative": relative}


def compare_content_models(
        modalities: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
        masks: Mapping[str, np.ndarray] | None, labels: Mapping[str, np.ndarray],
        relevance: np.ndarray, *, train_idx: np.ndarray, validation_idx: np.ndarray,
        test_idx: np.ndarray, methods: Sequence[str] = FUSION_METHODS, metric: str = "ndcg@10",
        k: int = 10, progress: bool = True, **fit_kwargs: Any) -> Comparison:
    """Train each modality alone and each fusion of all of them; score on held-out items.

    Every model is :func:`fit_content_model` on ``train_idx`` with the same ``fit_kwargs``,
    scored by :func:`content_retrieval_metrics` for ``test_idx`` queries (relevant = same
    ``relevance`` key), and by ``metric`` for ``validation_idx`` queries, which choose the
    winners (:func:`holdout_items` makes the three sets). A modality whose mask is all 0 is
    left out, with a note."""
    masks = dict(masks or {})
    usable = [m for m in modalities if m not in masks or np.asarray(masks[m]).any()]
    if not usable:
        raise DataError("no modality has any present rows", source="compare_content_models")
    fused = [(m, m, usable) for m in dict.fromkeys(methods)] if len(usable) > 1 else []
    plan = [(m, None, [m]) for m in modalities] + fused
    rows, embeddings, models, per_item = {}, {}, {}, {}
    bar = track(plan, desc="content models", unit="model", disable=not progress)
    # Each fresh model traces its own predict function; TF's "retracing"
    # warning about that is expected here, so it is muted for the loop.
    with _tf_log_level("ERROR"):
        for name, method, names in bar:
            bar.set_postfix(model=name)
            row = {"kind": "fusion" if method else "single modality",
                   "modalities": " + ".join(names)}
            if not set(names) <= set(usable):
                rows[name] = {**row, "note": "no item has this modality"}
                continue
            started = time.perf_counter()
            model, emb, _ = fit_content_model(
                {m: modalities[m] for m in names}, {m: v for m, v in masks.items() if m in names},
                labels, method=method, train_idx=train_idx, progress=False, **fit_kwargs)
            scores = content_retrieval_metrics(emb, test_idx, relevance, k=k)
            if metric in scores:
                scores[f"validation {metric}"] = content_retrieval_metrics(
                    emb, validation_idx, relevance, k=k)[metric]
                per_item[name] = content_retrieval_metrics(
                    emb, test_idx, relevance, k=k, per_query=True)[metric].to_numpy()
            rows[name] = {**row, **scores, "seconds": round(time.perf_counter() - started, 2)}
            embeddings[name], models[name] = emb, model
    table = pd.DataFrame.from_dict(rows, orient="index")
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not one of {sorted(table.columns)}")
    return Comparison(table=table, embeddings=embeddings, models=models, metric=metric,
                      per_item=per_item)


@contextlib.contextmanager
def _tf_log_level(level: str) -> Iterator[None]:
    logger = tf.get_logger()
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def modality_weight_table(comparison: Comparison, modalities: Mapping[str, Any],
                          masks: Mapping[str, np.ndarray] | None, rows: np.ndarray
                          ) -> pd.DataFrame:
    """Learned modality weights (columns) of the gated and attention fusions: ``gated
    (prior)``, the softmax of the gate bias, and per-item weights averaged over ``rows``
    (``gated (mean)``, ``attention (mean)``; absent modalities weigh 0 for that item)."""
    out = {}
    for method in ("gated", "attention"):
        model = comparison.models.get(method)
        if model is None:
            continue
        names = model.modality_names
        if method == "gated":
            out["gated (prior)"] = dict(zip(names, model.fusion.prior_weights))
        feed_mods = {m: modalities[m] for m in names}
        feed_masks = {m: v for m, v in (masks or {}).items() if m in names}
        with _tf_log_level("ERROR"):  # another fresh predict function: expected retracing
            weights = model.modality_weights(feed_mods, feed_masks)[np.asarray(rows)]
        out[f"{method} (mean)"] = dict(zip(names, weights.mean(axis=0)))
    return pd.DataFrame.from_dict(out, orient="index").astype(float)


def neighbour_changes(before: np.ndarray, after: np.ndarray, query_idx: np.ndarray,
                      relevance: np.ndarray, *, k: int = 5) -> pd.DataFrame:
    """How each query item's k nearest neighbours change from ``before`` to ``after`` vectors.

    A row per query (index = item row): ``overlap`` of the two lists, neighbours sharing its
    ``relevance`` key ``relevant_before`` / ``relevant_after``, and ``gain``; largest gain first,
    then smallest overlap: the neighbourhoods that changed most for the better."""
    from .metrics import brute_force_top_k, top_k_overlap

    query_idx = np.asarray(query_idx, dtype=np.int64)
    relevance = np.asarray(relevance)
    n = len(query_idx)
    exclude = scipy.sparse.csr_matrix((np.ones(n, bool), (np.arange(n), query_idx)),
                                      shape=(n, len(before)))
    lists = [brute_force_top_k(v[query_idx], v, k, exclude=exclude)[0]
             for v in (np.asarray(before, np.float32), np.asarray(after, np.float32))]
    hits = [(relevance[r] == relevance[query_idx][:, None]).sum(axis=1) for r in lists]
    table = pd.DataFrame({"overlap": top_k_overlap(lists[1], lists[0], k),
                          "relevant_before": hits[0], "relevant_after": hits[1]},
                         index=pd.Index(query_idx, name="row"))
    table["gain"] = table["relevant_after"] - table["relevant_before"]
    return table.sort_values(["gain", "overlap"], ascending=[False, True], kind="stable")
