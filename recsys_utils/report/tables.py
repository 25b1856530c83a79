"""The report's tables, one DataFrame per stage, each from ``{notebook stem: summary}``.

A missing metrics file or key gives an empty table whose ``attrs["note"]`` says why.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..profiles import PROFILES
from .reading import (DATA, FUSION, QUANTIZATION, RANKING, RETRIEVAL, RUN_FIELDS, SEARCH, STAGES,
                      TEXT, Missing, dig, lookup, num, ordered, profile_name, retrieval_rows,
                      stage_summary, tolerant)

#: The TFRS basic-retrieval tutorial, whose protocol notebook 04 runs on MovieLens 100K.
TFRS_TUTORIAL_URL = "https://www.tensorflow.org/recommenders/examples/basic_retrieval"


def tfrs_protocol_text(profile: str | None = None) -> str:
    """The TFRS tutorial protocol as notebook 04 runs it, in words.

    The training settings are the profile's ``retrieval.tfrs_protocol`` budget,
    the one notebook 04 uses; an unknown or missing ``profile`` reads ``default``.
    """
    settings = PROFILES[profile if profile in PROFILES else "default"].retrieval.tfrs_protocol
    optimizer = {"adagrad": "Adagrad", "adam": "Adam"}[settings.optimizer]
    epochs = settings.epochs
    return ("MovieLens 100K; the tutorial's rows: the 100,000 ratings in file order shuffled by "
            "tf.data with seed 42, the first 80,000 for training and the next 20,000 for "
            "testing; the tutorial's model: query = user id only; batch "
            f"{settings.batch_size:,}, {optimizer} at learning rate "
            f"{settings.learning_rate:g}, {epochs} epoch{'s' if epochs != 1 else ''}, "
            f"embedding dimension {settings.embedding_dim}, "
            f"{'with' if settings.log_q else 'no'} log-Q correction; metric = top-K "
            "categorical accuracy over all films (the share of test ratings whose film is among "
            "the user's top K), seen films not removed. The project's model runs on the same rows "
            "with its own budget (notebook 04).")


_VARIANTS = {
    "popularity": "no model: log(1 + training count)",
    "id": "item-id embedding",
    "content": ("projection of notebook 03's fused vector (text + image + attributes) + "
                "catalogue facts"),
    "fused": "item-id embedding + content projection, with id dropout",
    "content_text": ("projection of notebook 02's MiniLM text vector + catalogue facts (no image, "
                     "no id)"),
    "fused_text": "item-id embedding + projection of the MiniLM text vector + catalogue facts",
    "content_tfidf": "projection of a TF-IDF bag of words of the same texts (LSA, 384-d) + facts",
    "content_facts": "projection of the one-hot catalogue facts alone (category, attributes)",
    "item_knn": "classic reference: item-item cosine kNN over the training matrix",
    "ease": "classic reference: EASE, closed-form item-item regression (Steck, 2019)",
    "bpr": "classic reference: BPR matrix factorisation (cornac)",
    "content_profile": "classic reference: mean content vector of the user's items, no training",
    "content_regression": ("classic reference: the content profile through a ridge regression "
                           "to the content of the items users take (closed form)"),
    "oracle": "upper bound: content profile that also sees the planted attributes",
}


_FUSION_ORDER = ("text", "image", "attributes", "concat", "gated", "attention")
_QUANT_MODELS = ("text encoder", "towers", "ranker")
_QUANT_MODES = ("float32", "float16", "dynamic_int8", "full_int8")
_SEARCH_ORDER = ("bm25", "dense", "hybrid_rrf", "hybrid_interpolation", "two_tower")


def sources_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Which metrics files the report read, one row per stage: ``found`` and the run
    fields (dataset, profile, seed; ``None`` where a file lacks one)."""
    rows = [{"notebook": stage, "found": "yes" if isinstance(metrics.get(stage), Mapping) else "no",
             **{field: dig(metrics, stage, field) for field in RUN_FIELDS}} for stage in STAGES]
    # object dtype: a seed stays 42, not 42.0, beside a file without one
    return pd.DataFrame(rows, dtype=object).set_index("notebook")


