"""Tests of the embedded ``synthetic`` world: determinism, schema, planted signal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recsys_utils.schema import EVENTS, Dataset
from recsys_utils.synthetic import (
    ATTRIBUTE_COLUMNS,
    TRUTH_COLUMNS,
    CATEGORIES,
    COLOURS,
    QUERY_KINDS,
    _exact_text,  # the clean form of an exact query
    attribute_words,
    generate,
    render_image,
    tokens,
)

TABLES = ("items", "interactions", "users", "queries", "judgements")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Dataset:
    return generate(300, 200, seed=42, image_dir=tmp_path_factory.mktemp("img_a"))


@pytest.fixture(scope="module")
def medium() -> Dataset:
    return generate(1200, 1000, seed=5)


def _mentions(ds: Dataset, column: str) -> np.ndarray:
    """Whether each item's title + description contains any word for its value."""
    text = (ds.items["title"] + " " + ds.items["description"]).str.lower()
    out = []
    for tx, value in zip(text, ds.items[column]):
        words = attribute_words(column, value)
        out.append(any(re.search(rf"(?<![a-z]){re.escape(w.lower())}(?![a-z])", tx)
                       for w in words))
    return np.array(out)


# ------------------------------------------------------------------ determinism

def test_same_seed_gives_identical_tables_and_images(small, tmp_path):
    again = generate(300, 200, seed=42, image_dir=tmp_path)
    for name in TABLES:
        a, b = getattr(small, name), getattr(again, name)
        if name == "items":  # the image directory differs, the file names do not
            assert [Path(p).name for p in a["image_path"]] == [Path(p).name for p in b["image_path"]]
            a, b = a.drop(columns="image_path"), b.drop(columns="image_path")
        assert a.to_csv() == b.to_csv(), name
    for path_a, path_b in list(zip(small.items["image_path"], again.items["image_path"]))[:5]:
        assert Path(path_a).read_bytes() == Path(path_b).read_bytes()


def test_different_seed_gives_different_tables():
    a, b = generate(120, 50, seed=1), generate(120, 50, seed=2)
    for name in TABLES:
        assert getattr(a, name).to_csv() != getattr(b, name).to_csv(), name


def test_render_image_is_deterministic():
    rng_a, rng_b = np.random.default_rng([1, 2]), np.random.default_rng([1, 2])
    a = render_image("dress", "red", "floral", rng=rng_a)
    b = render_image("dress", "red", "floral", rng=rng_b)
    assert a.tobytes() == b.tobytes()


# ------------------------------------------------------------------------ schema

def test_dataset_validates_and_has_the_expected_columns(small):
    assert small.validate() is small
    assert small.name == "synthetic"
    assert small.attribute_columns == ATTRIBUTE_COLUMNS == ["gender", "price_band"]
    # Colour, material, style and pattern are planted truth, not seller-filled features.
    assert small.truth_columns == TRUTH_COLUMNS
    assert not set(TRUTH_COLUMNS) & set(ATTRIBUTE_COLUMNS)
    assert small.simulated_interactions
    assert small.report.source == "synthetic (generated)" and len(small.report.notes) >= 3
    items = small.items
    for column in ("item_id", "title", "description", "category", "price", "image_path",
                   "brand", "launch_time", *ATTRIBUTE_COLUMNS, *TRUTH_COLUMNS):
        assert column in items.columns, column
    assert items["item_id"].iloc[123] == "i000123"
    assert items["price"].dtype == np.float64 and (items["price"] > 0).all()
    assert items["launch_time"].dtype == np.int64
    assert set(items["price_band"]) == {"budget", "mid", "premium", "luxury"}
    assert items["category"].nunique() == len(CATEGORIES) == 13
    assert (items["title"].str.len() > 0).all() and (items["description"].str.len() > 0).all()
    inter = small.interactions
    assert list(inter.columns) == ["user_id", "item_id", "timestamp", "event", "session_id"]
    assert inter["timestamp"].dtype == np.int64
    assert set(inter["event"]) <= set(EVENTS)
    assert small.feedback == "event"
    assert small.users["user_id"].is_unique and len(small.users) == 200


def test_price_band_is_a_quartile_within_category(medium):
    items = medium.items
    order = ["budget", "mid", "premium", "luxury"]
    for _, group in items.groupby("category"):
        means = group.groupby("price_band")["price"].mean().reindex(order)
        assert means.is_monotonic_increasing


