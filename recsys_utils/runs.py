"""The shared start of every notebook: parameters in, a run context out."""

from __future__ import annotations

import dataclasses
import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .profiles import Profile, get_profile


@dataclasses.dataclass(frozen=True)
class Run:
    """One notebook's view of a run of the series.

    Attributes:
        dataset: registry name of the data set.
        data_dir: where raw data is read from (``None``: the default).
        artifact_dir: where every notebook of the run reads and writes.
        profile: the sizes of every stage.
        seed: the seed every random choice derives from.
    """

    dataset: str
    data_dir: Path | None
    artifact_dir: Path
    profile: Profile
    seed: int

    def describe(self) -> str:
        return (f"dataset={self.dataset} profile={self.profile.name} seed={self.seed} "
                f"artifacts={self.artifact_dir}")

    def write_metrics(self, stage: str, summary: Mapping[str, Any]) -> Path:
        """Write a notebook's headline numbers, stamped with this run's data set,
        profile and seed, so a report can tell which run each file came from."""
        from .artifacts import write_metrics

        stamp = {"dataset": self.dataset, "profile": self.profile.name, "seed": self.seed}
        return write_metrics(self.artifact_dir, stage, {**summary, **stamp})


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and, if it is already imported, TensorFlow."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.keras.utils.set_random_seed(seed)


def start_run(
    dataset: str,
    data_dir: str | Path | None,
    artifact_dir: str | Path,
    profile: str,
    seed: int,
) -> Run:
    """Validate a notebook's parameters, seed everything and create the artifact dir.

    ``data_dir`` may be ``None`` or empty for the default (``$RECSYS_DATA_DIR``,
    else ``data/raw``). Raises :class:`~recsys_utils.schema.DataError` for an
    unknown profile or data set, listing the valid ones.
    """
    from .data import check_dataset_name

    check_dataset_name(dataset)
    run = Run(
        dataset=dataset,
        data_dir=Path(data_dir).expanduser().resolve() if data_dir else None,
        artifact_dir=Path(artifact_dir).expanduser().resolve(),
        profile=get_profile(profile),
        seed=int(seed),
    )
    run.artifact_dir.mkdir(parents=True, exist_ok=True)
    set_seeds(run.seed)
    return run