#: Notebook 01's summary keys, in the table's order, and their words.
_DATA_WORDS = {"dataset": "data set", "feedback": "feedback",
               "simulated_interactions": "simulated interactions", "n_items": "items",
               "n_users": "users", "n_interactions": "interactions", "density": "density",
               "top_10pct_items_share": "share of interactions on the top 10% of items",
               "items_with_images": "items with images", "n_queries": "search queries"}


@tolerant
def data_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The data set's headline numbers from notebook 01, in words (one column, ``value``)."""
    m = stage_summary(metrics, DATA)
    rows = {word: m[k] for k, word in _DATA_WORDS.items() if k in m}
    rows.update({f"split: {split}": n for split, n in (m.get("splits") or {}).items()})
    return pd.DataFrame({"value": pd.Series(rows, dtype=object)}).rename_axis("measure")


@tolerant
def retrieval_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 04's models (ablations included), one row each: ``candidate tower`` (what
    it is), ``<setting> <metric>`` for warm, cold (all items) and cold (new items only),
    and ``train seconds``; columns without any value are dropped."""
    m = stage_summary(metrics, RETRIEVAL)
    rows = retrieval_rows(metrics)
    main = set((m.get("warm_recall@50") or {})) | set(m.get("variants") or [])
    seconds = m.get("train_seconds") or {}
    out = {}
    for variant, settings in rows.items():
        row: dict[str, Any] = {"candidate tower": _VARIANTS.get(
            variant, "ablation of the fused model" if variant not in main else variant)}
        for setting in ("warm", "cold (all items)", "cold (new items only)"):
            for metric in ("recall@10", "recall@50", "ndcg@10"):
                row[f"{setting} {metric}"] = settings.get(setting, {}).get(metric, np.nan)
        row["train seconds"] = num(seconds.get(variant))
        out[variant] = row
    frame = pd.DataFrame.from_dict(out, orient="index").rename_axis("model")
    return frame.dropna(axis=1, how="all")


@tolerant
def ranking_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 05's ranker on warm and cold test rows, and the multitask model's rating head."""
    m = stage_summary(metrics, RANKING)
    target = m.get("target", "?")
    rows = {f"DCN ranker ({target}), {word} rows": {
                k: v for k, v in m[split].items() if k not in ("target", "split")}
            for split, word in (("test", "warm"), ("test_cold", "cold-start"))
            if isinstance(m.get(split), Mapping)}
    if not rows:
        raise Missing(f"metrics/{RANKING}.json has no 'test' evaluation")
    multitask = m.get("multitask")
    if isinstance(multitask, Mapping) and multitask.get("rmse") is not None:
        # The joint model's rating head, on the same warm test rows as the DCN ranker.
        rows["joint multitask model (rating head), warm rows"] = {
            "rmse": num(multitask["rmse"])}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


