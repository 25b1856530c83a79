"""The seeds' claims tested: measured comparisons, the quantization checks, a verdict each.

The rules and thresholds are in :mod:`.rules`; here they are applied to the
numbers. A claim whose measurement is missing is "not measurable here", with
the reason in its evidence.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ._read import (FUSION, QUANTIZATION, RETRIEVAL, SEARCH, TEXT, _get, _Missing, _num,
                    _retrieval_rows, _stage, _table)
from .rules import (ABS_TOLERANCE, CLAIMS, MAX_REALTIME_P95_MS, MAX_RELATIVE_QUALITY_LOSS,
                    MIN_ANN_RECALL, MIN_COSINE, MIN_SPEEDUP, MIN_X_SMALLER, NOT_MEASURABLE,
                    NOT_SUPPORTED, REL_TOLERANCE, SUPPORTED)
from .tables import quantization_table


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
