"""Run the notebook series in order with papermill.

``make run-all`` and the notebook tests both call :func:`run_series`, so what
the tests execute is exactly what a user runs::

    python -m recsys_utils.series --dataset synthetic --profile default --run-dir runs/synthetic-default

Each notebook is executed with the same parameters into ``<run_dir>/notebooks``;
all of them read and write ``<run_dir>/artifacts``. ``--start 03`` resumes a
series at notebook 03 once the earlier artifacts exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from .artifacts import save_json
from .profiles import PROFILES
from .report import REPORT_DIR
from .schema import DataError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


#: The evaluation notebook reads every other notebook's metrics file, so it
#: runs last, after the product-search add-on (08) that is numbered after it.
RUNS_LAST = "07"


def series_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks of the series in execution order: ``NN_name.ipynb`` by
    number, except that the evaluation notebook (:data:`RUNS_LAST`) comes last."""
    notebooks = sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    return sorted(notebooks, key=lambda p: p.name[:2] == RUNS_LAST)  # stable: keeps the rest


def select_notebooks(notebooks: Sequence[Path], start: str | None = None,
                     stop: str | None = None) -> list[Path]:
    """The run from the notebook numbered ``start`` to the one numbered ``stop``
    (inclusive), by position in execution order: ``stop="07"`` runs 08 too."""
    prefixes = [p.name[:2] for p in notebooks]
    for bound in (start, stop):
        if bound is not None and bound not in prefixes:
            raise DataError(f"no notebook numbered {bound!r}; the series has {', '.join(prefixes)}")
    first = 0 if start is None else prefixes.index(start)
    last = len(notebooks) - 1 if stop is None else prefixes.index(stop)
    return list(notebooks[first:last + 1])


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
    import papermill  # imported here: the package itself must not need it

    if profile not in PROFILES:
        raise DataError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    notebooks = select_notebooks(series_notebooks(notebook_dir), start, stop)
    if not notebooks:
        raise DataError(f"no notebooks match start={start!r} stop={stop!r} in {notebook_dir}")
    run_dir = Path(run_dir).resolve()
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
        papermill.execute_notebook(
            str(notebook), str(out_dir / notebook.name), parameters=parameters,
            kernel_name="python3", cwd=str(notebook.parent), progress_bar=progress,
        )
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
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default=None, help="first notebook prefix, e.g. 03")
    parser.add_argument("--stop", default=None, help="last notebook prefix, e.g. 05")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or NOTEBOOK_DIR.parent / "runs" / f"{args.dataset}-{args.profile}"
    try:
        timings = run_series(args.dataset, args.profile, run_dir, data_dir=args.data_dir,
                             seed=args.seed, start=args.start, stop=args.stop)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = sum(timings.values())
    print(f"\nExecuted notebooks and artifacts: {Path(run_dir).resolve()}")
    print(f"Total {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    executed = select_notebooks(series_notebooks(), args.start, args.stop)
    report = Path(run_dir).resolve() / REPORT_DIR / "report.html"
    # Only a report this call wrote: an older one would not show the notebooks just run.
    if any(p.name[:2] == RUNS_LAST for p in executed) and report.exists():
        print(f"Evaluation report: {report} (and report.md beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