@tolerant
def chain_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Retrieval alone versus retrieval followed by each ranker (notebook 05).

    Columns: ``NDCG@10``, ``change vs retrieval only`` and ``retrieval Recall@<k>``
    (the re-ranking ceiling); pipelines without an NDCG@10 are left out.
    """
    m = stage_summary(metrics, RANKING)
    chain = lookup(metrics, RANKING, "chain")
    target = m.get("target", "rating")
    base = num(chain.get("retrieval_ndcg@10"))
    k = chain.get("k_retrieve", 100)
    rows = {"retrieval only (fused two-tower)": base,
            f"retrieval → DCN ranker ({target})":
                num(chain.get(f"chain_ndcg@10_{target}_ranker")),
            "retrieval → engagement re-ranker (DCN, hard negatives)":
                num(chain.get("chain_ndcg@10"))}
    if "chain_ndcg@10_blended" in chain:
        weight = chain.get("ranker_weight")
        rows[f"retrieval + engagement re-ranker, blended (w = {weight:g}, "
             "chosen on validation)"] = num(chain["chain_ndcg@10_blended"])
    multitask = m.get("multitask")
    if isinstance(multitask, Mapping):
        rows["joint multitask model: retrieval only"] = num(multitask.get("retrieval_ndcg@10"))
        rows["joint multitask model: retrieval → rating head"] = num(
            multitask.get("chain_ndcg@10"))
    frame = pd.DataFrame({"NDCG@10": pd.Series(rows)}).rename_axis("pipeline")
    frame = frame.dropna(subset=["NDCG@10"])
    frame["change vs retrieval only"] = frame["NDCG@10"] - base
    frame[f"retrieval Recall@{k}"] = num(chain.get(f"retrieval_recall@{k}",
                                                   chain.get("retrieval_recall@100")))
    frame.attrs["note"] = (f"{chain.get('n_queries', '?')} test users; each ranker re-orders "
                           f"the top {k} retrieved items.")
    blend = chain.get("blend_vs_retrieval")
    if isinstance(blend, Mapping):
        change, low, high = (num(blend.get(key)) for key in ("difference", "low", "high"))
        if np.isfinite([change, low, high]).all():  # the verdict is the claims' (rules.py)
            frame.attrs["note"] += (f" The blend's change per test user: {change:+.4f}, 95% "
                                    f"bootstrap interval [{low:+.4f}, {high:+.4f}] (an interval "
                                    "holding 0 is a tie).")
    return frame


@tolerant
def fusion_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 03: every single modality and fusion trained, on the content task's test items,
    with the validation score that chose the winners."""
    models = lookup(metrics, FUSION, "models")
    frame = pd.DataFrame.from_dict(models, orient="index").rename_axis("model")
    return frame.loc[ordered(frame.index, _FUSION_ORDER)].drop(columns=["n_excluded"],
                                                               errors="ignore")


@tolerant
def image_encoder_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 03's image encoders (supervised, contrastive, untrained floor): precision@10
    on the validation items, which chose, and on the test items."""
    images = lookup(metrics, FUSION, "images")
    scores = images.get("scores")
    if not scores:
        raise Missing(images.get("note") or "notebook 03 trained no image encoder")
    frame = pd.DataFrame({"validation precision@10": pd.Series(images.get("validation_scores"),
                                                               dtype=float),
                          "test precision@10": pd.Series(scores, dtype=float)}).rename_axis(
        "image encoder").dropna(axis=1, how="all")
    frame["kept"] = ["yes" if name == images.get("objective") else "no" for name in frame.index]
    return frame


@tolerant
def text_probe_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 02: mean linear-probe accuracy of MiniLM vs TF-IDF vectors."""
    few = lookup(metrics, TEXT, "few_shot_probe_mean")
    full = lookup(metrics, TEXT, "full_probe_mean")
    return pd.DataFrame({"5 labels per class": pd.Series(few, dtype=float),
                         "all labels": pd.Series(full, dtype=float)}).rename_axis("features")


