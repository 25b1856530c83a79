"""The seeds' claims tested against the numbers, a verdict each.

The rules and thresholds are in :mod:`.rules`. A claim whose measurement is
missing is "not measurable here", with the reason in its evidence.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .reading import (DATA, FUSION, QUANTIZATION, RETRIEVAL, SEARCH, TEXT, Missing, dataset_name,
                      dig, interval_rows, lookup, num, retrieval_rows, stage_summary,
                      tolerant)
from .rules import (ABS_TOLERANCE, ANN_BENCHMARK, CLAIMS, MAX_REALTIME_P95_MS,
                    MAX_RELATIVE_QUALITY_LOSS, MIN_ANN_ITEMS, MIN_ANN_RECALL, MIN_ANN_SPEEDUP,
                    MIN_COSINE, MIN_MEASURABLE_MS, MIN_PRUNING_GAIN, MIN_SPEEDUP, MIN_X_SMALLER,
                    MIN_X_SMALLER_GZIP, NOT_MEASURABLE,
                    NOT_SUPPORTED, REL_TOLERANCE, SUPPORTED, UNFUSED)
from .tables import quantization_table

Verdict = tuple[str, str, str]  # (verdict, evidence, because)


@dataclasses.dataclass
class Comparison:
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
    def difference(self) -> float:
        return self.better - self.other

    @property
    def outcome(self) -> str:
        """``favours``, ``against``, ``tie`` or ``not measured``."""
        if not (math.isfinite(self.better) and math.isfinite(self.other)):
            return "not measured"
        # Without an interval, the difference widened by the noise tolerance; the tolerances are
        # read at call time, so notebook 08's exercise can move them.
        tolerance = max(ABS_TOLERANCE, REL_TOLERANCE * abs(self.other))
        low, high = self.interval or (self.difference - tolerance, self.difference + tolerance)
        return "favours" if low > 0 else "against" if high < 0 else "tie"

    def _interval_text(self) -> str:
        return ("" if self.interval is None else
                f", 95% interval [{self.interval[0]:+.3f}, {self.interval[1]:+.3f}]")

    def short(self) -> str:
        """``better`` vs ``other`` and the difference, in one clause."""
        return (f"{self.better_name} {self.better:.3f} vs {self.other_name} {self.other:.3f} "
                f"({self.difference:+.3f}{self._interval_text()})")

    def describe(self) -> str:
        return (f"{self.label}: {self.better_name} {self.metric} {self.better:.3f} vs "
                f"{self.other_name} {self.other:.3f} ({self.difference:+.3f}"
                f"{self._interval_text()}, {self.outcome})")


class _Joint:
    """Two comparisons read as one: favours only if both do, against only if both are."""

    def __init__(self, *parts: Comparison) -> None:
        self.parts = parts

    @property
    def outcome(self) -> str:
        outcomes = {p.outcome for p in self.parts}
        if "not measured" in outcomes:
            return "not measured"
        return outcomes.pop() if len(outcomes) == 1 else "tie"

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.parts) + f" → {self.outcome}"


def _or_reason(build: Callable[..., Any], *args: Any) -> Any:
    """``build(*args)``, or the message of the :class:`Missing` it raised."""
    try:
        return build(*args)
    except Missing as missing:
        return str(missing)


def _best_of(values: Mapping[str, float]) -> tuple[str, float]:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if not finite:
        raise Missing("no comparable baseline")
    name = max(finite, key=finite.get)
    return name, finite[name]


def setting_value(rows: Mapping[str, Any], variant: str, setting: str, metric: str) -> float:
    """``metric`` of ``variant`` in ``setting`` of :func:`.reading.retrieval_rows`, or NaN."""
    try:
        return num(rows[variant][setting][metric])
    except KeyError:
        return float("nan")


_SPLIT_OF_SETTING = {"warm": "test", "cold (all items)": "test_cold"}


def _interval_row(metrics: Mapping[str, Any], better: str, other: str,
                  setting: str) -> Mapping[str, Any] | None:
    """Notebook 04's paired Recall@50 comparison of ``better`` with ``other``, if it made one."""
    return next((row for row in interval_rows(metrics, better, other, _SPLIT_OF_SETTING[setting])
                 if row.get("metric") == "recall@50"), None)


def _recall_comparison(metrics: Mapping[str, Any], rows: Mapping[str, Any], label: str,
                       better: str, better_name: str, other: str, other_name: str,
                       setting: str) -> Comparison:
    """Notebook 04's Recall@50 of ``better`` vs ``other`` in ``setting``, with its interval."""
    row = _interval_row(metrics, better, other, setting)
    return Comparison(label, better_name, setting_value(rows, better, setting, "recall@50"),
                      other_name, setting_value(rows, other, setting, "recall@50"), "Recall@50",
                      None if row is None else (num(row["low"]), num(row["high"])))


