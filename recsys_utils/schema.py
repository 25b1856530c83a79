"""The one schema every data set is loaded into, and its validation.

Tables (pandas DataFrames):

* **items**: ``item_id`` (str), ``title`` (str), ``description`` (str, may be
  empty), ``category`` (str), further categorical attribute columns (str),
  ``price`` (float, optional), ``image_path`` (str, optional; absolute path,
  missing per item as ``None``).
* **interactions**: ``user_id`` (str), ``item_id`` (str), ``timestamp``
  (int64 seconds) and either ``rating`` (float) or ``event`` (one of
  :data:`EVENTS`).
* **users** (optional): ``user_id`` and features.
* **queries** (optional): ``query_id``, ``text`` and optionally ``kind``;
  **judgements**: ``query_id``, ``item_id``, ``relevance`` in {0, 1, 2, 3}
  (ESCI: irrelevant, complement, substitute, exact).

Validation errors are :class:`DataError`: they name the file, the column and
an example row, so a wrong column name never surfaces as a traceback from deep
inside TensorFlow three notebooks later.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

ITEM_REQUIRED = ("item_id", "title", "description", "category")
ITEM_OPTIONAL = ("price", "image_path")
INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
EVENTS = ("view", "click", "cart", "purchase")
#: Depth of an event in the shopping funnel; larger is a stronger signal.
EVENT_STRENGTH = {event: depth for depth, event in enumerate(EVENTS, start=1)}
#: Ratings at or above this count as positive implicit feedback.
POSITIVE_RATING = 4.0
QUERY_REQUIRED = ("query_id", "text")
JUDGEMENT_REQUIRED = ("query_id", "item_id", "relevance")
RELEVANCE_LABELS = {0: "irrelevant", 1: "complement", 2: "substitute", 3: "exact"}


class DataError(ValueError):
    """Bad input data, described so that a person can fix the file.

    Attributes:
        source: the file (or table) the problem is in.
        column: the offending column, when there is one.
        example: one offending row, as a dict, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        column: str | None = None,
        example: Mapping[str, Any] | None = None,
        line: int | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.column = column
        self.example = dict(example) if example is not None else None
        self.line = line
        parts = []
        if self.source:
            parts.append(f"{self.source}")
        if column:
            parts.append(f"column '{column}'")
        head = ": ".join([", ".join(parts), message]) if parts else message
        if self.example is not None:
            where = f"line {line}" if line is not None else "example row"
            head += f"\n  {where}: {self.example}"
        super().__init__(head)


@dataclasses.dataclass
class LoadReport:
    """What a loader found: counts of malformed rows, missing images, notes."""

    source: str
    malformed_rows: int = 0
    repaired_rows: int = 0
    dropped_rows: int = 0
    missing_images: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Dataset:
    """A data set in the one schema.

    Attributes:
        name: registry name (``synthetic``, ``movielens-100k``, ...).
        items: the catalogue, one row per item.
        interactions: user-item events or ratings.
        attribute_columns: structured categorical item columns beyond
            ``category`` that models may use as features, in a stable order.
        truth_columns: ground-truth item columns a generator planted (the
            ``synthetic`` world's colour, material, style, pattern). They are
            evaluation labels, never model features: models see them only
            through text and images.
        users: optional user table.
        queries / judgements: optional search queries with graded relevance.
        simulated_interactions: True when interactions were simulated (the
            ``fashion`` catalogue has none of its own).
        report: what the loader found on the way.
    """

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    attribute_columns: list[str]
    truth_columns: list[str] = dataclasses.field(default_factory=list)
    users: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None
    judgements: pd.DataFrame | None = None
    simulated_interactions: bool = False
    report: LoadReport | None = None

    @property
    def has_images(self) -> bool:
        return "image_path" in self.items and self.items["image_path"].notna().any()

    @property
    def feedback(self) -> str:
        """``"rating"`` or ``"event"``: which kind of feedback the interactions carry."""
        return "rating" if "rating" in self.interactions else "event"

    def validate(self) -> "Dataset":
        """Check every table against the schema; raise :class:`DataError` if not."""
        validate_items(self.items, source=f"{self.name}: items")
        validate_interactions(self.interactions, self.items, source=f"{self.name}: interactions")
        if self.queries is not None:
            validate_queries(self.queries, self.judgements, self.items, source=f"{self.name}: queries")
        return self


