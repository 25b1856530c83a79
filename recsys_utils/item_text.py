"""The one text per item, built from the catalogue schema, that notebooks 02 (embedding), 06
(quantization) and 07 (BM25 and dense search) read, so every stage reads an item the same way."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .schema import UNKNOWN_VALUES, require_columns


def item_text(items: pd.DataFrame, attribute_columns: list[str]) -> list[str]:
    """One string per row of ``items``, in row order.

    Layout: ``"<title>. Category: <category>. <Attribute>: <value>. <description>"``,
    e.g. ``"Trail runner 2. Category: shoes. Color: red. Light mesh shoe."``: the title
    first (the strongest signal), the description last (truncation cuts it first).
    Missing and placeholder values (:data:`recsys_utils.schema.UNKNOWN_VALUES`, any case)
    are skipped with their label; whitespace is collapsed. ``attribute_columns`` are
    included in order, labelled by name (``"sleeve_length"`` -> ``"Sleeve length"``)."""
    require_columns(items, ["title", "description", "category", *attribute_columns], source="items")
    labels = ["", "Category: ",
              *(f"{c.replace('_', ' ').strip().capitalize()}: " for c in attribute_columns), ""]
    # Plain lists, not row-wise pandas access, which would dominate on large catalogues.
    columns = [items[c].tolist() for c in ["title", "category", *attribute_columns, "description"]]
    rows = ([(label, _clean(v)) for label, v in zip(labels, values)] for values in zip(*columns))
    return [" ".join(f"{label}{_sentence(text)}" for label, text in row if text) for row in rows]


def _clean(value: Any) -> str:
    """``value`` as one line of text, or ``""`` when it is missing or a placeholder."""
    try:
        if pd.isna(value):  # None too
            return ""
    except (TypeError, ValueError):  # pd.isna of a list-like is an array, not a bool
        pass
    text = " ".join(str(value).split())
    return "" if text.lower() in UNKNOWN_VALUES else text


def _sentence(text: str) -> str:
    """``text`` ending in a full stop, unless it already ends a sentence."""
    return text if text[-1] in ".!?" else text + "."


__all__ = ["item_text"]
