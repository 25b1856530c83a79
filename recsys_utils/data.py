"""Load every data set of the course (:data:`DATASETS`) into the one schema
(:mod:`recsys_utils.schema`): validated, with a filled :attr:`Dataset.report`, or a
:class:`DataError` naming the file for every problem a person can fix.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import http.client
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import (ITEM_OPTIONAL, ITEM_REQUIRED, CsvLines, DataError, Dataset, LoadReport,
                     is_placeholder, require_columns, require_non_empty, validate_interactions,
                     validate_items, validate_queries)

DATASETS: tuple[str, ...] = ("synthetic", "movielens-100k", "fashion", "csv")

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_DIR = "ml-100k"
#: md5 of the official u.data (identical across independent public copies).
ML100K_UDATA_MD5 = "6e47046882bad158b0efbb84cd5cb987"
ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre")

FASHION_DIR = "fashion-product-images-small"
FASHION_KAGGLE = "paramaggarwal/fashion-product-images-small"
FASHION_COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                   "season", "year", "usage", "productDisplayName")
#: styles.csv column -> attribute column of the schema, in a stable order.
FASHION_ATTRIBUTES = {"gender": "gender", "masterCategory": "master_category",
                      "subCategory": "sub_category", "baseColour": "colour", "season": "season",
                      "usage": "usage", "year": "year"}
#: Columns the behaviour simulation conditions user tastes on.
FASHION_SIMULATION_COLUMNS = ["category", "gender", "colour", "usage", "season"]
#: Placeholder for a missing categorical value ("" or "NA" in styles.csv).
UNKNOWN = "unknown"

DOWNLOAD_TIMEOUT = 30  # seconds, per network operation


def default_data_dir() -> Path:
    """The raw-data directory: ``$RECSYS_DATA_DIR`` if set, else ``<repo>/data/raw``."""
    env = os.environ.get("RECSYS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data" / "raw"


def check_dataset_name(name: str) -> None:
    """Raise :class:`DataError` listing the valid names if ``name`` is not one."""
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown data set {name!r}; valid names: {list(DATASETS)}.{hint}")


def load_dataset(
    name: str, data_dir: str | Path | None = None, *, seed: int = 42,
    work_dir: str | Path | None = None, n_items: int | None = None, n_users: int | None = None,
    download: bool = False, csv_dir: str | Path | None = None, image_size: int = 64,
    feedback: str | None = None, rating_scale: tuple[float, float] | None = None,
) -> Dataset:
    """Load the data set ``name`` (one of :data:`DATASETS`) into the one schema.

    Args:
        data_dir: the raw-data directory; ``None`` means :func:`default_data_dir`.
        work_dir: synthetic images are drawn into ``<work_dir>/images`` (none without it).
        n_items: ``synthetic``: catalogue size (default 2000); ``fashion``: the most
            catalogue items to keep (default: all).
        n_users: simulated users for ``synthetic`` and ``fashion`` (default 2000).
        download: ``movielens-100k``: fetch the official zip when files are missing.
        csv_dir / feedback / rating_scale: ``csv``: see :func:`load_csv_folder`.
    """
    check_dataset_name(name)
    for size, value in (("n_items", n_items), ("n_users", n_users)):
        if value is not None and value <= 0:
            raise DataError(f"{size} must be positive, got {value}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()

    if name == "synthetic":
        # Imported lazily: the generator pulls in image drawing that other loaders never need.
        synthetic = importlib.import_module(f"{__package__}.synthetic")
        image_dir = Path(work_dir).expanduser() / "images" if work_dir is not None else None
        dataset = synthetic.generate(n_items or 2000, n_users or 2000, seed=seed,
                                     image_dir=image_dir, image_size=image_size)
        dataset.report = dataset.report or LoadReport(source=f"synthetic.generate(seed={seed})")
        if image_dir is None:
            dataset.report.notes.append("no work_dir given, so no synthetic images were drawn")
    elif name == "movielens-100k":
        dataset = load_movielens_100k(root, download=download)
    elif name == "fashion":
        dataset = load_fashion(root, seed=seed, n_items=n_items, n_users=n_users)
        dataset.data_root = Path(os.path.abspath(root))
    else:
        dataset = load_csv_folder(Path(csv_dir).expanduser() if csv_dir is not None else root,
                                  feedback=feedback, rating_scale=rating_scale)
    return dataset.validate()


def _movielens_missing_message(folder: Path, missing: list[Path], why: str | None = None) -> str:
    return "\n".join([
        "MovieLens 100K not found: missing " + ", ".join(str(p) for p in missing) + ".",
        *([f"The download failed: {why}"] if why is not None else []),
        f"Put the unzipped folder '{ML100K_DIR}' at {folder} (or set RECSYS_DATA_DIR to the "
        f"directory that holds it), or pass download=True. Official zip: {ML100K_URL}",
    ])


def load_movielens_100k(data_dir: str | Path, *, download: bool = False) -> Dataset:
    """Read ``<data_dir>/ml-100k/`` into the schema (100,000 ratings, 943 users, 1,682 movies).
    Items get a ``description`` sentence from year and genres, ``category`` the first genre,
    and the attributes ``genres`` ("|"-joined) and ``year`` ("unknown" when missing)."""
    data_dir = Path(data_dir)
    folder = data_dir / ML100K_DIR
    missing = [folder / f for f in ML100K_FILES if not (folder / f).is_file()]
    report = LoadReport(source=str(folder))
    if missing:
        if not download:
            raise DataError(_movielens_missing_message(folder, missing), source=folder)
        _download_movielens(data_dir, missing)
        report.notes.append(f"downloaded {ML100K_URL} (md5 of u.data verified)")

    def read(name: str, columns: list[str]) -> pd.DataFrame:
        return pd.read_csv(folder / name, sep="|", header=None, names=columns, dtype=str,
                           keep_default_na=False, encoding="latin-1")

    genres = read("u.genre", ["genre", "index"])
    genres = genres[genres["genre"].str.strip() != ""]
    genre_names = genres.sort_values("index", key=lambda s: s.astype(int))["genre"].tolist()
    raw_items = read("u.item", ["item_id", "title", "release_date", "video_release_date",
                                "imdb_url", *genre_names])
    flags = raw_items[genre_names].astype(int).to_numpy().astype(bool)
    movie_genres = [[g for g, on in zip(genre_names, row) if on] for row in flags]
    # Release dates look like "01-Jan-1995"; one movie (id 267) has none.
    dates = raw_items["release_date"].str.strip()
    year = dates.str[-4:].where(dates.str.len() >= 4, UNKNOWN)
    titles = raw_items["title"].str.strip()
    items = pd.DataFrame({
        "item_id": raw_items["item_id"].str.strip(),
        "title": titles.mask(titles == "", UNKNOWN),
        "description": [_movie_sentence(y, g) for y, g in zip(year, movie_genres)],
        "category": [g[0] if g else UNKNOWN for g in movie_genres],
        "genres": ["|".join(g) if g else UNKNOWN for g in movie_genres],
        "year": year.astype(str),
    })

    interactions = pd.read_csv(folder / "u.data", sep="\t", header=None, dtype=str,
                               names=["user_id", "item_id", "rating", "timestamp"])
    interactions = interactions[["user_id", "item_id", "timestamp", "rating"]]
    validate_items(items, source=folder / "u.item", line_offset=1)
    validate_interactions(interactions, items, source=folder / "u.data", line_offset=1)

    users = read("u.user", ["user_id", "age", "gender", "occupation", "zip_code"])
    users["age"] = pd.to_numeric(users["age"], errors="coerce").astype("Int64")

    report.notes.append("ratings 1-5 are explicit feedback; ratings >= 4 count as positive")
    return Dataset(name="movielens-100k", items=items, interactions=interactions,
                   attribute_columns=["genres", "year"], users=users, report=report)


def _movie_sentence(year: str, genres: list[str]) -> str:
    """"A 1995 animation, children's, comedy film." (unknown year or genre left out)."""
    named = [g.lower() for g in genres if g.lower() != UNKNOWN]
    words = ([year] if year != UNKNOWN else []) + ([", ".join(named)] if named else [])
    body = " ".join(words + ["film"])
    article = "An" if body[0] in "aeiou" else "A"
    return f"{article} {body}."


def _download_movielens(data_dir: Path, missing: list[Path]) -> None:
    """Download the official zip and unpack ``ml-100k`` into ``data_dir`` atomically: into a
    temporary folder first, renamed into place only once the md5 of ``u.data`` checks out."""
    from .progress import track

    folder = data_dir / ML100K_DIR

    def failure(why: str) -> DataError:
        return DataError(_movielens_missing_message(folder, missing, why=why), source=folder)

    if folder.exists() and any(folder.iterdir()):
        raise failure(f"{folder} exists but is incomplete; remove it so the download can "
                      "replace it")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".ml-100k-download-", dir=data_dir))
    except OSError as error:
        raise failure(repr(error)) from error
    try:
        archive = tmp / "ml-100k.zip"
        try:
            with urllib.request.urlopen(ML100K_URL, timeout=DOWNLOAD_TIMEOUT) as response:
                total = (getattr(response, "headers", None) or {}).get("Content-Length")
                with open(archive, "wb") as out, track(
                    total=int(total) if total else None, unit="B", unit_scale=True,
                    desc="ml-100k.zip",
                ) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.namelist() if m.startswith(f"{ML100K_DIR}/")
                           and ".." not in Path(m).parts]
                if not members:
                    raise DataError(f"the zip holds no '{ML100K_DIR}/' folder")
                zf.extractall(tmp, members=members)
        except (OSError, http.client.HTTPException, zipfile.BadZipFile, ValueError) as error:
            # URLError, HTTPError and timeouts are OSErrors; a truncated body is an HTTPException.
            raise failure(repr(error)) from error
        udata = tmp / ML100K_DIR / "u.data"
        if not udata.is_file():
            raise failure("the zip has no ml-100k/u.data")
        digest = hashlib.md5(udata.read_bytes()).hexdigest()
        if digest != ML100K_UDATA_MD5:
            raise failure(f"md5 of u.data is {digest}, expected {ML100K_UDATA_MD5}")
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.replace(tmp / ML100K_DIR, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tfrs_protocol_split(interactions: pd.DataFrame, seed: int = 42,
                        n_train: int = 80_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The TensorFlow Recommenders tutorial split of MovieLens 100K, row for row.

    The tutorials run ``tf.random.set_seed(42)``, then ``ratings.shuffle(100_000, seed=42,
    reshuffle_each_iteration=False)``, and take the first 80,000 as train and the next 20,000
    as test. This applies that ``tf.data`` shuffle (global and op seed both ``seed``; both
    matter) to the row positions of ``interactions``, so on :func:`load_movielens_100k`'s
    file-ordered ratings it returns the tutorial's rows. The graph-level seed is set inside
    its own ``tf.function``, so the process's global seed is neither read nor changed. The
    buffer is ``max(100_000, n)``: the tutorial's, and a full shuffle beyond. Returns
    ``(train, test)``: the first ``n_train`` shuffled rows and the rest, reindexed.
    """
    if len(interactions) < n_train:
        raise DataError(
            f"the TFRS protocol needs at least n_train={n_train} rows; got {len(interactions)}",
            source="interactions")
    import tensorflow as tf  # lazily: loading data needs no TensorFlow otherwise

    n = len(interactions)

    @tf.function
    def shuffled_positions() -> tf.Tensor:
        # Inside a function graph, set_seed sets that graph's seed only, not the process's.
        tf.random.set_seed(seed)
        positions = tf.data.Dataset.range(n).shuffle(
            max(100_000, n), seed=seed, reshuffle_each_iteration=False)
        return positions.batch(n).get_single_element()

    order = shuffled_positions().numpy() if n else np.zeros(0, dtype=np.int64)
    shuffled = interactions.iloc[order]
    return (shuffled.iloc[:n_train].reset_index(drop=True),
            shuffled.iloc[n_train:].reset_index(drop=True))


