"""The report as a document: Markdown (PNG figures beside it) and one self-contained HTML page.

:func:`_document` lays out the sections once; each element is written in both
formats at once, so both files carry the same numbers.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..artifacts import atomic_path
from .claims import claims_table, quantization_checks
from .figures import FIGURES
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
        # The larger the number, the fewer decimals: 0.123, 12.34, 123.4, 1,234.
        return f"{v:,.{3 - sum(abs(v) >= bound for bound in (10, 100, 1000))}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "–"
    return str(value) or "–"


#: Column labels in words that the general rules of :data:`_RENAMES` would not give.
_LABELS = {"speedup": "speed-up", "num_threads": "threads", "throughput": "throughput (queries/s)",
           "recall_at_k": "Recall@10", "ok": "converted", "gzip_mb": "gzipped (MB)"}
#: (pattern, replacement), in order: units in words, no snake_case, metrics capitalised.
_RENAMES = [(r"\btop_(\d+)_accuracy\b", r"top-\1 accuracy"), (r"_ms\b", " (ms)"),
            (r"_mb\b", " (MB)"), (r"\bn_(\w+)", r"\1"), ("hit_rate", "hit rate"), ("_", " "),
            *((rf"\b{word}(?=@|\b)", shown) for word, shown in (
                ("recall", "Recall"), ("ndcg", "NDCG"), ("mrr", "MRR"), ("hit rate", "HitRate"),
                ("precision", "Precision"), ("auc", "AUC"), ("rmse", "RMSE"), ("mae", "MAE")))]


def _label(name: Any) -> str:
    """A column or index name as a reader would write it (:data:`_LABELS`, :data:`_RENAMES`)."""
    text = str(name)
    if text in _LABELS:
        return _LABELS[text]
    for pattern, replacement in _RENAMES:
        text = re.sub(pattern, replacement, text)
    return text


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of ``frame`` as shown: labels in words (:func:`_label`), every
    cell as text (:func:`_format`), the index as the first column unless it is a plain 0..n-1."""
    indexed = not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)
    header = ([_label(frame.index.name) if frame.index.name else ""] if indexed else []) + [
        _label(c) for c in frame.columns]
    return header, [[_format(v) for v in row] for row in frame.itertuples(indexed, name=None)]


def _markdown_table(frame: pd.DataFrame) -> str:
    header, rows = _cells(frame)
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(_md_escape(c) for c in line) + " |" for line in lines)


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