def _example(df: pd.DataFrame, mask: Iterable[bool] | pd.Series, line_offset: int | None):
    """First offending row as a dict, and its 1-based file line if known."""
    mask = pd.Series(np.asarray(mask, dtype=bool), index=df.index)
    position = int(np.flatnonzero(mask.to_numpy())[0])
    row = df.iloc[position]
    example = {k: (None if _isna(v) else v) for k, v in row.items()}
    line = position + line_offset if line_offset is not None else None
    return example, line


def _isna(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def require_columns(
    df: pd.DataFrame,
    required: Iterable[str],
    *,
    source: str | Path,
    line_offset: int | None = None,
) -> None:
    """Raise :class:`DataError` naming each missing column, the close name that
    is there instead ("found 'itemid', did you mean 'item_id'?") and a row."""
    required = tuple(required)
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    others = [str(c) for c in df.columns if c not in required]
    squashed = {c.lower().replace("_", "").replace("-", "").replace(" ", ""): c for c in others}
    hints = []
    for column in missing:
        close = ([squashed[column.replace("_", "")]] if column.replace("_", "") in squashed
                 else difflib.get_close_matches(column, others, n=1, cutoff=0.6))
        if close:
            hints.append(f"found {close[0]!r}, did you mean {column!r}?")
    message = " ".join([f"missing column(s) {missing}; found {list(df.columns)}.", *hints])
    example, line = (_example(df, np.arange(len(df)) == 0, line_offset) if len(df)
                     else (None, None))
    raise DataError(message, source=source, column=missing[0], example=example, line=line)


def require_non_empty(df: pd.DataFrame, *, source: str | Path) -> None:
    if len(df) == 0:
        raise DataError("the table is empty (a header but no rows)", source=source)


def _check_no_missing(df, column, *, source, line_offset):
    missing = df[column].isna() | (df[column].astype(str).str.strip() == "")
    if missing.any():
        example, line = _example(df, missing, line_offset)
        raise DataError(
            f"{int(missing.sum())} row(s) have no value", source=source, column=column,
            example=example, line=line,
        )


def _check_numeric(df, column, *, source, line_offset, integer=False):
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    bad |= df[column].isna()
    if bad.any():
        example, line = _example(df, bad, line_offset)
        raise DataError(
            f"{int(bad.sum())} value(s) are not numeric", source=source, column=column,
            example=example, line=line,
        )
    if integer:
        fractional = values != np.floor(values)
        if fractional.any():
            example, line = _example(df, fractional, line_offset)
            raise DataError(
                "values must be whole numbers (seconds)", source=source, column=column,
                example=example, line=line,
            )
    return values


def validate_items(
    items: pd.DataFrame, *, source: str | Path = "items", line_offset: int | None = None
) -> pd.DataFrame:
    """Validate and normalise an items table in place; return it.

    ``line_offset`` maps a row position to its line in the source file (2 for a
    CSV with a header), so errors can say "line 17".
    """
    require_columns(items, ITEM_REQUIRED, source=source, line_offset=line_offset)
    require_non_empty(items, source=source)
    _check_no_missing(items, "item_id", source=source, line_offset=line_offset)
    items["item_id"] = items["item_id"].astype(str)
    duplicated = items["item_id"].duplicated(keep="first")
    if duplicated.any():
        example, line = _example(items, duplicated, line_offset)
        raise DataError(
            f"{int(duplicated.sum())} duplicate item id(s), e.g. {example['item_id']!r}",
            source=source, column="item_id", example=example, line=line,
        )
    _check_no_missing(items, "title", source=source, line_offset=line_offset)
    for column in ("title", "description", "category"):
        items[column] = items[column].fillna("").astype(str)
    if "price" in items:
        price = pd.to_numeric(items["price"], errors="coerce")
        bad = price.isna() & items["price"].notna() & (items["price"].astype(str) != "")
        if bad.any():
            example, line = _example(items, bad, line_offset)
            raise DataError("price is not numeric", source=source, column="price",
                            example=example, line=line)
        items["price"] = price.astype(float)
    if "image_path" in items:
        # An object column holding None: pandas 3 would turn None into NaN in a str column.
        items["image_path"] = pd.Series(
            [None if _isna(p) or str(p) == "" else str(p) for p in items["image_path"]],
            index=items.index, dtype=object,
        )
    return items


def validate_interactions(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    source: str | Path = "interactions",
    line_offset: int | None = None,
) -> pd.DataFrame:
    """Validate and normalise an interactions table in place; return it."""
    require_columns(interactions, INTERACTION_REQUIRED, source=source, line_offset=line_offset)
    require_non_empty(interactions, source=source)
    if "rating" not in interactions and "event" not in interactions:
        others = [str(c) for c in interactions.columns if c not in INTERACTION_REQUIRED]
        close = [f"found {hit[0]!r}, did you mean {wanted!r}?" for wanted in ("rating", "event")
                 if (hit := difflib.get_close_matches(wanted, others, n=1, cutoff=0.6))]
        example, line = _example(interactions, np.arange(len(interactions)) == 0, line_offset)
        raise DataError(
            " ".join([f"needs a 'rating' or an 'event' column; found "
                      f"{list(interactions.columns)}.", *close[:1]]),
            source=source, column="rating", example=example, line=line,
        )
    for column in ("user_id", "item_id"):
        _check_no_missing(interactions, column, source=source, line_offset=line_offset)
        interactions[column] = interactions[column].astype(str)
    timestamps = _check_numeric(
        interactions, "timestamp", source=source, line_offset=line_offset, integer=True
    )
    interactions["timestamp"] = timestamps.astype("int64")
    if "rating" in interactions:
        interactions["rating"] = _check_numeric(
            interactions, "rating", source=source, line_offset=line_offset
        ).astype(float)
    if "event" in interactions:
        unknown = ~interactions["event"].isin(EVENTS)
        if unknown.any():
            example, line = _example(interactions, unknown, line_offset)
            raise DataError(
                f"unknown event(s); allowed: {list(EVENTS)}", source=source, column="event",
                example=example, line=line,
            )
        interactions["event"] = interactions["event"].astype(str)
    known = set(items["item_id"].astype(str))
    unknown_items = ~interactions["item_id"].isin(known)
    if unknown_items.any():
        example, line = _example(interactions, unknown_items, line_offset)
        raise DataError(
            f"{int(unknown_items.sum())} interaction(s) point at item ids that are not in "
            "the items table", source=source, column="item_id", example=example, line=line,
        )
    return interactions


def validate_queries(
    queries: pd.DataFrame,
    judgements: pd.DataFrame | None,
    items: pd.DataFrame,
    *,
    source: str | Path = "queries",
    judgements_source: str | Path | None = None,
    line_offset: int | None = None,
) -> None:
    """Validate queries and their graded judgements in place."""
    judgements_source = judgements_source or f"{source} (judgements)"
    require_columns(queries, QUERY_REQUIRED, source=source, line_offset=line_offset)
    require_non_empty(queries, source=source)
    queries["query_id"] = queries["query_id"].astype(str)
    queries["text"] = queries["text"].fillna("").astype(str)
    if judgements is None:
        raise DataError("queries come without judgements", source=source)
    require_columns(judgements, JUDGEMENT_REQUIRED, source=judgements_source,
                    line_offset=line_offset)
    require_non_empty(judgements, source=judgements_source)
    relevance = pd.to_numeric(judgements["relevance"], errors="coerce")
    bad = ~relevance.isin(list(RELEVANCE_LABELS))
    if bad.any():
        example, line = _example(judgements, bad, line_offset)
        raise DataError(f"relevance must be one of {list(RELEVANCE_LABELS)}",
                        source=judgements_source, column="relevance", example=example, line=line)
    judgements["relevance"] = relevance.astype("int64")
    judgements["query_id"] = judgements["query_id"].astype(str)
    judgements["item_id"] = judgements["item_id"].astype(str)
    for column, known in (("query_id", set(queries["query_id"])),
                          ("item_id", set(items["item_id"]))):
        unknown = ~judgements[column].isin(known)
        if unknown.any():
            example, line = _example(judgements, unknown, line_offset)
            raise DataError(f"judgement(s) for unknown {column}", source=judgements_source,
                            column=column, example=example, line=line)


def as_string_list(values: Any, *, source: str) -> list[str]:
    """``values`` as a list of strings, for functions that take a batch of texts.

    Raises:
        DataError: a single string was passed (a batch was meant), or some
            elements are not strings (names the first one).
    """
    if isinstance(values, str):
        raise DataError("pass a sequence of strings; wrap a single text in a list",
                        source=source)
    values = list(values)
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise DataError(f"{len(bad)} value(s) are not strings, e.g. position {bad[0]}: "
                        f"{values[bad[0]]!r}", source=source)
    return values


def implicit_label(interactions: pd.DataFrame) -> pd.Series:
    """1 for positive feedback, 0 otherwise, whatever the feedback kind.

    Events deeper than a view (click, cart, purchase) are positive; ratings are
    positive at or above :data:`POSITIVE_RATING`.
    """
    if "event" in interactions:
        return (interactions["event"] != "view").astype("int8")
    return (interactions["rating"] >= POSITIVE_RATING).astype("int8")
