"""Data preparation (notebook 01): load, check, summarise, split and write the schema.

The data gate (:func:`verify_images`, :func:`check_usable`) lives here, so notebook 01 and API
users run the same checks.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifacts
from .data import default_data_dir, load_dataset
from .runs import Run
from .schema import CsvLines, DataError, Dataset, implicit_label
from .splits import Splits, split_interactions

#: The smallest data each profile can run the whole series on: items in the
#: catalogue, users with interactions, and users in the validation and test
#: splits (notebook 04 stops early on validation users, 02 and 03 sample items).
MIN_SIZE: dict[str, dict[str, int]] = {
    "smoke": dict(items=50, users=50, validation_users=20, test_users=20),
    "default": dict(items=100, users=100, validation_users=50, test_users=50),
    "full": dict(items=500, users=500, validation_users=200, test_users=200),
}
#: Where image paths in items.parquet are relative to (``dataset.json`` "image_root").
IMAGE_ROOTS = ("artifact_dir", "data_dir")


def load_for_run(run: Run) -> Dataset:
    """Load ``run.dataset`` at the scale of ``run.profile``; synthetic images go under
    ``run.artifact_dir``."""
    scale = run.profile.data
    options = {"synthetic": dict(n_items=scale.synthetic_items, n_users=scale.synthetic_users,
                                 image_size=scale.image_size),
               "fashion": dict(n_items=scale.fashion_items, n_users=scale.fashion_users)}
    return load_dataset(run.dataset, run.data_dir, seed=run.seed, work_dir=run.artifact_dir,
                        **options.get(run.dataset, {}))


def split_for_run(run: Run, dataset: Dataset) -> Splits:
    return split_interactions(dataset.interactions,
                              cold_item_fraction=run.profile.data.cold_item_fraction,
                              seed=run.seed)


def check_image_file(path: str | os.PathLike | None) -> str:
    """``"ok"``, ``"none"`` (no path), ``"missing"`` or ``"unreadable: <why>"`` for one image:
    ok when Pillow decodes every pixel of a non-empty image."""
    from PIL import Image

    if path is None or (isinstance(path, float) and np.isnan(path)) or not str(path).strip():
        return "none"
    if not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as image:
            image.load()
            if image.width < 1 or image.height < 1:
                return "unreadable: empty image"
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds for a bad file
        return f"unreadable: {type(error).__name__}"
    return "ok"


def verify_images(dataset: Dataset, *, workers: int | None = None) -> pd.DataFrame:
    """Open every item image once; set ``image_path = None`` (in place) where the file is
    missing or does not decode, record those in ``dataset.report`` and return them as a
    table (item_id, image_path, problem)."""
    columns = ["item_id", "image_path", "problem"]
    items = dataset.items
    if "image_path" not in items or items["image_path"].isna().all():
        return pd.DataFrame(columns=columns)
    paths = items["image_path"].tolist()
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes outside the GIL
        status = list(pool.map(check_image_file, paths))
    bad_mask = np.array([s not in ("ok", "none") for s in status])
    bad = pd.DataFrame({"item_id": items["item_id"].to_numpy()[bad_mask],
                        "image_path": np.asarray(paths, dtype=object)[bad_mask],
                        "problem": np.asarray(status, dtype=object)[bad_mask]}, columns=columns)
    if bad_mask.any():
        items["image_path"] = pd.Series(
            [None if b else p for p, b in zip(paths, bad_mask)], index=items.index, dtype=object)
    report = dataset.report
    if report is not None:
        report.missing_images += int((bad["problem"] == "missing").sum())
        report.unreadable_images += int(bad["problem"].str.startswith("unreadable").sum())
        report.bad_images.extend(bad.to_dict(orient="records"))
        if len(bad):
            report.notes.append(f"{len(bad)} image file(s) failed the image check (missing or "
                                "not a decodable image); those items are kept without an image")
    return bad


def _relative_image_paths(items: pd.DataFrame, artifact_dir: Path,
                          data_root: Path | None) -> tuple[pd.DataFrame, str | None]:
    """``items`` with image paths relative to the artifact dir or the data root, and which."""
    if "image_path" not in items or items["image_path"].isna().all():
        return items, None
    paths = [Path(os.path.abspath(p)) for p in items["image_path"].dropna()]
    for name, root in (("artifact_dir", artifact_dir), ("data_dir", data_root)):
        root = Path(os.path.abspath(root)) if root is not None else None
        if root is not None and all(p.is_relative_to(root) for p in paths):
            rel = [Path(os.path.abspath(p)).relative_to(root).as_posix() if isinstance(p, str)
                   else None for p in items["image_path"]]
            return items.assign(image_path=pd.Series(rel, index=items.index, dtype=object)), name
    # Images outside both roots (a csv naming absolute paths elsewhere) stay absolute.
    return items, None


def resolve_image_paths(items: pd.DataFrame, artifact_dir: str | Path,
                        data_dir: str | Path | None = None) -> pd.DataFrame:
    """A copy of ``items`` (from :func:`artifacts.load_prepared`) with relative image paths
    resolved against the root ``data/dataset.json`` names (``image_root``): the artifact
    directory, or ``data_dir`` (default :func:`default_data_dir`)."""
    if "image_path" not in items:
        return items
    manifest = artifacts.read_json(Path(artifact_dir) / artifacts.DATA_DIR / "dataset.json")
    root_name = manifest.get("image_root")
    if root_name is None:
        return items.copy()
    if root_name not in IMAGE_ROOTS:
        raise DataError(f"unknown image_root {root_name!r}; re-run notebook 01",
                        source=Path(artifact_dir) / artifacts.DATA_DIR / "dataset.json")
    root = Path(artifact_dir) if root_name == "artifact_dir" else (
        Path(data_dir) if data_dir else default_data_dir())
    resolved = [None if not isinstance(p, str) or not p else
                (p if Path(p).is_absolute() else str(root / p)) for p in items["image_path"]]
    return items.assign(image_path=pd.Series(resolved, index=items.index, dtype=object))


@dataclasses.dataclass
class Finding:
    """One result of the data gate: an error stops the series, a warning is reported."""

    level: str  # "error" or "warning"
    check: str
    message: str
    source: str | None = None
    column: str | None = None
    example: dict[str, Any] | None = None
    record: int | None = None  # the example's data row in the file (1 = first after the header)
    line: int | None = None  # the file line that row starts on

    def error(self) -> DataError:
        return DataError(self.message, source=self.source, column=self.column,
                         example=self.example, record=self.record, line=self.line)


class _Row(dict):
    """An example row that remembers its position in its table."""

    position: int = 0


def _first(df: pd.DataFrame, mask: pd.Series | np.ndarray) -> _Row | None:
    hits = np.flatnonzero(np.asarray(mask, dtype=bool))
    if hits.size == 0:
        return None
    row = _Row({k: (None if pd.isna(v) else v.item() if isinstance(v, np.generic) else v)
                for k, v in df.iloc[int(hits[0])].items()})
    row.position = int(hits[0])
    return row


def data_findings(dataset: Dataset, splits: Splits, profile: str = "smoke") -> list[Finding]:
    """Every gate check on a loaded data set and its splits, errors (data too small for
    ``profile``'s :data:`MIN_SIZE`, empty splits) first, then warnings (suspicious data)."""
    if profile not in MIN_SIZE:
        raise DataError(f"unknown profile {profile!r}; valid: {list(MIN_SIZE)}")
    need = MIN_SIZE[profile]
    items, inter = dataset.items, dataset.interactions
    source = dataset.report.source if dataset.report else dataset.name
    # The file a table came from: <folder>/<name>.csv for a csv folder.
    items_src, inter_src = (
        (str(Path(source) / "items.csv"), str(Path(source) / "interactions.csv"))
        if dataset.name == "csv" else (f"{dataset.name}: items", f"{dataset.name}: interactions"))
    findings: list[Finding] = []

    def add(level, check, message, src=None, column=None, example=None):
        record = line = None
        if isinstance(example, _Row) and src is not None and Path(src).is_file():
            # A csv loader keeps file order, so the row's position is its record.
            record, line = CsvLines(src)(example.position)
        example = dict(example) if example is not None else None
        findings.append(Finding(level, check, message, src, column, example, record, line))

    per_user = inter.groupby("user_id").size()
    smoke_hint = ", or use the smoke profile" if profile != "smoke" else ""
    if len(items) < need["items"]:
        add("error", "too few items",
            f"{len(items)} item(s); the {profile!r} profile needs at least {need['items']} "
            f"(the text, image and retrieval stages sample and hold out items). Add items"
            f"{smoke_hint}", items_src, "item_id", _first(items, np.arange(len(items)) == 0))
    if len(per_user) < need["users"]:
        add("error", "too few users",
            f"{len(per_user)} user(s) with interactions; the {profile!r} profile needs at least "
            f"{need['users']}. Add users' interactions{smoke_hint}",
            inter_src, "user_id", _first(inter, np.arange(len(inter)) == 0))
    cold = set(splits.cold_items)
    warm_per_user = inter[~inter["item_id"].isin(cold)].groupby("user_id").size()
    light = warm_per_user.index[warm_per_user < 3]
    example_light = _first(inter, inter["user_id"].isin(light))
    fix_light = ("every user needs at least 3 interactions with warm (non-cold) items for a "
                 "train, a validation and a test interaction (the last one is test, the one "
                 "before validation): add interactions, or drop users with fewer")
    for split, minimum in (("test", need["test_users"]), ("validation", need["validation_users"])):
        n = int(splits.as_dict()[split]["user_id"].nunique())
        if n == 0:
            add("error", f"empty {split} split",
                f"the {split} split is empty: {len(light)} of {len(warm_per_user)} users have "
                f"fewer than 3 warm interactions; {fix_light}", inter_src, "user_id",
                example_light)
        elif n < minimum:
            add("error", f"too few {split} users",
                f"only {n} user(s) in the {split} split; the {profile!r} profile needs at least "
                f"{minimum} to choose and compare models; {fix_light}", inter_src, "user_id",
                example_light)
    # Warnings: usable but suspicious.
    if len(light) > 0.5 * len(warm_per_user):
        add("warning", "light users",
            f"{len(light)} of {len(warm_per_user)} users have fewer than 3 warm interactions and "
            "get no validation interaction", inter_src, "user_id", example_light)
    per_item = inter.groupby("item_id").size().reindex(items["item_id"], fill_value=0)
    unused = per_item.index[per_item.to_numpy() == 0]
    if len(unused) > 0.5 * len(items):
        add("warning", "items without interactions",
            f"{len(unused)} of {len(items)} items have no interaction (only content can rank "
            "them)", items_src, "item_id", _first(items, items["item_id"].isin(unused)))
    if len(inter) > 1 and inter["timestamp"].nunique() == 1:
        add("warning", "constant timestamps",
            "every interaction has the same timestamp: 'last' per user falls back to file order",
            inter_src, "timestamp", _first(inter, np.arange(len(inter)) == 0))
    duplicated = inter.duplicated(["user_id", "item_id", "timestamp"])
    if duplicated.any():
        add("warning", "duplicate rows",
            f"{int(duplicated.sum())} interaction(s) repeat a (user_id, item_id, timestamp) "
            "already seen", inter_src, "timestamp", _first(inter, duplicated))
    empty_description = items["description"].str.strip() == ""
    if empty_description.mean() > 0.5:
        add("warning", "empty descriptions",
            f"{int(empty_description.sum())} of {len(items)} items have no description "
            "(the text encoder reads the title and attributes only)", items_src, "description",
            _first(items, empty_description))
    report = dataset.report
    if report is not None and report.bad_images:
        add("warning", "bad images",
            f"{len(report.bad_images)} image file(s) are missing or not decodable images; "
            "those items are used without an image", items_src, "image_path",
            report.bad_images[0])
    if len(splits.test_cold) == 0:
        add("error", "empty cold-start test",
            f"no interaction with one of the {len(cold)} cold-start items (the newest "
            "10% by first interaction, never trained on) comes after its user's training "
            "interactions, so the cold-start test is empty and notebooks 04-05 cannot measure "
            "it; add interactions in which users who already have a history meet the newest "
            "items", inter_src, "item_id", _first(inter, inter["item_id"].isin(cold)))
    if "rating" in inter and dataset.rating_scale is not None:
        add("warning", "rating scale",
            f"ratings are on {dataset.rating_scale[0]:g}..{dataset.rating_scale[1]:g}; ratings "
            ">= 4 count as positive (schema.POSITIVE_RATING)", inter_src, "rating")
    return sorted(findings, key=lambda f: f.level != "error")


def check_usable(dataset: Dataset, splits: Splits, profile: str = "smoke") -> pd.DataFrame:
    """The data gate: raise the first error of :func:`data_findings` as a :class:`DataError`;
    return the warnings as a table (level, check, message, source, column, example)."""
    findings = data_findings(dataset, splits, profile)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise errors[0].error()
    return pd.DataFrame([dataclasses.asdict(f) for f in findings],
                        columns=["level", "check", "message", "source", "column", "example"])


def vocabularies(dataset: Dataset) -> dict[str, list[str]]:
    """Sorted distinct values of the ids, the category, the attributes and the truth columns."""
    columns = ["category", *dataset.attribute_columns, *dataset.truth_columns]
    return {"user_id": sorted(dataset.interactions["user_id"].unique().tolist()),
            "item_id": sorted(dataset.items["item_id"].tolist()),
            **{c: sorted(dataset.items[c].astype(str).unique().tolist()) for c in columns}}


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: 0 = all equal, near 1 = one item takes all."""
    x = np.sort(np.asarray(counts, dtype=float))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    cumulative = np.cumsum(x)
    return float((x.size + 1 - 2 * (cumulative / cumulative[-1]).sum()) / x.size)


def summarise(dataset: Dataset, splits: Splits) -> dict[str, Any]:
    """Headline numbers of a prepared data set, for the metrics file and the prose."""
    items, interactions = dataset.items, dataset.interactions
    per_item = interactions.groupby("item_id").size().reindex(items["item_id"], fill_value=0)
    per_user = interactions.groupby("user_id").size()
    top_decile = np.sort(per_item.to_numpy())[::-1][: max(1, len(per_item) // 10)]
    report = dataset.report
    n_users, n_items = int(per_user.size), int(len(items))
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "feedback": dataset.feedback,
        "simulated_interactions": dataset.simulated_interactions,
        "n_items": n_items,
        "n_users": n_users,
        "n_interactions": int(len(interactions)),
        # Distinct user-item pairs: an event log repeats pairs.
        "density": float(len(interactions[["user_id", "item_id"]].drop_duplicates())
                         / (n_users * n_items)),
        "positive_share": float(implicit_label(interactions).mean()),
        "n_categories": int(items["category"].nunique()),
        "attribute_columns": list(dataset.attribute_columns),
        "truth_columns": list(dataset.truth_columns),
        "items_without_interactions": int((per_item == 0).sum()),
        "top_10pct_items_share": float(top_decile.sum() / max(1, per_item.sum())),
        "popularity_gini": gini(per_item.to_numpy()),
        "median_interactions_per_user": float(per_user.median()),
        "items_with_images": (int(items["image_path"].notna().sum())
                              if "image_path" in items else 0),
        **{count: getattr(report, count) if report else 0 for count in (
            "malformed_rows", "repaired_rows", "dropped_rows", "missing_images",
            "unreadable_images")},
        "n_queries": int(len(dataset.queries)) if dataset.queries is not None else 0,
        "splits": dict(splits.stats),
    }
    if dataset.feedback == "event":
        summary["events"] = {k: int(v) for k, v in interactions["event"].value_counts().items()}
    else:
        summary["ratings"] = {str(k): int(v) for k, v in
                              interactions["rating"].value_counts().sort_index().items()}
    return summary


def _report_with_relative_paths(dataset: Dataset, artifact_dir: Path,
                                image_root: str | None) -> dict[str, Any] | None:
    """The load report for ``dataset.json``, its bad image paths relative like items.parquet's."""
    if dataset.report is None:
        return None
    report = dataclasses.asdict(dataset.report)
    root = {"artifact_dir": artifact_dir, "data_dir": dataset.data_root}.get(image_root or "")
    if root is not None:
        root = Path(os.path.abspath(root))
        for bad in report["bad_images"]:
            path = Path(str(bad["image_path"]))
            if path.is_absolute() and Path(os.path.abspath(path)).is_relative_to(root):
                bad["image_path"] = Path(os.path.abspath(path)).relative_to(root).as_posix()
    return report


def write_prepared(artifact_dir: str | Path, dataset: Dataset, splits: Splits) -> Path:
    """Write the schema tables, splits and vocabularies; return the data folder.

    Image paths are stored relative to the artifact directory or ``dataset.data_root``
    (``image_root`` in ``dataset.json`` says which). ``dataset.json`` goes last: its
    presence means "preparation finished" to :func:`recsys_utils.artifacts.load_prepared`.
    """
    root = Path(artifact_dir) / artifacts.DATA_DIR
    manifest = root / "dataset.json"
    if manifest.exists():
        manifest.unlink()  # the old tables are about to be replaced
    items, image_root = _relative_image_paths(dataset.items, Path(artifact_dir), dataset.data_root)
    artifacts.save_parquet(items, root / "items.parquet")
    artifacts.save_parquet(dataset.interactions, root / "interactions.parquet")
    for name in ("users", "queries", "judgements"):
        table = getattr(dataset, name)
        path = root / f"{name}.parquet"
        if table is not None:
            artifacts.save_parquet(table, path)
        elif path.exists():
            path.unlink()
    for name, table in splits.as_dict().items():
        artifacts.save_parquet(table, root / "splits" / f"{name}.parquet")
    artifacts.save_json(splits.cold_items, root / "splits" / "cold_items.json")
    for column, values in vocabularies(dataset).items():
        artifacts.save_lines(values, root / "vocab" / f"{column}.txt")
    artifacts.save_json({
        "dataset": dataset.name,
        "attribute_columns": list(dataset.attribute_columns),
        "truth_columns": list(dataset.truth_columns),
        "feedback": dataset.feedback,
        "simulated_interactions": dataset.simulated_interactions,
        "image_root": image_root,
        "report": _report_with_relative_paths(dataset, Path(artifact_dir), image_root),
    }, manifest)
    return root