@tolerant
def quantization_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 06: every converted variant of every model, size, latency and quality.

    The rows as notebook 06 stored them, models in the order text encoder, towers, ranker
    and variants float32, float16, dynamic_int8, full_int8; columns (those present) as in
    ``keep`` below. ``x_smaller`` and ``speedup`` (against the model's float32 row) are not
    recomputed (that code loads TensorFlow): blank where the file lacks them.
    """
    variants = lookup(metrics, QUANTIZATION, "variants")
    rows = []
    for key, values in variants.items():
        model, _, variant = key.partition("|")
        rows.append({"model": model, "variant": variant, **values})
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise Missing(f"metrics/{QUANTIZATION}.json has no converted variant")
    # The JSON file comes back with sorted keys: put models and variants back in order (an
    # unknown variant last).
    order = {"model": ordered(dict.fromkeys(frame["model"]), _QUANT_MODELS),
             "variant": list(_QUANT_MODES)}
    frame = frame.sort_values(["model", "variant"], ignore_index=True, key=lambda column: (
        column.map({v: i for i, v in enumerate(order[column.name])})
        .fillna(len(order[column.name]))))
    for column in ("sparsity", "size_mb", "gzip_mb", "x_smaller", "median_ms", "p95_ms",
                   "speedup", "throughput", "quality"):
        frame[column] = (pd.to_numeric(frame[column], errors="coerce") if column in frame
                         else np.nan)
    keep = ["model", "variant", "ok", "sparsity", "size_mb", "gzip_mb", "x_smaller", "median_ms",
            "p95_ms", "speedup", "num_threads", "throughput", "batch_threads", "quality",
            "quality_metric"]
    return frame[[c for c in keep if c in frame]]


@tolerant
def index_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 06: the item index compressed (int8 table, ScaNN scoring) vs exact float search."""
    frame = pd.DataFrame(lookup(metrics, QUANTIZATION, "index"))
    if "bytes" in frame and "index" in frame:
        exact = frame.loc[frame["index"] == "float32 exact", "bytes"]
        if len(exact):
            frame["x_smaller"] = float(exact.iloc[0]) / frame["bytes"]
    return frame.set_index("index") if "index" in frame else frame


@tolerant
def search_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 07: each search method's NDCG@10 per query kind and ``all``, plus ``all
    recall@100`` and ``all mrr``, on the test queries."""
    m = stage_summary(metrics, SEARCH)
    if m.get("has_queries") is False:
        raise Missing(m.get("note") or "this data set has no search queries")
    test = lookup(metrics, SEARCH, "test")
    rows = {}
    for method in ordered(test, _SEARCH_ORDER):
        kinds = test[method]
        row = {f"{kind} ndcg@10": num(kinds[kind].get("ndcg@10"))
               for kind in sorted(kinds, key=lambda kind: kind == "all")}  # "all" last
        overall = kinds.get("all", {})
        row.update({f"all {extra}": num(overall[extra]) for extra in ("recall@100", "mrr")
                    if extra in overall})
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


@tolerant
def scann_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 04's ScaNN sweep, one row per index: recall@10 against brute force,
    latency, and ``served`` ("yes" on the setting notebook 04 serves)."""
    scann = lookup(metrics, RETRIEVAL, "scann")
    sweep = lookup(metrics, RETRIEVAL, "scann", "sweep")
    frame = pd.DataFrame(list(sweep))
    if frame.empty or "index" not in frame:
        raise Missing(f"metrics/{RETRIEVAL}.json has an empty ScaNN sweep")
    frame = frame.rename(columns={"num_leaves_to_search": "leaves searched",
                                  "num_leaves": "leaves", "recall_at_k": "recall@10"})
    served = num(scann.get("num_leaves_to_search"))
    searched = frame["leaves searched"] if "leaves searched" in frame else [np.nan] * len(frame)
    frame["served"] = ["yes" if i == "scann" and num(n) == served else "no"
                       for i, n in zip(frame["index"], searched)]
    for column in ("leaves searched", "leaves"):  # counts, not measurements: no decimals
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    keep = ["index", "leaves searched", "leaves", "recall@10", "median_ms", "p95_ms", "served"]
    return frame[[c for c in keep if c in frame]]


def tfrs_protocol_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The TFRS tutorial's model and this project's on the tutorial's rows (MovieLens 100K).

    One row per model: ``source`` and the ``top_K_accuracy`` columns; ``attrs["protocol"]``
    is :func:`tfrs_protocol_text` for the run's profile. The tutorial's own printed
    numbers are not copied (see :data:`TFRS_TUTORIAL_URL`).
    """
    frame = _tfrs_rows(metrics)
    frame.attrs["protocol"] = tfrs_protocol_text(profile_name(metrics))
    return frame


@tolerant
def _tfrs_rows(metrics: Mapping[str, Any]) -> pd.DataFrame:
    m = stage_summary(metrics, RETRIEVAL)
    protocol = m.get("tfrs_protocol")
    if not protocol:
        raise Missing(f"the TFRS tutorial protocol is defined on MovieLens 100K; notebook 04 "
                      f"did not measure it on {m.get('dataset', 'this data set')}")
    rows = {}
    for label, values in protocol.items():
        source = ("the tutorial's code, re-run here (notebook 04)" if "tutorial" in label
                  else "this project, measured here (notebook 04)")
        rows[label] = {"source": source, **{k: num(v) for k, v in values.items()}}
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    accuracy = sorted((c for c in frame if c.startswith("top_")),
                      key=lambda c: int(re.sub(r"\D", "", c) or 0))
    return frame[["source", *accuracy, *[c for c in frame if c not in ["source", *accuracy]]]]
