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
                    MIN_ANN_RECALL, MIN_COSINE, MIN_MEASURABLE_MS, MIN_SPEEDUP, MIN_X_SMALLER,
                    NOT_MEASURABLE, NOT_SUPPORTED, REL_TOLERANCE, SUPPORTED, UNFUSED)
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
    #: 95% interval of ``better - other`` over test users, where the notebook measured one.
    interval: tuple[float, float] | None = None

    @property
    def outcome(self) -> str:
        if not (math.isfinite(self.better) and math.isfinite(self.other)):
            return "not measured"
        if self.interval is not None:  # a difference whose interval holds 0 is a tie
            low, high = self.interval
            return "favours" if low > 0 else "against" if high < 0 else "tie"
        tolerance = max(ABS_TOLERANCE, REL_TOLERANCE * abs(self.other))
        diff = self.better - self.other
        return "favours" if diff > tolerance else "against" if diff < -tolerance else "tie"

    def describe(self) -> str:
        interval = ("" if self.interval is None else
                    f", 95% interval [{self.interval[0]:+.3f}, {self.interval[1]:+.3f}]")
        return (f"{self.label}: {self.better_name} {self.metric} {self.better:.3f} vs "
                f"{self.other_name} {self.other:.3f} ({self.better - self.other:+.3f}"
                f"{interval}, {self.outcome})")


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


_SPLIT_OF_SETTING = {"warm": "test", "cold (all items)": "test_cold"}


def _interval_row(metrics: Mapping[str, Any], better: str, other: str, setting: str,
                  metric: str = "recall@50") -> Mapping[str, Any] | None:
    """Notebook 04's paired comparison of ``better`` with ``other`` (test users), if it made one."""
    split = _SPLIT_OF_SETTING.get(setting)
    for row in _stage(metrics, RETRIEVAL).get("intervals") or ():
        if (row.get("a"), row.get("b"), row.get("split"), row.get("metric")) == (
                better, other, split, metric):
            return row
    return None


def _interval(metrics: Mapping[str, Any], better: str, other: str, setting: str,
              metric: str = "recall@50") -> tuple[float, float] | None:
    """Notebook 04's bootstrap interval of ``better - other`` (test users), if it measured one."""
    row = _interval_row(metrics, better, other, setting, metric)
    return None if row is None else (_num(row["low"]), _num(row["high"]))


def _claim_pretrained_text(metrics: Mapping[str, Any]) -> tuple[str, str]:
    comparisons: list[_Comparison | _Joint] = []
    reasons: list[str] = []
    recommendation: list[_Comparison] = []
    try:
        rows = _retrieval_rows(metrics)
        absent = [v for v in ("content_text", "content_facts") if v not in rows]
        if absent:  # every profile trains both (text_variants=True): an incomplete run
            raise _Missing(f"notebook 04 trained no {' or '.join(absent)} model (its profile "
                           "has no text variants)")
        # The clean test: the same content tower with and without the MiniLM vectors.
        for setting in ("warm", "cold (all items)"):
            recommendation.append(_Comparison(
                f"notebook 04, {setting}", "text + facts tower",
                _setting_value(rows, "content_text", setting, "recall@50"), "facts-only tower",
                _setting_value(rows, "content_facts", setting, "recall@50"), "Recall@50",
                _interval(metrics, "content_text", "content_facts", setting)))
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
                                              "notebook 07, test queries", "dense (MiniLM)", "BM25"))
    except _Missing as missing:
        reasons.append(str(missing))
    measured = [c for c in comparisons if c.outcome != "not measured"]
    evidence = "; ".join([c.describe() for c in comparisons]
                         + [f"not measured: {r}" for r in reasons])
    if not any(c.outcome != "not measured" for c in recommendation):
        return NOT_MEASURABLE, evidence or "no measurement"
    favour = sum(c.outcome == "favours" for c in measured)
    against = sum(c.outcome == "against" for c in measured)
    ties = len(measured) - favour - against
    rec = [c.outcome for c in recommendation]
    # Ties count as not favouring: "improves" needs more than half of what was measured.
    majority = 2 * favour > len(measured)
    verdict = (SUPPORTED if majority and "favours" in rec and "against" not in rec
               else NOT_SUPPORTED)
    why = ("" if verdict == SUPPORTED else
           " A notebook 04 comparison goes against the claim." if "against" in rec else
           " No notebook 04 comparison favours the claim." if "favours" not in rec else
           " That is not a majority.")
    return verdict, (f"{evidence.rstrip('.')}. {favour} of {len(measured)} measured comparisons favour the "
                     f"claim, {ties} tie, {against} against it.{why}")