def _read_styles(path: Path, report: LoadReport) -> pd.DataFrame:
    """Parse styles.csv, re-joining with "," an unquoted productDisplayName that contains a
    comma and so spills into extra fields (pandas would drop the row). Rows with too few
    fields are dropped and counted."""
    rows: list[list[str]] = []
    first_bad: list[str] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader)]
        except StopIteration:
            raise DataError("the file is empty (no header)", source=path) from None
        missing = [c for c in FASHION_COLUMNS if c not in header]
        if missing or len(header) != len(FASHION_COLUMNS):
            raise DataError(f"expected the columns {list(FASHION_COLUMNS)}; found {header}",
                            source=path, column=missing[0] if missing else None)
        width = len(FASHION_COLUMNS)
        record, end = 0, reader.line_num
        for fields in reader:
            # A quoted name may span lines: count records, and the line each one starts on.
            start, end = end + 1, reader.line_num
            if not fields:
                continue
            record += 1
            if len(fields) > width:
                report.malformed_rows += 1
                report.repaired_rows += 1
                if not first_bad:
                    first_bad = [f"record {record} (line {start})", fields[0]]
                fields = fields[: width - 1] + [",".join(fields[width - 1:])]
            elif len(fields) < width:
                report.malformed_rows += 1
                report.dropped_rows += 1
                continue
            rows.append([f.strip() for f in fields])
    if report.repaired_rows:
        report.notes.append(
            f"{report.repaired_rows} row(s) of styles.csv had a comma inside productDisplayName "
            f"(first at {first_bad[0]}, id {first_bad[1]}); the name was re-joined, "
            "no row was dropped for it")
    if report.dropped_rows:
        report.notes.append(f"{report.dropped_rows} row(s) with too few fields were dropped")
    styles = pd.DataFrame(rows, columns=header, dtype=str)
    return styles[list(FASHION_COLUMNS)]