def test_no_interaction_before_launch(small):
    merged = small.interactions.merge(small.items[["item_id", "launch_time"]], on="item_id")
    assert (merged["timestamp"] >= merged["launch_time"]).all()
    new = small.items["launch_time"] >= merged["timestamp"].min()
    assert 0.1 < new.mean() < 0.3  # about 20 % of items launch during the window


def test_no_images_when_no_image_dir():
    ds = generate(60, 20, seed=3)
    assert ds.items["image_path"].isna().all()
    assert not ds.has_images


# -------------------------------------------------------------- behaviour signal

def test_popularity_is_long_tailed_and_activity_varies(medium):
    counts = medium.interactions["item_id"].value_counts().reindex(
        medium.items["item_id"], fill_value=0)
    top = np.sort(counts.to_numpy())[::-1][: len(counts) // 10]
    assert top.sum() / counts.sum() > 0.4
    rows = medium.interactions["user_id"].value_counts()
    assert rows.max() >= 6 * rows.median()


@pytest.mark.parametrize("column", ["category", "colour", "material", "style", "price_band"])
def test_users_follow_their_tastes(medium, column):
    """A user's favourite value in their first half of interactions is chosen far
    more often than its catalogue base rate in their second half."""
    items = medium.items
    merged = medium.interactions.merge(items[["item_id", column]], on="item_id")
    size = merged.groupby("user_id")["user_id"].transform("size")
    merged = merged[size >= 10]
    early = merged.groupby("user_id").cumcount() < merged.groupby("user_id")["user_id"].transform("size") / 2
    favourite = merged[early].groupby("user_id")[column].agg(lambda s: s.value_counts().index[0])
    late = merged[~early]
    share = (late[column] == late["user_id"].map(favourite)).mean()
    base = late["user_id"].map(favourite).map(items[column].value_counts(normalize=True)).mean()
    assert share > 1.6 * base


# -------------------------------------------------------------------------- text

@pytest.mark.parametrize("column", ["category", "material", "style", "gender"])
def test_text_always_states(small, column):
    assert _mentions(small, column).all()


def test_text_states_colour_for_about_half_and_pattern_rarely(medium):
    colour = _mentions(medium, "colour").mean()
    pattern = _mentions(medium, "pattern").mean()
    assert 0.4 < colour < 0.6
    assert 0.1 < pattern < 0.3


def test_items_without_a_colour_mention_name_no_colour_at_all(medium):
    silent = ~_mentions(medium, "colour")
    colour_words = {w for c in COLOURS for w in attribute_words("colour", c)}
    text = (medium.items["title"] + " " + medium.items["description"]).str.lower()[silent]
    assert not any(set(tokens(t)) & colour_words for t in text)


def test_titles_use_synonyms(medium):
    red = medium.items[medium.items["colour"] == "red"]
    words = {w for t in red["title"].str.lower() for w in tokens(t)}
    assert len(words & set(attribute_words("colour", "red"))) > 1
    linen = medium.items[medium.items["material"] == "linen"]
    text = " ".join((linen["title"] + " " + linen["description"]).str.lower())
    assert "linen" in text and "flax" in text


# ------------------------------------------------------------------------ images

def _mean_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=float).reshape(-1, 3).mean(axis=0)


def test_images_files_match_attributes(small):
    items = small.items
    path = Path(items["image_path"].iloc[0])
    assert path.is_absolute() and path.name == "i000000.png"
    with Image.open(path) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    # Red items are redder than blue items, on average over the generated files.
    means = {}
    for colour in ("red", "blue"):
        paths = items.loc[items["colour"] == colour, "image_path"]
        means[colour] = np.mean([_mean_rgb(Image.open(p).convert("RGB")) for p in paths], axis=0)
    assert means["red"][0] - means["red"][2] > means["blue"][0] - means["blue"][2] + 40


def _foreground_rgb(image: Image.Image) -> np.ndarray:
    """Mean RGB of the pixels that are not (near-white, grey) background."""
    pixels = np.asarray(image, dtype=float).reshape(-1, 3)
    foreground = np.abs(pixels - 244).max(axis=1) > 30
    return pixels[foreground].mean(axis=0)


def test_colour_changes_the_image_and_nothing_else_much():
    def draw(colour: str, seed: int) -> np.ndarray:
        image = render_image("t-shirt", colour, "solid", rng=np.random.default_rng(seed))
        return _foreground_rgb(image)

    red_a, red_b, blue_a = draw("red", 1), draw("red", 2), draw("blue", 1)
    different = np.abs(red_a - blue_a).max()
    same = np.abs(red_a - red_b).max()
    assert different > 20
    assert same < different / 3


