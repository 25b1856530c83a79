"""Run the notebook series in order with papermill.

``make run-all`` (``python -m recsys_utils.series --dataset synthetic --profile default``) and
the notebook tests call :func:`run_series`; a notebook's exception becomes one ``error:`` line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from .artifacts import NOTEBOOK_ENV, provenance_problems, save_json
from .profiles import PROFILES, get_profile
from .report import REPORT_DIR
from .runs import RunLock, RunLockedError
from .schema import DataError

#: The series' notebooks in a checkout, beside the package.
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
#: Where the notebooks are when neither ``--notebooks-dir`` nor a checkout says.
NOTEBOOKS_ENV = "RECSYS_NOTEBOOKS_DIR"

#: The kernel ``make setup`` registers inside the venv and the notebooks' metadata names.
KERNEL_NAME = "recsys-course"
#: ipykernel's own kernel: it runs the Python that asks for it.
FALLBACK_KERNEL = "python3"
#: Seconds a cell may print no complete line before a heartbeat line names it.
HEARTBEAT_SECONDS = 60.0

#: The evaluation notebook reads every other notebook's metrics file: it is numbered last.
EVALUATION = "08"


def series_notebooks(notebook_dir: Path | None = None) -> list[Path]:
    """The series' ``NN_name.ipynb`` in order (default folder: :func:`find_notebook_dir`)."""
    return sorted(Path(notebook_dir or find_notebook_dir()).glob("[0-9][0-9]_*.ipynb"))


def find_notebook_dir(given: str | Path | None = None) -> Path:
    """The folder of the series' notebooks: ``given`` (``--notebooks-dir``), else
    ``$RECSYS_NOTEBOOKS_DIR``, else the checkout's ``notebooks/``, else ``./notebooks``;
    else a :class:`DataError` naming where it looked and how to point at them."""
    if given or os.environ.get(NOTEBOOKS_ENV):
        source = "--notebooks-dir" if given else f"${NOTEBOOKS_ENV}"
        folder = Path(given or os.environ[NOTEBOOKS_ENV]).expanduser()
        if not folder.is_dir():
            raise DataError(f"notebooks directory {folder} ({source}) does not exist or is not a "
                            "folder; give the course's notebooks/ folder")
        if not series_notebooks(folder):
            raise DataError(f"notebooks directory {folder} ({source}) holds no notebook of the "
                            "series (01_name.ipynb, 02_...); give the course's notebooks/ folder")
        return folder.resolve()
    looked = [NOTEBOOK_DIR, Path.cwd() / "notebooks"]
    for folder in looked:
        if folder.is_dir() and series_notebooks(folder):
            return folder.resolve()
    raise DataError(
        f"no notebooks of the series found: looked in {looked[0]} (a checkout beside the "
        f"package) and {looked[1]} (the current directory). A pip install of recsys-utils holds "
        f"the package only: pass --notebooks-dir <the course's notebooks/ folder> or set "
        f"{NOTEBOOKS_ENV}")


def select_notebooks(notebooks: Sequence[Path], start: str | None = None,
                     stop: str | None = None) -> list[Path]:
    """The notebooks numbered ``start`` to ``stop`` (inclusive)."""
    prefixes = [p.name[:2] for p in notebooks]
    for bound in (start, stop):
        if bound is not None and bound not in prefixes:
            raise DataError(f"no notebook numbered {bound!r}; the series has {', '.join(prefixes)}")
    first = 0 if start is None else prefixes.index(start)
    last = len(notebooks) - 1 if stop is None else prefixes.index(stop)
    return list(notebooks[first:last + 1])


#: Seeds numpy accepts (``np.random.seed``: 0 to 2**32 - 1).
MAX_SEED = 2**32 - 1


def _failed(notebook: Path, executed: Path, ename: str, evalue: str) -> DataError:
    """A notebook's exception, pointing at the executed copy that holds the traceback."""
    return DataError(f"notebook {notebook.name} failed: {ename}: {evalue.strip()} "
                     f"(full traceback in the executed notebook {executed})")


def default_data_dir(notebook_dir: Path | None = None) -> Path:
    """The default raw data: ``$RECSYS_DATA_DIR``, else ``data/raw`` beside the notebooks."""
    from . import data

    if os.environ.get("RECSYS_DATA_DIR") or notebook_dir is None:
        return data.default_data_dir()
    return Path(notebook_dir).parent / "data" / "raw"


