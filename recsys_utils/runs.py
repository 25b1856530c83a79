"""The shared start and end of every notebook (parameters in, a :class:`Run` out, headline
results written to the run's metrics) and the run directory's lock (:class:`RunLock`)."""

from __future__ import annotations

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
    """One notebook's view of a run of the series (``data_dir`` None: the default)."""

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
        """Keep results for :meth:`write_metrics`, which writes DataFrames as rows and
        dataclasses as fields."""
        self.results.update(results)

    def write_metrics(self, stage: str) -> Path:
        """Write the recorded results to ``metrics/<stage>.json``, stamped with the run's
        data set, profile, seed and the seconds since :func:`start_run`."""
        from .artifacts import claim_artifacts, write_metrics

        stamp = {"dataset": self.dataset, "profile": self.profile.name, "seed": self.seed,
                 "notebook_seconds": round(time.perf_counter() - self.started, 2)}
        path = write_metrics(self.artifact_dir, stage, {**self.results, **stamp})
        claim_artifacts(stage)  # a notebook run alone: its artifacts now name their writer
        return path


def by_key(frame: Any, *columns: str) -> dict[str, dict[str, Any]]:
    """A table's rows (the other columns) keyed by ``columns``' values joined: ``"id|test|all"``."""
    if not columns or any(c not in frame.columns for c in columns):
        raise DataError(f"by_key needs key columns of the table {list(frame.columns)}; "
                        f"got {list(columns)}")
    rest = [c for c in frame.columns if c not in columns]
    return {"|".join(str(v) for v in key): row
            for key, row in zip(frame[list(columns)].itertuples(index=False),
                                frame[rest].to_dict(orient="records"))}


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and, if it is already imported, TensorFlow."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.keras.utils.set_random_seed(seed)


def start_run(dataset: str, data_dir: str | Path | None, artifact_dir: str | Path,
              profile: str, seed: int) -> Run:
    """Validate a notebook's parameters (a :class:`DataError` for an unknown profile or data
    set, or a run directory another live run holds), seed everything, create the artifact
    dir and make artifacts written there record this run (``data_dir`` empty: the default)."""
    from .artifacts import set_run_context
    from .data import check_dataset_name

    check_dataset_name(dataset)
    run = Run(dataset, Path(data_dir).expanduser().resolve() if data_dir else None,
              Path(artifact_dir).expanduser().resolve(), get_profile(profile), int(seed))
    check_not_held_elsewhere(run.artifact_dir.parent)
    run.artifact_dir.mkdir(parents=True, exist_ok=True)
    set_run_context(run.artifact_dir, run.dataset, run.profile.name, run.seed)
    set_seeds(run.seed)
    return run


# -- The run directory's lock ----------------------------------------------------------

LOCK_NAME = ".recsys-run.lock"


class RunLockedError(RuntimeError):
    """Another live run holds the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` an exclusive lock, ``<run_dir>/.recsys-run.lock`` holding the
    holder's pid, host, start time and command, or :class:`RunLockedError` naming the holder.
    A dead process's lock on this host is taken over with a warning."""

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
            for _ in range(3):  # os.link of a complete file: no reader sees half a holder
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
                        self.path.unlink(missing_ok=True)
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
            os.kill(int(holder["pid"]), 0)
        except (KeyError, TypeError, ValueError, PermissionError):  # PermissionError: alive
            return False
        except OSError:
            return True
        return False

    def release(self) -> None:
        if self.held:
            if (self.holder() or {}).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
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
        try:  # the parent's pid: the 2nd field after the command's closing parenthesis
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        if pid <= 1:
            break
        pids.add(pid)
    return pids


def check_not_held_elsewhere(run_dir: str | Path) -> None:
    """Refuse (a :class:`DataError` naming the holder) to work in ``run_dir`` while another
    live run holds its lock; a notebook the series runner executes is its child and passes."""
    lock = RunLock(run_dir)
    holder = lock.holder()
    if not holder or RunLock._stale(holder) or (
            holder.get("host") == socket.gethostname() and holder.get("pid") in _ancestors()):
        return
    raise DataError(f"run directory {Path(run_dir)} is in use by another run "
                    f"({RunLock.describe(holder)}): wait for it to finish or use another "
                    f"artifact_dir; if that run is gone, delete {lock.path}")
