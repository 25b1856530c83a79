"""Reading the notebooks' metrics (``{notebook stem: summary}``): stage names and lookups.

A missing metrics file or key raises :class:`Missing`, whose message says which; a table
built by a :func:`tolerant` function is then empty, with the message in ``attrs["note"]``.
"""

from __future__ import annotations

import functools
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

#: What :meth:`recsys_utils.runs.Run.write_metrics` stamps on every metrics file.
RUN_FIELDS = ("dataset", "profile", "seed")


def ordered(names: Iterable[Any], canonical: Sequence[str]) -> list[Any]:
    """``names`` with the canonical ones first, in canonical order, then the rest as given."""
    names = list(names)
    return [n for n in canonical if n in names] + [n for n in names if n not in canonical]


class Missing(Exception):
    """A metrics file or key a measurement needs is absent; the message says which."""


def stage_summary(metrics: Mapping[str, Any], stage: str) -> Mapping[str, Any]:
    """Notebook ``stage``'s summary dict; raises :class:`Missing` if it has no metrics file."""
    summary = metrics.get(stage)
    if not isinstance(summary, Mapping):
        raise Missing(f"no metrics/{stage}.json (notebook {stage[:2]} has not run on this "
                      "artifact directory)")
    return summary


def lookup(metrics: Mapping[str, Any], stage: str, *keys: str) -> Any:
    """The value at ``keys`` in ``stage``'s summary; :class:`Missing` names an absent key."""
    node: Any = stage_summary(metrics, stage)
    for i, key in enumerate(keys):
        if not isinstance(node, Mapping) or node.get(key) is None:
            raise Missing(f"metrics/{stage}.json has no {'/'.join(keys[:i + 1])!r}")
        node = node[key]
    return node


def dig(node: Any, *keys: str) -> Any:
    """``node[key][key]...``, or ``None`` as soon as a level is not a mapping or lacks the key."""
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def num(value: Any) -> float:
    """``value`` as a float, NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def tolerant(build: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    """``build``, returning an empty table whose ``attrs["note"]`` says what was Missing."""
    @functools.wraps(build)
    def table(*args: Any, **kwargs: Any) -> pd.DataFrame:
        try:
            return build(*args, **kwargs)
        except Missing as missing:
            frame = pd.DataFrame()
            frame.attrs["note"] = str(missing)
            return frame
    return table


_SETTINGS = {("test", "all"): "warm", ("test_cold", "all"): "cold (all items)",
             ("test_cold", "cold"): "cold (new items only)"}


def retrieval_rows(metrics: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Notebook 04's variant -> setting label -> metric -> value, main table then the ablation."""
    m = stage_summary(metrics, RETRIEVAL)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for group in ("table", "ablation"):
        added: set[str] = set()
        for key, values in (m.get(group) or {}).items():
            variant, split, candidates = (key.split("|") + ["", ""])[:3]
            if group == "ablation" and variant in rows and variant not in added:
                continue  # the ablation repeats the main "fused" model as its reference
            added.add(variant)
            setting = _SETTINGS.get((split, candidates), f"{split} ({candidates})")
            rows.setdefault(variant, {})[setting] = {k: num(v) for k, v in values.items()}
    if not rows:
        raise Missing(f"metrics/{RETRIEVAL}.json has no 'table' of results")
    # Notebook 04's order (its JSON file comes back with sorted keys), then the ablation.
    order = [v for v in (m.get("variants") or []) if v in rows]
    return {v: rows[v] for v in [*order, *[v for v in rows if v not in order]]}


def interval_rows(metrics: Mapping[str, Any], a: str, b: str, split: str,
                  stage: str = RETRIEVAL) -> list[Mapping[str, Any]]:
    """A notebook's (04's unless ``stage``) paired bootstrap comparisons of ``a`` with ``b``
    on ``split``, any metric."""
    return [row for row in stage_summary(metrics, stage).get("intervals") or ()
            if (row.get("a"), row.get("b"), row.get("split")) == (a, b, split)]


def mixed_runs(metrics: Mapping[str, Any],
               current: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """The run fields (dataset, profile, seed) on which the metrics files disagree.

    ``current``, this run's own ``{"dataset": .., "profile": .., "seed": ..}``,
    counts as one more file; a file without a field is not counted. Returns
    ``{field: sorted distinct values}`` for every field with more than one value.
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
    return next((str(dig(metrics, s, key)) for s in STAGES if dig(metrics, s, key)), None)


def dataset_name(metrics: Mapping[str, Any]) -> str:
    """The run's data set name (first notebook that records one), or ``"unknown data set"``."""
    return _run_field(metrics, "dataset") or "unknown data set"


def profile_name(metrics: Mapping[str, Any]) -> str:
    """The run's profile name (first notebook that records one), or ``"unknown profile"``."""
    return _run_field(metrics, "profile") or "unknown profile"