def load_fashion(data_dir: str | Path, *, seed: int = 42, n_items: int | None = None,
                 n_users: int | None = None) -> Dataset:
    """Read the Fashion Product Images (Small) catalogue and simulate behaviour over it.

    Items: ``title`` = ``productDisplayName``, ``category`` = ``articleType``, the
    :data:`FASHION_ATTRIBUTES` ("" or "NA" -> "unknown"), a ``description`` sentence built
    from them and ``image_path`` (``images/<id>.jpg``, or ``None``). ``n_items`` keeps a
    seeded sample, photographed items first. The interactions are SIMULATED.
    """
    data_dir = Path(data_dir)
    # The mirror layout, then both official Kaggle layouts.
    candidates = [data_dir / FASHION_DIR / "styles.csv",
                  data_dir / FASHION_DIR / "myntradataset" / "styles.csv",
                  data_dir / "myntradataset" / "styles.csv"]
    styles_path = next((p for p in candidates if p.is_file()), None)
    if styles_path is None:
        raise DataError(
            "Fashion Product Images (Small) not found: no styles.csv at any of "
            + ", ".join(str(p) for p in candidates)
            + f". Download it from Kaggle ({FASHION_KAGGLE}; needs an account, so there is no "
            f"automatic download), unzip it and put styles.csv with its images/ folder at "
            f"{data_dir / FASHION_DIR} (or set RECSYS_DATA_DIR to the directory that holds it).",
            source=candidates[0])
    report = LoadReport(source=str(styles_path))
    styles = _read_styles(styles_path, report)

    items = pd.DataFrame({"item_id": styles["id"], "title": styles["productDisplayName"]})
    for raw, column in {"articleType": "category", **FASHION_ATTRIBUTES}.items():
        unknown = styles[raw].isin(["", "NA"])
        if unknown.any() and raw in ("usage", "season", "year", "baseColour"):
            report.notes.append(f"{int(unknown.sum())} missing {raw} value(s) ('' or 'NA') -> "
                                f"{UNKNOWN!r}")
        items[column] = styles[raw].mask(unknown, UNKNOWN)
    # A product without a name ("" or "NA") still needs a title; its article type is the best
    # stand-in (a placeholder title would reach the text encoder as if it were words).
    nameless = is_placeholder(items["title"])
    if nameless.any():
        report.notes.append(f"{int(nameless.sum())} product(s) without a name ('' or 'NA'): "
                            "titled by their article type")
    items["title"] = items["title"].mask(nameless, items["category"])
    facts = items[["category", "gender", "colour", "master_category", "sub_category", "usage",
                   "season", "year"]].itertuples(index=False)
    items.insert(2, "description", [_fashion_sentence(*row) for row in facts])

    # One directory listing instead of 44,446 stat calls.
    images_dir = styles_path.parent / "images"
    present = {e.name for e in os.scandir(images_dir)} if images_dir.is_dir() else set()
    has_image = (items["item_id"] + ".jpg").isin(present)
    images_abs = images_dir.absolute()
    items["image_path"] = pd.Series(
        [str(images_abs / f"{i}.jpg") if ok else None
         for i, ok in zip(items["item_id"], has_image)], index=items.index, dtype=object)

    if n_items is not None and n_items < len(items):
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(np.flatnonzero(has_image.to_numpy()))[:n_items]
        if len(chosen) < n_items:
            without = rng.permutation(np.flatnonzero(~has_image.to_numpy()))
            chosen = np.concatenate([chosen, without[: n_items - len(chosen)]])
        items = items.iloc[np.sort(chosen)].reset_index(drop=True)
        report.notes.append(f"catalogue sampled to {n_items} of {len(styles)} items (seed "
                            f"{seed}; items with a photo first)")
    report.missing_images = int(items["image_path"].isna().sum())
    if report.missing_images:
        report.notes.append(f"{report.missing_images} of {len(items)} items have no image "
                            f"file in {images_dir}")
    validate_items(items, source=styles_path)

    simulation = importlib.import_module(f"{__package__}.simulation")
    users, interactions = simulation.simulate_behaviour(
        items, list(FASHION_SIMULATION_COLUMNS), n_users or 2000, seed=seed)
    report.notes.insert(0, (
        "interactions are SIMULATED: the fashion catalogue (items, attributes, images) is real, "
        f"but it has no user behaviour, so {n_users or 2000} users and their sessions were "
        f"simulated over it (recsys_utils.simulation, seed {seed}); do not read real shopper "
        "behaviour into them"))
    return Dataset(name="fashion", items=items, interactions=interactions,
                   attribute_columns=list(FASHION_ATTRIBUTES.values()), users=users,
                   simulated_interactions=True, report=report)