def check_arguments(dataset: str, profile: str, seed: Any, data_dir: str | Path | None,
                    run_dir: str | Path, *, notebook_dir: Path | None = None) -> None:
    """Refuse (a :class:`DataError` saying how to fix it), before any kernel starts, a bad
    data set, profile, seed (an integer numpy accepts), data directory (must exist when
    given, or for any data set but ``synthetic``) or a run directory that cannot be written."""
    from .data import check_dataset_name

    check_dataset_name(dataset)
    get_profile(profile)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise DataError(f"seed {seed!r} is not usable: give an integer from 0 to {MAX_SEED} "
                        "(numpy's seed range), e.g. --seed 42")
    where = Path(data_dir).expanduser() if data_dir else (
        default_data_dir(notebook_dir) if dataset != "synthetic" else None)
    source = ("--data-dir, else $RECSYS_DATA_DIR" if data_dir else "the default data directory "
              "($RECSYS_DATA_DIR, else data/raw beside the notebooks folder)")
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
    """Refuse (a :class:`DataError` listing them and the notebook to re-run from) to start
    mid-series on earlier notebooks' artifacts that another run produced (``manifest.json``)."""
    order = [p.name[:2] for p in notebooks]
    before = set(order[:order.index(selected[0].name[:2])])
    if not before:
        return
    problems = [p for p in provenance_problems(artifact_dir, dataset, profile, seed)
                if p.prefix is None or p.prefix in before]
    if not problems:
        return
    rerun = min((p.prefix for p in problems if p.prefix in before), key=order.index,
                default=order[0])
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


def run_series(dataset: str, profile: str, run_dir: str | Path, *,
               data_dir: str | Path | None = None, seed: int = 42, start: str | None = None,
               stop: str | None = None, notebook_dir: str | Path | None = None,
               progress: bool = True) -> dict[str, float]:
    """Execute the series; return each notebook's wall time in seconds.

    ``run_dir`` receives ``notebooks/``, ``artifacts/`` and ``timings.json``; ``start`` /
    ``stop``: two-digit prefixes bounding the notebooks run (inclusive); ``progress``: stream
    the cells' lines with a heartbeat; ``notebook_dir``: default :func:`find_notebook_dir`."""
    notebook_dir = find_notebook_dir(notebook_dir)
    check_arguments(dataset, profile, seed, data_dir, run_dir, notebook_dir=notebook_dir)
    from .data import default_data_dir as package_default

    if not data_dir and dataset != "synthetic" and (
            default_data_dir(notebook_dir).resolve() != package_default().resolve()):
        data_dir = default_data_dir(notebook_dir)  # installed package: the kernels' default is elsewhere
    every = series_notebooks(notebook_dir)
    notebooks = select_notebooks(every, start, stop)
    if not notebooks:
        raise DataError(f"no notebooks match start={start!r} stop={stop!r} in {notebook_dir}")
    run_dir = Path(run_dir).expanduser().resolve()
    with RunLock(run_dir):
        check_resume(every, notebooks, run_dir / "artifacts", dataset, profile, int(seed))
        return _execute(notebooks, dataset, profile, run_dir, data_dir, int(seed), progress)


