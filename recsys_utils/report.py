"""The evaluation report (notebook 07): every stage's numbers side by side, and the claims tested.

Every public function takes the dict that :func:`recsys_utils.artifacts.read_metrics`
returns (``{notebook stem: summary}``) and gives back pandas tables or
matplotlib figures, so the report never holds a number typed by hand. Nothing
here imports TensorFlow. Where a metrics file or key is missing, a table is
empty (its ``attrs["note"]`` says why) and a claim's verdict is
``"not measurable here"`` with the reason.

:func:`write_report` renders the same tables as ``report.md`` (figures as PNG
files beside it) and as one self-contained ``report.html`` (figures embedded as
base64), each written atomically.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .artifacts import atomic_path

__all__ = [
    "CLAIMS", "CLAIM_RULES", "REPORT_DIR", "TFRS_PROTOCOL", "TFRS_TUTORIAL_URL", "VERDICTS",
    "chain_table", "claims_table", "data_table", "default_figures", "figure_png",
    "fusion_table", "image_encoder_table", "index_table", "plot_chain", "plot_fusion",
    "plot_quantization", "plot_retrieval", "plot_search", "quantization_checks",
    "quantization_table", "ranking_table", "report_dir", "retrieval_table", "search_table",
    "sources_table", "text_probe_table", "tfrs_protocol_table", "write_report",
]

# Notebook stems, as written by artifacts.write_metrics.
DATA = "01_data_preparation"
TEXT = "02_text_encoding"
FUSION = "03_multimodal_fusion"
RETRIEVAL = "04_tfrs_retrieval"
RANKING = "05_tfrs_ranking"
QUANTIZATION = "06_quantization"
EVALUATION = "07_evaluation"
SEARCH = "08_product_search"
STAGES = (DATA, TEXT, FUSION, RETRIEVAL, RANKING, QUANTIZATION, SEARCH)

#: Where the report goes inside a run directory (beside ``notebooks/`` and ``artifacts/``).
REPORT_DIR = "report"

SUPPORTED, NOT_SUPPORTED, NOT_MEASURABLE = "supported", "not supported", "not measurable here"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_MEASURABLE)

# ------------------------------------------------------------------ thresholds of the verdicts
#: A comparison "favours" a claim when the claimed-better number exceeds the
#: other by more than max(ABS_TOLERANCE, REL_TOLERANCE x |other|), "goes
#: against" it when it falls short by as much, and is a "tie" in between:
#: differences that small are within the run-to-run noise of the smoke data.
ABS_TOLERANCE = 0.005
REL_TOLERANCE = 0.02
#: Quantization (claim 4): an int8 variant is "much smaller" at MIN_X_SMALLER
#: times below float32, "faster" at a median-latency speed-up of MIN_SPEEDUP,
#: and loses "little quality" when its worst cosine to float32 is >= MIN_COSINE
#: (the text encoder) or its task metric (Recall@10, AUC, RMSE) is at most
#: MAX_RELATIVE_QUALITY_LOSS worse than float32's, relative.
MIN_X_SMALLER = 3.5
MIN_SPEEDUP = 1.05
MIN_COSINE = 0.99
MAX_RELATIVE_QUALITY_LOSS = 0.02
#: Approximate search (claim 5): "little recall loss" is at least
#: MIN_ANN_RECALL of the exact top 10 returned, "real time" a 95th-percentile
#: single-request latency of at most MAX_REALTIME_P95_MS on this CPU.
MIN_ANN_RECALL = 0.95
MAX_REALTIME_P95_MS = 50.0

CLAIMS: dict[str, str] = {
    "pretrained_text": "Pretrained language-model features improve recommendation.",
    "fusion_beats_single": "Fusing text, image and behaviour beats any single source.",
    "attention_fusion": "Attention fusion beats simpler fusion.",
    "quantization": "Quantization cuts size and latency with little quality loss.",
    "approximate_search": "Approximate search serves in real time with little recall loss.",
}

_TOL = (f"a difference counts when it exceeds max({ABS_TOLERANCE}, {REL_TOLERANCE:.0%} of the "
        "baseline); smaller differences are ties")
CLAIM_RULES: dict[str, str] = {
    "pretrained_text": (
        "Comparisons of a model with MiniLM text features against the same task without them: "
        "(a) notebook 04, warm and cold-start (all items ranked) Recall@50 of the content tower "
        "over MiniLM vectors + catalogue facts (`content_text`) vs the same tower over the facts "
        "alone (`content_facts`) (older runs without `content_facts`: the text tower vs ID-only "
        "on cold items, and `fused_text` vs ID-only on warm items); (b) the same comparison's "
        "second setting; (c) notebook 02, linear-probe "
        "accuracy of MiniLM vs TF-IDF vectors, mean over labels with 5 examples per class and "
        "with all labels (favours only if both do, against only if both are); (d) notebook 08, "
        "test-query NDCG@10 of zero-shot dense retrieval vs BM25. Supported when more "
        f"comparisons favour the claim than go against it and (a) or (b) favours it; {_TOL}. "
        "Not measurable here without (a) and (b): the claim is about recommendation."),
    "fusion_beats_single": (
        "(a) notebook 03, held-out NDCG@10 of the best fusion vs the best single modality; "
        "(b) notebook 04, warm Recall@50 of the `fused` tower (ID + text + image + attributes) "
        "vs the best model without that fusion (popularity or ID-only: behaviour alone; "
        "`content_text`: text without image or behaviour; `content_facts`: catalogue facts alone); "
        "(c) the same on cold-start items ranked against the whole catalogue. Supported when "
        f"every measurable comparison favours fusion; {_TOL}."),
    "attention_fusion": (
        "Notebook 03, held-out NDCG@10 of attention fusion vs the better of concatenation and "
        f"gated fusion. Supported when attention is better; {_TOL}."),
    "quantization": (
        "Notebook 06, for every exported model (text encoder, towers, ranker), the int8 variant "
        "(dynamic-range or full-integer) that passes most checks: file at least "
        f"{MIN_X_SMALLER}x smaller than float32, median single-query latency at least "
        f"{MIN_SPEEDUP}x faster, and quality within tolerance (text encoder: worst cosine to "
        f"float32 >= {MIN_COSINE}; towers and ranker: Recall@10 / AUC / RMSE at most "
        f"{MAX_RELATIVE_QUALITY_LOSS:.0%} worse, relative). Supported when every model passes "
        "all three."),
    "approximate_search": (
        "Notebook 04, ScaNN serving index: share of the brute-force top 10 returned >= "
        f"{MIN_ANN_RECALL} and 95th-percentile single-request latency <= {MAX_REALTIME_P95_MS:g} ms; "
        "where notebook 08 has run, its served ScaNN search model must pass the same two "
        "checks. Supported when every measurement passes."),
}

#: The TFRS basic-retrieval tutorial protocol, as notebook 04 runs it.
TFRS_TUTORIAL_URL = "https://www.tensorflow.org/recommenders/examples/basic_retrieval"
TFRS_PROTOCOL = (
    "MovieLens 100K; the 100,000 ratings shuffled with seed 42 (NumPy's shuffle, not tfds', so "
    "the rows differ from the tutorial's), 80,000 for training and 20,000 for testing; query = "
    "user id only; batch 8192, Adagrad at learning rate 0.1, 3 epochs, no log-Q correction; "
    "metric = top-K categorical accuracy over all films (the share of test ratings whose film "
    "is among the user's top K), seen films not removed.")

_VARIANTS = {
    "popularity": "no model: log(1 + training count)",
    "id": "item-id embedding (the TFRS tutorial model)",
    "content": "MLP over notebook 03's fused vector (text + image + attributes) + catalogue facts",
    "fused": "item-id embedding + content MLP, with id dropout",
    "content_text": "MLP over notebook 02's MiniLM text vector + catalogue facts (no image, no id)",
    "fused_text": "item-id embedding + MLP over the MiniLM text vector + catalogue facts",
    "content_facts": "MLP over the one-hot catalogue facts alone (category, attributes)",
}
_SETTINGS = {("test", "all"): "warm", ("test_cold", "all"): "cold (all items)",
             ("test_cold", "cold"): "cold (new items only)"}


_FUSION_ORDER = ("text", "image", "attributes", "concat", "gated", "attention")
_QUANT_MODELS = ("text encoder", "towers", "ranker")
_QUANT_MODES = ("float32", "float16", "dynamic_int8", "full_int8")
_SEARCH_ORDER = ("bm25", "dense", "hybrid_rrf", "hybrid_interpolation", "two_tower")


def _ordered(names: Iterable[Any], canonical: Sequence[str]) -> list[Any]:
    """``names`` with the canonical ones first, in canonical order, then the rest as given."""
    names = list(names)
    return [n for n in canonical if n in names] + [n for n in names if n not in canonical]


class _Missing(Exception):
    """A metrics file or key a measurement needs is absent; the message says which."""


def _stage(metrics: Mapping[str, Any], stage: str) -> Mapping[str, Any]:
    summary = metrics.get(stage)
    if not isinstance(summary, Mapping):
        raise _Missing(f"no metrics/{stage}.json (notebook {stage[:2]} has not run on this "
                       "artifact directory)")
    return summary


def _get(metrics: Mapping[str, Any], stage: str, *keys: str) -> Any:
    node: Any = _stage(metrics, stage)
    for i, key in enumerate(keys):
        if not isinstance(node, Mapping) or node.get(key) is None:
            raise _Missing(f"metrics/{stage}.json has no {'/'.join(keys[:i + 1])!r}")
        node = node[key]
    return node


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _noted(note: str) -> pd.DataFrame:
    frame = pd.DataFrame()
    frame.attrs["note"] = note
    return frame


def _table(build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    try:
        return build()
    except _Missing as missing:
        return _noted(str(missing))


def report_dir(run_dir: str | Path) -> Path:
    """Where the report of a run goes: ``<run_dir>/report`` (the run dir holds ``artifacts/``)."""
    return Path(run_dir) / REPORT_DIR


# ============================================================================ tables


def sources_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Which metrics files the report read: one row per stage, with its data set and profile.

    Columns: ``notebook``, ``found``, ``dataset``, ``profile``. A report mixing
    runs of different data sets shows it here.
    """
    rows = []
    for stage in STAGES:
        summary = metrics.get(stage)
        found = isinstance(summary, Mapping)
        rows.append({"notebook": stage, "found": "yes" if found else "no",
                     "dataset": summary.get("dataset") if found else None,
                     "profile": summary.get("profile") if found else None})
    return pd.DataFrame(rows).set_index("notebook")