def _search_results(metrics: Mapping[str, Any], *needed: str) -> Mapping[str, Any]:
    """Notebook 07's test results by method; :class:`Missing` unless every ``needed`` one is."""
    m = stage_summary(metrics, SEARCH)
    if m.get("has_queries") is False:
        raise Missing(f"notebook 07: {m.get('note') or 'no search queries on this data set'}")
    test = lookup(metrics, SEARCH, "test")
    if not all(method in test for method in needed):
        raise Missing(f"metrics/{SEARCH}.json has no {' or '.join(map(repr, needed))} results")
    return test


def _ndcg(test: Mapping[str, Any], method: str) -> float:
    return num(dig(test, method, "all", "ndcg@10"))


def _interval(metrics: Mapping[str, Any], stage: str, a: str, b: str, split: str,
              metric: str) -> tuple[float, float] | None:
    """A notebook's paired 95% interval of ``a`` minus ``b`` on ``split``, if it measured one."""
    row = next((row for row in interval_rows(metrics, a, b, split, stage)
                if row.get("metric") == metric), None)
    return None if row is None else (num(row["low"]), num(row["high"]))


#: Notebook 03's comparisons: on its test items (the winners chosen on validation items).
_CONTENT_TASK = "notebook 03, content task on test items"


def _search_interval(metrics: Mapping[str, Any], a: str, b: str) -> tuple[float, float] | None:
    """Notebook 07's interval of ``a`` minus ``b``, test-query NDCG@10."""
    return _interval(metrics, SEARCH, a, b, "test", "ndcg@10")


def _probe_comparison(metrics: Mapping[str, Any]) -> _Joint:
    """Notebook 02's linear probe, MiniLM vs TF-IDF, with 5 labels per class and with all,
    each with its interval where the notebook measured one."""
    few = lookup(metrics, TEXT, "few_shot_probe_mean")
    full = lookup(metrics, TEXT, "full_probe_mean")
    return _Joint(*(Comparison(label, "MiniLM", num(probe.get("MiniLM")), "TF-IDF",
                               num(probe.get("TF-IDF")), "accuracy",
                               _interval(metrics, TEXT, "MiniLM", "TF-IDF", f"probe, {regime}",
                                         "accuracy"))
                    for label, probe, regime in (
                        ("notebook 02 probe, 5 labels per class", few, "5 per class"),
                        ("all labels", full, "all"))))


def _dense_vs_bm25(metrics: Mapping[str, Any]) -> Comparison:
    test = _search_results(metrics, "dense", "bm25")
    return Comparison("notebook 07, test queries", "dense (MiniLM)", _ndcg(test, "dense"), "BM25",
                      _ndcg(test, "bm25"), "NDCG@10", _search_interval(metrics, "dense", "bm25"))


def _claim_pretrained_text(metrics: Mapping[str, Any]) -> Verdict:
    recommendation: list[Comparison] = []
    reasons: list[str] = []
    try:
        rows = retrieval_rows(metrics)
        absent = [v for v in ("content_text", "content_facts") if v not in rows]
        if absent:  # every profile trains both: an incomplete run
            raise Missing(f"notebook 04 trained no {' or '.join(absent)} model (an incomplete "
                          "run: run notebook 04 again)")
        # The clean test: the same content tower with and without the MiniLM vectors; then
        # pretrained against counting words: the same tower over a TF-IDF (LSA) of the texts.
        pairs = [("notebook 04", "text + facts tower", "content_facts", "facts-only tower")]
        if "content_tfidf" in rows:
            pairs.append(("notebook 04 vs bag of words", "MiniLM text + facts tower",
                          "content_tfidf", "TF-IDF text + facts tower"))
        recommendation = [
            _recall_comparison(metrics, rows, f"{where}, {setting}", "content_text", name,
                               other, other_name, setting)
            for where, name, other, other_name in pairs for setting in _SPLIT_OF_SETTING]
    except Missing as missing:
        reasons.append(str(missing))
    comparisons: list[Comparison | _Joint] = list(recommendation)
    for found in (_or_reason(_probe_comparison, metrics), _or_reason(_dense_vs_bm25, metrics)):
        (reasons if isinstance(found, str) else comparisons).append(found)
    measured = [c for c in comparisons if c.outcome != "not measured"]
    evidence = "; ".join([c.describe() for c in comparisons]
                         + [f"not measured: {r}" for r in reasons])
    rec = [c.outcome for c in recommendation if c.outcome != "not measured"]
    if not rec:
        return (NOT_MEASURABLE, evidence or "no measurement",
                "notebook 04's text vs facts-only towers not measured")
    favour, ties, against = (sum(c.outcome == o for c in measured)
                             for o in ("favours", "tie", "against"))
    # Ties count as not favouring: "improves" needs more than half of what was measured.
    majority = 2 * favour > len(measured)
    verdict = (SUPPORTED if majority and "favours" in rec and "against" not in rec
               else NOT_SUPPORTED)
    why = ("" if verdict == SUPPORTED else
           " A notebook 04 comparison goes against the claim." if "against" in rec else
           " No notebook 04 comparison favours the claim." if "favours" not in rec else
           " That is not a majority.")

    def settings(against_what: str) -> str:
        return ", ".join(f"{c.label.split(', ')[-1]} {c.difference:+.3f} Recall@50 ({c.outcome})"
                         for c in recommendation
                         if c.outcome != "not measured" and c.other_name == against_what)

    because = (f"{favour} of {len(measured)} comparisons favour MiniLM text, {ties} tie, "
               f"{against} against; text + facts vs facts alone: {settings('facts-only tower')}")
    if settings("TF-IDF text + facts tower"):
        because += f"; MiniLM vs TF-IDF tower: {settings('TF-IDF text + facts tower')}"
    return verdict, (f"{evidence.rstrip('.')}. {favour} of {len(measured)} measured comparisons "
                     f"favour the claim, {ties} tie, {against} against it.{why}"), because


