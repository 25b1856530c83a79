"""Reading the notebooks' metrics: stage names, lookups that say what is missing, tolerant tables.

Every table and claim reads ``{notebook stem: summary}`` (from
:func:`recsys_utils.artifacts.read_metrics`) through these helpers. A missing
metrics file or key raises :class:`_Missing`, whose message says which; a table
built through :func:`_table` then comes back empty with that message in
``attrs["note"]``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

# Notebook stems, as written by artifacts.write_metrics.
DATA = "01_data_preparation"
TEXT = "02_text_encoding"
FUSION = "03_multimodal_fusion"
RETRIEVAL = "04_tfrs_retrieval"
RANKING = "05_tfrs_ranking"
QUANTIZATION = "06_quantization"
EVALUATION = "08_evaluation"
SEARCH = "07_product_search"
STAGES = (DATA, TEXT, FUSION, RETRIEVAL, RANKING, QUANTIZATION, SEARCH)


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


_SETTINGS = {("test", "all"): "warm", ("test_cold", "all"): "cold (all items)",
             ("test_cold", "cold"): "cold (new items only)"}


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
    if not rows:
        raise _Missing(f"metrics/{RETRIEVAL}.json has no 'table' of results")
    # Notebook 04's order (its JSON file comes back with sorted keys), then the ablation.
    order = [v for v in (m.get("variants") or []) if v in rows]
    return {v: rows[v] for v in [*order, *[v for v in rows if v not in order]]}


#: What :meth:`recsys_utils.runs.Run.write_metrics` stamps on every metrics file.
RUN_FIELDS = ("dataset", "profile", "seed")


def mixed_runs(metrics: Mapping[str, Any],
               current: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """The run fields (dataset, profile, seed) on which the metrics files disagree.

    Args:
        metrics: ``{stage: summary}``; a file without a field is not counted.
        current: optionally this run's own ``{"dataset": .., "profile": ..,
            "seed": ..}``, counted as one more file.

    Returns:
        ``{field: sorted distinct values}`` for every field with more than one
        value; empty when every file comes from one run.
    """
    seen: dict[str, set[str]] = {field: set() for field in RUN_FIELDS}
    summaries = [s for s in metrics.values() if isinstance(s, Mapping)]
    for summary in [*summaries, *([current] if current else [])]:
        for field in RUN_FIELDS:
            if summary.get(field) is not None:
                seen[field].add(str(summary[field]))
    return {field: sorted(values) for field, values in seen.items() if len(values) > 1}


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
