"""The one schema every data set is loaded into, and its validation.

Tables: **items** (``item_id``, ``title``, ``description``, ``category``, attribute columns,
optional ``price`` and ``image_path``), **interactions** (``user_id``, ``item_id``,
``timestamp`` in unix seconds, and ``rating`` or ``event``), and optional **users**,
**queries** and graded **judgements** (ESCI relevance 0-3). Errors are :class:`DataError`s
naming the file, the column and an example row, never a traceback from deep inside a model.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import difflib
import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn

import numpy as np
import pandas as pd

ITEM_REQUIRED = ("item_id", "title", "description", "category")
ITEM_OPTIONAL = ("price", "image_path")
INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
EVENTS = ("view", "click", "cart", "purchase")
#: Ratings at or above this count as positive implicit feedback.
POSITIVE_RATING = 4.0
#: The scale ratings must lie on unless the data set declares another one.
RATING_SCALE = (0.0, 5.0)
#: Plausible unix timestamps in seconds: 1970-01-01 up to 2100-01-01 (exclusive).
TIMESTAMP_RANGE = (0, 4_102_444_800)
#: Values that stand for "no text" in a title or description (compared lower-cased, stripped).
PLACEHOLDER_TEXTS = frozenset({"", "nan", "none", "null", "n/a", "na", "<na>", "-", "--", "?",
                               "."})
#: The same for attribute values, plus "unknown" (not for titles: MovieLens has a film
#: called "unknown").
UNKNOWN_VALUES = PLACEHOLDER_TEXTS | {"unknown"}
QUERY_REQUIRED = ("query_id", "text")
JUDGEMENT_REQUIRED = ("query_id", "item_id", "relevance")
RELEVANCE_LABELS = {0: "irrelevant", 1: "complement", 2: "substitute", 3: "exact"}


class DataError(ValueError):
    """Bad input data, described so that a person can fix the file: its ``source``, the
    ``column``, an ``example`` row, the file ``line`` where that row starts and its
    ``record`` number (1 = the first row after the header; not the line when quoted
    fields span lines)."""

    def __init__(self, message: str, *, source: str | Path | None = None,
                 column: str | None = None, example: Mapping[str, Any] | None = None,
                 line: int | None = None, record: int | None = None) -> None:
        self.source = str(source) if source is not None else None
        self.column = column
        self.example = dict(example) if example is not None else None
        self.line = line
        self.record = record
        parts = [p for p in (self.source, column and f"column '{column}'") if p]
        head = ": ".join([", ".join(parts), message]) if parts else message
        if self.example is not None:
            where = ("example row" if line is None else f"line {line}" if record is None
                     else f"record {record} (line {line})")
            head += f"\n  {where}: {self.example}"
        super().__init__(head)


def summarise_error(exc: BaseException, limit: int = 300) -> str:
    """``"<Type>: <message>"`` on one line, cut at ``limit`` characters (for error messages)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(exc).__name__}: {text}"


class CsvLines:
    """Row position -> (record number, first file line) of a CSV with a header.

    pandas numbers rows, not lines (a quoted field may span lines), so the file is
    re-read with :mod:`csv`, and only when an error needs a line number.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @functools.cached_property
    def _lines(self) -> list[int]:
        starts, end = [], 0
        with open(self.path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                start, end = end + 1, reader.line_num
                if row and any(field.strip() for field in row):  # pandas skips blank lines
                    starts.append(start)
        return starts[1:]  # the header is not a record

    def __call__(self, position: int) -> tuple[int, int | None]:
        try:
            lines = self._lines
        except (OSError, UnicodeDecodeError, csv.Error):
            return position + 1, None
        return position + 1, (lines[position] if position < len(lines) else None)


#: How a table's row positions map to a file: a fixed line offset (2 for a CSV
#: with a header and no multi-line fields), a :class:`CsvLines`, or unknown.
LineOffset = int | Callable[[int], tuple[int, int | None]] | None


@dataclasses.dataclass
class LoadReport:
    """What a loader found: counts of malformed rows, missing images, notes."""

    source: str
    malformed_rows: int = 0
    repaired_rows: int = 0
    dropped_rows: int = 0
    missing_images: int = 0
    unreadable_images: int = 0
    #: ``{"item_id", "image_path", "problem"}`` per image that failed the check.
    bad_images: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Dataset:
    """A data set in the one schema.

    ``attribute_columns`` are categorical item features models may use; ``truth_columns``
    are planted labels (``synthetic``) models must never see as features. ``rating_scale``
    None means :data:`RATING_SCALE`; ``data_root`` is the folder images were read from.
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
    rating_scale: tuple[float, float] | None = None
    data_root: Path | None = None

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
        validate_interactions(self.interactions, self.items, source=f"{self.name}: interactions",
                              rating_scale=self.rating_scale)
        if self.queries is not None:
            validate_queries(self.queries, self.judgements, self.items,
                             source=f"{self.name}: queries")
        return self