def data_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The data set's headline numbers from notebook 01 (one column, ``value``)."""
    def build() -> pd.DataFrame:
        m = _stage(metrics, DATA)
        keys = ("dataset", "feedback", "simulated_interactions", "n_items", "n_users",
                "n_interactions", "density", "top_10pct_items_share", "items_with_images",
                "n_queries")
        rows = {k: m[k] for k in keys if k in m}
        for split, n in (m.get("splits") or {}).items():
            rows[f"split: {split}"] = n
        return pd.DataFrame({"value": pd.Series(rows, dtype=object)})
    return _table(build)


def _retrieval_rows(metrics: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """variant -> setting label -> metric -> value, main table then the ablation."""
    m = _stage(metrics, RETRIEVAL)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for group in ("table", "ablation"):
        added: set[str] = set()
        for key, values in (m.get(group) or {}).items():
            variant, split, candidates = (key.split("|") + ["", ""])[:3]
            if group == "ablation" and variant in rows and variant not in added:
                continue  # the ablation repeats the main "fused" model as its reference
            added.add(variant)
            setting = _SETTINGS.get((split, candidates), f"{split} ({candidates})")
            rows.setdefault(variant, {})[setting] = {k: _num(v) for k, v in values.items()}
    if not rows:  # older summaries: only the headline Recall@50
        warm, cold = m.get("warm_recall@50") or {}, m.get("cold_recall@50") or {}
        for variant in dict.fromkeys([*warm, *cold]):
            rows[variant] = {"warm": {"recall@50": _num(warm.get(variant))},
                             "cold (all items)": {"recall@50": _num(cold.get(variant))}}
    if not rows:
        raise _Missing(f"metrics/{RETRIEVAL}.json has no 'table' of results")
    # Notebook 04's order (its JSON file comes back with sorted keys), then the ablation.
    order = [v for v in (m.get("variants") or []) if v in rows]
    return {v: rows[v] for v in [*order, *[v for v in rows if v not in order]]}


def retrieval_table(metrics: Mapping[str, Any],
                    columns: Sequence[str] = ("recall@10", "recall@50", "ndcg@10")) -> pd.DataFrame:
    """Every retrieval model of notebook 04 on warm and cold-start items, one row each.

    Rows: the variants notebook 04 trained (popularity included) and its
    ablation models. Columns: ``candidate tower`` (what the model is),
    ``<setting> <metric>`` for the settings warm, cold (all items) and cold
    (new items only), and ``train seconds`` where known. Full-catalogue
    evaluation, the user's training items removed.
    """
    def build() -> pd.DataFrame:
        m = _stage(metrics, RETRIEVAL)
        rows = _retrieval_rows(metrics)
        main = set((m.get("warm_recall@50") or {})) | set(m.get("variants") or [])
        seconds = m.get("train_seconds") or {}
        out = {}
        for variant, settings in rows.items():
            row: dict[str, Any] = {"candidate tower": _VARIANTS.get(
                variant, "ablation of the fused model" if variant not in main else variant)}
            for setting in ("warm", "cold (all items)", "cold (new items only)"):
                for metric in columns:
                    row[f"{setting} {metric}"] = settings.get(setting, {}).get(metric, np.nan)
            row["train seconds"] = _num(seconds.get(variant))
            out[variant] = row
        frame = pd.DataFrame.from_dict(out, orient="index").rename_axis("model")
        return frame.dropna(axis=1, how="all")
    return _table(build)


def ranking_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 05's ranker against the constant predictor, on warm and cold test rows."""
    def build() -> pd.DataFrame:
        m = _stage(metrics, RANKING)
        target = m.get("target", "?")
        rows = {}
        for split in ("test", "test_cold"):
            values = m.get(split)
            if not isinstance(values, Mapping):
                continue
            keep = {k: v for k, v in values.items() if k not in ("target", "split")}
            rows[f"DCN ranker ({target}), {'warm' if split == 'test' else 'cold-start'} rows"] = keep
        if not rows:
            raise _Missing(f"metrics/{RANKING}.json has no 'test' evaluation")
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    return _table(build)


def chain_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Retrieval alone versus retrieval followed by a ranker (notebook 05), NDCG@10.

    Rows: retrieval only; retrieval then the ranker trained on the data set's
    target (rating or click); retrieval then the engagement re-ranker; the
    blend of retrieval and re-ranker scores (when notebook 05 recorded it);
    and, on rating data, the joint multitask model. Columns: ``NDCG@10``, ``change vs
    retrieval only`` and ``retrieval Recall@100`` (the re-ranking ceiling).
    """
    def build() -> pd.DataFrame:
        m = _stage(metrics, RANKING)
        chain = _get(metrics, RANKING, "chain")
        target = m.get("target", "rating")
        base = _num(chain.get("retrieval_ndcg@10"))
        k = chain.get("k_retrieve", 100)
        rows = {"retrieval only (fused two-tower)": base,
                f"retrieval → DCN ranker ({target})": _num(chain.get(f"chain_ndcg@10_{target}_ranker")),
                "retrieval → engagement re-ranker (DCN, hard negatives)":
                    _num(chain.get("chain_ndcg@10"))}
        if "chain_ndcg@10_blended" in chain:
            weight = chain.get("ranker_weight")
            rows[f"retrieval + engagement re-ranker, blended (w = {weight:g}, "
                 "chosen on validation)"] = _num(chain["chain_ndcg@10_blended"])
        multitask = m.get("multitask")
        if isinstance(multitask, Mapping):
            rows["joint multitask model: retrieval only"] = _num(multitask.get("retrieval_ndcg@10"))
            rows["joint multitask model: retrieval → rating head"] = _num(multitask.get("chain_ndcg@10"))
        frame = pd.DataFrame({"NDCG@10": pd.Series(rows)}).rename_axis("pipeline")
        frame = frame.dropna(subset=["NDCG@10"])
        frame["change vs retrieval only"] = frame["NDCG@10"] - base
        frame[f"retrieval Recall@{k}"] = _num(chain.get(f"retrieval_recall@{k}",
                                                        chain.get("retrieval_recall@100")))
        frame.attrs["note"] = (f"{chain.get('n_queries', '?')} test users; each ranker re-orders "
                               f"the top {k} retrieved items.")
        return frame
    return _table(build)


def fusion_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 03: every single modality and every fusion on the held-out content task.

    Rows: ``text``, ``image``, ``attributes``, ``concat``, ``gated``,
    ``attention`` (those trained); columns: ``kind``, ``modalities`` and the
    held-out retrieval metrics (NDCG@10 is the headline).
    """
    def build() -> pd.DataFrame:
        models = _get(metrics, FUSION, "models")
        frame = pd.DataFrame.from_dict(models, orient="index").rename_axis("model")
        frame = frame.loc[_ordered(frame.index, _FUSION_ORDER)]
        drop = [c for c in ("n_excluded",) if c in frame]
        return frame.drop(columns=drop)
    return _table(build)


def image_encoder_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 03's image encoders (supervised, contrastive, untrained floor): precision@10."""
    def build() -> pd.DataFrame:
        images = _get(metrics, FUSION, "images")
        scores = images.get("scores")
        if not scores:
            raise _Missing(images.get("note") or "notebook 03 trained no image encoder")
        frame = pd.DataFrame({"precision@10": pd.Series(scores, dtype=float)}).rename_axis(
            "image encoder")
        frame["kept"] = ["yes" if name == images.get("objective") else "no" for name in frame.index]
        return frame
    return _table(build)


def text_probe_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 02: mean linear-probe accuracy of MiniLM vs TF-IDF vectors."""
    def build() -> pd.DataFrame:
        few = _get(metrics, TEXT, "few_shot_probe_mean")
        full = _get(metrics, TEXT, "full_probe_mean")
        return pd.DataFrame({"5 labels per class": pd.Series(few, dtype=float),
                             "all labels": pd.Series(full, dtype=float)}).rename_axis("features")
    return _table(build)


def quantization_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 06: every converted variant of every model, size, latency and quality.

    Columns: ``model``, ``variant``, ``ok``, ``size_mb``, ``x_smaller``,
    ``median_ms``, ``p95_ms``, ``speedup``, ``throughput``, ``num_threads``,
    ``quality``, ``quality_metric`` (those present). ``x_smaller`` and
    ``speedup`` are recomputed against the model's float32 row.
    """
    def build() -> pd.DataFrame:
        variants = _get(metrics, QUANTIZATION, "variants")
        rows = []
        for key, values in variants.items():
            model, _, variant = key.partition("|")
            rows.append({"model": model, "variant": variant, **values})
        frame = pd.DataFrame(rows)
        model_rank = {m: i for i, m in enumerate(_ordered(dict.fromkeys(frame["model"]), _QUANT_MODELS))}
        mode_rank = {m: i for i, m in enumerate(_QUANT_MODES)}
        frame = frame.assign(_m=frame["model"].map(model_rank),
                             _v=frame["variant"].map(mode_rank).fillna(len(mode_rank)))
        frame = frame.sort_values(["_m", "_v"], kind="stable").drop(columns=["_m", "_v"])
        frame = frame.reset_index(drop=True)
        for column in ("size_mb", "median_ms", "p95_ms", "throughput", "quality"):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        reference = frame[frame["variant"] == "float32"].set_index("model")
        if "size_mb" in frame:
            frame["x_smaller"] = frame["model"].map(reference["size_mb"]) / frame["size_mb"]
        if "median_ms" in frame:
            frame["speedup"] = frame["model"].map(reference["median_ms"]) / frame["median_ms"]
        keep = ["model", "variant", "ok", "size_mb", "x_smaller", "median_ms", "p95_ms",
                "speedup", "throughput", "num_threads", "quality", "quality_metric"]
        return frame[[c for c in keep if c in frame]]
    return _table(build)


def index_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 06: the item index compressed (int8 table, ScaNN scoring) vs exact float search."""
    def build() -> pd.DataFrame:
        frame = pd.DataFrame(_get(metrics, QUANTIZATION, "index"))
        if "bytes" in frame and "index" in frame:
            exact = frame.loc[frame["index"] == "float32 exact", "bytes"]
            if len(exact):
                frame["x_smaller"] = float(exact.iloc[0]) / frame["bytes"]
        return frame.set_index("index") if "index" in frame else frame
    return _table(build)


def search_table(metrics: Mapping[str, Any], metric: str = "ndcg@10") -> pd.DataFrame:
    """Notebook 08: every search method on the test queries, ``metric`` per query kind.

    Rows: methods (BM25, dense, the hybrids, the two-tower model); columns:
    each query kind and ``all``, plus ``all recall@100`` and ``all mrr``.
    """
    def build() -> pd.DataFrame:
        m = _stage(metrics, SEARCH)
        if m.get("has_queries") is False:
            raise _Missing(m.get("note") or "this data set has no search queries")
        test = _get(metrics, SEARCH, "test")
        rows = {}
        for method in _ordered(test, _SEARCH_ORDER):
            kinds = test[method]
            ordered_kinds = [k for k in kinds if k != "all"] + (["all"] if "all" in kinds else [])
            row = {f"{kind} {metric}": _num(kinds[kind].get(metric)) for kind in ordered_kinds}
            overall = kinds.get("all", {})
            for extra in ("recall@100", "mrr"):
                if extra in overall:
                    row[f"all {extra}"] = _num(overall[extra])
            rows[method] = row
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
    return _table(build)


def tfrs_protocol_table(metrics: Mapping[str, Any],
                        published: Mapping[str, float] | None = None) -> pd.DataFrame:
    """This project's ID-only and fused models under the TFRS tutorial protocol (MovieLens).

    Args:
        metrics: the stages' metrics; notebook 04 measures the protocol on
            ``movielens-100k`` only.
        published: optional ``{"top_100_accuracy": value, ...}`` printed by the
            tutorial itself. It is added as its own row labelled "published by
            the tutorial" with :data:`TFRS_TUTORIAL_URL`, never as a measurement.

    Returns:
        One row per model: ``source`` and the ``top_K_accuracy`` columns;
        ``attrs["protocol"]`` holds :data:`TFRS_PROTOCOL`.
    """
    def build() -> pd.DataFrame:
        m = _stage(metrics, RETRIEVAL)
        protocol = m.get("tfrs_protocol")
        if not protocol:
            raise _Missing(f"the TFRS tutorial protocol is defined on MovieLens 100K; notebook 04 "
                           f"did not measure it on {m.get('dataset', 'this data set')}")
        names = {"id": "ID-only", "fused": "fused"}
        rows = {}
        for variant in _ordered(protocol, ("id", "fused")):
            values = protocol[variant]
            rows[f"this project: {names.get(variant, variant)}"] = {
                "source": "measured here (notebook 04)", **{k: _num(v) for k, v in values.items()}}
        if published:
            rows["TFRS tutorial model"] = {"source": f"published by the tutorial ({TFRS_TUTORIAL_URL})",
                                           **{k: _num(v) for k, v in published.items()}}
        frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
        accuracy = sorted((c for c in frame if c.startswith("top_")),
                          key=lambda c: int(re.sub(r"\D", "", c) or 0))
        frame = frame[["source", *accuracy, *[c for c in frame if c not in accuracy and c != "source"]]]
        frame.attrs["protocol"] = TFRS_PROTOCOL
        return frame
    frame = _table(build)
    frame.attrs.setdefault("protocol", TFRS_PROTOCOL)
    return frame


# ============================================================================ claims


@dataclasses.dataclass
class _Comparison:
    """One measured comparison: is ``better`` (the claim's side) above ``other``?"""

    label: str
    better_name: str
    better: float
    other_name: str
    other: float
    metric: str

    @property
    def outcome(self) -> str:
        if not (math.isfinite(self.better) and math.isfinite(self.other)):
            return "not measured"
        tolerance = max(ABS_TOLERANCE, REL_TOLERANCE * abs(self.other))
        diff = self.better - self.other
        return "favours" if diff > tolerance else "against" if diff < -tolerance else "tie"

    def describe(self) -> str:
        return (f"{self.label}: {self.better_name} {self.metric} {self.better:.3f} vs "
                f"{self.other_name} {self.other:.3f} ({self.better - self.other:+.3f}, "
                f"{self.outcome})")


class _Joint:
    """Two comparisons read as one: favours only if both do, against only if both are."""

    def __init__(self, first: _Comparison, second: _Comparison) -> None:
        self.parts = (first, second)

    @property
    def outcome(self) -> str:
        outcomes = [p.outcome for p in self.parts]
        if "not measured" in outcomes:
            return "not measured"
        if all(o == "favours" for o in outcomes):
            return "favours"
        if all(o == "against" for o in outcomes):
            return "against"
        return "tie"

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.parts) + f" → {self.outcome}"


def _best_of(values: Mapping[str, float]) -> tuple[str, float]:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if not finite:
        raise _Missing("no comparable baseline")
    name = max(finite, key=finite.get)
    return name, finite[name]


def _setting_value(rows: Mapping[str, Any], variant: str, setting: str, metric: str) -> float:
    try:
        return _num(rows[variant][setting][metric])
    except KeyError:
        return float("nan")


def _claim_pretrained_text(metrics: Mapping[str, Any]) -> tuple[str, str]:
    comparisons: list[_Comparison] = []
    reasons: list[str] = []
    recommendation: list[_Comparison] = []
    try:
        rows = _retrieval_rows(metrics)
        if "content_facts" in rows and "content_text" in rows:
            # The clean test: the same content tower with and without the MiniLM vectors.
            for setting in ("warm", "cold (all items)"):
                recommendation.append(_Comparison(
                    f"notebook 04, {setting}", "text + facts tower",
                    _setting_value(rows, "content_text", setting, "recall@50"), "facts-only tower",
                    _setting_value(rows, "content_facts", setting, "recall@50"), "Recall@50"))
        elif "id" not in rows:
            raise _Missing(f"metrics/{RETRIEVAL}.json has no ID-only or facts-only model")
        else:
            cold_setting, cold_metric = "cold (new items only)", "recall@10"
            if not math.isfinite(_setting_value(rows, "id", cold_setting, cold_metric)):
                cold_setting, cold_metric = "cold (all items)", "recall@50"
            if "content_text" in rows:
                recommendation.append(_Comparison(
                    f"notebook 04, {cold_setting}", "text tower",
                    _setting_value(rows, "content_text", cold_setting, cold_metric), "ID-only",
                    _setting_value(rows, "id", cold_setting, cold_metric), cold_metric.capitalize()))
            if "fused_text" in rows:
                recommendation.append(_Comparison(
                    "notebook 04, warm", "ID + text tower",
                    _setting_value(rows, "fused_text", "warm", "recall@50"), "ID-only",
                    _setting_value(rows, "id", "warm", "recall@50"), "Recall@50"))
        if not recommendation:
            reasons.append("notebook 04 trained no text variants (content_text, fused_text)")
    except _Missing as missing:
        reasons.append(str(missing))
    comparisons += recommendation
    try:
        few = _get(metrics, TEXT, "few_shot_probe_mean")
        full = _get(metrics, TEXT, "full_probe_mean")
        few_c = _Comparison("notebook 02 probe, 5 labels per class", "MiniLM", _num(few.get("MiniLM")),
                            "TF-IDF", _num(few.get("TF-IDF")), "accuracy")
        full_c = _Comparison("all labels", "MiniLM", _num(full.get("MiniLM")), "TF-IDF",
                             _num(full.get("TF-IDF")), "accuracy")
        comparisons.append(_Joint(few_c, full_c))
    except _Missing as missing:
        reasons.append(str(missing))
    try:
        comparisons.append(_search_comparison(metrics, "dense", "bm25",
                                              "notebook 08, test queries", "dense (MiniLM)", "BM25"))
    except _Missing as missing:
        reasons.append(str(missing))
    measured = [c for c in comparisons if c.outcome != "not measured"]
    evidence = "; ".join([c.describe() for c in comparisons]
                         + [f"not measured: {r}" for r in reasons])
    if not any(c.outcome != "not measured" for c in recommendation):
        return NOT_MEASURABLE, evidence or "no measurement"
    favour = sum(c.outcome == "favours" for c in measured)
    against = sum(c.outcome == "against" for c in measured)
    rec_favours = any(c.outcome == "favours" for c in recommendation)
    verdict = SUPPORTED if favour > against and rec_favours else NOT_SUPPORTED
    return verdict, f"{evidence}. {favour} of {len(measured)} comparisons favour the claim, {against} go against it."


def _search_comparison(metrics: Mapping[str, Any], better: str, other: str, label: str,
                       better_name: str, other_name: str) -> _Comparison:
    m = _stage(metrics, SEARCH)
    if m.get("has_queries") is False:
        raise _Missing(f"notebook 08: {m.get('note') or 'no search queries on this data set'}")
    test = _get(metrics, SEARCH, "test")
    if better not in test or other not in test:
        raise _Missing(f"metrics/{SEARCH}.json has no {better!r} or {other!r} results")
    return _Comparison(label, better_name, _num(test[better].get("all", {}).get("ndcg@10")),
                       other_name, _num(test[other].get("all", {}).get("ndcg@10")), "NDCG@10")


def _claim_fusion(metrics: Mapping[str, Any]) -> tuple[str, str]:
    comparisons: list[_Comparison] = []
    reasons: list[str] = []
    try:
        m = _stage(metrics, FUSION)
        best, single = _get(metrics, FUSION, "best_fusion"), _get(metrics, FUSION, "best_single")
        images = (m.get("images") or {}).get("present", None)
        label = "notebook 03, held-out content task" + (
            " (no images on this data set: text + attributes)" if images == 0 else "")
        comparisons.append(_Comparison(label, f"best fusion ({best})", _num(m.get("best_fusion_score")),
                                       f"best single modality ({single})",
                                       _num(m.get("best_single_score")), str(m.get("metric", "NDCG@10"))))
    except _Missing as missing:
        reasons.append(str(missing))
    try:
        rows = _retrieval_rows(metrics)
        if "fused" not in rows:
            raise _Missing(f"metrics/{RETRIEVAL}.json has no fused model")
        singles = [v for v in ("popularity", "id", "content_text", "content_facts") if v in rows]
        for setting in ("warm", "cold (all items)"):
            name, value = _best_of({v: _setting_value(rows, v, setting, "recall@50") for v in singles})
            comparisons.append(_Comparison(f"notebook 04, {setting}", "fused tower",
                                           _setting_value(rows, "fused", setting, "recall@50"),
                                           f"best unfused model ({name})", value, "Recall@50"))
    except _Missing as missing:
        reasons.append(str(missing))
    measured = [c for c in comparisons if c.outcome != "not measured"]
    evidence = "; ".join([c.describe() for c in comparisons] + [f"not measured: {r}" for r in reasons])
    if not measured:
        return NOT_MEASURABLE, evidence or "no measurement"
    verdict = SUPPORTED if all(c.outcome == "favours" for c in measured) else NOT_SUPPORTED
    return verdict, evidence


def _claim_attention(metrics: Mapping[str, Any]) -> tuple[str, str]:
    try:
        models = _get(metrics, FUSION, "models")
        metric = str(_stage(metrics, FUSION).get("metric", "ndcg@10"))
        if "attention" not in models:
            raise _Missing("notebook 03 trained no attention fusion")
        simpler = {k: _num(models[k].get(metric)) for k in ("concat", "gated") if k in models}
        if not simpler:
            raise _Missing("notebook 03 trained no concatenation or gated fusion")
        name, value = _best_of(simpler)
        comparison = _Comparison("notebook 03, held-out content task", "attention",
                                 _num(models["attention"].get(metric)), f"best simpler fusion ({name})",
                                 value, metric)
    except _Missing as missing:
        return NOT_MEASURABLE, f"not measured: {missing}"
    if comparison.outcome == "not measured":
        return NOT_MEASURABLE, comparison.describe()
    return (SUPPORTED if comparison.outcome == "favours" else NOT_SUPPORTED), comparison.describe()


def _quality_check(metric_name: str, reference: float, value: float) -> tuple[bool, str]:
    name = metric_name.lower()
    if not math.isfinite(value):
        return False, "quality not measured"
    if "cosine" in name:
        return value >= MIN_COSINE, f"worst cosine to float32 {value:.4f}"
    if not math.isfinite(reference) or reference == 0:
        return False, "no float32 quality to compare with"
    lower_is_better = "rmse" in name or "lower is better" in name or "loss" in name
    loss = (value - reference) / abs(reference) if lower_is_better else (reference - value) / abs(reference)
    short = metric_name.split(" (")[0]
    change = f"{loss:.1%} worse" if loss > 0 else f"{-loss:.1%} better"
    return (loss <= MAX_RELATIVE_QUALITY_LOSS,
            f"{short} {value:.4f} vs float32 {reference:.4f} ({change})")


def quantization_checks(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Claim 4, per model: the int8 variant that passes most checks, and each check.

    Columns: ``int8 variant``, ``x smaller``, ``speed-up``, ``quality``,
    ``size ok``, ``latency ok``, ``quality ok``, ``all ok``. Thresholds:
    :data:`MIN_X_SMALLER`, :data:`MIN_SPEEDUP`, :data:`MIN_COSINE`,
    :data:`MAX_RELATIVE_QUALITY_LOSS`.
    """
    def build() -> pd.DataFrame:
        table = quantization_table(metrics)
        if table.empty:
            raise _Missing(table.attrs.get("note", "no quantization table"))
        rows = {}
        for model, part in table.groupby("model", sort=False):
            ref = part[part["variant"] == "float32"]
            candidates = part[part["variant"].isin(["dynamic_int8", "full_int8"])]
            if "ok" in candidates:
                candidates = candidates[candidates["ok"].astype(bool)]
            if ref.empty:
                continue
            if candidates.empty:  # no int8 conversion worked: the claim fails for this model
                rows[model] = {"int8 variant": "none converted", "x smaller": np.nan,
                               "speed-up": np.nan, "quality": "not measured", "size ok": False,
                               "latency ok": False, "quality ok": False, "all ok": False}
                continue
            ref_quality = _num(ref["quality"].iloc[0]) if "quality" in ref else float("nan")
            best = None
            for _, row in candidates.iterrows():
                quality_ok, quality = _quality_check(str(row.get("quality_metric", "")),
                                                     ref_quality, _num(row.get("quality")))
                checks = {"int8 variant": row["variant"], "x smaller": _num(row.get("x_smaller")),
                          "speed-up": _num(row.get("speedup")), "quality": quality,
                          "size ok": _num(row.get("x_smaller")) >= MIN_X_SMALLER,
                          "latency ok": _num(row.get("speedup")) >= MIN_SPEEDUP,
                          "quality ok": quality_ok}
                checks["all ok"] = checks["size ok"] and checks["latency ok"] and quality_ok
                score = sum(bool(checks[k]) for k in ("size ok", "latency ok", "quality ok"))
                if best is None or score > best[0]:
                    best = (score, checks)
            rows[model] = best[1]
        if not rows:
            raise _Missing(f"metrics/{QUANTIZATION}.json has no model with float32 and int8 variants")
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    return _table(build)


def _claim_quantization(metrics: Mapping[str, Any]) -> tuple[str, str]:
    checks = quantization_checks(metrics)
    if checks.empty:
        return NOT_MEASURABLE, f"not measured: {checks.attrs.get('note', 'no measurement')}"
    parts = []
    for model, row in checks.iterrows():
        if not math.isfinite(_num(row["x smaller"])):
            parts.append(f"{model}: no int8 variant converted, fails")
            continue
        failed = [name for name, key in (("size", "size ok"), ("latency", "latency ok"),
                                         ("quality", "quality ok")) if not row[key]]
        parts.append(f"{model} ({row['int8 variant']}): {row['x smaller']:.1f}x smaller, "
                     f"{row['speed-up']:.2f}x float32's speed, {row['quality']}"
                     + (f", fails {', '.join(failed)}" if failed else ", passes"))
    verdict = SUPPORTED if bool(checks["all ok"].all()) else NOT_SUPPORTED
    return verdict, "notebook 06: " + "; ".join(parts)


def _claim_search(metrics: Mapping[str, Any]) -> tuple[str, str]:
    measurements: list[tuple[str, float, float]] = []  # (label, recall, p95 ms)
    notes = []
    try:
        scann = _get(metrics, RETRIEVAL, "scann")
        latency = scann.get("latency_ms") or {}
        served = latency.get("ScaNN") or {}
        brute = latency.get("brute force") or {}
        recall = _num(scann.get("recall@10_vs_brute_force"))
        measurements.append(("notebook 04, ScaNN recommendation index", recall,
                             _num(served.get("p95_ms"))))
        if brute:
            notes.append(f"brute force p95 {_num(brute.get('p95_ms')):.2f} ms on the same requests")
    except _Missing as missing:
        return NOT_MEASURABLE, f"not measured: {missing}"
    try:
        m = _stage(metrics, SEARCH)
        if m.get("has_queries") is not False and m.get("served_overlap_at_k") is not None:
            measurements.append(("notebook 08, served ScaNN search model (query encoding included)",
                                 _num(m["served_overlap_at_k"]),
                                 _num((m.get("served_latency_ms") or {}).get("p95_ms"))))
    except _Missing as missing:
        notes.append(f"search not measured: {missing}")
    parts, ok = [], True
    for label, recall, p95 in measurements:
        passed = recall >= MIN_ANN_RECALL and p95 <= MAX_REALTIME_P95_MS
        ok &= passed
        parts.append(f"{label}: {recall:.3f} of the exact top 10 returned, p95 latency "
                     f"{p95:.2f} ms ({'passes' if passed else 'fails'})")
    if any(not math.isfinite(r) or not math.isfinite(p) for _, r, p in measurements[:1]):
        return NOT_MEASURABLE, "; ".join(parts + notes)
    return (SUPPORTED if ok else NOT_SUPPORTED), "; ".join(parts + notes)


_CLAIM_TESTS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "pretrained_text": _claim_pretrained_text,
    "fusion_beats_single": _claim_fusion,
    "attention_fusion": _claim_attention,
    "quantization": _claim_quantization,
    "approximate_search": _claim_search,
}


def claims_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The seeds' claims, each with its measurement on this data set and a verdict.

    The rules, thresholds included, are in :data:`CLAIM_RULES` (one per claim):

    1. *Pretrained language-model features improve recommendation*: notebook
       04's text tower vs ID-only on cold-start items (among the new
       items, Recall@10), ID + text vs ID-only on warm items (Recall@50),
       notebook 02's MiniLM vs TF-IDF probe, notebook 08's dense retrieval vs
       BM25 (NDCG@10). Supported when more comparisons favour than oppose and
       a notebook 04 comparison favours.
    2. *Fusion beats any single source*: notebook 03 best fusion vs best single
       modality; notebook 04 ``fused`` vs the best of popularity, ID-only and
       the text tower, warm and cold. Supported when every comparison favours.
    3. *Attention beats simpler fusion*: notebook 03 attention vs the better of
       concat and gated.
    4. *Quantization*: notebook 06, per model, an int8 variant >= 3.5x
       smaller, >= 1.05x faster, quality within tolerance (cosine >= 0.99,
       task metric <= 2% worse). Supported when every model passes.
    5. *Approximate search*: notebook 04 ScaNN returns >= 0.95 of the exact top
       10 with p95 latency <= 50 ms (and notebook 08's served search, if run).

    A comparison favours a claim when the difference exceeds
    ``max(ABS_TOLERANCE, REL_TOLERANCE x baseline)`` (0.005, 2%).

    Returns:
        DataFrame indexed by claim id (:data:`CLAIMS`), columns ``claim``,
        ``evidence`` (the measurement in words with numbers) and ``verdict``
        (one of :data:`VERDICTS`). A missing metrics file or key gives "not
        measurable here" with the reason in ``evidence``.
    """
    rows = {}
    for claim_id, text in CLAIMS.items():
        try:
            verdict, evidence = _CLAIM_TESTS[claim_id](metrics)
        except _Missing as missing:  # defensive: every test catches its own
            verdict, evidence = NOT_MEASURABLE, f"not measured: {missing}"
        rows[claim_id] = {"claim": text, "evidence": evidence, "verdict": verdict}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("id")


# ============================================================================ figures


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (for the report; the notebook still shows it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def plot_retrieval(metrics: Mapping[str, Any], metric: str = "recall@50"):
    """Grouped bars: ``metric`` of every retrieval model on warm and cold-start items (None if absent)."""
    import matplotlib.pyplot as plt

    table = retrieval_table(metrics, columns=(metric,))
    columns = [c for c in (f"warm {metric}", f"cold (all items) {metric}") if c in table]
    if table.empty or not columns:
        return None
    frame = table[columns].rename(columns=lambda c: c.replace(f" {metric}", ""))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(frame) + 2), 3.6))
    frame.plot.bar(ax=ax)
    ax.set_xticklabels(frame.index, rotation=25, ha="right")
    ax.set_xlabel("")
    ax.set_ylabel(metric.capitalize())
    ax.set_title(f"Retrieval over the full catalogue: warm vs cold-start ({_dataset(metrics)})")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_chain(metrics: Mapping[str, Any]):
    """Horizontal bars: NDCG@10 of retrieval alone and of each chain (None if absent)."""
    import matplotlib.pyplot as plt

    table = chain_table(metrics)
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.2))
    colors = ["tab:grey" if i == 0 else "tab:blue" for i in range(len(table))]
    ax.barh(table.index[::-1], table["NDCG@10"].to_numpy()[::-1], color=colors[::-1])
    ax.set_xlabel("NDCG@10 (test users)")
    ax.set_title("Retrieval alone vs retrieve-then-rank")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_fusion(metrics: Mapping[str, Any]):
    """Horizontal bars: each single modality (grey) and fusion (blue) on notebook 03's task."""
    import matplotlib.pyplot as plt

    table = fusion_table(metrics)
    metric = str(metrics.get(FUSION, {}).get("metric", "ndcg@10")) if isinstance(
        metrics.get(FUSION), Mapping) else "ndcg@10"
    if table.empty or metric not in table:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").dropna()
    kinds = table.loc[values.index, "kind"] if "kind" in table else pd.Series("", index=values.index)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(values) + 1.2))
    ax.barh(values.index[::-1], values.to_numpy()[::-1],
            color=["tab:blue" if k == "fusion" else "tab:grey" for k in kinds[::-1]])
    ax.set_xlabel(f"held-out {metric}")
    ax.set_title("Single modalities (grey) and fusions (blue)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_quantization(metrics: Mapping[str, Any], x: str = "size_mb"):
    """Quality against ``x`` (``size_mb`` or ``median_ms``), one panel per model (None if absent)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    table = quantization_table(metrics)
    if table.empty or x not in table or "quality" not in table:
        return None
    data = table.dropna(subset=[x, "quality"])
    if "ok" in data:
        data = data[data["ok"].astype(bool)]
    models = list(dict.fromkeys(data["model"]))
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(4.3 * len(models), 3.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = data[data["model"] == model]
        ax.scatter(part[x], part["quality"], s=36)
        for _, row in part.iterrows():
            ax.annotate(str(row["variant"]), (row[x], row["quality"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        values = part[x].to_numpy(float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25, y=0.2)
        ax.set_xlabel({"size_mb": "file size (MB)",
                       "median_ms": "single-query latency, median (ms)"}.get(x, x))
        ax.set_ylabel(str(part["quality_metric"].iloc[0]) if "quality_metric" in part else "quality")
        ax.set_title(str(model))
        ax.grid(alpha=0.3)
    fig.suptitle("Quantization: " + ("size" if x == "size_mb" else "latency") + " against quality")
    fig.tight_layout()
    return fig


def plot_search(metrics: Mapping[str, Any]):
    """Grouped bars: NDCG@10 of each search method per query kind (None if absent)."""
    import matplotlib.pyplot as plt

    table = search_table(metrics)
    columns = [c for c in table if c.endswith("ndcg@10")]
    if table.empty or not columns:
        return None
    frame = table[columns].rename(columns=lambda c: c.replace(" ndcg@10", "")).T
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(frame) + 2), 3.6))
    frame.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("NDCG@10 (test queries)")
    ax.set_title("Product search by query kind")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


#: Figure name -> (plot function, report section it belongs to, caption).
_FIGURES: dict[str, tuple[Callable[[Mapping[str, Any]], Any], str, str]] = {
    "retrieval": (plot_retrieval, "retrieval", "Recall@50 of every retrieval model, warm and cold-start"),
    "chain": (plot_chain, "chain", "NDCG@10 of retrieval alone and of each chain"),
    "fusion": (plot_fusion, "fusion", "Held-out NDCG@10 of each modality and fusion"),
    "quantization_size": (lambda m: plot_quantization(m, "size_mb"), "quantization",
                          "Quantized variants: file size against quality"),
    "quantization_latency": (lambda m: plot_quantization(m, "median_ms"), "quantization",
                             "Quantized variants: single-query latency against quality"),
    "search": (plot_search, "search", "NDCG@10 of each search method per query kind"),
}


def default_figures(metrics: Mapping[str, Any]) -> dict[str, bytes]:
    """Every report figure the metrics allow, as PNG bytes (figures are closed after rendering)."""
    import matplotlib.pyplot as plt

    out = {}
    for name, (plot, _, _) in _FIGURES.items():
        fig = plot(metrics)
        if fig is not None:
            out[name] = figure_png(fig)
            plt.close(fig)
    return out


# ============================================================================ the document


def _run_field(metrics: Mapping[str, Any], key: str) -> str | None:
    """The first notebook summary's ``key`` (``"dataset"``, ``"profile"``), in series order."""
    for stage in STAGES:
        summary = metrics.get(stage)
        if isinstance(summary, Mapping) and summary.get(key):
            return str(summary[key])
    return None


def _dataset(metrics: Mapping[str, Any]) -> str:
    return _run_field(metrics, "dataset") or "unknown data set"


def _profile(metrics: Mapping[str, Any]) -> str:
    return _run_field(metrics, "profile") or "unknown profile"


def _format(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if v != 0 and abs(v) < 0.001:
            return f"{v:.2e}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "–"
    text = str(value)
    return text if text else "–"


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with every cell formatted as text (the same strings in Markdown and HTML)."""
    index = frame.index if not _has_index(frame) else pd.Index(
        [_format(i) for i in frame.index], name=frame.index.name)
    return pd.DataFrame({str(c): [_format(v) for v in frame[c].tolist()] for c in frame.columns},
                        index=index)


@dataclasses.dataclass
class _Block:
    kind: str           # heading | paragraph | table | figure | list
    content: Any
    level: int = 2
    caption: str = ""


def _document(metrics: Mapping[str, Any], figures: Mapping[str, Any]) -> list[_Block]:
    blocks: list[_Block] = []

    def heading(text: str, level: int = 2) -> None:
        blocks.append(_Block("heading", text, level))

    def para(text: str) -> None:
        blocks.append(_Block("paragraph", text))

    def table(frame: pd.DataFrame, missing: str = "") -> None:
        if frame.empty:
            para(f"*Not measurable here:* {frame.attrs.get('note', missing or 'no data')}.")
        else:
            blocks.append(_Block("table", frame))
            if frame.attrs.get("note"):
                para(str(frame.attrs["note"]))

    def figures_of(section: str) -> None:
        for name in figures:
            if _FIGURES.get(name, (None, "other"))[1] == section:
                blocks.append(_Block("figure", name, caption=_FIGURES[name][2]))

    dataset, profile = _dataset(metrics), _profile(metrics)
    heading(f"Evaluation report: {dataset} ({profile} profile)", 1)
    para("Every number below is read from the metrics files the notebooks of this run wrote "
         "(`artifacts/metrics/*.json`); none is typed by hand. Sections whose notebook has not "
         "run say so.")
    sources = sources_table(metrics)
    table(sources)
    datasets = {d for d in sources["dataset"].dropna()}
    if len(datasets) > 1:
        para(f"**Warning:** the metrics files come from different data sets ({', '.join(sorted(datasets))}); "
             "re-run the series into one run directory.")

    heading("The data (notebook 01)")
    table(data_table(metrics))

    heading("All retrieval models, warm and cold-start (notebook 04)")
    para("Every model ranks the whole catalogue for each test user, the user's training items "
         "removed. *Warm*: the user's last interaction, with an item seen in training. *Cold "
         "(all items)*: interactions with items no model saw in training, ranked against the "
         "whole catalogue; *cold (new items only)*: the same, ranked among the new items.")
    table(retrieval_table(metrics))
    figures_of("retrieval")

    heading("Retrieval alone versus the chain (notebook 05)")
    para("The ranker scores (user, item) pairs with a deep & cross network; chained, it "
         "re-orders the top retrieved items. Retrieval Recall is the ceiling of any re-ranker.")
    table(ranking_table(metrics))
    table(chain_table(metrics))
    figures_of("chain")

    heading("The fusion comparison (notebook 03)")
    para("Each model is trained on the same items and scored on held-out items by item-to-item "
         "retrieval (do an item's nearest items share its relevance attributes?).")
    table(fusion_table(metrics))
    table(image_encoder_table(metrics))
    figures_of("fusion")

    heading("The quantization trade-off (notebook 06)")
    para("`x_smaller` and `speedup` are relative to the same model's float32 TFLite file; quality "
         "is measured on held-out data against the float model.")
    table(quantization_table(metrics))
    table(index_table(metrics))
    figures_of("quantization")

    heading("Product search (notebook 08)")
    table(search_table(metrics))
    figures_of("search")

    heading("The seeds' claims, tested")
    para("Each claim comes from the articles this course reproduces. The verdict is computed from "
         "the numbers by the rule below it: *supported*, *not supported* (the data here do not "
         "back the claim), or *not measurable here* (a notebook or a measurement is missing).")
    claims = claims_table(metrics)
    table(claims)
    blocks.append(_Block("list", [f"**{CLAIMS[k]}** {CLAIM_RULES[k]}" for k in CLAIMS]))
    heading("Quantization, model by model", 3)
    table(quantization_checks(metrics))
    heading("The text probe (notebook 02)", 3)
    table(text_probe_table(metrics))

    heading("Published numbers under their own protocol (MovieLens 100K)")
    para(f"Protocol: {TFRS_PROTOCOL}")
    para(f"The tutorial: [{TFRS_TUTORIAL_URL}]({TFRS_TUTORIAL_URL}). Its own printed accuracy is "
         "not copied here as a measurement; read it there, next to the rows measured here.")
    table(tfrs_protocol_table(metrics))

    leftover = [n for n in figures if n not in _FIGURES]
    if leftover:
        heading("Other figures")
        for name in leftover:
            blocks.append(_Block("figure", name, caption=name))
    return blocks


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _has_index(frame: pd.DataFrame) -> bool:
    """False for a plain 0..n-1 index, which the report does not show."""
    return not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)


def _markdown_table(frame: pd.DataFrame) -> str:
    shown, indexed = _display(frame), _has_index(frame)
    header = ([shown.index.name or ""] if indexed else []) + list(shown.columns)
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "| " + " | ".join("---" for _ in header) + " |"]
    for index, row in shown.iterrows():
        cells = ([index] if indexed else []) + row.tolist()
        lines.append("| " + " | ".join(_md_escape(v) for v in cells) + " |")
    return "\n".join(lines)


def _render_markdown(blocks: Iterable[_Block], figure_files: Mapping[str, str]) -> str:
    out = []
    for block in blocks:
        if block.kind == "heading":
            out.append("#" * block.level + " " + block.content)
        elif block.kind == "paragraph":
            out.append(block.content)
        elif block.kind == "table":
            out.append(_markdown_table(block.content))
        elif block.kind == "list":
            out.append("\n".join(f"{i}. {item}" for i, item in enumerate(block.content, 1)))
        elif block.kind == "figure" and block.content in figure_files:
            out.append(f"![{block.caption}]({figure_files[block.content]})")
    return "\n\n".join(out) + "\n"


_INLINE = [
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"\*([^*\s][^*]*)\*"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline_html(text: str) -> str:
    """Escape, then turn the little Markdown the report uses (code, bold, italics, links) into HTML.

    Code spans are converted first and left alone by the other rules.
    """
    parts = re.split(r"`([^`]+)`", str(text))
    out = []
    for i, part in enumerate(parts):
        escaped = html.escape(part, quote=False)
        if i % 2:  # inside backticks
            out.append(f"<code>{escaped}</code>")
            continue
        for pattern, replacement in _INLINE:
            escaped = pattern.sub(replacement, escaped)
        out.append(escaped)
    return "".join(out)


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; }
"""


def _render_html(blocks: Iterable[_Block], figure_png_bytes: Mapping[str, bytes], title: str) -> str:
    body = []
    for block in blocks:
        if block.kind == "heading":
            body.append(f"<h{block.level}>{_inline_html(block.content)}</h{block.level}>")
        elif block.kind == "paragraph":
            body.append(f"<p>{_inline_html(block.content)}</p>")
        elif block.kind == "table":
            body.append(_display(block.content).to_html(border=0, escape=True,
                                                        index=_has_index(block.content)))
        elif block.kind == "list":
            body.append("<ol>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.content) + "</ol>")
        elif block.kind == "figure" and block.content in figure_png_bytes:
            data = base64.b64encode(figure_png_bytes[block.content]).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block.caption)}" '
                        f'src="data:image/png;base64,{data}"/><figcaption>'
                        f"{html.escape(block.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _as_png(figure: Any) -> bytes:
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    if isinstance(figure, (str, Path)):
        return Path(figure).read_bytes()
    return figure_png(figure)


def write_report(metrics: Mapping[str, Any], out_dir: str | Path,
                 figures: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``report.md`` (with PNG figures beside it) and a self-contained ``report.html``.

    Args:
        metrics: ``{stage: summary}`` from :func:`recsys_utils.artifacts.read_metrics`.
        out_dir: the report directory (see :func:`report_dir`); created if needed.
        figures: name -> matplotlib Figure, PNG bytes or PNG path. Known names
            (``retrieval``, ``chain``, ``fusion``, ``quantization_size``,
            ``quantization_latency``, ``search``) go into their section, others
            at the end. ``None``: :func:`default_figures`.

    Returns:
        ``{"markdown": path, "html": path, "figure:<name>": png path, ...}``.
        Every file is written atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {name: _as_png(fig) for name, fig in (default_figures(metrics) if figures is None
                                                 else figures).items()}
    paths: dict[str, Path] = {}
    files = {}
    for name, data in pngs.items():
        path = out_dir / f"figure_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)  # a report is for reading (mkstemp creates 0600)
        paths[f"figure:{name}"] = path
        files[name] = path.name
    blocks = _document(metrics, pngs)
    title = blocks[0].content
    markdown, page = _render_markdown(blocks, files), _render_html(blocks, pngs, title)
    for key, name, text in (("markdown", "report.md", markdown), ("html", "report.html", page)):
        path = out_dir / name
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o644)
        paths[key] = path
    return {"markdown": paths.pop("markdown"), "html": paths.pop("html"), **paths}
