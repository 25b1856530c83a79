"""The shared start and end of every notebook: parameters in, a run context out,
headline results recorded (:meth:`Run.record`) and written to the run's metrics.

Also the run directory's lock (:class:`RunLock`): one series run at a time
writes into a run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .profiles import Profile, get_profile
from .schema import DataError


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
    results: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    started: float = dataclasses.field(default_factory=time.perf_counter, repr=False,
                                       compare=False)

    def describe(self) -> str:
        return (f"dataset={self.dataset} profile={self.profile.name} seed={self.seed} "
                f"artifacts={self.artifact_dir}")

    def record(self, **results: Any) -> None:
        """Keep headline results for :meth:`write_metrics` (as Microsoft Recommenders'
        ``store_metadata``): a DataFrame is kept as its rows (:func:`by_key` keys them),
        a dataclass as its fields, in mappings and lists too; NumPy values as numbers."""
        self.results.update({name: _plain(value) for name, value in results.items()})

    def write_metrics(self, stage: str) -> Path:
        """Write the recorded results to ``metrics/<stage>.json``, stamped with this
        run's data set, profile and seed (so a report can tell which run each file came
        from) and the seconds since :func:`start_run`."""
        from .artifacts import claim_artifacts, write_metrics

        stamp = {"dataset": self.dataset, "profile": self.profile.name, "seed": self.seed,
                 "notebook_seconds": round(time.perf_counter() - self.started, 2)}
        path = write_metrics(self.artifact_dir, stage, {**self.results, **stamp})
        claim_artifacts(stage)  # a notebook run alone: its artifacts now name their writer
        return path


def by_key(frame: Any, *columns: str) -> dict[str, dict[str, Any]]:
    """A table's rows keyed by the values of ``columns`` joined with ``|``
    (``"id|test|all"``), each row holding the other columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing or not columns:
        raise DataError(f"by_key needs key columns of the table {list(frame.columns)}; "
                         f"got {list(columns)}")
    rest = [c for c in frame.columns if c not in columns]
    return {"|".join(str(v) for v in key): _plain(row)
            for key, row in zip(frame[list(columns)].itertuples(index=False),
                                frame[rest].to_dict(orient="records"))}


def _plain(value: Any) -> Any:
    """``value`` with DataFrames as their rows, Series and mappings as dicts and
    dataclasses as their fields, recursively (what JSON can hold, NumPy aside)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        value = value.to_dict(orient="records")
    elif isinstance(value, pd.Series):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
    unknown profile or data set, listing the valid ones, and when another live
    run holds the run directory (a notebook opened in JupyterLab while
    ``make run-all`` writes the same artifacts). From here on, every
    artifact written into ``artifact_dir`` records this run (data set,
    profile, seed, data fingerprint) in its ``manifest.json``, and
    :func:`~recsys_utils.artifacts.load_prepared` / ``load_features`` refuse
    artifacts another run produced.
    """
    from .artifacts import set_run_context
    from .data import check_dataset_name

    check_dataset_name(dataset)
    run = Run(
        dataset=dataset,
        data_dir=Path(data_dir).expanduser().resolve() if data_dir else None,
        artifact_dir=Path(artifact_dir).expanduser().resolve(),
        profile=get_profile(profile),
        seed=int(seed),
    )
    check_not_held_elsewhere(run.artifact_dir.parent)
    run.artifact_dir.mkdir(parents=True, exist_ok=True)
    set_run_context(run.artifact_dir, run.dataset, run.profile.name, run.seed)
    set_seeds(run.seed)
    return run


# --------------------------------------------------------------------------
# The run directory's lock
# --------------------------------------------------------------------------

LOCK_NAME = ".recsys-run.lock"


class RunLockedError(RuntimeError):
    """Another live run holds the run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunLock:
    """An exclusive lock on a run directory: ``<run_dir>/.recsys-run.lock``, a JSON record
    of the holder (pid, host, start time, command).

    ``with RunLock(run_dir):`` takes it or raises :class:`RunLockedError`
    naming the holder; a lock left by a dead process on this host is taken
    over with a warning. The lock is released on exit, exceptions and
    ``KeyboardInterrupt`` included. The file is created with ``os.link`` from a
    complete temporary file, so a reader never sees a half-written holder.
    """

    def __init__(self, run_dir: str | Path, command: Sequence[str] | None = None) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.command = " ".join(command if command is not None else sys.argv)
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        """The current holder's record, ``{}`` if unreadable, None if unlocked."""
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    @staticmethod
    def describe(holder: Mapping[str, Any]) -> str:
        return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
                f"started {holder.get('started', '?')}, command: {holder.get('command', '?')}")

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": self.command}
        fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    holder = self.holder()
                    if holder is None:
                        continue  # released meanwhile: try again
                    if not self._stale(holder):
                        raise RunLockedError(
                            f"run directory {self.path.parent} is in use by another run "
                            f"({self.describe(holder)}). Wait for it to finish, choose another "
                            f"--run-dir, or, if that run is gone, delete {self.path}") from None
                    warnings.warn(f"taking over the stale lock {self.path} of a run that is no "
                                  f"longer alive ({self.describe(holder)})", stacklevel=3)
                    if self.holder() == holder:  # not already taken over by another run
                        with contextlib.suppress(FileNotFoundError):
                            self.path.unlink()
            raise RunLockedError(f"could not take the lock {self.path}: it keeps changing; "
                                 "is another run starting in the same directory?")
        finally:
            os.unlink(tmp)

    @staticmethod
    def _stale(holder: Mapping[str, Any]) -> bool:
        """A lock is stale only when its pid is provably dead: same host, no such process."""
        if holder.get("host") != socket.gethostname():
            return False
        try:
            return not _pid_alive(int(holder["pid"]))
        except (KeyError, TypeError, ValueError):
            return False

    def release(self) -> None:
        if self.held:
            holder = self.holder()
            if holder is not None and holder.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _ancestors() -> set[int]:
    """This process and its parents (the series runner is a kernel's parent)."""
    pids, pid = {os.getpid(), os.getppid()}, os.getppid()
    for _ in range(64):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            pid = int(fields[1])
        except (OSError, IndexError, ValueError):
            break
        if pid <= 1:
            break
        pids.add(pid)
    return pids


def check_not_held_elsewhere(run_dir: str | Path) -> None:
    """Refuse to work in ``run_dir`` while another live run holds its lock.

    A notebook executed by the series runner is a child of the holder and
    passes; a notebook started by hand beside a running series does not.

    Raises:
        DataError: naming the holder.
    """
    from .schema import DataError

    lock = RunLock(run_dir)
    holder = lock.holder()
    if not holder or RunLock._stale(holder):
        return
    if holder.get("host") == socket.gethostname() and holder.get("pid") in _ancestors():
        return
    raise DataError(f"run directory {Path(run_dir)} is in use by another run "
                    f"({RunLock.describe(holder)}): wait for it to finish or use another "
                    f"artifact_dir; if that run is gone, delete {lock.path}")
