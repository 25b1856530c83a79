"""Benchmark: wall time per notebook of a series run (``make run-all``) against the 15-minute target.

    python benchmarks/bench_runall.py [--run-dir runs/synthetic-default] [--execute]

Reads ``<run-dir>/timings.json``, which ``recsys_utils.series.run_series``
updates after every notebook, and prints one row per notebook (seconds,
minutes, share of the total, and when the executed copy was last written),
the total, and issue #8's check: "make run-all on the embedded default under
15 minutes" (met / not met; "not known" while notebooks of the series have no
timing and the others stay under the target). Rows follow the series'
execution order (``recsys_utils.series.series_notebooks``: file order, the
evaluation notebook 08 last); entries of ``timings.json`` that are not notebooks of
the series (renamed or removed ones) are listed apart and left out of the
total and the check. With ``--execute`` it first runs the series
(``dataset="synthetic"``, ``profile="default"``) into the run directory,
which takes a few minutes (docs/performance.md has a measured run). Without a
timings file and without ``--execute`` it says how to get one and exits 0, so
``make bench`` goes on.

Timings accumulate: a notebook re-run alone (``make run-all START=03 STOP=03``)
replaces only its own entry, so the total mixes runs; the "written" column
shows when each executed notebook is from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 15 * 60


def read_timings(run_dir: Path) -> dict[str, float] | None:
    """``{notebook stem: seconds}`` from ``run_dir/timings.json``, or ``None`` if absent."""
    path = Path(run_dir) / "timings.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{notebook: seconds}}, got {type(raw).__name__}")
    return {str(k): float(v) for k, v in raw.items()}


def run_kind(run_dir: Path) -> tuple[str, str] | None:
    """``(dataset, profile)`` of a run, from the first metrics file that records both."""
    for path in sorted((Path(run_dir) / "artifacts" / "metrics").glob("*.json")):
        summary = json.loads(path.read_text())
        if isinstance(summary, dict) and "dataset" in summary and "profile" in summary:
            return str(summary["dataset"]), str(summary["profile"])
    return None


def timing_table(timings: Mapping[str, float], written: Mapping[str, str] | None = None,
                 target_seconds: float = TARGET_SECONDS,
                 expected: Sequence[str] | None = None,
                 kind: tuple[str, str] | None = ("synthetic", "default")) -> list[str]:
    """Markdown lines: one row per notebook in series order, the total, extras, and the target check.

    ``expected`` lists the series' notebooks in execution order (``None``: every
    entry of ``timings`` belongs to the series, in sorted order). Rows follow
    it; entries of ``timings`` not in it are shown in a second table and count
    neither towards the total nor the check. When notebooks of the series have
    no timing, the check is "not met" if the others already exceed the target
    and "not known" otherwise. The target is about the synthetic data set on
    the default profile: for any other ``kind`` (dataset, profile) the check
    says it does not apply.
    """
    written = written or {}
    order = list(expected) if expected is not None else sorted(timings)
    series = [name for name in order if name in timings]
    missing = [name for name in order if name not in timings]
    extra = [name for name in timings if name not in order]
    total = sum(timings[name] for name in series)

    def row(name: str, share: str) -> str:
        seconds = timings[name]
        return (f"| {name} | {seconds:.1f} | {seconds / 60:.1f} | {share} | "
                f"{written.get(name, '-')} |")

    lines = ["| notebook | seconds | minutes | share | written |",
             "|---|---:|---:|---:|---|"]
    for name in series:
        lines.append(row(name, f"{timings[name] / total:.0%}" if total > 0 else "0%"))
    lines.append(f"| **total** | **{total:.1f}** | **{total / 60:.1f}** | 100% | |")
    if extra:
        lines += ["", "Not notebooks of the series (left out of the total and the check):", "",
                  "| entry | seconds | minutes | share | written |", "|---|---:|---:|---:|---|"]
        lines += [row(name, "-") for name in sorted(extra)]
    head = f"make run-all on the embedded default under {target_seconds / 60:.0f} minutes: "
    lines.append("")
    if kind != ("synthetic", "default"):
        what = "an unknown data set and profile" if kind is None else f"{kind[0]} / {kind[1]}"
        lines.append(head + f"does not apply: this run is {what} "
                            "(the target is synthetic / default: `make run-all`)")
    elif missing and total < target_seconds:
        lines.append(head + f"not known ({total / 60:.1f} min for {len(series)} notebooks; "
                            f"no timing for {', '.join(missing)}: run the whole series)")
    else:
        verdict = "met" if total < target_seconds else "not met"
        gaps = f"; no timing for {', '.join(missing)}" if missing else ""
        lines.append(head + f"{verdict} ({total / 60:.1f} min for {len(series)} notebooks{gaps})")
    return lines


def _written(run_dir: Path, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        path = run_dir / "notebooks" / f"{name}.ipynb"
        if path.is_file():
            out[name] = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/synthetic-default",
                        help="relative paths are taken from the repository root")
    parser.add_argument("--execute", action="store_true",
                        help="run the series (synthetic, default profile) into --run-dir first")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    if not run_dir.is_absolute():
        run_dir = REPO / run_dir

    # imports recsys_utils first (TF_USE_LEGACY_KERAS)
    from _common import gemm_flops, hardware_line, loadavg

    print(hardware_line())
    if args.execute:
        from recsys_utils import series

        # A shared VM's speed drifts by tens of percent within a day: the matmul rate before
        # and after says how fast this machine was while the series ran.
        speed_before = gemm_flops() / 1e9
        print(f"running the series (synthetic, default) into {run_dir} ...", flush=True)
        load_before = loadavg()
        series.run_series(dataset="synthetic", profile="default", run_dir=run_dir)
        print(f"1-min load average before/after the run: {load_before} / {loadavg()}; "
              f"float32 matmul GFLOP/s before/after: {speed_before:.0f} / "
              f"{gemm_flops() / 1e9:.0f}")

    timings = read_timings(run_dir)
    if not timings:
        print(f"no notebook timings in {run_dir / 'timings.json'}: nothing to report.\n"
              f"Get them with `make run-all` (writes runs/synthetic-default) or "
              f"`python benchmarks/bench_runall.py --execute` (a few minutes).")
        return 0
    if not args.execute:
        print(f"timings from {run_dir / 'timings.json'}: measured on the machine and under the "
              f"load of that run (1-min load average now: {loadavg()})")
    print()
    from recsys_utils.series import series_notebooks

    expected = [p.stem for p in series_notebooks()]
    kind = run_kind(run_dir)
    for line in timing_table(timings, _written(run_dir, sorted(timings)), expected=expected,
                             kind=kind):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
