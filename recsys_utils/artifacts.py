"""The artifact directory: what each notebook writes, written atomically.

Layout of one run's artifact directory::

    data/items.parquet, interactions.parquet, users.parquet,
         queries.parquet, judgements.parquet       the one schema
    data/splits/{train,validation,test,test_cold}.parquet
    data/splits/cold_items.json                     the held-out cold-start items
    data/vocab/<column>.txt                         one value per line, sorted
    data/dataset.json                               name, attribute columns, flags
    metrics/<stage>.json                            each notebook's headline numbers
    images/                                         generated product images (synthetic)

Every file is written to a temporary name in the same directory and renamed
into place, so an interrupted run never leaves a half-written table that a
later notebook would trust.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .schema import DataError

SPLITS = ("train", "validation", "test", "test_cold")
METRICS_DIR = "metrics"
DATA_DIR = "data"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def save_json(obj: Any, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return Path(path)


def save_lines(lines: list[str], path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_metrics(artifact_dir: str | Path, stage: str, metrics: dict[str, Any]) -> Path:
    """Write one stage's headline numbers to ``metrics/<stage>.json`` (atomically)."""
    return save_json(metrics, Path(artifact_dir) / METRICS_DIR / f"{stage}.json")


def read_metrics(artifact_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every stage's metrics so far, keyed by stage name."""
    folder = Path(artifact_dir) / METRICS_DIR
    return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))}


@dataclasses.dataclass
class Prepared:
    """What notebook 01 wrote, loaded back for every later notebook.

    Attributes:
        dataset: the data set's registry name.
        items / interactions / users / queries / judgements: the schema tables.
        attribute_columns: structured item columns models may use as features.
        truth_columns: planted ground truth (synthetic only): labels, never features.
        splits: ``train``, ``validation``, ``test`` (warm items, the user's
            last interaction) and ``test_cold`` (held-out cold-start items).
        cold_items: ids of the cold-start items, never seen in training.
        simulated_interactions: True when interactions are simulated.
    """

    dataset: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    attribute_columns: list[str]
    splits: dict[str, pd.DataFrame]
    cold_items: list[str]
    feedback: str
    simulated_interactions: bool = False
    truth_columns: list[str] = dataclasses.field(default_factory=list)
    users: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None
    judgements: pd.DataFrame | None = None

    @property
    def has_images(self) -> bool:
        return "image_path" in self.items and self.items["image_path"].notna().any()


def _read_optional(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def load_prepared(artifact_dir: str | Path) -> Prepared:
    """Load the prepared data set from ``artifact_dir``.

    Raises:
        DataError: if notebook 01 has not run for this artifact directory.
    """
    root = Path(artifact_dir) / DATA_DIR
    manifest_path = root / "dataset.json"
    if not manifest_path.exists():
        raise DataError(
            f"no prepared data at {root}: run notebook 01 (data preparation) with "
            f"artifact_dir={str(artifact_dir)!r} first"
        )
    manifest = read_json(manifest_path)
    splits = {name: pd.read_parquet(root / "splits" / f"{name}.parquet") for name in SPLITS}
    return Prepared(
        dataset=manifest["dataset"],
        items=pd.read_parquet(root / "items.parquet"),
        interactions=pd.read_parquet(root / "interactions.parquet"),
        attribute_columns=list(manifest["attribute_columns"]),
        splits=splits,
        cold_items=read_json(root / "splits" / "cold_items.json"),
        feedback=manifest["feedback"],
        simulated_interactions=bool(manifest["simulated_interactions"]),
        truth_columns=list(manifest.get("truth_columns", [])),
        users=_read_optional(root / "users.parquet"),
        queries=_read_optional(root / "queries.parquet"),
        judgements=_read_optional(root / "judgements.parquet"),
    )


#: Which notebook writes each named feature array (for the error message).
FEATURE_WRITERS = {
    "item_text": "02 (BERT text encoding)",
    "query_text": "02 (BERT text encoding)",
    "item_image": "03 (multimodal fusion)",
    "item_image_present": "03 (multimodal fusion)",
    "item_fused": "03 (multimodal fusion)",
}
FEATURES_DIR = "features"
MODELS_DIR = "models"


def features_path(artifact_dir: str | Path, name: str) -> Path:
    return Path(artifact_dir) / FEATURES_DIR / f"{name}.npy"


def save_features(artifact_dir: str | Path, name: str, array: np.ndarray) -> Path:
    """Save a feature array (rows aligned with the items, or queries, table)."""
    return save_npy(np.asarray(array), features_path(artifact_dir, name))


def load_features(artifact_dir: str | Path, name: str) -> np.ndarray:
    """Load a feature array written by an earlier notebook.

    Raises:
        DataError: naming the notebook to run when the array is not there.
    """
    path = features_path(artifact_dir, name)
    if not path.exists():
        writer = FEATURE_WRITERS.get(name, "an earlier notebook")
        raise DataError(f"no {name!r} features at {path}: run notebook {writer} "
                        f"with artifact_dir={str(artifact_dir)!r} first")
    return np.load(path)


def model_dir(artifact_dir: str | Path, name: str) -> Path:
    """Where an exported model (a SavedModel directory or a .tflite file) lives."""
    return Path(artifact_dir) / MODELS_DIR / name


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it into place on success.

    For SavedModels and other directory artifacts: a reader sees the old
    directory or the new one, never a half-written one.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