def _fashion_sentence(article: str, gender: str, colour: str, master: str, sub: str,
                      usage: str, season: str, year: str) -> str:
    """"Shirts for men in navy blue; apparel, topwear; casual wear, fall 2011." (unknown
    values left out)."""
    def part(template: str, *values: str, sep: str = " ") -> str:
        words = sep.join(v.lower() for v in values if v != UNKNOWN)
        return template.format(words) if words else ""

    text = (article + part(" for {}", gender) + part(" in {}", colour)
            + part("; {}", master, sub, sep=", "))
    tail = ", ".join(p for p in (part("{} wear", usage), part("{}", season, year)) if p)
    return f"{text}; {tail}." if tail else f"{text}."


def _read_csv_file(path: Path) -> pd.DataFrame:
    """Read a CSV with every column as a string, so ids like "007" keep their form."""
    if not path.is_file():
        raise DataError(f"file not found: {path}", source=path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty (not even a header line)", source=path) from None
    except pd.errors.ParserError as error:
        raise DataError(f"cannot be parsed as CSV: {error}", source=path) from None
    except UnicodeDecodeError as error:
        raise DataError(f"is not UTF-8 text: {error}", source=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


#: Optional settings file of a csv folder: which feedback column to use, the rating scale.
CSV_SETTINGS = "dataset.json"


def _csv_settings(folder: Path) -> dict:
    """``dataset.json`` of a csv folder (``{"feedback": ..., "rating_scale": [lo, hi]}``), or {}."""
    path = folder / CSV_SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"is not valid JSON: {error}", source=path) from None
    unknown = (sorted(set(settings) - {"feedback", "rating_scale"})
               if isinstance(settings, dict) else ["(not an object)"])
    if unknown:
        raise DataError(f"unknown setting(s) {unknown}; allowed: 'feedback' ('rating' or "
                        "'event'), 'rating_scale' ([low, high])", source=path)
    scale = settings.get("rating_scale")
    if scale is not None and not (isinstance(scale, list) and len(scale) == 2
                                  and all(isinstance(v, (int, float)) for v in scale)
                                  and scale[0] < scale[1]):
        raise DataError(f"rating_scale must be [low, high] with low < high, got {scale!r}",
                        source=path, column="rating_scale")
    return settings


def load_csv_folder(folder: str | Path, *, feedback: str | None = None,
                    rating_scale: tuple[float, float] | None = None) -> Dataset:
    """Load a bring-your-own folder of CSV files in the schema.

    Files: ``items.csv`` and ``interactions.csv``; optionally ``users.csv``, ``queries.csv``
    with ``judgements.csv``, and ``dataset.json`` with ``feedback`` (the feedback column when
    interactions have both ``rating`` and ``event``) and ``rating_scale`` (``[low, high]``),
    which the arguments override. Columns are read as strings; relative ``image_path``s are
    resolved against the folder, paths to missing files become ``None``. The attribute
    columns are the items columns beyond the schema's own, in file order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"the csv folder does not exist: {folder}", source=folder)
    report = LoadReport(source=str(folder))
    settings = _csv_settings(folder)
    feedback = feedback or settings.get("feedback")
    scale = rating_scale or settings.get("rating_scale")
    rating_scale = (float(scale[0]), float(scale[1])) if scale is not None else None

    items_path = folder / "items.csv"
    items = _read_csv_file(items_path)
    require_columns(items, ITEM_REQUIRED, source=items_path, line_offset=CsvLines(items_path))
    if "image_path" in items:
        values = items["image_path"].str.strip()
        # An absolute path joined to the folder stays itself.
        paths = [str(Path(os.path.abspath(folder / Path(v).expanduser()))) if v else None
                 for v in values]
        found = [p is not None and os.path.isfile(p) for p in paths]
        report.bad_images.extend(
            {"item_id": item_id, "image_path": value, "problem": "missing"}
            for item_id, value, path, ok in zip(items["item_id"], values, paths, found)
            if path is not None and not ok)
        items["image_path"] = pd.Series([p if ok else None for p, ok in zip(paths, found)],
                                        index=items.index, dtype=object)
        report.missing_images = len(report.bad_images)
        if report.missing_images:
            report.notes.append(f"{report.missing_images} image_path value(s) point at files "
                                "that do not exist; set to None")
    validate_items(items, source=items_path, line_offset=CsvLines(items_path))
    attribute_columns = [c for c in items.columns if c not in ITEM_REQUIRED + ITEM_OPTIONAL]

    interactions_path = folder / "interactions.csv"
    interactions = _read_csv_file(interactions_path)
    both = "rating" in interactions and "event" in interactions
    validate_interactions(interactions, items, source=interactions_path,
                          line_offset=CsvLines(interactions_path), feedback=feedback,
                          rating_scale=rating_scale)
    if both:
        report.notes.append(f"interactions have 'rating' and 'event'; using {feedback!r} as "
                            f"stated, the other column is dropped")

    users = None
    users_path = folder / "users.csv"
    if users_path.exists():
        users = _read_csv_file(users_path)
        require_columns(users, ("user_id",), source=users_path, line_offset=2)
        require_non_empty(users, source=users_path)

    queries = judgements = None
    queries_path, judgements_path = folder / "queries.csv", folder / "judgements.csv"
    if queries_path.exists() or judgements_path.exists():
        queries = _read_csv_file(queries_path)
        judgements = _read_csv_file(judgements_path)
        validate_queries(queries, judgements, items, source=queries_path,
                         judgements_source=judgements_path, line_offset=2)

    return Dataset(name="csv", items=items, interactions=interactions,
                   attribute_columns=attribute_columns, users=users, queries=queries,
                   judgements=judgements, report=report, rating_scale=rating_scale,
                   data_root=Path(os.path.abspath(folder)))