def is_planted(metrics: Mapping[str, Any]) -> bool:
    """True when notebook 03's content task is the synthetic generator's planted one."""
    return (dig(metrics, FUSION, "dataset") or dataset_name(metrics)) == "synthetic"


def planted_relevance(metrics: Mapping[str, Any]) -> str:
    """The attributes the generator planted relevance on (``"a + b"``), from notebook 03."""
    relevance = dig(stage_summary(metrics, FUSION), "task", "relevance") or []
    return " + ".join(map(str, relevance)) or "the planted attributes"


def _fused_vs_unfused(metrics: Mapping[str, Any], rows: Mapping[str, Any],
                      setting: str) -> Comparison:
    """Notebook 04's fused tower vs the best model without that fusion, in ``setting``."""
    name, _ = _best_of({v: setting_value(rows, v, setting, "recall@50")
                        for v in UNFUSED if v in rows})
    return _recall_comparison(metrics, rows, f"notebook 04, {setting}", "fused", "fused tower",
                              name, f"best unfused model ({name})", setting)


_SEARCH_NAMES = {"bm25": "BM25 (words alone)", "dense": "zero-shot dense (MiniLM text alone)"}


def _fused_search(metrics: Mapping[str, Any]) -> Comparison:
    """Notebook 07's two-tower model over the fused item features vs the better single method."""
    test = _search_results(metrics, "two_tower")
    name, value = _best_of({k: _ndcg(test, k) for k in _SEARCH_NAMES if k in test})
    return Comparison("notebook 07, test queries",
                      "two-tower search model over the fused item features",
                      _ndcg(test, "two_tower"), f"better single method, {_SEARCH_NAMES[name]}",
                      value, "NDCG@10", _search_interval(metrics, "two_tower", name))


def _content_task_comparison(metrics: Mapping[str, Any]) -> Comparison:
    """Notebook 03: best fusion vs best single modality (both chosen on validation items) on the
    content task's test items."""
    m = stage_summary(metrics, FUSION)
    best, single = lookup(metrics, FUSION, "best_fusion"), lookup(metrics, FUSION, "best_single")
    label = _CONTENT_TASK + (
        " (no images on this data set: text + attributes)"
        if dig(m, "images", "present") == 0 else "")
    metric = str(m.get("metric", "ndcg@10"))
    return Comparison(label, f"best fusion ({best})", num(m.get("best_fusion_score")),
                      f"best single modality ({single})", num(m.get("best_single_score")),
                      metric.replace("ndcg", "NDCG"),
                      _interval(metrics, FUSION, str(best), str(single), "test",
                                metric))


def fusion_comparisons(metrics: Mapping[str, Any]) -> dict[str, Comparison | str]:
    """The fusion claim's comparisons by part, or the reason a part was not measured.

    Keys: ``warm`` and ``cold`` (notebook 04), ``search`` (notebook 07),
    ``content task`` (notebook 03; on the synthetic data set a sanity check,
    not evidence: see :data:`CLAIM_RULES`).
    """
    try:
        rows = retrieval_rows(metrics)
        if "fused" not in rows:
            raise Missing(f"metrics/{RETRIEVAL}.json has no fused model")
        parts = {part: _or_reason(_fused_vs_unfused, metrics, rows, setting)
                 for part, setting in zip(("warm", "cold"), _SPLIT_OF_SETTING)}
    except Missing as missing:
        parts = dict.fromkeys(("warm", "cold"), str(missing))
    parts["search"] = _or_reason(_fused_search, metrics)
    parts["content task"] = _or_reason(_content_task_comparison, metrics)
    return parts


_PART_NAMES = {"warm": "warm recommendation", "cold": "cold-start recommendation",
               "search": "product search", "content task": "notebook 03's content task"}


