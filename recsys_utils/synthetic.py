"""The embedded default data set ``synthetic``: a small fashion shop, generated.

Deterministic (same arguments and seed -> byte-identical tables and images), offline, any
scale. Items have a category (its own drawable silhouette), colour, material, style, pattern,
gender, price and price band, each value with synonyms. The modalities are complementary: the
image shows category, colour and pattern only; the text always states category, material,
style and gender, but colour for only ``COLOUR_MENTION_P`` and pattern for only
``PATTERN_MENTION_P`` of items. Simulated users have tastes over all of them, so only fusing
text and image recovers them. Search queries are ``exact``, ``paraphrase`` (synonyms only),
``misspelling`` or ``vague`` (indirect, no category), with graded ESCI relevance from
attribute agreement: 3 = category and every stated attribute match, 2 = all but one, 1 = same
category otherwise or a complementary category sharing an attribute, 0 = otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .schema import Dataset, LoadReport
from .simulation import assign_launch_times, simulate_behaviour

__all__ = [
    "ATTRIBUTE_COLUMNS", "CATEGORIES", "COLOURS", "GENDERS", "MATERIALS", "PATTERNS",
    "QUERY_KINDS", "STYLES", "TRUTH_COLUMNS", "attribute_words", "generate", "render_image",
    "tokens",
]

#: Structured attributes a seller fills in (the Dataset's ``attribute_columns``):
#: models may use them as features.
ATTRIBUTE_COLUMNS: list[str] = ["gender", "price_band"]
#: Ground truth the generator planted (the Dataset's ``truth_columns``): evaluation labels
#: that models must see only through the text and the image.
TRUTH_COLUMNS: list[str] = ["colour", "material", "style", "pattern"]
QUERY_KINDS = ("exact", "paraphrase", "misspelling", "vague")

CANONICAL_P = 0.7         # chance a mention uses the canonical word, not a synonym
COLOUR_MENTION_P = 0.5     # share of items whose text states the colour
PATTERN_MENTION_P = 0.2    # share of items whose text states the pattern
MAX_JUDGED = 200           # judgement rows per query, at most
N_NEGATIVES = 20           # sampled relevance-0 rows per query
START_TIME = 1_700_000_000

# Category: synonyms, base price, allowed materials, gender weights (women,
# men, unisex), complementary categories (for relevance 1).
CATEGORIES: dict[str, dict] = {
    "t-shirt": {"syn": ["tee", "crew-neck top", "short-sleeve top"], "price": 22,
                "materials": ["cotton", "linen", "polyester", "silk"],
                "complements": ["jeans", "skirt", "sneakers"]},
    "sweater": {"syn": ["jumper", "pullover", "knit"], "price": 60,
                "materials": ["wool", "cotton", "polyester"],
                "complements": ["jeans", "scarf", "skirt"]},
    "jacket": {"syn": ["coat", "blazer", "outerwear"], "price": 120,
               "materials": ["leather", "denim", "wool", "polyester", "cotton"],
               "complements": ["jeans", "scarf", "boots"]},
    "dress": {"syn": ["frock", "gown", "sundress"], "price": 65,
              "materials": ["cotton", "silk", "linen", "polyester"],
              "gender": (0.92, 0.0, 0.08), "complements": ["handbag", "boots", "scarf"]},
    "skirt": {"syn": ["midi", "pleated bottom", "a-line"], "price": 45,
              "materials": ["cotton", "denim", "silk", "linen", "wool", "leather"],
              "gender": (0.92, 0.0, 0.08), "complements": ["t-shirt", "handbag", "boots"]},
    "jeans": {"syn": ["trousers", "pants", "five-pocket pants"], "price": 55,
              "materials": ["denim", "cotton"], "complements": ["t-shirt", "sneakers", "jacket"]},
    "sneakers": {"syn": ["trainers", "running shoes", "kicks"], "price": 85,
                 "materials": ["canvas", "leather", "polyester"],
                 "complements": ["jeans", "backpack", "t-shirt"]},
    "boots": {"syn": ["booties", "chelsea boots", "lace-up footwear"], "price": 130,
              "materials": ["leather", "canvas", "wool"],
              "complements": ["jeans", "jacket", "skirt"]},
    "handbag": {"syn": ["purse", "tote", "shoulder bag"], "price": 95,
                "materials": ["leather", "canvas", "polyester", "silk"],
                "gender": (0.75, 0.0, 0.25), "complements": ["dress", "watch", "scarf"]},
    "backpack": {"syn": ["rucksack", "daypack", "knapsack"], "price": 60,
                 "materials": ["canvas", "polyester", "leather", "denim"],
                 "complements": ["sneakers", "hat", "jacket"]},
    "hat": {"syn": ["cap", "beanie", "fedora"], "price": 25,
            "materials": ["wool", "cotton", "linen", "polyester"],
            "complements": ["scarf", "jacket", "backpack"]},
    "scarf": {"syn": ["shawl", "wrap", "muffler"], "price": 32,
              "materials": ["wool", "silk", "cotton", "linen"],
              "complements": ["hat", "sweater", "jacket"]},
    "watch": {"syn": ["wristwatch", "timepiece", "chronograph"], "price": 160,
              "materials": ["leather", "canvas", "silk"],
              "complements": ["handbag", "jacket", "dress"]},
}
#: colour -> (RGB, synonyms, weight in the catalogue)
COLOURS: dict[str, tuple[tuple[int, int, int], list[str], float]] = {
    "black": ((28, 28, 30), ["ebony", "onyx", "jet"], 0.14),
    "white": ((236, 236, 230), ["ivory", "cream", "pearl"], 0.10),
    "blue": ((35, 75, 185), ["navy", "cobalt", "azure"], 0.12),
    "grey": ((128, 128, 132), ["charcoal", "slate", "ash"], 0.09),
    "red": ((205, 30, 40), ["crimson", "scarlet", "cherry"], 0.08),
    "beige": ((215, 190, 150), ["sand", "taupe", "oatmeal"], 0.08),
    "brown": ((115, 72, 40), ["chocolate", "chestnut", "mocha"], 0.07),
    "green": ((40, 140, 65), ["emerald", "olive", "sage"], 0.07),
    "pink": ((240, 135, 185), ["blush", "fuchsia", "salmon"], 0.07),
    "purple": ((120, 50, 155), ["violet", "plum", "lavender"], 0.06),
    "yellow": ((238, 205, 40), ["mustard", "lemon", "golden"], 0.06),
    "orange": ((240, 130, 30), ["tangerine", "amber", "rust"], 0.06),
}
#: material -> (synonyms, price multiplier)
MATERIALS: dict[str, tuple[list[str], float]] = {
    "cotton": (["jersey", "pima", "poplin"], 1.0),
    "leather": (["hide", "calfskin", "nappa"], 1.7),
    "denim": (["chambray", "selvedge", "jean cloth"], 1.0),
    "wool": (["merino", "lambswool", "tweed"], 1.35),
    "silk": (["satin", "charmeuse", "crepe de chine"], 1.8),
    "linen": (["flax", "flax fibre", "ramie"], 1.15),
    "polyester": (["synthetic", "microfibre", "poly"], 0.75),
    "canvas": (["duck cloth", "sailcloth", "heavy twill"], 0.85),
}
#: style -> (synonyms, price multiplier)
STYLES: dict[str, tuple[list[str], float]] = {
    "casual": (["relaxed", "everyday", "laid-back"], 0.9),
    "formal": (["elegant", "dressy", "smart"], 1.25),
    "sporty": (["athletic", "activewear", "athleisure"], 1.0),
    "vintage": (["retro", "old-school", "throwback"], 1.1),
    "bohemian": (["boho", "free-spirited", "hippie"], 0.95),
    "minimalist": (["understated", "clean-lined", "pared-back"], 1.05),
}
#: pattern -> (synonyms, weight)
PATTERNS: dict[str, tuple[list[str], float]] = {
    "solid": (["plain", "unpatterned", "block-colour"], 0.40),
    "striped": (["stripy", "pinstriped", "banded"], 0.18),
    "polka-dot": (["dotted", "spotted", "dot-print"], 0.12),
    "checked": (["plaid", "gingham", "tartan"], 0.15),
    "floral": (["flowered", "botanical", "blossom-print"], 0.15),
}
#: gender -> (title word, synonyms for titles, phrases for "designed for ...")
GENDERS: dict[str, tuple[str, list[str], list[str]]] = {
    "women": ("women's", ["ladies'", "womenswear"], ["women", "her", "ladies"]),
    "men": ("men's", ["gents'", "menswear"], ["men", "him", "gentlemen"]),
    "unisex": ("unisex", ["gender-neutral", "genderless"],
               ["everyone", "any gender", "all genders"]),
}
PRICE_BANDS = ("budget", "mid", "premium", "luxury")
BRANDS = ("Nordvik", "Alba & Finch", "Kestrel", "Maison Lyra", "Tallow Row", "Orla Street",
          "Bramble", "Vantage", "Ostra", "Juniper Lane", "Corvo", "Halden", "Mira Vale",
          "Solen", "Tidewater", "Ember & Oak")

# Indirect phrases for vague queries: material or style -> ways of saying it.
_VAGUE_CONTEXT = {
    "wool": ["warm for winter", "cosy for cold days"],
    "linen": ["breezy for hot days", "light for summer heat"],
    "leather": ["tough that ages well", "hard-wearing and rugged"],
    "silk": ["smooth and luxurious", "with a soft sheen"],
    "cotton": ["soft and breathable", "comfortable and natural"],
    "denim": ["in tough workwear twill", "rugged for weekends outdoors"],
    "polyester": ["quick-drying and easy-care", "that is easy to wash"],
    "canvas": ["sturdy and outdoorsy", "heavy-duty for outdoors"],
    "casual": ["for lazy weekends", "to lounge around in"],
    "formal": ["for the office", "for a wedding"],
    "sporty": ["for the gym", "for a morning run"],
    "vintage": ["that looks like it's from the seventies", "with a nostalgic feel"],
    "bohemian": ["for a music festival", "with a free hippie vibe"],
    "minimalist": ["with no fuss at all", "sleek and quiet"],
}
_VAGUE_PATTERN = {
    "solid": "in one plain colour", "striped": "with stripes", "polka-dot": "with dots",
    "checked": "with a check print", "floral": "with flowers on it",
}


def _synonyms(column: str, value: str) -> list[str]:
    """Synonyms of a category, colour, material, style or pattern value."""
    entry = {"category": CATEGORIES, "colour": COLOURS, "material": MATERIALS, "style": STYLES,
             "pattern": PATTERNS}[column][value]
    return entry["syn"] if column == "category" else entry[1] if column == "colour" else entry[0]


def attribute_words(column: str, value: str) -> list[str]:
    """All words the generator may use in text for an attribute value (canonical first);
    ``column`` is category, colour, material, style, pattern or gender."""
    if column == "gender":
        word, syn, phrases = GENDERS[value]
        return [word, *syn, *phrases]
    return [value, *_synonyms(column, value)]


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _word(rng: np.random.Generator, canonical: str, synonyms: list[str]) -> str:
    return canonical if rng.random() < CANONICAL_P else _pick(rng, synonyms)


_PLURAL = {"sneakers", "boots", "jeans", "trainers", "running shoes", "kicks", "booties",
           "chelsea boots", "lace-up footwear", "trousers", "pants", "five-pocket pants"}


def _article(word: str) -> str:
    return "a pair of" if word in _PLURAL else "an" if word[:1].lower() in "aeiou" else "a"


def _sample_attributes(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    category = rng.choice(np.array(list(CATEGORIES)), size=n_items)
    colour_w = np.array([w for _, _, w in COLOURS.values()])
    colour = rng.choice(np.array(list(COLOURS)), size=n_items, p=colour_w / colour_w.sum())
    pattern_w = np.array([w for _, w in PATTERNS.values()])
    pattern = rng.choice(np.array(list(PATTERNS)), size=n_items, p=pattern_w / pattern_w.sum())
    style = rng.choice(np.array(list(STYLES)), size=n_items)
    material = np.empty(n_items, dtype=object)
    gender = np.empty(n_items, dtype=object)
    genders = np.array(list(GENDERS))
    u_mat, u_gen = rng.random(n_items), rng.random(n_items)
    for name in CATEGORIES:  # fixed dict order: deterministic
        mask = category == name
        allowed = CATEGORIES[name]["materials"]
        material[mask] = np.array(allowed)[(u_mat[mask] * len(allowed)).astype(int)]
        w = np.cumsum(CATEGORIES[name].get("gender", (0.4, 0.4, 0.2)))
        gender[mask] = genders[np.searchsorted(w / w[-1], u_gen[mask], side="right").clip(0, 2)]
    base = np.array([CATEGORIES[c]["price"] for c in category], dtype=float)
    mult = np.array([MATERIALS[m][1] * STYLES[s][1] for m, s in zip(material, style)])
    price = base * mult * rng.lognormal(0.0, 0.35, size=n_items)
    price = np.maximum(np.round(price) - 0.01, 4.99)
    frame = pd.DataFrame({
        "category": category.astype(object), "colour": colour.astype(object),
        "material": material, "style": style.astype(object),
        "pattern": pattern.astype(object), "gender": gender, "price": price,
    })
    # Quartile of price within the category (ties broken by position).
    pct = frame.groupby("category", sort=True)["price"].rank(method="first", pct=True).to_numpy()
    frame["price_band"] = np.array(PRICE_BANDS)[np.minimum((pct * 4 - 1e-9).astype(int), 3)]
    frame["brand"] = rng.choice(np.array(BRANDS), size=n_items)
    return frame


def _item_text(row: dict, mention_colour: bool, mention_pattern: bool,
               rng: np.random.Generator) -> tuple[str, str]:
    """Title and 1-3 sentence description for one item (see the module docstring)."""
    g_word, g_syn, g_phr = GENDERS[row["gender"]]

    def say(key: str) -> str:
        return _word(rng, row[key], _synonyms(key, row[key]))

    # Title: [brand] [gender] [style] [colour] [pattern] [material] <category>:
    # colour / pattern when the coin says so, plus one or two of gender, style,
    # material; whatever the title leaves out, the description says.
    colour_in_title = mention_colour and rng.random() < 0.6
    pattern_in_title = mention_pattern and rng.random() < 0.5
    n_mod = 1 + int(rng.random() < 0.5)
    chosen = set(rng.choice(np.array(["gender", "style", "material"]), size=n_mod, replace=False))
    chosen |= {k for k, on in (("colour", colour_in_title), ("pattern", pattern_in_title)) if on}
    words = [row["brand"]] if rng.random() < 0.3 else []
    for key in ("gender", "style", "colour", "pattern", "material"):
        if key in chosen:
            words.append(_word(rng, g_word, g_syn) if key == "gender" else say(key))
    words.append(say("category"))
    title = " ".join(words)
    title = title[0].upper() + title[1:]

    # Description sentence A: category + material + style, always.
    c, m, s = say("category"), say("material"), say("style")
    this, be, have = ("these", "are", "have") if c in _PLURAL else ("this", "is", "has")
    sentences = [[
        f"{_article(s).capitalize()} {s} {c} made from {m}.",
        f"{this.capitalize()} {c} {be} cut from {m} for {_article(s)} {s} look.",
        f"{s.capitalize()} {c} crafted in {m}.",
        f"Made of {m}, {this} {c} {have} {_article(s)} {s} feel.",
        f"An easy {s} piece: {_article(c)} {c} in {m}.",
    ][int(rng.integers(5))]]
    # Sentence B: colour and / or pattern when stated but not in the title.
    col = say("colour") if mention_colour and not colour_in_title else None
    pat = say("pattern") if mention_pattern and not pattern_in_title else None
    if col and pat:
        sentences.append(f"{col.capitalize()} with {_article(pat)} {pat} pattern.")
    elif col:
        sentences.append(_pick(rng, [f"Comes in {col}.", f"Finished in {col}.",
                                     f"Available in {_article(col)} {col} shade."]))
    elif pat:
        sentences.append(_pick(rng, [f"Features {_article(pat)} {pat} pattern.",
                                     f"With {_article(pat)} {pat} design."]))
    # Sentence C: who it is for, whenever the title does not say it.
    if "gender" not in chosen or rng.random() < 0.3:
        who = _pick(rng, g_phr)
        sentences.append(_pick(rng, [f"Designed for {who}.", f"Cut for {who}.",
                                     f"A good pick for {who}."]))
    return title, " ".join(sentences)


# Silhouettes in unit coordinates (x right, y down). Primitives: poly, ellipse,
# rect, rrect (rounded rectangle), chord (upper half ellipse), arc (outline only,
# e.g. a bag handle). Details are lines drawn in the outline colour.
_SHAPES: dict[str, dict] = {
    "t-shirt": {"parts": [("poly", [(.30, .18), (.42, .14), (.58, .14), (.70, .18), (.92, .34),
                                 (.82, .46), (.72, .40), (.72, .86), (.28, .86), (.28, .40),
                                 (.18, .46), (.08, .34)])],
                "details": [[(.42, .14), (.50, .22), (.58, .14)]]},
    "sweater": {"parts": [("poly", [(.30, .16), (.42, .13), (.58, .13), (.70, .16), (.88, .30),
                                 (.95, .80), (.83, .82), (.74, .44), (.74, .86), (.26, .86),
                                 (.26, .44), (.17, .82), (.05, .80), (.12, .30)])],
                "details": [[(.26, .80), (.74, .80)], [(.42, .13), (.50, .18), (.58, .13)]]},
    "jacket": {"parts": [("poly", [(.32, .12), (.50, .36), (.68, .12), (.86, .22), (.95, .86),
                                (.83, .88), (.77, .46), (.77, .92), (.23, .92), (.23, .46),
                                (.17, .88), (.05, .86), (.14, .22)])],
               "details": [[(.50, .36), (.50, .92)], [(.30, .66), (.42, .66)],
                        [(.58, .66), (.70, .66)]]},
    "dress": {"parts": [("poly", [(.40, .12), (.60, .12), (.62, .38), (.86, .92), (.14, .92),
                               (.38, .38)])],
              "details": [[(.38, .38), (.62, .38)], [(.42, .04), (.42, .12)],
                       [(.58, .04), (.58, .12)]]},
    "skirt": {"parts": [("poly", [(.30, .24), (.70, .24), (.88, .80), (.12, .80)])],
              "details": [[(.30, .31), (.70, .31)], [(.42, .31), (.36, .80)],
                       [(.58, .31), (.64, .80)]]},
    "jeans": {"parts": [("poly", [(.30, .08), (.70, .08), (.77, .94), (.56, .94), (.50, .38),
                               (.44, .94), (.23, .94)])],
              "details": [[(.30, .15), (.70, .15)], [(.50, .15), (.50, .38)]]},
    "sneakers": {"parts": [("poly", [(.06, .52), (.30, .48), (.44, .34), (.60, .36), (.72, .50),
                                  (.93, .58), (.95, .74), (.06, .74)])],
                 "details": [[(.06, .66), (.95, .66)], [(.44, .42), (.52, .48)],
                          [(.50, .38), (.58, .44)]]},
    "boots": {"parts": [("poly", [(.28, .08), (.56, .08), (.58, .56), (.86, .66), (.90, .86),
                               (.26, .86)])],
              "details": [[(.26, .78), (.90, .78)], [(.28, .16), (.56, .16)]]},
    "handbag": {"parts": [("poly", [(.16, .42), (.84, .42), (.90, .88), (.10, .88)]),
                       ("arc", (.30, .12, .70, .62))],
                "details": [[(.13, .56), (.87, .56)]]},
    "backpack": {"parts": [("rrect", (.20, .14, .80, .92)), ("arc", (.40, .04, .60, .24))],
                 "details": [[(.32, .56), (.68, .56), (.68, .84), (.32, .84), (.32, .56)]]},
    "hat": {"parts": [("chord", (.26, .16, .74, .76)), ("ellipse", (.04, .50, .96, .72))],
            "details": [[(.28, .50), (.72, .50)]]},
    "scarf": {"parts": [("poly", [(.16, .06), (.40, .06), (.84, .82), (.62, .94)]),
                     ("poly", [(.60, .06), (.84, .06), (.40, .94), (.18, .82)])],
              "details": [[(.62, .94), (.58, .99)], [(.70, .90), (.68, .98)],
                       [(.40, .94), (.42, .99)], [(.30, .88), (.30, .97)]]},
    "watch": {"parts": [("rect", (.40, .04, .60, .96)), ("ellipse", (.24, .28, .76, .80))],
              "details": [[(.50, .54), (.50, .36)], [(.50, .54), (.64, .60)]]},
}


def _contrast(rgb: np.ndarray) -> tuple[int, int, int]:
    """A pattern colour that stands out from the fill: darker or lighter."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    out = rgb * 0.45 if lum > 140 else rgb + (255 - rgb) * 0.65
    return tuple(int(v) for v in np.clip(out, 0, 255))


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, size: int, ink: tuple,
                  rng: np.random.Generator) -> None:
    sp = max(4, size // 8)                      # pattern period in pixels
    phase = int(rng.integers(sp))
    if pattern == "striped":
        for y in range(-sp + phase, size, sp):
            draw.rectangle([0, y, size, y + sp // 2 - 1], fill=ink)
    elif pattern == "checked":
        w = max(1, sp // 3)
        for t in range(-sp + phase, size, sp):
            draw.rectangle([0, t, size, t + w], fill=ink)
            draw.rectangle([t, 0, t + w, size], fill=ink)
    elif pattern == "polka-dot":
        r = max(1, sp // 4)
        for j, y in enumerate(range(phase, size + sp, sp)):
            shift = (sp // 2) * (j % 2)
            for x in range(phase + shift, size + sp, sp):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    elif pattern == "floral":
        r = max(1, sp // 4)
        n = max(4, (size * size) // (sp * sp * 3))
        centre_ink = (235, 200, 40) if ink != (235, 200, 40) else (200, 60, 60)
        for x, y in rng.integers(0, size, size=(n, 2)):
            for ang in np.linspace(0, 2 * np.pi, 5, endpoint=False):
                px, py = x + 1.6 * r * np.cos(ang), y + 1.6 * r * np.sin(ang)
                draw.ellipse([px - r, py - r, px + r, py + r], fill=ink)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=centre_ink)


def render_image(category: str, colour: str, pattern: str, *, size: int = 64,
                 rng: np.random.Generator | None = None) -> Image.Image:
    """Draw one item, ``size x size`` RGB: silhouette by ``category``, fill by ``colour``,
    overlay by ``pattern``, with small jitters from ``rng``. Nothing else is drawn."""
    rng = rng if rng is not None else np.random.default_rng(0)
    spec = _SHAPES[category]
    rgb = np.clip(np.array(COLOURS[colour][0]) + rng.integers(-12, 13, size=3), 0, 255)
    fill = tuple(int(v) for v in rgb)
    outline = tuple(int(v) for v in (rgb * 0.55).astype(int))
    scale = rng.uniform(0.82, 1.0)
    dx, dy = rng.uniform(-0.06, 0.06, size=2)

    def pt(x: float, y: float) -> tuple[float, float]:
        return ((0.5 + (x - 0.5) * scale + dx) * (size - 1),
                (0.5 + (y - 0.5) * scale + dy) * (size - 1))

    def draw_parts(draw: ImageDraw.ImageDraw, arc_width: int | None, **ink) -> None:
        """The silhouette's parts; arcs (bag handles) only when ``arc_width`` is given."""
        for kind, geom in spec["parts"]:
            if kind == "poly":
                draw.polygon([pt(*p) for p in geom], **ink)
            elif kind != "arc" or arc_width:
                box = [*pt(geom[0], geom[1]), *pt(geom[2], geom[3])]
                half = {"start": 180, "end": 360}  # the upper half of the box's ellipse
                extra = {"rrect": {"radius": max(1, size // 8)}, "chord": half,
                         "arc": {**half, "width": arc_width}}.get(kind, {})
                method = {"rect": "rectangle", "rrect": "rounded_rectangle"}.get(kind, kind)
                getattr(draw, method)(box, **extra, **ink)

    width = max(1, size // 32)
    noise = rng.normal(0.0, 2.5, size=(size, size, 1))
    background = np.clip(244 + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
    image = Image.fromarray(background, mode="RGB")
    mask = Image.new("L", (size, size), 0)
    draw_parts(ImageDraw.Draw(mask), max(2, size // 16), fill=255)
    layer = Image.new("RGB", (size, size), fill)
    _draw_pattern(ImageDraw.Draw(layer), pattern, size, _contrast(rgb), rng)
    image.paste(layer, (0, 0), mask)
    draw = ImageDraw.Draw(image)
    draw_parts(draw, None, outline=outline, width=width)
    for line in spec["details"]:
        draw.line([pt(*p) for p in line], fill=outline, width=width)
    return image


_KIND_SHARES = {"exact": 0.30, "paraphrase": 0.35, "misspelling": 0.15, "vague": 0.20}
_QUERY_ATTRS = ("colour", "material", "pattern", "style", "gender")
_QUERY_ATTR_W = np.array([0.35, 0.30, 0.10, 0.10, 0.15])
_LEADS = ("", "", "looking for", "i need", "show me", "any")


def _typo(word: str, rng: np.random.Generator) -> str:
    """One typo (swap, drop, double or substitute a letter) inside a word of >= 3 letters."""
    for _ in range(20):
        i = int(rng.integers(1, len(word) - 1))
        op = int(rng.integers(4))
        if not word[i].isalpha() or (op == 0 and not word[i + 1].isalpha()):
            continue  # typos hit letters, not apostrophes or hyphens
        edits = (word[:i] + word[i + 1] + word[i] + word[i + 2:], word[:i] + word[i + 1:],
                 word[:i] + word[i] + word[i:])
        out = edits[op] if op < 3 else word[:i] + _pick(rng, "aeioursnt") + word[i + 1:]
        if out != word:
            return out
    return word + word[-1]


def _exact_text(target: dict) -> str:
    words = [GENDERS[target[key]][0] if key == "gender" else target[key]
             for key in ("gender", "style", "colour", "pattern", "material") if key in target]
    return " ".join([*words, target["category"]])


def _paraphrase_text(target: dict, rng: np.random.Generator) -> str:
    # Synonyms only, never the canonical word: that is what makes it a paraphrase.
    lead = _pick(rng, _LEADS)
    words = [lead] if lead else []
    for key in ("style", "colour", "pattern", "category"):
        if key in target:
            words.append(_pick(rng, _synonyms(key, target[key])))
    if "material" in target:
        words.append(_pick(rng, ["made of", "in", "crafted from"]))
        words.append(_pick(rng, MATERIALS[target["material"]][0]))
    if "gender" in target:
        words.append("for " + _pick(rng, GENDERS[target["gender"]][2]))
    return " ".join(words)


def _vague_text(target: dict, rng: np.random.Generator) -> str:
    ctx = _pick(rng, _VAGUE_CONTEXT[target["material"] if "material" in target
                                    else target["style"]])
    if "colour" in target:
        vis = "in " + _word(rng, target["colour"], COLOURS[target["colour"]][1])
    elif "pattern" in target:
        vis = _VAGUE_PATTERN[target["pattern"]]
    else:
        vis = "for " + _pick(rng, GENDERS[target["gender"]][2])
    head = _pick(rng, ["something", "anything", "an item", "a piece"])
    return f"{head} {ctx} {vis}" if rng.random() < 0.5 else f"{head} {vis} {ctx}"


def _make_queries(items: pd.DataFrame, n_queries: int, rng: np.random.Generator
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_items = len(items)
    # Shares of the kinds, with at least one of each once there are >= 4 queries.
    counts = {k: int(share * n_queries) for k, share in _KIND_SHARES.items()}
    if n_queries >= len(counts):
        counts = {k: max(1, v) for k, v in counts.items()}
    counts["paraphrase"] += n_queries - sum(counts.values())
    kinds = rng.permutation(np.array([k for k, v in counts.items() for _ in range(v)]))
    seeds = rng.integers(0, n_items, size=n_queries)

    cols = ["category", "colour", "material", "style", "pattern", "gender"]
    values = {c: items[c].to_numpy() for c in cols}
    rows, judged = [], []
    width = max(4, len(str(n_queries)))
    for q, (kind, s) in enumerate(zip(kinds, seeds)):
        item = {c: values[c][s] for c in cols}
        if kind == "vague":
            target = {k: item[k] for k in (_pick(rng, ["colour", "colour", "pattern", "gender"]),
                                            _pick(rng, ["material", "style"]))}
            text = _vague_text(target, rng)
        else:
            n_attr = int(rng.choice([1, 2, 3], p=[0.45, 0.40, 0.15]))
            keys = rng.choice(np.array(_QUERY_ATTRS), size=n_attr, replace=False,
                              p=_QUERY_ATTR_W / _QUERY_ATTR_W.sum())
            target = {"category": item["category"], **{str(k): item[str(k)] for k in keys}}
            if kind == "paraphrase":
                text = _paraphrase_text(target, rng)
            else:
                text = _exact_text(target)
                if kind == "misspelling":
                    words = text.split(" ")
                    long = [i for i, w in enumerate(words) if len(w) >= 4] or [
                        i for i, w in enumerate(words) if len(w) >= 3]
                    n_typos = 1 + int(len(long) >= 3 and rng.random() < 0.5)
                    picked = rng.choice(np.array(long), size=min(n_typos, len(long)), replace=False)
                    for i in picked:
                        words[int(i)] = _typo(words[int(i)], rng)
                    text = " ".join(words)
        qid = f"q{q + 1:0{width}d}"
        rows.append({"query_id": qid, "text": text, "kind": str(kind),
                     **{f"target_{c}": target.get(c) for c in cols}})

        # Graded relevance from attribute agreement (module docstring).
        stated = [k for k in target if k != "category"]
        matches = sum((values[k] == target[k]).astype(np.int64) for k in stated)
        n = len(stated)
        rel = np.zeros(n_items, dtype=np.int64)
        if "category" in target:
            same = values["category"] == target["category"]
            complement = np.isin(values["category"], CATEGORIES[target["category"]]["complements"])
            rel[complement & (matches >= 1)] = 1
            rel[same] = 1
            rel[same & (matches >= n - 1)] = 2
            rel[same & (matches == n)] = 3
        else:
            rel[matches == n - 1] = 2 if n >= 2 else 0
            rel[matches == n] = 3
        keep = []
        budget = MAX_JUDGED - N_NEGATIVES
        for grade in (3, 2, 1):
            idx = np.flatnonzero(rel == grade)
            if len(idx) > budget:
                idx = np.sort(rng.choice(idx, size=budget, replace=False))
            keep.append(idx)
            budget -= len(idx)
        zeros = np.flatnonzero(rel == 0)
        keep.append(np.sort(rng.choice(zeros, size=min(N_NEGATIVES, len(zeros)), replace=False)))
        idx = np.concatenate(keep)
        judged.append(pd.DataFrame({"query_id": qid, "item_id": items["item_id"].to_numpy()[idx],
                                    "relevance": rel[idx]}))
    return pd.DataFrame(rows), pd.concat(judged, ignore_index=True)  # relevance stays int64


def generate(n_items: int, n_users: int, *, seed: int = 42, image_dir: str | Path | None = None,
             image_size: int = 64, n_queries: int | None = None, days: int = 120) -> Dataset:
    """Generate the ``synthetic`` data set (the module docstring says what is planted).

    ``image_dir``: where to draw ``<item_id>.png`` (``None``: no images, ``image_path`` None).
    ``n_queries`` defaults to ``max(40, n_items // 4)``; ``days`` is the simulated window.
    Returns a validated :class:`Dataset` with items, simulated users and interactions
    (:func:`~recsys_utils.simulation.simulate_behaviour`), queries (``query_id``, ``text``,
    ``kind``, ``target_<column>`` or None) and judgements (``relevance`` int64 0-3).
    """
    if n_items < 1 or n_users < 1:
        raise ValueError("generate needs n_items >= 1 and n_users >= 1")
    root = np.random.SeedSequence([int(seed), 20240])
    attr_rng, text_rng, query_rng = (np.random.default_rng(s) for s in root.spawn(3))

    frame = _sample_attributes(n_items, attr_rng)
    width = max(6, len(str(n_items - 1)))
    item_ids = [f"i{i:0{width}d}" for i in range(n_items)]
    mention_colour = text_rng.random(n_items) < COLOUR_MENTION_P
    mention_pattern = text_rng.random(n_items) < PATTERN_MENTION_P
    titles, descriptions = zip(*(
        _item_text(row, bool(mc), bool(mp), text_rng)
        for row, mc, mp in zip(frame.to_dict("records"), mention_colour, mention_pattern)))

    launch = assign_launch_times(n_items, seed=seed, start_time=START_TIME, days=days)
    image_paths: list[str | None] = [None] * n_items
    if image_dir is not None:
        out = Path(image_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        looks = zip(frame["category"], frame["colour"], frame["pattern"])
        for i, (item_id, look) in enumerate(zip(item_ids, looks)):
            # One generator per item: an image does not depend on the others.
            image = render_image(*look, size=image_size,
                                 rng=np.random.default_rng([int(seed), 77, i]))
            image_paths[i] = str(out / f"{item_id}.png")
            image.save(image_paths[i], format="PNG")

    items = pd.DataFrame({
        "item_id": item_ids, "title": list(titles), "description": list(descriptions),
        **frame[["category", *TRUTH_COLUMNS, *ATTRIBUTE_COLUMNS, "price", "brand"]],
        "launch_time": launch, "image_path": pd.Series(image_paths, dtype=object),
    })
    items = items.astype({c: str for c in ("item_id", "title", "description", "category",
                                           *TRUTH_COLUMNS, *ATTRIBUTE_COLUMNS, "brand")})

    users, interactions = simulate_behaviour(
        items, ["category", *TRUTH_COLUMNS, *ATTRIBUTE_COLUMNS], n_users, seed=seed,
        start_time=START_TIME, days=days)
    n_queries = max(40, n_items // 4) if n_queries is None else n_queries
    queries, judgements = _make_queries(items, int(n_queries), query_rng)

    notes = [
        ("items: 13 categories (distinct silhouettes), colour (12, each with 3 synonyms), "
        "material (8), style (6), pattern (5), gender (3), price and price_band (quartile "
        "within category); launch_time: 20% of items launch during the window"),
        (f"image shows category, colour and pattern only; text always states category, "
        f"material, style and gender (canonical word with p={CANONICAL_P}, else a synonym), "
        f"colour for {COLOUR_MENTION_P:.0%} and pattern for {PATTERN_MENTION_P:.0%} of items"),
        ("users prefer a few values of category, colour, material, style, pattern, gender and "
        "price band (latent, not exported); utility = tastes (dominant) + long-tailed "
        "popularity (second) + price sensitivity; events: one row per (session, item) with "
        "the deepest funnel stage"),
        ("queries: exact / paraphrase (synonyms, low word overlap) / misspelling / vague; "
        "relevance 3 exact, 2 substitute, 1 complement or partial, 0 irrelevant from "
        "attribute agreement"),
    ]
    return Dataset(
        name="synthetic", items=items, interactions=interactions,
        attribute_columns=list(ATTRIBUTE_COLUMNS), truth_columns=list(TRUTH_COLUMNS),
        users=users, queries=queries, judgements=judgements, simulated_interactions=True,
        report=LoadReport(source="synthetic (generated)", notes=notes),
    ).validate()


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (letters only), as used to measure word overlap."""
    return re.findall(r"[a-z]+", text.lower())