def _search_comparison(metrics: Mapping[str, Any], better: str, other: str, label: str,
                       better_name: str, other_name: str) -> _Comparison:
    m = _stage(metrics, SEARCH)
    if m.get("has_queries") is False:
        raise _Missing(f"notebook 07: {m.get('note') or 'no search queries on this data set'}")
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
        singles = [v for v in UNFUSED if v in rows]
        for setting in ("warm", "cold (all items)"):
            name, value = _best_of({v: _setting_value(rows, v, setting, "recall@50") for v in singles})
            fused, label = _setting_value(rows, "fused", setting, "recall@50"), f"notebook 04, {setting}"
            row = _interval_row(metrics, "fused", name, setting)
            if row is not None and row.get("new_item_shift") is not None:
                # A profile gives new items many slots; notebook 04 compared the tower at its share.
                fused, value = _num(row["value_a"]), _num(row["value_b"])
                label += f", the fused tower at {name}'s share of new items in the top 50"
            comparisons.append(_Comparison(label, "fused tower", fused,
                                           f"best unfused model ({name})", value, "Recall@50",
                                           _interval(metrics, "fused", name, setting)))
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


def _quality_check(metric_name: str, reference: float, value: float,
                   interval: tuple[float, float] | None = None) -> tuple[bool | None, str]:
    """Claim 4's quality check: ``None`` (not measurable) when a number is missing.

    ``interval``: notebook 06's paired 95% interval of the variant's metric minus
    float32's (towers); a loss whose interval holds 0 is within the sample's noise.
    """
    name = metric_name.lower()
    if not math.isfinite(value):
        return None, "quality not measured"
    if "cosine" in name:
        return bool(value >= MIN_COSINE), f"worst cosine to float32 {value:.4f}"
    if not math.isfinite(reference) or reference == 0:
        return None, "no float32 quality to compare with"
    lower_is_better = "rmse" in name or "lower is better" in name or "loss" in name
    loss = (value - reference) / abs(reference) if lower_is_better else (reference - value) / abs(reference)
    short = metric_name.split(" (")[0]
    change = f"{loss:.1%} worse" if loss > 0 else f"{-loss:.1%} better"
    text = f"{short} {value:.4f} vs float32 {reference:.4f} ({change})"
    if interval is not None and loss > MAX_RELATIVE_QUALITY_LOSS and interval[0] <= 0 <= interval[1]:
        return True, (f"{text}, a difference within noise: 95% interval "
                      f"[{interval[0]:+.4f}, {interval[1]:+.4f}]")
    return bool(loss <= MAX_RELATIVE_QUALITY_LOSS), text


def _latency_check(ref_ms: float, speedup: float) -> tuple[bool | None, str]:
    """Claim 4's latency check: ``None`` (not judged) below :data:`MIN_MEASURABLE_MS`."""
    if not math.isfinite(ref_ms):
        return None, "float32 latency not measured"
    if ref_ms < MIN_MEASURABLE_MS:
        return None, (f"float32 median {ref_ms:.2f} ms < {MIN_MEASURABLE_MS:g} ms: too fast to "
                      "measure a speed-up here")
    if not math.isfinite(speedup):
        return None, "int8 latency not measured"
    return bool(speedup >= MIN_SPEEDUP), f"{speedup:.2f}x float32's speed (float32 median {ref_ms:.2f} ms)"


