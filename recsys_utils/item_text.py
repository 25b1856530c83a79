"""The one text per item that the text encoder embeds, built from the catalogue schema.

Notebook 02 embeds these strings (``recsys_utils.text``), notebook 06
quantizes the encoder on them and notebook 07 searches them with BM25 and
dense retrieval, so every stage reads an item the same way.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .schema import UNKNOWN_VALUES, require_columns


def item_text(items: pd.DataFrame, attribute_columns: list[str]) -> list[str]:
    """The one text per item that the encoder embeds.

    Layout: ``"<title>. Category: <category>. <Attribute>: <value>. <description>"``,
    e.g. ``"Trail runner 2. Category: shoes. Color: red. Light mesh shoe."``.
    Title first (the strongest signal; survives truncation), then the
    structured fields as short "name: value" sentences, then the free-text
    description, which is the first thing truncation cuts. Empty, missing and
    placeholder values (:data:`recsys_utils.schema.UNKNOWN_VALUES`, any case) are
    skipped, together with their label. Whitespace is collapsed.

    Args:
        items: the items table (``item_id``, ``title``, ``description``,
            ``category`` and the attribute columns), ``n`` rows.
        attribute_columns: attribute columns to include, in this order; column
            names become labels (``"sleeve_length"`` -> ``"Sleeve length"``).

    Returns:
        ``n`` strings, one per row of ``items``, in row order.
    """
    require_columns(items, ["title", "description", "category", *attribute_columns], source="items")
    labels = {c: c.replace("_", " ").strip().capitalize() for c in attribute_columns}
    # Plain lists: row-wise pandas access would dominate on large catalogues.
    titles = items["title"].tolist()
    categories = items["category"].tolist()
    descriptions = items["description"].tolist()
    attributes = {c: items[c].tolist() for c in attribute_columns}
    out: list[str] = []
    for row in range(len(items)):
        parts = []
        title = _clean(titles[row])
        if title:
            parts.append(_sentence(title))
        category = _clean(categories[row])
        if category:
            parts.append(f"Category: {_sentence(category)}")
        for column in attribute_columns:
            value = _clean(attributes[column][row])
            if value:
                parts.append(f"{labels[column]}: {_sentence(value)}")
        description = _clean(descriptions[row])
        if description:
            parts.append(_sentence(description))
        out.append(" ".join(parts))
    return out


def _clean(value: Any) -> str:
    """``value`` as one line of text, or ``""`` when it is missing or a placeholder."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # pd.isna of a list-like is an array, not a bool
        pass
    text = " ".join(str(value).split())
    return "" if text.lower() in UNKNOWN_VALUES else text


def _sentence(text: str) -> str:
    """``text`` ending in a full stop, unless it already ends a sentence."""
    return text if text[-1] in ".!?" else text + "."


__all__ = ["item_text"]