def notebook_kernel() -> str:
    """The Jupyter kernel for the notebooks: :data:`KERNEL_NAME`, else ``python3``, the
    first that runs this Python: its command is ``python`` (Jupyter then starts the asking
    interpreter) or an interpreter in ``sys.executable``'s ``bin/`` folder (a course kernel
    of another checkout is never used); else a :class:`DataError` saying how to register one."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    here = Path(sys.executable).parent
    for name in (KERNEL_NAME, FALLBACK_KERNEL):
        try:
            argv = manager.get_kernel_spec(name).argv
        except NoSuchKernel:
            continue
        launcher = argv[0] if argv else ""
        if launcher in {"python", f"python{sys.version_info[0]}",
                        "python{}.{}".format(*sys.version_info[:2])}:
            return name
        with contextlib.suppress(OSError):  # its interpreter may be gone
            if os.path.isabs(launcher) and os.path.samefile(Path(launcher).parent, here):
                return name
    raise DataError(f"no Jupyter kernel runs this Python ({sys.executable}): neither "
                    f"{KERNEL_NAME!r} nor {FALLBACK_KERNEL!r}. Register the course kernel with "
                    f"`make setup`, or `{sys.executable} -m ipykernel install --sys-prefix "
                    f"--name {KERNEL_NAME}`")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _last_state(line: str) -> str:
    """What a terminal shows of ``line``: the text after its last carriage return or run of
    backspaces (progress bars redraw with those), without colour codes."""
    segments = [s for s in re.split(r"\r|\x08+", _ANSI.sub("", line)) if s.strip()]
    return segments[-1].rstrip() if segments else ""


class CellEcho:
    """Shows a running notebook in the terminal: each line a cell prints, behind the notebook's
    number (``  04 | `` stdout, ``  04 ! `` stderr), progress-bar redraws collapsed to their last
    state; :meth:`beat` (a thread calls it) names a cell silent for ``heartbeat`` seconds."""

    def __init__(self, label: str, out: TextIO | None = None, heartbeat: float = HEARTBEAT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.heartbeat, self.clock = label, heartbeat, clock
        self.out = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self._pending = {"|": "", "!": ""}
        self._cell: tuple[int, int, str] | None = None
        self._cell_started = self._last_line = clock()

    def cell_started(self, number: int, total: int, source: str) -> None:
        """Code cell ``number`` of ``total`` starts (the previous one's last line goes first)."""
        first = next((s.strip() for s in source.splitlines() if s.strip()), "")
        with self._lock:
            self._flush_pending()
            self._cell = (number, total, first if len(first) <= 60 else first[:57] + "...")
            self._cell_started = self._last_line = self.clock()

    def stream(self, mark: str) -> "_EchoStream":
        """A file-like object for papermill's ``stdout_file`` (``"|"``) or ``stderr_file`` (``"!"``)."""
        return _EchoStream(self, mark)

    def feed(self, mark: str, text: str) -> None:
        with self._lock:
            *lines, self._pending[mark] = (self._pending[mark] + text).split("\n")
            for line in lines:
                self._write(mark, _last_state(line))

    def beat(self) -> None:
        with self._lock:
            now = self.clock()
            if self._cell is None or now - self._last_line < self.heartbeat:
                return
            number, total, first = self._cell
            minutes = (now - self._cell_started) / 60
            partial = next((s for s in (_last_state(self._pending[m]) for m in "|!") if s), "")
            self._write(".", f"cell {number}/{total} still running after {minutes:.1f} min: {first}"
                             + (f"  [last output: {partial}]" if partial else ""))

    def close(self) -> None:
        """Write what is left without a newline (a progress bar's final state)."""
        with self._lock:
            self._flush_pending()
            self._cell = None

    def _flush_pending(self) -> None:
        for mark, text in self._pending.items():
            self._write(mark, _last_state(text))
            self._pending[mark] = ""

    def _write(self, mark: str, text: str) -> None:
        if text:
            self.out.write(f"  {self.label} {mark} {text}\n")
            self.out.flush()
            self._last_line = self.clock()


class _EchoStream:
    """One output stream of a :class:`CellEcho`, as the file papermill writes to."""

    def __init__(self, echo: CellEcho, mark: str) -> None:
        self.echo, self.mark = echo, mark

    def write(self, text: str) -> int:
        self.echo.feed(self.mark, text)
        return len(text)

    def flush(self) -> None:
        pass


#: The papermill engine :func:`_execute` registers: papermill's, telling a CellEcho each cell.
ENGINE = "recsys-series"


def _register_engine() -> None:
    from papermill.engines import NBClientEngine, papermill_engines

    class SeriesEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, echo=None, **kwargs):
            if echo is not None:
                code = [i for i, cell in enumerate(nb_man.nb.cells) if cell.cell_type == "code"]
                start = nb_man.cell_start

                def cell_start(cell, cell_index=None, **kw):
                    if cell_index in code:
                        echo.cell_started(code.index(cell_index) + 1, len(code),
                                          "".join(cell.source))
                    return start(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, SeriesEngine)