def _fail(df: pd.DataFrame, mask: Iterable[bool] | pd.Series, message: str, *,
          source: str | Path, column: str, line_offset: LineOffset) -> NoReturn:
    """Raise :class:`DataError` with the first row of ``df`` where ``mask`` holds, and its
    record and file line as ``line_offset`` maps them."""
    position = int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])
    example = {k: (None if _isna(v) else v) for k, v in df.iloc[position].items()}
    record, line = (None, None) if line_offset is None else line_offset(position) if callable(
        line_offset) else (position + 1, position + line_offset)
    raise DataError(message, source=source, column=column, example=example, line=line,
                    record=record)


def _isna(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def require_columns(df: pd.DataFrame, required: Iterable[str], *, source: str | Path,
                    line_offset: LineOffset = None) -> None:
    """Raise :class:`DataError` naming each missing column, the close name that
    is there instead ("found 'itemid', did you mean 'item_id'?") and a row."""
    required = tuple(required)
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    others = [str(c) for c in df.columns if c not in required]
    squashed = {c.lower().replace("_", "").replace("-", "").replace(" ", ""): c for c in others}
    hints = [f"found {close[0]!r}, did you mean {column!r}?" for column in missing
             if (close := [squashed[column.replace("_", "")]] if column.replace("_", "") in squashed
                 else difflib.get_close_matches(column, others, n=1, cutoff=0.6))]
    message = " ".join([f"missing column(s) {missing}; found {list(df.columns)}.", *hints])
    if len(df):
        _fail(df, np.arange(len(df)) == 0, message, source=source, column=missing[0],
              line_offset=line_offset)
    raise DataError(message, source=source, column=missing[0])


def require_non_empty(df: pd.DataFrame, *, source: str | Path) -> None:
    if len(df) == 0:
        raise DataError("the table is empty (a header but no rows)", source=source)


def _check_no_missing(df, column, *, source, line_offset):
    missing = df[column].isna() | (df[column].astype(str).str.strip() == "")
    if missing.any():
        _fail(df, missing, f"{int(missing.sum())} row(s) have no value", source=source,
              column=column, line_offset=line_offset)


def _check_numeric(df, column, *, source, line_offset, integer=False):
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna()  # also where df[column] itself is missing
    if bad.any():
        _fail(df, bad, f"{int(bad.sum())} value(s) are not numeric", source=source,
              column=column, line_offset=line_offset)
    if integer and (fractional := values != np.floor(values)).any():
        _fail(df, fractional, "values must be whole numbers (seconds)", source=source,
              column=column, line_offset=line_offset)
    return values


def is_placeholder(values: pd.Series, placeholders: frozenset[str] = PLACEHOLDER_TEXTS
                   ) -> pd.Series:
    """True where a text value is missing or a stand-in for nothing ("nan", "-", ""):
    :data:`PLACEHOLDER_TEXTS` for titles and descriptions, :data:`UNKNOWN_VALUES` for
    attribute values."""
    return values.isna() | values.astype(str).str.strip().str.lower().isin(placeholders)


def _utc(seconds: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "beyond any calendar"


def _check_timestamps(df: pd.DataFrame, values: pd.Series, *, source, line_offset) -> None:
    """Refuse timestamps that are not unix seconds in :data:`TIMESTAMP_RANGE`, saying so
    when they look like milliseconds (all of them: divide by 1000; some: mixed units)."""
    low, high = TIMESTAMP_RANGE
    x = values.to_numpy(dtype=float)
    seconds = (x >= low) & (x < high)
    if seconds.all():
        return
    millis = ~seconds & (x >= low * 1000) & (x < high * 1000)
    fix = "convert the column to unix seconds (milliseconds: divide by 1000) or drop those rows"
    where = dict(source=source, column="timestamp", line_offset=line_offset)
    if millis.any() and (seconds.any() or (~seconds & ~millis).any()):
        first_seconds = x[seconds][0] if seconds.any() else None
        value = x[millis][0]
        _fail(df, millis,
              f"mixed units: {int(millis.sum())} value(s) are out of range as seconds but look "
              f"like milliseconds (e.g. {value:.0f} would be {_utc(value)} in seconds, "
              f"{_utc(value / 1000)} in milliseconds) while {int(seconds.sum())} look like "
              "seconds"
              + (f" (e.g. {first_seconds:.0f} = {_utc(first_seconds)})" if first_seconds else "")
              + f"; {fix}", **where)
    if millis.all():
        _fail(df, millis,
              f"every timestamp looks like milliseconds (e.g. {x[0]:.0f} would be "
              f"{_utc(x[0])} in seconds, {_utc(x[0] / 1000)} in milliseconds); the schema wants "
              "unix seconds: divide the column by 1000", **where)
    value = x[~seconds][0]
    _fail(df, ~seconds,
          f"{int((~seconds).sum())} timestamp(s) out of range: unix seconds must lie between "
          f"{_utc(low)} and {_utc(high)}; e.g. {value:.0f} "
          + ("is negative" if value < 0 else f"is {_utc(value)}"
             if value < 2 ** 63 else "overflows a 64-bit integer")
          + f"; {fix}", **where)


def _check_ratings(df: pd.DataFrame, values: pd.Series, scale: tuple[float, float], *, source,
                   line_offset) -> None:
    """Refuse non-finite ratings and ratings outside the declared ``scale``."""
    x = values.to_numpy(dtype=float)
    where = dict(source=source, column="rating", line_offset=line_offset)
    infinite = ~np.isfinite(x)
    if infinite.any():
        _fail(df, infinite, f"{int(infinite.sum())} rating(s) are not finite (inf or nan); give "
              "each row a number on the rating scale or drop it", **where)
    low, high = scale
    outside = (x < low) | (x > high)
    if outside.any():
        _fail(df, outside,
              f"{int(outside.sum())} rating(s) outside the scale {low:g}..{high:g} (e.g. "
              f"{x[outside][0]:g}); fix those rows, or declare the scale your data uses "
              "(rating_scale=(low, high), or {\"rating_scale\": [low, high]} in dataset.json "
              "beside the csv files)", **where)


def validate_items(items: pd.DataFrame, *, source: str | Path = "items",
                   line_offset: LineOffset = None) -> pd.DataFrame:
    """Validate and normalise an items table in place; return it. ``line_offset`` maps a
    row position to its file line (2 for a CSV with a header), so errors can say "line 17"."""
    where = dict(source=source, line_offset=line_offset)
    require_columns(items, ITEM_REQUIRED, **where)
    require_non_empty(items, source=source)
    _check_no_missing(items, "item_id", **where)
    items["item_id"] = items["item_id"].astype(str)
    duplicated = items["item_id"].duplicated(keep="first")
    if duplicated.any():
        _fail(items, duplicated, f"{int(duplicated.sum())} duplicate item id(s), e.g. "
              f"{items['item_id'][duplicated].iloc[0]!r}", column="item_id", **where)
    _check_no_missing(items, "title", **where)
    placeholder = is_placeholder(items["title"])
    if placeholder.any():
        _fail(items, placeholder,
              f"{int(placeholder.sum())} title(s) are placeholders, not text (e.g. "
              f"{items['title'][placeholder].iloc[0]!r}); every item needs a real title (the "
              "text encoder and search read it): write one, or drop the item",
              column="title", **where)
    for column in ("title", "description", "category"):
        items[column] = items[column].fillna("").astype(str)
    # A placeholder description means "none": the encoder must not read "nan" as words.
    items["description"] = items["description"].mask(is_placeholder(items["description"]), "")
    if "price" in items:
        price = pd.to_numeric(items["price"], errors="coerce")
        bad = price.isna() & items["price"].notna() & (items["price"].astype(str) != "")
        if bad.any():
            _fail(items, bad, "price is not numeric", column="price", **where)
        items["price"] = price.astype(float)
    if "image_path" in items:
        # An object column holding None: pandas 3 would turn None into NaN in a str column.
        items["image_path"] = pd.Series(
            [None if _isna(p) or str(p) == "" else str(p) for p in items["image_path"]],
            index=items.index, dtype=object)
    return items


def validate_interactions(interactions: pd.DataFrame, items: pd.DataFrame, *,
                          source: str | Path = "interactions", line_offset: LineOffset = None,
                          feedback: str | None = None,
                          rating_scale: tuple[float, float] | None = None) -> pd.DataFrame:
    """Validate and normalise an interactions table in place; return it.

    ``feedback`` (``"rating"`` or ``"event"``) is required when the table has both columns;
    the other is dropped. Ratings must lie in ``rating_scale`` (default :data:`RATING_SCALE`).
    """
    where = dict(source=source, line_offset=line_offset)
    require_columns(interactions, INTERACTION_REQUIRED, **where)
    require_non_empty(interactions, source=source)
    if feedback is not None and feedback not in ("rating", "event"):
        raise DataError(f"feedback must be 'rating' or 'event', got {feedback!r}", source=source)
    if feedback is not None and feedback not in interactions:
        raise DataError(f"the stated feedback column {feedback!r} is not in the table; found "
                        f"{list(interactions.columns)}", source=source, column=feedback)
    if "rating" in interactions and "event" in interactions:
        if feedback is None:
            _fail(interactions, np.arange(len(interactions)) == 0,
                  "has both a 'rating' and an 'event' column, and the series uses one kind of "
                  "feedback; drop one column, or state the choice (feedback='rating' or 'event', "
                  "or {\"feedback\": \"rating\"} in dataset.json beside the csv files)",
                  column="event", **where)
        interactions.drop(columns=["event" if feedback == "rating" else "rating"], inplace=True)
    if "rating" not in interactions and "event" not in interactions:
        others = [str(c) for c in interactions.columns if c not in INTERACTION_REQUIRED]
        close = [f"found {hit[0]!r}, did you mean {wanted!r}?" for wanted in ("rating", "event")
                 if (hit := difflib.get_close_matches(wanted, others, n=1, cutoff=0.6))]
        _fail(interactions, np.arange(len(interactions)) == 0,
              " ".join([f"needs a 'rating' or an 'event' column; found "
                        f"{list(interactions.columns)}.", *close[:1]]),
              column="rating", **where)
    for column in ("user_id", "item_id"):
        _check_no_missing(interactions, column, **where)
        interactions[column] = interactions[column].astype(str)
    timestamps = _check_numeric(interactions, "timestamp", integer=True, **where)
    _check_timestamps(interactions, timestamps, **where)
    interactions["timestamp"] = timestamps.astype("int64")
    if "rating" in interactions:
        ratings = _check_numeric(interactions, "rating", **where)
        _check_ratings(interactions, ratings, tuple(rating_scale or RATING_SCALE), **where)
        interactions["rating"] = ratings.astype(float)
    if "event" in interactions:
        unknown = ~interactions["event"].isin(EVENTS)
        if unknown.any():
            _fail(interactions, unknown, f"unknown event(s); allowed: {list(EVENTS)}",
                  column="event", **where)
        interactions["event"] = interactions["event"].astype(str)
    unknown_items = ~interactions["item_id"].isin(set(items["item_id"].astype(str)))
    if unknown_items.any():
        _fail(interactions, unknown_items, f"{int(unknown_items.sum())} interaction(s) point at "
              "item ids that are not in the items table", column="item_id", **where)
    return interactions


def validate_queries(queries: pd.DataFrame, judgements: pd.DataFrame | None, items: pd.DataFrame,
                     *, source: str | Path = "queries", judgements_source: str | Path | None = None,
                     line_offset: LineOffset = None) -> None:
    """Validate queries and their graded judgements in place."""
    judgements_source = judgements_source or f"{source} (judgements)"
    require_columns(queries, QUERY_REQUIRED, source=source, line_offset=line_offset)
    require_non_empty(queries, source=source)
    queries["query_id"] = queries["query_id"].astype(str)
    queries["text"] = queries["text"].fillna("").astype(str)
    if judgements is None:
        raise DataError("queries come without judgements", source=source)
    where = dict(source=judgements_source, line_offset=line_offset)
    require_columns(judgements, JUDGEMENT_REQUIRED, **where)
    require_non_empty(judgements, source=judgements_source)
    relevance = pd.to_numeric(judgements["relevance"], errors="coerce")
    bad = ~relevance.isin(list(RELEVANCE_LABELS))
    if bad.any():
        _fail(judgements, bad, f"relevance must be one of {list(RELEVANCE_LABELS)}",
              column="relevance", **where)
    judgements["relevance"] = relevance.astype("int64")
    judgements[["query_id", "item_id"]] = judgements[["query_id", "item_id"]].astype(str)
    for column, known in (("query_id", set(queries["query_id"])),
                          ("item_id", set(items["item_id"]))):
        unknown = ~judgements[column].isin(known)
        if unknown.any():
            _fail(judgements, unknown, f"judgement(s) for unknown {column}", column=column,
                  **where)


def as_string_list(values: Any, *, source: str) -> list[str]:
    """``values`` as a list of strings, for functions that take a batch of texts; a
    :class:`DataError` for a single string or for elements that are not strings."""
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
    """1 for positive feedback (an event deeper than a view, or a rating at or above
    :data:`POSITIVE_RATING`), else 0."""
    if "event" in interactions:
        return (interactions["event"] != "view").astype("int8")
    return (interactions["rating"] >= POSITIVE_RATING).astype("int8")