def test_pattern_and_category_are_visible():
    rng = lambda: np.random.default_rng(4)
    solid = np.asarray(render_image("dress", "green", "solid", rng=rng()), dtype=float)
    striped = np.asarray(render_image("dress", "green", "striped", rng=rng()), dtype=float)
    shape = np.abs(solid - 244).max(axis=2) > 30      # the dress, from the solid image
    assert striped[shape].std(axis=0).mean() > solid[shape].std(axis=0).mean() + 10
    hat = np.asarray(render_image("hat", "green", "solid", rng=rng()), dtype=float)
    hat_shape = np.abs(hat - 244).max(axis=2) > 30
    # Different silhouettes cover different pixels.
    assert (shape != hat_shape).mean() > 0.1


# ----------------------------------------------------------------------- queries

def test_queries_and_judgements(medium):
    queries, judgements = medium.queries, medium.judgements
    assert set(queries["kind"]) == set(QUERY_KINDS)
    assert len(queries) == 1200 // 4
    assert queries["query_id"].iloc[0] == "q0001" and queries["query_id"].is_unique
    assert set(judgements["relevance"]) == {0, 1, 2, 3}
    assert judgements["relevance"].dtype == np.int64
    assert not judgements.duplicated(["query_id", "item_id"]).any()
    best = judgements.groupby("query_id")["relevance"].max()
    assert (best.reindex(queries["query_id"]) == 3).all()
    assert judgements.groupby("query_id").size().max() <= 200
    assert ((judgements["relevance"] == 0).groupby(judgements["query_id"]).sum() > 0).all()
    vague = queries[queries["kind"] == "vague"]
    assert vague["target_category"].isna().all()
    assert queries.loc[queries["kind"] != "vague", "target_category"].notna().all()


def test_all_kinds_present_in_a_small_set():
    ds = generate(40, 10, seed=0, n_queries=6)
    assert set(ds.queries["kind"]) == set(QUERY_KINDS) and len(ds.queries) == 6


def test_relevance_follows_attribute_agreement(medium):
    items = medium.items.set_index("item_id")
    merged = medium.judgements.merge(medium.queries, on="query_id")
    agree = pd.Series(True, index=merged.index)
    for column in ("category", "colour", "material", "style", "pattern", "gender"):
        target = merged[f"target_{column}"]
        value = items.loc[merged["item_id"], column].to_numpy()
        agree &= target.isna() | (target.to_numpy() == value)
    assert (agree == (merged["relevance"] == 3)).all()
    # Complements: some relevance-1 items come from another (related) category.
    ones = merged[(merged["relevance"] == 1) & merged["target_category"].notna()]
    other = items.loc[ones["item_id"], "category"].to_numpy() != ones["target_category"].to_numpy()
    assert other.any()


def test_paraphrases_share_fewer_words_than_exact_queries(medium):
    exact3 = medium.judgements[medium.judgements["relevance"] == 3]
    merged = exact3.merge(medium.queries[["query_id", "text", "kind"]], on="query_id").merge(
        medium.items[["item_id", "title"]], on="item_id")
    overlap = [len(set(tokens(q)) & set(tokens(t))) / len(set(tokens(q)))
               for q, t in zip(merged["text"], merged["title"])]
    by_kind = pd.Series(overlap).groupby(merged["kind"].to_numpy()).mean()
    assert by_kind["paraphrase"] < 0.6 * by_kind["exact"]
    assert by_kind["misspelling"] < by_kind["exact"]


def test_misspellings_are_exact_queries_with_typos(medium):
    queries = medium.queries
    miss = queries[queries["kind"] == "misspelling"]
    exact_words = set(" ".join(queries.loc[queries["kind"] == "exact", "text"]).split())
    for text in miss["text"]:
        assert not set(text.split()) <= exact_words | {"women's", "men's", "unisex"}
    # Even one-word queries with short words ("red hat") get a typo.
    ds = generate(200, 10, seed=9, n_queries=200)
    miss = ds.queries[ds.queries["kind"] == "misspelling"]
    for row in miss.to_dict("records"):
        target = {c[len("target_"):]: v for c, v in row.items()
                  if c.startswith("target_") and isinstance(v, str)}
        assert row["text"] != _exact_text(target)


# ------------------------------------------------------------------------- scale

def test_generate_at_scale_with_images(tmp_path):
    ds = generate(3000, 2000, seed=1, image_dir=tmp_path)
    assert len(ds.items) == 3000 and ds.items["image_path"].notna().all()
    assert len(list(tmp_path.glob("*.png"))) == 3000
    assert len(ds.queries) == 750
