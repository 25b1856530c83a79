"""Run the notebook series in order with papermill.

``make run-all`` and the notebook tests both call :func:`run_series`, so what
the tests execute is exactly what a user runs::

    python -m recsys_utils.series --dataset synthetic --profile default --run-dir runs/synthetic-default

Each notebook is executed with the same parameters into ``<run_dir>/notebooks``;
all of them read and write ``<run_dir>/artifacts``. ``--start 03`` resumes a
series at notebook 03 once the earlier artifacts exist, and refuses when they
came from another data set, profile, seed or prepared data (the artifacts'
``manifest.json``), naming the notebook to re-run.

Before any kernel starts, the arguments are checked (data set name, profile,
seed, data directory, a writable run directory) and the run directory is
locked (:class:`recsys_utils.runs.RunLock`): a second run into it stops at
once, naming the holder. An exception inside a notebook becomes one
``error:`` line with the executed notebook's path, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .artifacts import NOTEBOOK_ENV, provenance_problems, save_json
from .profiles import PROFILES
from .report import REPORT_DIR
from .runs import RunLock, RunLockedError
from .schema import DataError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


#: The evaluation notebook reads every other notebook's metrics file: it is numbered last.
EVALUATION = "08"


def series_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks of the series in execution order: ``NN_name.ipynb`` by number."""
    return sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(notebooks: Sequence[Path], start: str | None = None,
                     stop: str | None = None) -> list[Path]:
    """The run from the notebook numbered ``start`` to the one numbered ``stop``
    (inclusive)."""
    prefixes = [p.name[:2] for p in notebooks]
    for bound in (start, stop):
        if bound is not None and bound not in prefixes:
            raise DataError(f"no notebook numbered {bound!r}; the series has {', '.join(prefixes)}")
    first = 0 if start is None else prefixes.index(start)
    last = len(notebooks) - 1 if stop is None else prefixes.index(stop)
    return list(notebooks[first:last + 1])


#: Seeds numpy accepts (``np.random.seed``: 0 to 2**32 - 1).
MAX_SEED = 2**32 - 1


class NotebookError(DataError):
    """A notebook raised an exception; the message is the notebook's own error
    and the path of the executed copy that shows the whole traceback."""

    def __init__(self, notebook: Path, executed: Path, ename: str, evalue: str) -> None:
        self.notebook, self.executed, self.ename, self.evalue = notebook, executed, ename, evalue
        super().__init__(f"notebook {notebook.name} failed: {ename}: {evalue.strip()} "
                         f"(full traceback in the executed notebook {executed})")


def check_arguments(dataset: str, profile: str, seed: Any, data_dir: str | Path | None,
                    run_dir: str | Path) -> None:
    """Refuse, before any kernel starts, arguments the series cannot run with.

    Checks the data set name, the profile, the seed (an integer numpy accepts),
    the data directory (it must exist when given, and for every data set but
    ``synthetic``) and that the run directory can be created and written.

    Raises:
        DataError: saying what is wrong and how to fix it.
    """
    from .data import check_dataset_name, default_data_dir

    check_dataset_name(dataset)
    if profile not in PROFILES:
        raise DataError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise DataError(f"seed {seed!r} is not usable: give an integer from 0 to {MAX_SEED} "
                        "(numpy's seed range), e.g. --seed 42")
    if data_dir:
        where, source = Path(data_dir).expanduser(), "--data-dir, else $RECSYS_DATA_DIR"
    elif dataset != "synthetic":
        where, source = default_data_dir(), "the default data directory ($RECSYS_DATA_DIR, else data/raw)"
    else:
        where = None
    if where is not None and not where.is_dir():
        need = ("items.csv and interactions.csv" if dataset == "csv"
                else "the data set's folder (see data/README.md)")
        raise DataError(f"data directory {where} ({source}) does not exist or is not a folder; "
                        f"the {dataset!r} data set reads {need} from it. Pass --data-dir "
                        "<folder> or set RECSYS_DATA_DIR")
    run_dir = Path(run_dir).expanduser()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for folder in (run_dir, run_dir / "artifacts", run_dir / "notebooks"):
            if folder.is_dir():
                tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise DataError(f"run directory {run_dir} is not writable ({type(error).__name__}: "
                        f"{error.strerror or error}); choose another --run-dir or fix its "
                        "permissions") from None