def _claim_fusion(metrics: Mapping[str, Any]) -> Verdict:
    parts = fusion_comparisons(metrics)
    planted = is_planted(metrics) and isinstance(parts["content task"], Comparison)
    counted = {k: v for k, v in parts.items() if not (planted and k == "content task")}
    measured = {k: c for k, c in counted.items()
                if isinstance(c, Comparison) and c.outcome != "not measured"}
    evidence = [c.describe() for c in counted.values() if isinstance(c, Comparison)]
    evidence += [f"not measured: {v}" for v in counted.values() if isinstance(v, str)]
    if planted:
        check = parts["content task"]
        evidence.append(
            f"sanity check, not counted: {check.describe()}: the synthetic generator plants "
            f"relevance ({planted_relevance(metrics)}) and splits it between image and text, and "
            "the models train on those labels, so fusion must win there; "
            + ("it does (the code works)" if check.outcome == "favours"
               else "it does not: a bug to look for"))
    if not measured:
        return (NOT_MEASURABLE, "; ".join(evidence) or "no measurement",
                "nothing counted was measured")
    groups = {word: [f"{_PART_NAMES[k]} ({c.difference:+.3f} {c.metric})"
                     for k, c in measured.items() if c.outcome == outcome]
              for outcome, word in (("favours", "fusion wins"), ("tie", "tie"),
                                    ("against", "fusion loses"))}
    because = "; ".join(f"{word}: {', '.join(named)}" for word, named in groups.items() if named)
    verdict = SUPPORTED if len(groups["fusion wins"]) == len(measured) else NOT_SUPPORTED
    return verdict, "; ".join(evidence), because


def _claim_attention(metrics: Mapping[str, Any]) -> Verdict:
    models = lookup(metrics, FUSION, "models")
    metric = str(stage_summary(metrics, FUSION).get("metric", "ndcg@10"))
    if "attention" not in models:
        raise Missing("notebook 03 trained no attention fusion")
    # The better simpler fusion as notebook 03 chose it: on validation items where it had them.
    simpler = {k: num(models[k].get(f"validation {metric}", models[k].get(metric)))
               for k in ("concat", "gated") if k in models}
    if not simpler:
        raise Missing("notebook 03 trained no concatenation or gated fusion")
    name = _best_of(simpler)[0]
    c = Comparison(_CONTENT_TASK, "attention", num(models["attention"].get(metric)),
                   f"best simpler fusion ({name})", num(models[name].get(metric)), metric,
                   _interval(metrics, FUSION, "attention", name, "test", metric))
    if c.outcome == "not measured":
        return NOT_MEASURABLE, c.describe(), "a score is missing"
    outcome = {"favours": "attention wins", "tie": "a tie", "against": "attention loses"}
    return ((SUPPORTED if c.outcome == "favours" else NOT_SUPPORTED), c.describe(),
            f"{outcome[c.outcome]}: {c.short()}")


def _quality_check(metric_name: str, reference: float, value: float,
                   interval: tuple[float, float] | None = None) -> tuple[bool | None, str]:
    """Claim 4's quality check: ``None`` (not measurable) when a number is missing.

    ``interval``: notebook 06's paired 95% interval of the variant's metric minus float32's
    (towers, higher is better). With one, the check is a non-inferiority test: it passes when
    the whole interval lies above a loss of ``MAX_RELATIVE_QUALITY_LOSS`` of float32, fails
    when the whole interval lies below it, and is ``None`` when the interval straddles it
    (a loss that holds 0 is not shown to be small).
    """
    name = metric_name.lower()
    if not math.isfinite(value):
        return None, "quality not measured"
    if "cosine" in name:
        return bool(value >= MIN_COSINE), f"worst cosine to float32 {value:.4f}"
    if not math.isfinite(reference) or reference == 0:
        return None, "no float32 quality to compare with"
    lower_is_better = "rmse" in name or "lower is better" in name or "loss" in name
    loss = (value - reference if lower_is_better else reference - value) / abs(reference)
    change = f"{loss:.1%} worse" if loss > 0 else f"{-loss:.1%} better"
    text = f"{metric_name.split(' (')[0]} {value:.4f} vs float32 {reference:.4f} ({change})"
    if interval and not lower_is_better and all(map(math.isfinite, interval)):
        margin = MAX_RELATIVE_QUALITY_LOSS * abs(reference)
        low, high = interval
        text += f", 95% interval of the difference [{low:+.4f}, {high:+.4f}]"
        if low >= -margin:
            return True, f"{text}: a loss of at most {MAX_RELATIVE_QUALITY_LOSS:.0%}"
        if high < -margin:
            return False, f"{text}: a loss of more than {MAX_RELATIVE_QUALITY_LOSS:.0%}"
        return None, (f"{text}: reaches a loss of more than {MAX_RELATIVE_QUALITY_LOSS:.0%}, "
                      "too wide to tell")
    return bool(loss <= MAX_RELATIVE_QUALITY_LOSS), text


