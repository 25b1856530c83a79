"""The report as a document: Markdown (PNG figures beside it) and one self-contained HTML page.

:func:`_document` lays out the sections once as blocks; the Markdown and HTML
renderers format the same blocks, so both files carry the same numbers.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..artifacts import atomic_path
from .claims import claims_table, quantization_checks
from .figures import FIGURES, default_figures, figure_png
from .reading import dataset_name, mixed_runs, profile_name
from .rules import CLAIM_RULES, CLAIMS
from .summary import summary_sentences
from .tables import (TFRS_TUTORIAL_URL, chain_table, data_table, fusion_table,
                     image_encoder_table, index_table, quantization_table, ranking_table,
                     retrieval_table, scann_table, search_table, sources_table, text_probe_table,
                     tfrs_protocol_table)

#: Where the report goes inside a run directory (beside ``notebooks/`` and ``artifacts/``).
REPORT_DIR = "report"


def report_dir(run_dir: str | Path) -> Path:
    """Where the report of a run goes: ``<run_dir>/report`` (the run dir holds ``artifacts/``)."""
    return Path(run_dir) / REPORT_DIR


def _format(value: Any) -> str:
    if value is None or value is pd.NA:
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


#: Column labels in words; anything else goes through :func:`_label`'s general rules.
_LABELS = {
    "size_mb": "size (MB)", "x_smaller": "x smaller", "median_ms": "median (ms)",
    "p95_ms": "p95 (ms)", "mean_ms": "mean (ms)", "speedup": "speed-up",
    "num_threads": "threads", "batch_threads": "batch threads",
    "throughput": "throughput (queries/s)", "quality_metric": "quality metric",
    "recall_at_k": "Recall@10", "n_queries": "queries", "n_excluded": "excluded",
    "ok": "converted", "bytes": "bytes", "k": "k", "kind": "kind",
}
_METRIC_WORDS = {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR", "hit_rate": "HitRate",
                 "precision": "Precision", "auc": "AUC", "rmse": "RMSE", "mae": "MAE"}


def _label(name: Any) -> str:
    """A column or index name as a reader would write it: no snake_case, metrics capitalised."""
    text = str(name)
    if text in _LABELS:
        return _LABELS[text]
    text = re.sub(r"\btop_(\d+)_accuracy\b", r"top-\1 accuracy", text)
    text = re.sub(r"_ms\b", " (ms)", text)
    text = re.sub(r"_mb\b", " (MB)", text)
    text = re.sub(r"\bn_(\w+)", r"\1", text)
    text = text.replace("hit_rate", "hit rate").replace("_", " ")
    for word, shown in _METRIC_WORDS.items():
        text = re.sub(rf"\b{word.replace('_', ' ')}(?=@|\b)", shown, text)
    return text


def _has_index(frame: pd.DataFrame) -> bool:
    """False for a plain 0..n-1 index, which the report does not show."""
    return not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with every cell formatted as text, labels in words (:func:`_label`)."""
    name = _label(frame.index.name) if frame.index.name else None
    index = frame.index if not _has_index(frame) else pd.Index(
        [_format(i) for i in frame.index], name=name)
    return pd.DataFrame({_label(c): [_format(v) for v in frame[c].tolist()]
                         for c in frame.columns}, index=index)


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
            if FIGURES.get(name, (None, "other"))[1] == section:
                blocks.append(_Block("figure", name, caption=FIGURES[name][2]))

    dataset, profile = dataset_name(metrics), profile_name(metrics)
    heading(f"Evaluation report: {dataset} ({profile} profile)", 1)
    claims = claims_table(metrics)
    mixed = mixed_runs(metrics)
    if mixed:
        para("**Warning:** the metrics files come from different runs ("
             + "; ".join(f"{field}: {', '.join(values)}" for field, values in mixed.items())
             + "); re-run the series into one run directory.")

    heading("The answer")
    para("Does fusing large pretrained models (MiniLM text, an image encoder) with behaviour make "
         "recommendation and product search better on this data set, by how much, and at what "
         "cost? Every number below is read from the metrics files the notebooks of this run "
         "wrote (`artifacts/metrics/*.json`); none is typed by hand. Percentages are Recall@50: "
         "the share of test users whose next item is in the model's top 50. Intervals are "
         "notebook 04's paired 95% bootstrap intervals over test users.")
    blocks.append(_Block("list", summary_sentences(metrics, claims["verdict"].to_dict()),
                         caption="bullets"))

    heading("The verdicts")
    para("Five claims from the articles this course reproduces, each judged by a rule written "
         "down in advance (listed under the table, with its evidence): *supported*, *not "
         "supported* (measured, and the numbers do not back it), or *not measurable here* (a "
         "measurement is missing, or this data set cannot test it). Quantization is judged "
         "model by model.")
    table(claims[["claim", "verdict", "because"]].reset_index(drop=True))
    blocks.append(_Block("list", [
        f"**{row['claim']}** *{row['verdict']}.* Evidence: {row['evidence'].rstrip('.')}."
        for _, row in claims.iterrows()]))
    heading("The rules", 3)
    blocks.append(_Block("list", [f"**{CLAIMS[k]}** {CLAIM_RULES[k]}" for k in CLAIMS]))
    heading("Quantization, model by model", 3)
    table(quantization_checks(metrics))
    heading("The text probe (notebook 02)", 3)
    table(text_probe_table(metrics))

    heading("The data (notebook 01)")
    table(data_table(metrics))

    heading("All retrieval models, warm and cold-start (notebook 04)")
    para("Every model ranks the whole catalogue for each test user, the user's training items "
         "removed. *Warm*: the user's last interaction, with an item seen in training. *Cold "
         "(all items)*: interactions with items no model saw in training, ranked against the "
         "whole catalogue; *cold (new items only)*: the same, ranked among the new items.")
    table(retrieval_table(metrics))
    figures_of("retrieval")
    heading("Serving: brute force and ScaNN (notebook 04)", 3)
    para("Each ScaNN index searches some of its leaves (partitions of the item vectors); "
         "Recall@10 is the share of brute force's top 10 it returns. Notebook 04 serves the "
         "fewest leaves that reached its target recall (*served*), measured again on other users "
         "for the approximate-search claim.")
    table(scann_table(metrics))

    heading("Retrieval alone versus the chain (notebook 05)")
    para("The ranker scores (user, item) pairs with a deep & cross network; chained, it "
         "re-orders the top retrieved items. Retrieval Recall is the ceiling of any re-ranker.")
    table(ranking_table(metrics))
    table(chain_table(metrics))
    figures_of("chain")

    heading("The fusion comparison (notebook 03)")
    para("Each model is trained on the same items and scored on held-out items by item-to-item "
         "retrieval (do an item's nearest items share its relevance attributes?)."
         + (" On the synthetic data set those attributes are planted by the generator and split "
            "between image and text: this comparison is a sanity check of the code, not "
            "evidence about real catalogues." if dataset == "synthetic" else ""))
    table(fusion_table(metrics))
    table(image_encoder_table(metrics))
    figures_of("fusion")

    heading("The quantization trade-off (notebook 06)")
    para("*x smaller* and *speed-up* are relative to the same model's float32 TFLite file; "
         "quality is measured on held-out data against the float model.")
    table(quantization_table(metrics))
    table(index_table(metrics))
    figures_of("quantization")

    heading("Product search (notebook 07)")
    table(search_table(metrics))
    figures_of("search")

    heading("Published numbers under their own protocol (MovieLens 100K)")
    protocol = tfrs_protocol_table(metrics)
    para(f"Protocol: {protocol.attrs['protocol']}")
    para(f"The tutorial: [{TFRS_TUTORIAL_URL}]({TFRS_TUTORIAL_URL}). Its own printed accuracy is "
         "not copied here as a measurement; read it there, next to the rows measured here.")
    table(protocol)

    heading("Where the numbers come from")
    para("The metrics file of each notebook, and the run (data set, profile, seed) that wrote it.")
    table(sources_table(metrics))

    leftover = [n for n in figures if n not in FIGURES]
    if leftover:
        heading("Other figures")
        for name in leftover:
            blocks.append(_Block("figure", name, caption=name))
    return blocks


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _cells(frame: pd.DataFrame) -> tuple[list[Any], list[list[Any]]]:
    """The header and the rows of ``frame`` as shown, the index as the first column if shown."""
    shown, indexed = _display(frame), _has_index(frame)
    header = ([shown.index.name or ""] if indexed else []) + list(shown.columns)
    rows = [([i] if indexed else []) + r for i, r in zip(shown.index, shown.values.tolist())]
    return header, rows