def _not_judged(variant: str, quality: str, all_ok: bool | None) -> dict[str, Any]:
    return {"int8 variant": variant, "x smaller": np.nan, "speed-up": np.nan,
            "latency": "not measured", "quality": quality, "size ok": None, "latency ok": None,
            "quality ok": None, "all ok": all_ok}


def quantization_checks(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Claim 4, per model: the int8 variant that passes most checks, and each check.

    Columns: ``int8 variant``, ``x smaller``, ``speed-up``, ``latency`` (the
    latency check in words), ``quality``, ``size ok``, ``latency ok``,
    ``quality ok``, ``all ok``. Thresholds: :data:`MIN_X_SMALLER`,
    :data:`MIN_SPEEDUP`, :data:`MIN_COSINE`, :data:`MAX_RELATIVE_QUALITY_LOSS`.
    ``latency ok`` is ``None`` (not judged) when the float32 median is below
    :data:`MIN_MEASURABLE_MS`; ``all ok`` is then the size and quality checks.
    A model with no int8 variant converted fails (``all ok`` False); one with
    no float32 row cannot be judged (``all ok`` None).
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
                candidates = candidates[candidates["ok"].fillna(False).astype(bool)]
            if ref.empty:  # nothing to compare with: this model cannot pass, nor fail
                rows[model] = _not_judged("no float32 reference",
                                          "no float32 variant to compare with", None)
                continue
            if candidates.empty:  # no int8 conversion worked: the claim fails for this model
                rows[model] = _not_judged("none converted", "not measured", False)
                continue
            ref_quality = _num(ref["quality"].iloc[0]) if "quality" in ref else float("nan")
            ref_ms = _num(ref["median_ms"].iloc[0]) if "median_ms" in ref else float("nan")
            best = None
            intervals = ((_stage(metrics, QUANTIZATION).get("towers") or {}).get(
                "recall_difference_interval") or {}) if model == "towers" else {}
            for _, row in candidates.iterrows():
                interval = intervals.get(row["variant"])
                quality_ok, quality = _quality_check(
                    str(row.get("quality_metric", "")), ref_quality, _num(row.get("quality")),
                    None if interval is None else (_num(interval[0]), _num(interval[1])))
                latency_ok, latency = _latency_check(ref_ms, _num(row.get("speedup")))
                x_smaller = _num(row.get("x_smaller"))
                size_ok = bool(x_smaller >= MIN_X_SMALLER) if math.isfinite(x_smaller) else None
                checks = {"int8 variant": row["variant"], "x smaller": x_smaller,
                          "speed-up": _num(row.get("speedup")), "latency": latency,
                          "quality": quality, "size ok": size_ok, "latency ok": latency_ok,
                          "quality ok": quality_ok}
                outcomes = [checks[k] for k in ("size ok", "latency ok", "quality ok")]
                # A failed check fails the model; an unmeasured size or quality leaves it
                # unjudged (None); latency may be left out (too fast to measure).
                checks["all ok"] = (False if False in outcomes else
                                    None if size_ok is None or quality_ok is None else True)
                score = sum(o is True for o in outcomes)
                if best is None or score > best[0]:
                    best = (score, checks)
            rows[model] = best[1]
        if not rows:
            raise _Missing(f"metrics/{QUANTIZATION}.json has no model with float32 and int8 variants")
        frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
        frame = frame.astype({k: object for k in ("size ok", "latency ok", "quality ok", "all ok")})
        frame.attrs["note"] = (f"latency ok is blank when the model's float32 median is below "
                               f"{MIN_MEASURABLE_MS:g} ms (too fast to measure a speed-up here): "
                               "that model is judged on size and quality.")
        return frame
    return _table(build)


def _claim_quantization(metrics: Mapping[str, Any]) -> tuple[str, str]:
    checks = quantization_checks(metrics)
    if checks.empty:
        return NOT_MEASURABLE, f"not measured: {checks.attrs.get('note', 'no measurement')}"
    parts = []
    for model, row in checks.iterrows():
        if row["int8 variant"] == "no float32 reference":
            parts.append(f"{model}: no float32 variant to compare with, not measurable")
            continue
        if row["int8 variant"] == "none converted":
            parts.append(f"{model}: no int8 variant converted, fails")
            continue
        failed = [name for name, key in (("size", "size ok"), ("latency", "latency ok"),
                                         ("quality", "quality ok")) if row[key] is False]
        unmeasured = [name for name, key in (("size", "size ok"), ("quality", "quality ok"))
                      if row[key] is None]
        judged = "" if row["latency ok"] is not None else " size and quality"
        size = (f"{row['x smaller']:.1f}x smaller" if math.isfinite(_num(row["x smaller"]))
                else "size ratio not measured")
        outcome = (f", fails {', '.join(failed)}" if failed else
                   f", {' and '.join(unmeasured)} not measurable" if unmeasured else
                   f", passes{judged}")
        parts.append(f"{model} ({row['int8 variant']}): {size}, {row['latency']}, "
                     f"{row['quality']}{outcome}")
    evidence = "notebook 06: " + "; ".join(parts)
    if not any(v is not None for v in checks["latency ok"]):
        evidence += (". Latency not measurable here for any model (a float32 median below "
                     f"{MIN_MEASURABLE_MS:g} ms, or missing), so the verdict rests on size and "
                     "quality alone")
    outcomes = list(checks["all ok"])
    verdict = (NOT_SUPPORTED if any(o is False for o in outcomes) else
               NOT_MEASURABLE if any(o is None for o in outcomes) else SUPPORTED)
    return verdict, evidence


def _check(value: float, passes: Callable[[float], bool], describe: Callable[[float], str],
           missing: str) -> tuple[bool | None, str]:
    """One check of claim 5: ``None`` (not measurable) when ``value`` is missing or NaN."""
    if not math.isfinite(value):
        return None, f"{missing} not measured"
    ok = bool(passes(value))
    return ok, f"{describe(value)} ({'passes' if ok else 'fails'})"


def _served_leaves(scann: Mapping[str, Any]) -> tuple[float, float]:
    """(leaves the served index searches, leaves the index has), from notebook 04's sweep."""
    searched = _num(scann.get("num_leaves_to_search"))
    total = float("nan")
    for row in scann.get("sweep") or []:
        if isinstance(row, Mapping) and row.get("index") == "scann":
            if _num(row.get("num_leaves_to_search")) == searched or not math.isfinite(total):
                total = _num(row.get("num_leaves"))
    return searched, total


def _leaves_check(searched: float, total: float) -> tuple[bool | None, str]:
    """Does a served ScaNN index search fewer leaves than it has (i.e. is it approximate)?"""
    if not (math.isfinite(searched) and math.isfinite(total)):
        return None, "leaves searched / leaves in the index not measured"
    approximate = searched < total
    return approximate, (f"searches {searched:.0f} of {total:.0f} leaves"
                         + (" (passes)" if approximate else
                            " (fails: needed every leaf at this catalogue size, so the served "
                            "index is exhaustive search, not approximate)"))


def _claim_search(metrics: Mapping[str, Any]) -> tuple[str, str]:
    # Each check: (part of notebook 04?, passed: True / False / None = not measurable, words).
    checks: list[tuple[bool, bool | None, str]] = []
    try:
        scann = _get(metrics, RETRIEVAL, "scann")
    except _Missing as missing:
        return NOT_MEASURABLE, f"not measured: {missing}"
    latency = scann.get("latency_ms") or {}
    served, brute = latency.get("ScaNN") or {}, latency.get("brute force") or {}
    checks.append((True, *_check(_num(scann.get("recall@10_vs_brute_force")),
                                 lambda r: r >= MIN_ANN_RECALL,
                                 lambda r: f"notebook 04 ScaNN index: {r:.3f} of the exact top 10 returned",
                                 "notebook 04 ScaNN recall")))
    brute_p95 = _num(brute.get("p95_ms"))
    beside = (f" vs brute force {brute_p95:.2f} ms on the same requests"
              if math.isfinite(brute_p95) else ", brute force's not measured")
    checks.append((True, *_check(_num(served.get("p95_ms")), lambda p: p <= MAX_REALTIME_P95_MS,
                                 lambda p: f"p95 latency {p:.2f} ms{beside}",
                                 "notebook 04 ScaNN p95 latency")))
    checks.append((True, *_leaves_check(*_served_leaves(scann))))
    notes = []
    try:
        m = _stage(metrics, SEARCH)
        if m.get("has_queries") is not False and m.get("served_overlap_at_k") is not None:
            label = "notebook 07 served ScaNN search model (query encoding included)"
            checks.append((False, *_check(_num(m["served_overlap_at_k"]),
                                          lambda r: r >= MIN_ANN_RECALL,
                                          lambda r: f"{label}: {r:.3f} of the exact top 10 returned",
                                          f"{label} recall")))
            checks.append((False, *_check(_num((m.get("served_latency_ms") or {}).get("p95_ms")),
                                          lambda p: p <= MAX_REALTIME_P95_MS,
                                          lambda p: f"p95 latency {p:.2f} ms", f"{label} p95 latency")))
            index = m.get("served_index") or {}
            if index:
                checks.append((False, *_leaves_check(_num(index.get("num_leaves_to_search")),
                                                     _num(index.get("num_leaves")))))
    except _Missing as missing:
        notes.append(f"search not measured: {missing}")
    evidence = "; ".join([words for _, _, words in checks] + notes)
    if any(ok is False for _, ok, _ in checks):
        return NOT_SUPPORTED, evidence
    if any(ok is None for core, ok, _ in checks if core):
        return NOT_MEASURABLE, evidence
    return SUPPORTED, evidence


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
       04's content tower over MiniLM vectors + catalogue facts vs the same
       tower over the facts alone, warm and cold-start (Recall@50); notebook
       02's MiniLM vs TF-IDF probe; notebook 07's dense retrieval vs BM25
       (NDCG@10). Supported only when a strict majority of all measured
       comparisons favours (ties do not), a notebook 04 comparison favours and
       none goes against; not measurable without notebook 04's comparison.
    2. *Fusion beats any single source*: notebook 03 best fusion vs best single
       modality; notebook 04 ``fused`` vs the best of popularity, ID-only, the
       text tower and the facts-only tower, warm and cold. Supported when every
       comparison favours.
    3. *Attention beats simpler fusion*: notebook 03 attention vs the better of
       concat and gated.
    4. *Quantization*: notebook 06, per model, an int8 variant >= 3.5x
       smaller, >= 1.05x faster, quality within tolerance (cosine >= 0.99,
       task metric <= 2% worse). A model whose float32 median is below
       :data:`MIN_MEASURABLE_MS` is judged on size and quality only (too fast
       to measure a speed-up). Supported when every model passes every check it
       is judged on; a model without a float32 row, or whose size or quality
       was not measured, makes it not measurable.
    5. *Approximate search*: notebook 04's served ScaNN index returns >= 0.95
       of the exact top 10, with p95 latency <= 50 ms (brute force's p95 is
       stated beside it), searching fewer leaves than the index has (an index
       that needs every leaf is exhaustive, not approximate); notebook 07's
       served search, if run, passes the first two. A missing measurement is
       not measurable here, never a failure.

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