def _latency_check(ref_ms: float, speedup: float, rounds: tuple[float, float] | None = None,
                   ref_rounds: tuple[float, float] | None = None) -> tuple[bool | None, str]:
    """Claim 4's latency check: ``None`` (not measurable) below :data:`MIN_MEASURABLE_MS`.

    ``rounds`` / ``ref_rounds``: (fastest, slowest) round median of the int8
    variant and of float32, where notebook 06 recorded them: a speed-up counts
    only when every int8 round is faster than every float32 round.
    """
    if not math.isfinite(ref_ms):
        return None, "float32 latency not measured"
    if ref_ms < MIN_MEASURABLE_MS:
        return None, (f"float32 median {ref_ms:.2f} ms < {MIN_MEASURABLE_MS:g} ms: latency not "
                      "measurable here (timer noise)")
    if not math.isfinite(speedup):
        return None, "int8 latency not measured"
    text = f"{speedup:.2f}x float32's speed (float32 median {ref_ms:.2f} ms)"
    if speedup < MIN_SPEEDUP:
        return False, text
    if rounds and ref_rounds and all(map(math.isfinite, (*rounds, *ref_rounds))):
        if not rounds[1] < ref_rounds[0]:
            return False, (f"{text}, but within the noise between timing rounds (int8 "
                           f"{rounds[0]:.2f}-{rounds[1]:.2f} ms, float32 "
                           f"{ref_rounds[0]:.2f}-{ref_rounds[1]:.2f} ms)")
        text += ", every timing round faster"
    return True, text


def _rounds(row: Any) -> tuple[float, float] | None:
    """(fastest, slowest) round median notebook 06 recorded for a variant, if it did."""
    low, high = num(dig(row, "round_min_ms")), num(dig(row, "round_max_ms"))
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


_CHECKS = (("size", "size ok"), ("latency", "latency ok"), ("quality", "quality ok"))
#: A model's verdict from its "all ok": every check passes, one fails, or one was not measurable.
_VERDICT_OF = {True: SUPPORTED, False: NOT_SUPPORTED, None: NOT_MEASURABLE}


def _not_judged(variant: str, quality: str, all_ok: bool | None) -> dict[str, Any]:
    return {"int8 variant": variant, "x smaller": np.nan, "speed-up": np.nan,
            "latency": "not measured", "quality": quality, "size ok": None, "latency ok": None,
            "quality ok": None, "all ok": all_ok, "verdict": _VERDICT_OF[all_ok]}


def _variant_checks(metrics: Mapping[str, Any], model: str, row: pd.Series, ref: pd.Series,
                    ) -> dict[str, Any]:
    """The checks of one int8 variant (``row``) of ``model`` against its float32 ``ref``."""
    summary = stage_summary(metrics, QUANTIZATION)
    interval = (dig(summary, "towers", "recall_difference_interval", row["variant"])
                if model == "towers" else None)
    quality_ok, quality = _quality_check(
        str(row.get("quality_metric", "")), num(ref["quality"]), num(row.get("quality")),
        None if interval is None else (num(interval[0]), num(interval[1])))
    raw = summary.get("variants") or {}
    latency_ok, latency = _latency_check(
        num(ref["median_ms"]), num(row.get("speedup")),
        _rounds(raw.get(f"{model}|{row['variant']}")), _rounds(raw.get(f"{model}|float32")))
    x_smaller = num(row.get("x_smaller"))
    checks = {"int8 variant": row["variant"], "x smaller": x_smaller,
              "speed-up": num(row.get("speedup")), "latency": latency, "quality": quality,
              "size ok": bool(x_smaller >= MIN_X_SMALLER) if math.isfinite(x_smaller) else None,
              "latency ok": latency_ok, "quality ok": quality_ok}
    outcomes = [checks[key] for _, key in _CHECKS]
    checks["all ok"] = False if False in outcomes else None if None in outcomes else True
    checks["verdict"] = _VERDICT_OF[checks["all ok"]]
    return checks


