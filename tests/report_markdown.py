"""Reading the evaluation report back in tests: sections and table rows, Markdown and HTML."""

from __future__ import annotations

import html
import re


def section(markdown: str, heading: str) -> str:
    """The Markdown from the heading that starts with ``heading`` to the next one of its level."""
    lines = markdown.split("\n")
    level = lambda line: len(line) - len(line.lstrip("#")) if line.startswith("#") else 0  # noqa: E731
    start = next(i for i, line in enumerate(lines)
                 if level(line) and line.lstrip("#").strip().startswith(heading))
    end = next((j for j in range(start + 1, len(lines))
                if level(lines[j]) and level(lines[j]) <= level(lines[start])), len(lines))
    return "\n".join(lines[start:end])


def html_section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{html.escape(heading, quote=False)}")
    end = page.find("<h2>", start + 1)
    return page[start:end if end > 0 else len(page)]


def has_row(markdown: str, label: str, prefix: bool = False) -> bool:
    """A Markdown table row whose first cell is ``label`` (or starts with it)."""
    cell = re.escape(label) + (r"[^|]*" if prefix else "")
    return re.search(rf"^\| {cell} \|", markdown, re.M) is not None


def has_html_row(page: str, label: str, prefix: bool = False) -> bool:
    cell = re.escape(html.escape(label, quote=False)) + (r"[^<]*" if prefix else "")
    return re.search(rf"<t[hd][^>]*>{cell}</t[hd]>", page) is not None  # a class is allowed
