"""Tests of recsys_utils.item_text: the one text per item that the encoder embeds."""

import numpy as np
import pandas as pd
import pytest

from recsys_utils.item_text import item_text
from recsys_utils.schema import DataError


def test_item_text_layout_and_skipped_values():
    items = pd.DataFrame({
        "item_id": ["a", "b"],
        "title": ["Trail runner 2", "Mug!"],
        "description": ["Light  mesh shoe", None],
        "category": ["shoes", "Unknown"],
        "color": ["red", ""],
        "sleeve_length": [np.nan, "n/a"],
        "material": ["mesh", "ceramic"],
    })
    out = item_text(items, ["color", "sleeve_length", "material"])
    assert out == [
        "Trail runner 2. Category: shoes. Color: red. Material: mesh. Light mesh shoe.",
        "Mug! Material: ceramic.",
    ]


def test_item_text_names_missing_columns():
    items = pd.DataFrame({"item_id": ["a"], "title": ["x"], "description": [""], "category": ["c"]})
    with pytest.raises(DataError, match="brand"):
        item_text(items, ["brand"])


def test_one_set_of_unknown_values_for_texts_labels_and_queries():
    from recsys_utils import content_comparison, schema, search_queries

    values = pd.Series(["Red", "unknown", "N/A", "-", None, "na"])
    assert item_text(pd.DataFrame({"item_id": list("abcdef"), "title": "T", "category": "c",
                                   "description": "", "colour": values}), ["colour"])[0] \
        == "T. Category: c. Colour: Red."
    missing = content_comparison._missing(values)
    assert missing.tolist() == [False, True, True, True, True, True]
    assert [search_queries._known(v) for v in values] == [True, False, False, False, False, False]
    # A title "unknown" is a real title (MovieLens has one): only attributes drop it.
    assert not schema.is_placeholder(pd.Series(["unknown"])).iloc[0]