def _kernel_manager_class() -> type:
    """A kernel manager writing the kernel process's own output to ``output_log``, not the
    terminal: ipykernel copies native output to the notebook, which CellEcho shows."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode

    class KernelWithLog(AsyncKernelManager):
        output_log = Unicode("", help="file for the kernel process's stdout and stderr"
                             ).tag(config=True)

        async def start_kernel(self, **kw: Any) -> None:
            if not self.output_log:
                return await super().start_kernel(**kw)
            with open(self.output_log, "ab") as log:  # the kernel process holds its own copy
                return await super().start_kernel(**{"stdout": log, "stderr": log, **kw})

    return KernelWithLog


def _kernel_config(output_log: Path) -> Any:
    """The kernel's own output to ``output_log``; CurveZMQ-encrypted sockets when pyzmq has
    them (no "running over TCP without encryption" warning from ipykernel 7)."""
    import zmq
    from traitlets.config import Config

    config = Config()
    config.KernelWithLog.output_log = str(output_log)
    if zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return config


def _beat_until(echo: CellEcho, done: threading.Event, every: float) -> None:
    while not done.wait(every):
        echo.beat()


def _execute(notebooks: Sequence[Path], dataset: str, profile: str, run_dir: Path,
             data_dir: str | Path | None, seed: int, progress: bool) -> dict[str, float]:
    """Execute ``notebooks`` in order (the lock is held); see :func:`run_series`."""
    import papermill  # imported here: the package itself must not need it
    from papermill.exceptions import PapermillExecutionError

    kernel = notebook_kernel()
    _register_engine()
    manager_class = _kernel_manager_class()
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = dict(dataset=dataset, data_dir=str(Path(data_dir).resolve()) if data_dir else "",
                      artifact_dir=str(run_dir / "artifacts"), profile=profile, seed=seed)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    timings_path = run_dir / "timings.json"
    timings: dict[str, float] = (json.loads(timings_path.read_text())
                                 if timings_path.exists() else {})
    for notebook in notebooks:
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {notebook.name} ({dataset}, {profile}; "
              f"kernel {kernel})", flush=True)
        previous = os.environ.get(NOTEBOOK_ENV)
        os.environ[NOTEBOOK_ENV] = notebook.stem  # the kernel records it as the artifacts' writer
        done, streams = threading.Event(), {}
        if progress:
            echo = CellEcho(notebook.name[:2], heartbeat=HEARTBEAT_SECONDS)
            threading.Thread(target=_beat_until, args=(echo, done, min(5.0, HEARTBEAT_SECONDS)),
                             daemon=True).start()
            streams = {"stdout_file": echo.stream("|"), "stderr_file": echo.stream("!"),
                       "echo": echo}
        kernel_log = out_dir / f"{notebook.stem}.kernel.log"
        kernel_log.unlink(missing_ok=True)
        try:
            papermill.execute_notebook(
                str(notebook), str(out_dir / notebook.name), parameters=parameters,
                engine_name=ENGINE, kernel_name=kernel, cwd=str(notebook.parent),
                progress_bar=False, kernel_manager_class=manager_class,
                config=_kernel_config(kernel_log), **streams)
        except PapermillExecutionError as error:
            raise _failed(notebook, out_dir / notebook.name, error.ename,
                          error.evalue) from error
        except RuntimeError as error:  # nbclient: the kernel died, or never answered
            if "kernel" not in str(error).lower():
                raise
            raise _failed(notebook, out_dir / notebook.name, type(error).__name__,
                          f"{error} (the kernel's own output: {kernel_log})") from error
        finally:
            done.set()
            if progress:
                echo.close()
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
                        help="default: runs/<dataset>-<profile> beside the notebooks folder")
    parser.add_argument("--data-dir", default=os.environ.get("RECSYS_DATA_DIR") or None,
                        help="the raw data; default $RECSYS_DATA_DIR, else data/raw beside the "
                             "notebooks folder (not needed for synthetic)")
    parser.add_argument("--notebooks-dir", default=None,
                        help=f"the course's notebooks/ folder; default ${NOTEBOOKS_ENV}, else "
                             "the checkout the package sits in, else ./notebooks")
    parser.add_argument("--seed", type=int, default=42, help=f"an integer from 0 to {MAX_SEED}")
    parser.add_argument("--start", default=None, help="first notebook prefix, e.g. 03")
    parser.add_argument("--stop", default=None, help="last notebook prefix, e.g. 05")
    parser.add_argument("--quiet", action="store_true",
                        help="one line per notebook, not the lines its cells print")
    args = parser.parse_args(argv)
    try:
        notebook_dir = find_notebook_dir(args.notebooks_dir)
        run_dir = Path(args.run_dir or notebook_dir.parent / "runs" / f"{args.dataset}-{args.profile}")
        timings = run_series(args.dataset, args.profile, run_dir, data_dir=args.data_dir,
                             seed=args.seed, start=args.start, stop=args.stop,
                             notebook_dir=notebook_dir, progress=not args.quiet)
    except (DataError, RunLockedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = sum(timings.values())
    print(f"\nExecuted notebooks and artifacts: {run_dir.resolve()}")
    print(f"Total {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    executed = select_notebooks(series_notebooks(notebook_dir), args.start, args.stop)
    report = run_dir.resolve() / REPORT_DIR / "report.html"
    # Only a report this call wrote: an older one would not show the notebooks just run.
    if any(p.name[:2] == EVALUATION for p in executed) and report.exists():
        print(f"Evaluation report: {report} (and report.md beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