def _markdown_table(frame: pd.DataFrame) -> str:
    header, rows = _cells(frame)
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(_md_escape(c) for c in line) + " |" for line in lines)


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
            out.append("\n".join((f"* {item}" if block.caption == "bullets" else f"{i}. {item}")
                                 for i, item in enumerate(block.content, 1)))
        elif block.kind == "figure" and block.content in figure_files:
            out.append(f"![{block.caption}]({figure_files[block.content]})")
    return "\n\n".join(out) + "\n"


_INLINE = [
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"\*([^*\s][^*]*)\*"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline_html(text: str) -> str:
    """Escaped HTML of the report's little Markdown: code spans, then bold, italics, links."""
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
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; text-align: left; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.8em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.prose { min-width: 16em; max-width: 40em; }
ul.answer li, ol li { margin: 0.3em 0; }
code { background: #f3f3f3; padding: 0 0.2em; overflow-wrap: anywhere; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; }
"""

_NUMBER = re.compile(r"^[-+−]?[\d,]*\.?\d+(e[-+]?\d+)?%?$|^–$")


def _html_table(frame: pd.DataFrame) -> str:
    """Numbers right-aligned, prose wrapped, the table scrolling sideways when it is wide."""
    columns, rows = _cells(frame)
    kinds = []
    for j in range(len(columns)):
        cells = [str(r[j]) for r in rows]
        numeric = (bool(cells) and all(_NUMBER.match(c) for c in cells)
                   and not all(c == "–" for c in cells))
        prose = not numeric and any(len(c) > 60 for c in cells)
        kinds.append(' class="num"' if numeric else ' class="prose"' if prose else "")
    head = "".join(f"<th{k}>{html.escape(str(c), quote=False)}</th>"
                   for c, k in zip(columns, kinds))
    body = "".join("<tr>" + "".join(f"<td{k}>{_inline_html(c)}</td>" for c, k in zip(r, kinds))
                   + "</tr>\n" for r in rows)
    return (f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}'
            "</tbody></table></div>")


def _render_html(blocks: Iterable[_Block], figure_png_bytes: Mapping[str, bytes],
                 title: str) -> str:
    body = []
    for block in blocks:
        if block.kind == "heading":
            body.append(f"<h{block.level}>{_inline_html(block.content)}</h{block.level}>")
        elif block.kind == "paragraph":
            body.append(f"<p>{_inline_html(block.content)}</p>")
        elif block.kind == "table":
            body.append(_html_table(block.content))
        elif block.kind == "list":
            tag = "ul" if block.caption == "bullets" else "ol"
            css = ' class="answer"' if tag == "ul" else ""
            body.append(f"<{tag}{css}>" + "".join(f"<li>{_inline_html(i)}</li>"
                                               for i in block.content) + f"</{tag}>")
        elif block.kind == "figure" and block.content in figure_png_bytes:
            data = base64.b64encode(figure_png_bytes[block.content]).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block.caption)}" '
                        f'src="data:image/png;base64,{data}"/><figcaption>'
                        f"{html.escape(block.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)  # a report is for reading (mkstemp creates 0600)


def _as_png(figure: Any) -> bytes:
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    if isinstance(figure, (str, Path)):
        return Path(figure).read_bytes()
    return figure_png(figure)


def write_report(metrics: Mapping[str, Any], out_dir: str | Path,
                 figures: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``report.md`` (PNG figures beside it) and a self-contained ``report.html``.

    ``figures``: name -> matplotlib Figure, PNG bytes or PNG path (default:
    :func:`default_figures`); a name of :data:`.figures.FIGURES` goes into its
    section, others at the end. Every file is written atomically into ``out_dir``
    (created if needed). Returns ``{"markdown": path, "html": path, "figure:<name>": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {name: _as_png(fig) for name, fig in (default_figures(metrics) if figures is None
                                                 else figures).items()}
    files = {name: out_dir / f"figure_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}.png"
             for name in pngs}
    for name, path in files.items():
        _write(path, pngs[name])
    blocks = _document(metrics, pngs)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    markdown = _render_markdown(blocks, {name: path.name for name, path in files.items()})
    _write(paths["markdown"], markdown.encode("utf-8"))
    _write(paths["html"], _render_html(blocks, pngs, blocks[0].content).encode("utf-8"))
    return {**paths, **{f"figure:{name}": path for name, path in files.items()}}
