"""Data preparation (notebook 01): load, summarise, split and write the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts
from .data import load_dataset
from .runs import Run
from .schema import Dataset, implicit_label
from .splits import Splits, split_interactions

#: Item columns whose values get a vocabulary file besides the attributes.
_ID_COLUMNS = ("user_id", "item_id")


def load_for_run(run: Run) -> Dataset:
    """Load ``run.dataset`` at the scale of ``run.profile``.

    Generated files (the synthetic images) go under ``run.artifact_dir``.
    """
    scale = run.profile.data
    options: dict[str, Any] = {}
    if run.dataset == "synthetic":
        options = dict(n_items=scale.synthetic_items, n_users=scale.synthetic_users,
                       image_size=scale.image_size)
    elif run.dataset == "fashion":
        options = dict(n_items=scale.fashion_items, n_users=scale.fashion_users)
    return load_dataset(run.dataset, run.data_dir, seed=run.seed,
                        work_dir=run.artifact_dir, **options)


def split_for_run(run: Run, dataset: Dataset) -> Splits:
    return split_interactions(dataset.interactions,
                              cold_item_fraction=run.profile.data.cold_item_fraction,
                              seed=run.seed)


def vocabularies(dataset: Dataset) -> dict[str, list[str]]:
    """Sorted distinct values of the ids, the category, the attributes and the truth columns."""
    vocab = {
        "user_id": sorted(dataset.interactions["user_id"].unique().tolist()),
        "item_id": sorted(dataset.items["item_id"].tolist()),
    }
    for column in ["category", *dataset.attribute_columns, *dataset.truth_columns]:
        vocab[column] = sorted(dataset.items[column].astype(str).unique().tolist())
    return vocab


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
        "items_with_images": int(items["image_path"].notna().sum()) if "image_path" in items else 0,
        "malformed_rows": report.malformed_rows if report else 0,
        "repaired_rows": report.repaired_rows if report else 0,
        "dropped_rows": report.dropped_rows if report else 0,
        "missing_images": report.missing_images if report else 0,
        "n_queries": int(len(dataset.queries)) if dataset.queries is not None else 0,
        "splits": dict(splits.stats),
    }
    if dataset.feedback == "event":
        summary["events"] = {k: int(v) for k, v in interactions["event"].value_counts().items()}
    else:
        summary["ratings"] = {str(k): int(v) for k, v in
                              interactions["rating"].value_counts().sort_index().items()}
    return summary


def write_prepared(artifact_dir: str | Path, dataset: Dataset, splits: Splits) -> Path:
    """Write the schema tables, splits and vocabularies; return the data folder.

    ``dataset.json`` is written last: :func:`recsys_utils.artifacts.load_prepared`
    treats its presence as "preparation finished", so an interrupted run is
    never mistaken for a complete one.
    """
    root = Path(artifact_dir) / artifacts.DATA_DIR
    manifest = root / "dataset.json"
    if manifest.exists():
        manifest.unlink()  # the old tables are about to be replaced
    artifacts.save_parquet(dataset.items, root / "items.parquet")
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
    artifacts.save_json(
        {
            "dataset": dataset.name,
            "attribute_columns": list(dataset.attribute_columns),
            "truth_columns": list(dataset.truth_columns),
            "feedback": dataset.feedback,
            "simulated_interactions": dataset.simulated_interactions,
            "report": dataset.report.as_dict() if dataset.report else None,
        },
        manifest,
    )
    return root