@tolerant
def quantization_checks(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Claim 4, per model: the int8 variant that passes most checks, and each check.

    Columns: ``int8 variant``, ``x smaller``, ``speed-up``, ``latency`` and
    ``quality`` (the checks in words), ``size ok``, ``latency ok``, ``quality ok``,
    ``all ok`` (True / False / None: every check passes / one fails / one was not
    measurable, e.g. latency below :data:`MIN_MEASURABLE_MS`) and ``verdict``. A
    model with no int8 variant converted fails; one with no float32 row cannot be judged.
    """
    table = quantization_table(metrics)
    if table.empty:
        raise Missing(table.attrs.get("note", "no quantization table"))
    rows = {}
    for model, part in table.groupby("model", sort=False):
        ref = part[part["variant"] == "float32"]
        candidates = part[part["variant"].isin(["dynamic_int8", "full_int8"])]
        if "ok" in candidates:
            candidates = candidates[candidates["ok"].fillna(False).astype(bool)]
        if ref.empty:  # nothing to compare with: this model cannot pass, nor fail
            rows[model] = _not_judged("no float32 reference",
                                      "no float32 variant to compare with", None)
        elif candidates.empty:  # no int8 conversion worked: the claim fails for this model
            rows[model] = _not_judged("none converted", "not measured", False)
        else:  # the first of the variants that pass most checks
            rows[model] = max((_variant_checks(metrics, model, row, ref.iloc[0])
                               for _, row in candidates.iterrows()),
                              key=lambda c: sum(c[key] is True for _, key in _CHECKS))
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    frame = frame.astype({k: object for k in ("size ok", "latency ok", "quality ok", "all ok")})
    frame.attrs["note"] = (f"Latency ok is blank when the model's float32 median is below "
                           f"{MIN_MEASURABLE_MS:g} ms: its latency is not measurable here, and "
                           "neither is its verdict unless size or quality fails.")
    return frame


def _claim_quantization(metrics: Mapping[str, Any]) -> dict[str, Verdict]:
    """Claim 4 per model: ``{model: (verdict, evidence, because)}``; ``{"": ...}`` if unmeasured."""
    checks = quantization_checks(metrics)
    if checks.empty:
        note = checks.attrs.get("note", "no measurement")
        return {"": (NOT_MEASURABLE, f"not measured: {note}", note)}
    out = {}
    for model, row in checks.iterrows():
        variant = row["int8 variant"]
        if variant == "no float32 reference":
            out[model] = (NOT_MEASURABLE, f"notebook 06, {model}: no float32 variant to compare "
                          "with, not measurable", "no float32 variant to compare with")
            continue
        if variant == "none converted":
            out[model] = (NOT_SUPPORTED, f"notebook 06, {model}: no int8 variant converted, fails",
                          "no int8 variant converted")
            continue
        passed, failed, unmeasured = ([name for name, key in _CHECKS if row[key] is ok]
                                      for ok in (True, False, None))
        size = (f"{row['x smaller']:.1f}x smaller" if math.isfinite(num(row["x smaller"]))
                else "size ratio not measured")
        outcome = (f"fails {', '.join(failed)}" if failed else
                   f"{' and '.join(unmeasured)} not measurable here" if unmeasured else
                   "passes size, latency and quality")
        evidence = (f"notebook 06, {model} ({variant}): {size}, {row['latency']}, "
                    f"{row['quality']}; {outcome}")
        because = "; ".join(part for part in (
            f"passes {', '.join(passed)}" if passed else "",
            f"fails {', '.join(failed)}" if failed else "",
            f"{' and '.join(unmeasured)} not measurable" if unmeasured else "") if part)
        speed = num(row["speed-up"])
        speed_text = (f", {speed:.2f}x speed" if row["latency ok"] is not None
                      and math.isfinite(speed) else "")
        because += f" ({variant}: {size}{speed_text})"
        if row["latency ok"] is None and str(row["latency"]).startswith("float32 median"):
            because += f": {str(row['latency']).split(':')[0]}"
        out[model] = (str(row["verdict"]), evidence, because)
    return out


def _check(value: float, ok: bool, text: str, missing: str,
           why: str = "") -> tuple[bool | None, str]:
    """One check of claim 5: ``None`` (not measurable) when ``value`` is missing or NaN.

    ``text`` states the measurement, ``missing`` what was not measured; ``why``
    follows the check's "passes" or "fails".
    """
    if not math.isfinite(value):
        return None, f"{missing} not measured"
    return ok, f"{text} ({'passes' if ok else 'fails'}{why})"


def _serving_checks(name: str, index: str, recall: float, p95: float,
                    beside: str = "") -> list[tuple[bool | None, str]]:
    """A served index's recall of the exact top 10 and its p95 latency, ``name``'s checks."""
    return [_check(recall, recall >= MIN_ANN_RECALL,
                   f"{index}: {recall:.3f} of the exact top 10 returned", f"{name} recall"),
            _check(p95, p95 <= MAX_REALTIME_P95_MS, f"p95 latency {p95:.2f} ms{beside}",
                   f"{name} p95 latency")]


def _served_leaves(scann: Mapping[str, Any]) -> tuple[float, float]:
    """(leaves the served index searches, leaves the index has), from notebook 04's sweep."""
    searched = num(scann.get("num_leaves_to_search"))
    total = float("nan")
    for row in scann.get("sweep") or []:
        if isinstance(row, Mapping) and row.get("index") == "scann":
            if num(row.get("num_leaves_to_search")) == searched or not math.isfinite(total):
                total = num(row.get("num_leaves"))
    return searched, total


def _leaves_check(searched: float, total: float) -> tuple[bool | None, str]:
    """Does a served ScaNN index search fewer leaves than it has (i.e. is it approximate)?"""
    unsearched = total - searched  # NaN unless both are measured
    return _check(unsearched, unsearched > 0, f"searches {searched:.0f} of {total:.0f} leaves",
                  "leaves searched / leaves in the index",
                  "" if unsearched > 0 else (": needed every leaf at this catalogue size, so the "
                                             "served index is exhaustive search, not approximate"))


def _claim_search(metrics: Mapping[str, Any]) -> Verdict:
    scann = lookup(metrics, RETRIEVAL, "scann")
    served = dig(scann, "latency_ms", "ScaNN") or {}
    brute = dig(scann, "latency_ms", "brute force") or {}
    brute_p95 = num(brute.get("p95_ms"))
    beside = (f" vs brute force {brute_p95:.2f} ms on the same requests"
              if math.isfinite(brute_p95) else ", brute force's not measured")
    recall, p95 = num(scann.get("recall@10_vs_brute_force")), num(served.get("p95_ms"))
    scann_ms, brute_ms = num(served.get("median_ms")), num(brute.get("median_ms"))
    # NaN (not measured) unless both medians are, ScaNN's above zero.
    speedup = brute_ms / scann_ms if math.isfinite(scann_ms) and scann_ms > 0 else math.nan
    # Each check: (passed: True / False / None = not measurable, words); notebook 04's first.
    core = [*_serving_checks("notebook 04 ScaNN", "notebook 04 ScaNN index", recall, p95, beside),
            _check(speedup, speedup >= MIN_ANN_SPEEDUP,
                   f"median {scann_ms:.2f} ms vs brute force {brute_ms:.2f} ms: {speedup:.2f}x "
                   "brute force's speed", "ScaNN or brute-force median latency",
                   f": needs {MIN_ANN_SPEEDUP:g}x"),
            _leaves_check(*_served_leaves(scann))]
    checks = list(core)
    notes = []
    try:
        m = stage_summary(metrics, SEARCH)
        if m.get("has_queries") is not False and m.get("served_overlap_at_k") is not None:
            label = "notebook 07 served ScaNN search model (query encoding included)"
            checks += _serving_checks(label, label, num(m["served_overlap_at_k"]),
                                      num(dig(m, "served_latency_ms", "p95_ms")))
            index = m.get("served_index") or {}
            if index:
                checks.append(_leaves_check(num(index.get("num_leaves_to_search")),
                                            num(index.get("num_leaves"))))
    except Missing as missing:
        notes.append(f"search not measured: {missing}")
    words = [w for _, w in checks] + notes
    # Items in the catalogue: notebook 01's count, else notebook 07's.
    n_items = next((n for n in (num(dig(metrics, s, "n_items")) for s in (DATA, SEARCH))
                    if math.isfinite(n)), float("nan"))
    if not math.isfinite(n_items) or n_items < MIN_ANN_ITEMS:
        size = (f"a catalogue of {n_items:,.0f} items" if math.isfinite(n_items)
                else "a catalogue of unknown size (notebook 01's item count missing)")
        gate = (f"{size}, below the {MIN_ANN_ITEMS:,} items where an approximate index can be "
                "judged against brute force (an exact search is already fast here); the evidence "
                f"for the claim at scale is {ANN_BENCHMARK}")
        return (NOT_MEASURABLE,
                f"{gate}. Measured here, not judged: " + "; ".join(
                    w.replace(" (passes)", "").replace(" (fails", " (would fail") for w in words),
                f"{size} < {MIN_ANN_ITEMS:,}: too small to judge; see docs/performance.md's ANN "
                "benchmark")
    evidence = f"a catalogue of {n_items:,.0f} items; " + "; ".join(words)
    failed = [w for ok, w in checks if ok is False]
    if failed:
        return NOT_SUPPORTED, evidence, "fails: " + "; ".join(failed)
    if any(ok is None for ok, _ in core):
        return NOT_MEASURABLE, evidence, "a notebook 04 measurement is missing"
    return SUPPORTED, evidence, (f"{recall:.3f} of the exact top 10, p95 {p95:.2f} ms, "
                                 f"{speedup:.1f}x brute force's speed")


def _claim_real_time(metrics: Mapping[str, Any]) -> Verdict:
    m = lookup(metrics, RETRIEVAL, "real_time")
    low, high = num(m.get("low")), num(m.get("high"))
    c = Comparison("notebook 04, served model, each test user's next event",
                   "history as of the request", num(m.get("recall@10_live")),
                   "history frozen at the end of training", num(m.get("recall@10_frozen")),
                   "Recall@10", (low, high) if math.isfinite(low + high) else None)
    if c.outcome == "not measured":
        return NOT_MEASURABLE, c.describe(), "a next-event recall is missing"
    p95 = num(dig(m, "latency_ms", "p95_ms"))
    fast, latency = _check(p95, p95 <= MAX_REALTIME_P95_MS,
                           f"requests with recent items: p95 latency {p95:.2f} ms",
                           "the latency of requests with recent items")
    sent = (f"{num(m.get('users_with_recent')):,.0f} of {num(m.get('n_users')):,.0f} test users "
            "sent events since training")
    evidence = f"{c.describe()}; {sent}; {latency}"
    outcome = {"favours": "a gain", "tie": "a tie", "against": "a loss"}[c.outcome]
    if c.outcome != "favours" or fast is False:
        because = outcome if c.outcome != "favours" else "too slow"
        return NOT_SUPPORTED, evidence, f"{because}: {c.short()}"
    if fast is None:
        return NOT_MEASURABLE, evidence, "a gain, latency not measured"
    return SUPPORTED, evidence, f"a gain: {c.short()}, p95 {p95:.2f} ms"


def _claim_pruning(metrics: Mapping[str, Any]) -> dict[str, Verdict]:
    """Claim 7 per model (towers, ranker): ``{model: (verdict, evidence, because)}``."""
    table = quantization_table(metrics)
    if table.empty:
        raise Missing(table.attrs.get("note", "no quantization table"))
    pruned = table[table["variant"].str.fullmatch(r"pruned\d+ dynamic_int8")]
    if pruned.empty:
        raise Missing(f"metrics/{QUANTIZATION}.json has no pruned variant")
    intervals = dig(lookup(metrics, QUANTIZATION, "pruning"), "recall_difference_interval") or {}
    out = {}
    for model in dict.fromkeys(pruned["model"]):
        part = table[table["model"] == model].set_index("variant")
        if "float32" not in part.index:
            out[model] = (NOT_MEASURABLE, f"notebook 06, {model}: no float32 variant",
                          "no float32 variant to compare with")
            continue
        ref = part.loc["float32"]
        kept, tried, undecided = None, [], False
        for variant, row in part.loc[pruned[pruned["model"] == model]["variant"]].iterrows():
            interval = dig(intervals, variant.split()[0], "dynamic_int8") if model == "towers" \
                else None
            ok, text = _quality_check(str(ref["quality_metric"]), num(ref["quality"]),
                                      num(row["quality"]), tuple(interval) if interval else None)
            tried.append(f"{variant} ({num(row.get('sparsity')):.0%} zeros): {text}")
            undecided |= ok is None
            if ok and (kept is None or num(row.get("sparsity")) > num(kept[1].get("sparsity"))):
                kept = (variant, row)
        evidence = f"notebook 06, {model}: " + "; ".join(tried)
        if kept is None:
            out[model] = ((NOT_MEASURABLE, evidence, "no pruned variant shown to keep the "
                           "quality: an interval too wide to tell") if undecided else
                          (NOT_SUPPORTED, evidence, "no pruned variant keeps the quality"))
            continue
        variant, row = kept
        gzip = num(row.get("gzip_mb"))
        x_smaller = num(ref.get("gzip_mb")) / gzip
        int8 = num(part["gzip_mb"].get("dynamic_int8"))
        if not math.isfinite(x_smaller + int8):
            out[model] = (NOT_MEASURABLE, evidence, "gzipped sizes not recorded")
            continue
        gain = 1 - gzip / int8
        sizes = (f"{variant}: {gzip:.3f} MB gzipped, {x_smaller:.1f}x smaller than float32, "
                 f"{gain:.0%} smaller than int8 alone ({int8:.3f} MB)")
        failed = [why for why, bad in (
            (f"less than {MIN_X_SMALLER_GZIP:g}x smaller", x_smaller < MIN_X_SMALLER_GZIP),
            (f"less than {MIN_PRUNING_GAIN:.0%} smaller than int8 alone",
             gain < MIN_PRUNING_GAIN)) if bad]
        out[model] = ((NOT_SUPPORTED, f"{evidence}; {sizes}", f"{', '.join(failed)} ({sizes})")
                      if failed else (SUPPORTED, f"{evidence}; {sizes}", sizes))
    return out


_CLAIM_TESTS: dict[str, Callable[[Mapping[str, Any]], Verdict | dict[str, Verdict]]] = {
    "pretrained_text": _claim_pretrained_text,
    "fusion_beats_single": _claim_fusion,
    "attention_fusion": _claim_attention,
    "quantization": _claim_quantization,
    "approximate_search": _claim_search,
    "real_time": _claim_real_time,
    "pruning": _claim_pruning,
}


def claims_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The seeds' claims, each with its measurement on this data set and a verdict.

    Each claim is judged by its rule in :data:`CLAIM_RULES` (thresholds in
    :mod:`.rules`); quantization and pruning are judged per model, one row
    ``quantization: <model>`` each (one row ``quantization`` without notebook 06).

    Returns:
        DataFrame indexed by claim id, columns ``claim``, ``verdict`` (one of
        :data:`VERDICTS`), ``because`` (the reason in one line) and ``evidence``
        (the measurements in words with numbers). A missing metrics file or key
        gives "not measurable here" with the reason in ``evidence``.
    """
    rows = {}
    for claim_id, text in CLAIMS.items():
        try:
            result = _CLAIM_TESTS[claim_id](metrics)
        except Missing as missing:
            result = (NOT_MEASURABLE, f"not measured: {missing}", str(missing))
        per_model = result if isinstance(result, Mapping) else {"": result}
        for model, (verdict, evidence, because) in per_model.items():
            key = f"{claim_id}: {model}" if model else claim_id
            claim = f"{text.rstrip('.')}: the {model}." if model else text
            rows[key] = {"claim": claim, "verdict": verdict, "because": because,
                         "evidence": evidence}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("id")