def check_resume(notebooks: Sequence[Path], selected: Sequence[Path], artifact_dir: Path,
                 dataset: str, profile: str, seed: int) -> None:
    """Refuse to start in the middle of the series on another run's artifacts.

    The artifacts written by the notebooks before the first selected one
    (execution order) must come from this data set, profile and seed and from
    the prepared data now in ``artifact_dir/data`` (``manifest.json``).

    Raises:
        DataError: listing the stale artifacts and the notebook to re-run from.
    """
    order = [p.name[:2] for p in notebooks]
    first = order.index(selected[0].name[:2])
    before = set(order[:first])
    if not before:
        return
    problems = [p for p in provenance_problems(artifact_dir, dataset, profile, seed)
                if p.prefix is None or p.prefix in before]
    if not problems:
        return
    known = [p.prefix for p in problems if p.prefix in before]
    rerun = min(known, key=order.index) if known else order[0]
    groups: dict[tuple[str, str], list[str]] = {}
    for problem in problems:  # one line per notebook and reason, not per file
        groups.setdefault((problem.writer, problem.reason), []).append(problem.path)
    listed = "\n".join(
        f"  {paths[0]}{f' and {len(paths) - 1} more file(s)' if len(paths) > 1 else ''}: "
        f"{reason}; re-run notebook {writer}" for (writer, reason), paths in groups.items())
    raise DataError(
        f"cannot start at notebook {selected[0].name}: artifacts in {artifact_dir} were produced "
        f"by another run than dataset={dataset!r} profile={profile!r} seed={seed}:\n{listed}\n"
        f"Re-run from notebook {rerun} (--start {rerun}"
        f"{'' if rerun != order[0] else ', or no --start'}) with these parameters, or pass the "
        "parameters the artifacts were made with")


def run_series(
    dataset: str,
    profile: str,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    seed: int = 42,
    start: str | None = None,
    stop: str | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
    progress: bool = True,
) -> dict[str, float]:
    """Execute the series; return the wall time of each notebook in seconds.

    Args:
        dataset, profile, seed, data_dir: the shared notebook parameters.
        run_dir: receives ``notebooks/`` (executed copies), ``artifacts/`` and
            ``timings.json``.
        start / stop: two-digit prefixes bounding the notebooks to run
            (inclusive), e.g. ``start="02", stop="03"``.
    """
    check_arguments(dataset, profile, seed, data_dir, run_dir)
    every = series_notebooks(notebook_dir)
    notebooks = select_notebooks(every, start, stop)
    if not notebooks:
        raise DataError(f"no notebooks match start={start!r} stop={stop!r} in {notebook_dir}")
    run_dir = Path(run_dir).expanduser().resolve()
    with RunLock(run_dir):
        check_resume(every, notebooks, run_dir / "artifacts", dataset, profile, int(seed))
        return _execute(notebooks, dataset, profile, run_dir, data_dir, int(seed), progress)


def _execute(notebooks: Sequence[Path], dataset: str, profile: str, run_dir: Path,
             data_dir: str | Path | None, seed: int, progress: bool) -> dict[str, float]:
    """Execute ``notebooks`` in order (the lock is held); see :func:`run_series`."""
    import papermill  # imported here: the package itself must not need it
    from papermill.exceptions import PapermillExecutionError

    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {
        "dataset": dataset,
        "data_dir": str(Path(data_dir).resolve()) if data_dir else "",
        "artifact_dir": str(run_dir / "artifacts"),
        "profile": profile,
        "seed": seed,
    }
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    timings_path = run_dir / "timings.json"
    timings: dict[str, float] = (json.loads(timings_path.read_text())
                                 if timings_path.exists() else {})
    for notebook in notebooks:
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {notebook.name} ({dataset}, {profile})", flush=True)
        previous = os.environ.get(NOTEBOOK_ENV)
        os.environ[NOTEBOOK_ENV] = notebook.stem  # the kernel records it as the artifacts' writer
        try:
            papermill.execute_notebook(
                str(notebook), str(out_dir / notebook.name), parameters=parameters,
                kernel_name="python3", cwd=str(notebook.parent), progress_bar=progress,
            )
        except PapermillExecutionError as error:
            raise NotebookError(notebook, out_dir / notebook.name, error.ename,
                                error.evalue) from error
        finally:
            if previous is None:
                os.environ.pop(NOTEBOOK_ENV, None)
            else:
                os.environ[NOTEBOOK_ENV] = previous
        timings[notebook.stem] = round(time.perf_counter() - started, 1)
        save_json(timings, timings_path)  # after each notebook: an interrupted run keeps them
        print(f"    done in {timings[notebook.stem]:.1f} s", flush=True)
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
    parser.add_argument("--run-dir", default=None,
                        help="default: runs/<dataset>-<profile> in the repository")
    parser.add_argument("--data-dir", default=os.environ.get("RECSYS_DATA_DIR") or None)
    parser.add_argument("--seed", type=int, default=42,
                        help=f"an integer from 0 to {MAX_SEED}")
    parser.add_argument("--start", default=None, help="first notebook prefix, e.g. 03")
    parser.add_argument("--stop", default=None, help="last notebook prefix, e.g. 05")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or NOTEBOOK_DIR.parent / "runs" / f"{args.dataset}-{args.profile}"
    try:
        timings = run_series(args.dataset, args.profile, run_dir, data_dir=args.data_dir,
                             seed=args.seed, start=args.start, stop=args.stop)
    except (DataError, RunLockedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = sum(timings.values())
    print(f"\nExecuted notebooks and artifacts: {Path(run_dir).resolve()}")
    print(f"Total {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    executed = select_notebooks(series_notebooks(), args.start, args.stop)
    report = Path(run_dir).resolve() / REPORT_DIR / "report.html"
    # Only a report this call wrote: an older one would not show the notebooks just run.
    if any(p.name[:2] == EVALUATION for p in executed) and report.exists():
        print(f"Evaluation report: {report} (and report.md beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
