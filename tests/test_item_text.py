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