class _Document:
    """The report written once in both formats, element by element: the same text in each."""

    def __init__(self, title: str, figure_files: Mapping[str, str],
                 pngs: Mapping[str, bytes]) -> None:
        self.title, self.figure_files, self.pngs = title, figure_files, pngs
        self.markdown: list[str] = []
        self.html: list[str] = []
        self.heading(title, 1)

    def add(self, markdown: str, html_text: str) -> None:
        self.markdown.append(markdown)
        self.html.append(html_text)

    def heading(self, text: str, level: int = 2) -> None:
        self.add("#" * level + " " + text, f"<h{level}>{_inline_html(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.add(text, f"<p>{_inline_html(text)}</p>")

    def items(self, items: list[str], bullets: bool = False) -> None:
        """A numbered list, or the answer's bulleted one."""
        opening, closing = ('<ul class="answer">', "</ul>") if bullets else ("<ol>", "</ol>")
        self.add("\n".join(f"* {item}" if bullets else f"{i}. {item}"
                           for i, item in enumerate(items, 1)),
                 opening + "".join(f"<li>{_inline_html(i)}</li>" for i in items) + closing)

    def table(self, frame: pd.DataFrame) -> None:
        """``frame`` and its note, or why it is empty."""
        if frame.empty:
            self.para(f"*Not measurable here:* {frame.attrs.get('note', 'no data')}.")
            return
        self.add(_markdown_table(frame), _html_table(frame))
        if frame.attrs.get("note"):
            self.para(str(frame.attrs["note"]))

    def section(self, title: str, intro: str, *frames: pd.DataFrame, figures: str = "",
                level: int = 2) -> None:
        """A heading, its introduction, ``frames`` and the figures of section ``figures``."""
        self.heading(title, level)
        if intro:
            self.para(intro)
        for frame in frames:
            self.table(frame)
        for name in self.pngs:
            if FIGURES.get(name, ("other",))[0] == figures:
                self.figure(name, FIGURES[name][1])

    def figure(self, name: str, caption: str) -> None:
        data = base64.b64encode(self.pngs[name]).decode("ascii")
        self.add(f"![{caption}]({self.figure_files[name]})",
                 f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"/>'
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def html_page(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
                f"<title>{html.escape(self.title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
                "<body>\n" + "\n".join(self.html) + "\n</body>\n</html>\n")


def _document(metrics: Mapping[str, Any], figure_files: Mapping[str, str],
              pngs: Mapping[str, bytes]) -> _Document:
    dataset, profile = dataset_name(metrics), profile_name(metrics)
    doc = _Document(f"Evaluation report: {dataset} ({profile} profile)", figure_files, pngs)
    section, para = doc.section, doc.para
    claims = claims_table(metrics)
    mixed = mixed_runs(metrics)
    if mixed:
        para("**Warning:** the metrics files come from different runs ("
             + "; ".join(f"{field}: {', '.join(values)}" for field, values in mixed.items())
             + "); re-run the series into one run directory.")

    section("The answer",
            "Does fusing large pretrained models (MiniLM text, an image encoder) with behaviour "
            "make recommendation and product search better on this data set, by how much, and at "
            "what cost? Every number below is read from the metrics files the notebooks of this "
            "run wrote (`artifacts/metrics/*.json`); none is typed by hand. Percentages are "
            "Recall@50: the share of test users whose next item is in the model's top 50. "
            "Intervals are notebook 04's paired 95% bootstrap intervals over test users.")
    doc.items(summary_sentences(metrics, claims["verdict"].to_dict()), bullets=True)

    section("The verdicts",
            f"The articles this course reproduces make {len(CLAIMS)} claims, each judged here by "
            "a rule written down in advance (listed under the table, with its evidence): "
            "*supported*, *not supported* (measured, and the numbers do not back it), or *not "
            "measurable here* (a measurement is missing, or this data set cannot test it). "
            "Quantization is judged model by model.",
            claims[["claim", "verdict", "because"]].reset_index(drop=True))
    doc.items([f"**{row['claim']}** *{row['verdict']}.* Evidence: {row['evidence'].rstrip('.')}."
               for _, row in claims.iterrows()])
    section("The rules", "", level=3)
    doc.items([f"**{CLAIMS[k]}** {CLAIM_RULES[k]}" for k in CLAIMS])
    section("Quantization, model by model", "", quantization_checks(metrics), level=3)
    section("The text probe (notebook 02)", "", text_probe_table(metrics), level=3)

    section("The data (notebook 01)", "", data_table(metrics))
    section("All retrieval models, warm and cold-start (notebook 04)",
            "Every model ranks the whole catalogue for each test user, the user's training items "
            "removed. *Warm*: the user's last interaction, with an item seen in training. *Cold "
            "(all items)*: interactions with items no model saw in training, ranked against the "
            "whole catalogue; *cold (new items only)*: the same, ranked among the new items.",
            retrieval_table(metrics), figures="retrieval")
    section("Serving: brute force and ScaNN (notebook 04)",
            "Each ScaNN index searches some of its leaves (partitions of the item vectors); "
            "Recall@10 is the share of brute force's top 10 it returns. Notebook 04 serves the "
            "fewest leaves that reached its target recall (*served*), measured again on other "
            "users for the approximate-search claim.", scann_table(metrics), level=3)
    section("Retrieval alone versus the chain (notebook 05)",
            "The ranker scores (user, item) pairs with a deep & cross network; chained, it "
            "re-orders the top retrieved items. Retrieval Recall is the ceiling of any re-ranker.",
            ranking_table(metrics), chain_table(metrics), figures="chain")
    section("The fusion comparison (notebook 03)",
            "Each model is trained on the same items and scored on held-out items by item-to-item "
            "retrieval (do an item's nearest items share its relevance attributes?): the winners "
            "are chosen on validation items, every score shown is on the test items."
            + (" On the synthetic data set those attributes are planted by the generator and "
               "split between image and text: this comparison is a sanity check of the code, not "
               "evidence about real catalogues." if dataset == "synthetic" else ""),
            fusion_table(metrics), image_encoder_table(metrics), figures="fusion")
    section("The quantization trade-off (notebook 06)",
            "*x smaller* and *speed-up* are relative to the same model's float32 TFLite file; "
            "quality is measured on held-out data against the float model.",
            quantization_table(metrics), index_table(metrics), figures="quantization")
    section("Product search (notebook 07)", "", search_table(metrics), figures="search")

    protocol = tfrs_protocol_table(metrics)
    section("Published numbers under their own protocol (MovieLens 100K)",
            f"Protocol: {protocol.attrs['protocol']}")
    para(f"The tutorial: [{TFRS_TUTORIAL_URL}]({TFRS_TUTORIAL_URL}). Its own printed accuracy is "
         "not copied here as a measurement; read it there, next to the rows measured here.")
    doc.table(protocol)
    section("Where the numbers come from",
            "The metrics file of each notebook, and the run (data set, profile, seed) that "
            "wrote it.", sources_table(metrics))
    leftover = [n for n in pngs if n not in FIGURES]
    if leftover:
        section("Other figures", "")
        for name in leftover:
            doc.figure(name, name)
    return doc


def _write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:  # mode from the umask, as every artifact's
        tmp.write_bytes(data)


def write_report(metrics: Mapping[str, Any], out_dir: str | Path,
                 figures: Mapping[str, bytes]) -> dict[str, Path]:
    """Write ``report.md`` (PNG figures beside it) and a self-contained ``report.html``.

    ``figures``: name -> PNG bytes (:func:`.figures.figure_png`); a name of
    :data:`.figures.FIGURES` goes into its section, others at the end. Every file is
    written atomically into ``out_dir`` (created if needed). Returns
    ``{"markdown": path, "html": path, "figure:<name>": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / f"figure_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}.png"
             for name in figures}
    for name, path in files.items():
        _write(path, figures[name])
    doc = _document(metrics, {name: path.name for name, path in files.items()}, figures)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    _write(paths["markdown"], ("\n\n".join(doc.markdown) + "\n").encode("utf-8"))
    _write(paths["html"], doc.html_page().encode("utf-8"))
    return {**paths, **{f"figure:{name}": path for name, path in files.items()}}
