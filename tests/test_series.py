"""The series runner: arguments checked before any kernel, the run directory's lock,
``--start`` refusing another run's artifacts, notebook errors as one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsys_utils import artifacts, series
from recsys_utils.runs import LOCK_NAME
from recsys_utils.schema import DataError


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if the runner gets as far as executing a notebook."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("a notebook kernel was started")

    monkeypatch.setattr(series, "_execute", must_not_run)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "synthtic"], "unknown data set 'synthtic'.*Did you mean 'synthetic'"),
    (["--seed", "-1"], "seed -1 is not usable: give an integer from 0 to 4294967295"),
    (["--seed", str(2**32)], "seed 4294967296 is not usable"),
    (["--dataset", "csv", "--data-dir", "{tmp}/missing"], "data directory .*missing.*does not exist"),
    (["--run-dir", "{tmp}/a_file/run"], "run directory .*a_file/run is not writable"),
])
def test_bad_arguments_stop_before_any_kernel(tmp_path, capsys, no_kernel, args, message):
    import re

    (tmp_path / "a_file").write_text("")
    argv = ["--profile", "smoke", "--run-dir", str(tmp_path / "run"),
            *[a.replace("{tmp}", str(tmp_path)) for a in args]]
    started = time.perf_counter()
    assert series.main(argv) == 2
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert "Traceback" not in err


def test_a_notebook_error_is_one_line_with_the_executed_notebook(tmp_path, monkeypatch, capsys):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def failing(notebook, output, **kwargs):
        raise PapermillExecutionError(
            cell_index=3, exec_count=4, source="encoder.encode(...)", ename="ValueError",
            evalue="Cannot take a larger sample than population",
            traceback=[f"  File 'deep/inside/library.py', line {i}" for i in range(40)])

    monkeypatch.setattr(papermill, "execute_notebook", failing)
    run_dir = tmp_path / "run"
    assert series.main(["--profile", "smoke", "--run-dir", str(run_dir), "--stop", "01"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line, not the 40-line traceback
    assert err.startswith("error: notebook 01_data_preparation.ipynb failed: ValueError: "
                          "Cannot take a larger sample than population")
    assert str(run_dir / "notebooks" / "01_data_preparation.ipynb") in err
    assert "deep/inside" not in err
    assert not (run_dir / LOCK_NAME).exists()  # released after the failure


def test_a_second_run_into_a_held_directory_stops_at_once(tmp_path, capsys, monkeypatch,
                                                          no_kernel):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from recsys_utils.runs import RunLock; "
         "RunLock(sys.argv[1], ['make', 'run-all', 'SEED=7']).acquire(); "
         "print('locked', flush=True); time.sleep(120)", str(run_dir)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        assert series.main(["--profile", "smoke", "--run-dir", str(run_dir)]) == 2
        assert time.perf_counter() - started < 5
        err = capsys.readouterr().err
        assert err.startswith("error: run directory") and "in use by another run" in err
        assert f"pid {holder.pid} on host {socket.gethostname()}" in err
        assert "command: make run-all SEED=7" in err and "started 20" in err
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the next run takes the stale lock over.
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid
    calls = []
    monkeypatch.setattr(series, "_execute", lambda *args, **kwargs: calls.append(args) or {})
    with pytest.warns(UserWarning, match="stale lock"):
        series.run_series("synthetic", "smoke", run_dir, stop="01", progress=False)
    assert calls and not (run_dir / LOCK_NAME).exists()


def test_lock_is_released_when_the_run_is_interrupted(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        assert (tmp_path / LOCK_NAME).exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(series, "_execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        series.run_series("synthetic", "smoke", tmp_path, progress=False)
    assert not (tmp_path / LOCK_NAME).exists()


def test_start_refuses_artifacts_of_another_seed(tmp_path, monkeypatch, capsys):
    """Artifacts of seed 42, then notebook 01 re-run with seed 1 (the one kernel run here)."""
    run_dir = tmp_path / "run"
    art = run_dir / "artifacts"
    # What a seed-42 run left: prepared data and notebook 02's text vectors.
    try:
        artifacts.set_run_context(art, "synthetic", "smoke", 42)
        monkeypatch.setenv(artifacts.NOTEBOOK_ENV, "01_data_preparation")
        artifacts.save_json({"dataset": "synthetic"}, art / "data" / "dataset.json")
        monkeypatch.setenv(artifacts.NOTEBOOK_ENV, "02_text_encoding")
        artifacts.save_features(art, "item_text", np.ones((3, 4), np.float32))
    finally:
        artifacts.clear_run_context()
        monkeypatch.delenv(artifacts.NOTEBOOK_ENV)
    series.run_series("synthetic", "smoke", run_dir, seed=1, stop="01", progress=False)
    manifest = artifacts.read_manifest(art)
    assert manifest["data/dataset.json"]["seed"] == 1
    assert manifest["data/items.parquet"]["written_by"] == "01_data_preparation"

    notebooks = series.series_notebooks()
    # --start 02 with the old seed: the prepared data are seed 1's.
    with pytest.raises(DataError, match=r"(?s)seed=1, this run is .*seed=42.*Re-run from notebook 01"):
        series.check_resume(notebooks, series.select_notebooks(notebooks, start="02"), art,
                            "synthetic", "smoke", 42)
    # --start 03 with the new seed: notebook 02's vectors are seed 42's.
    with pytest.raises(DataError, match=r"(?s)item_text\.npy.*seed=42.*Re-run from notebook 02 "
                                        r"\(--start 02\)"):
        series.check_resume(notebooks, series.select_notebooks(notebooks, start="03"), art,
                            "synthetic", "smoke", 1)
    # --start 02 with the new seed is right: notebook 02 rewrites the vectors.
    series.check_resume(notebooks, series.select_notebooks(notebooks, start="02"), art,
                        "synthetic", "smoke", 1)
    # The command line says the same, before any kernel starts.
    monkeypatch.setattr(series, "_execute", lambda *a, **k: pytest.fail("kernel started"))
    assert series.main(["--profile", "smoke", "--run-dir", str(run_dir), "--seed", "1",
                        "--start", "03"]) == 2
    assert "re-run notebook 02_text_encoding" in capsys.readouterr().err


# --- where the notebooks are (a non-editable install has the package only) ---

def _series_folder(folder):
    folder.mkdir(parents=True)
    (folder / "01_first.ipynb").write_text("{}")
    return folder


def test_notebooks_dir_given_env_checkout_or_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(series.NOTEBOOKS_ENV, raising=False)
    # In this checkout the package sits beside notebooks/.
    assert series.find_notebook_dir() == series.NOTEBOOK_DIR.resolve()
    given = _series_folder(tmp_path / "given")
    assert series.find_notebook_dir(given) == given.resolve()
    env = _series_folder(tmp_path / "env")
    monkeypatch.setenv(series.NOTEBOOKS_ENV, str(env))
    assert series.find_notebook_dir() == env.resolve()
    assert series.find_notebook_dir(given) == given.resolve()  # the parameter wins
    # An installed package: no notebooks beside it; ./notebooks is used.
    monkeypatch.delenv(series.NOTEBOOKS_ENV)
    monkeypatch.setattr(series, "NOTEBOOK_DIR", tmp_path / "site-packages" / "notebooks")
    cwd = _series_folder(tmp_path / "course" / "notebooks")
    monkeypatch.chdir(cwd.parent)
    assert series.find_notebook_dir() == cwd.resolve()
    assert [p.name for p in series.series_notebooks()] == ["01_first.ipynb"]


@pytest.mark.parametrize("where, message", [
    ("missing", r"notebooks directory .*missing \(--notebooks-dir\) does not exist"),
    ("empty", r"notebooks directory .*empty \(--notebooks-dir\) holds no notebook of the series"),
])
def test_a_bad_notebooks_dir_is_one_error_line(tmp_path, capsys, no_kernel, where, message):
    import re

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.ipynb").write_text("{}")  # not NN_name.ipynb
    assert series.main(["--notebooks-dir", str(tmp_path / where),
                        "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err), err


def test_no_notebooks_anywhere_says_how_to_point_at_them(tmp_path, capsys, monkeypatch, no_kernel):
    monkeypatch.delenv(series.NOTEBOOKS_ENV, raising=False)
    monkeypatch.setattr(series, "NOTEBOOK_DIR", tmp_path / "site-packages" / "notebooks")
    monkeypatch.chdir(tmp_path)
    assert series.main(["--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no notebooks of the series found: looked in "
                          f"{tmp_path / 'site-packages' / 'notebooks'}")
    assert "--notebooks-dir" in err and series.NOTEBOOKS_ENV in err
    assert not (tmp_path / "runs").exists()


def test_outside_a_checkout_runs_and_data_sit_beside_the_notebooks(tmp_path, monkeypatch,
                                                                    capsys):
    """--notebooks-dir <course>/notebooks: the default run directory is <course>/runs/...,
    the default data directory <course>/data/raw (not the installed package's folder)."""
    monkeypatch.delenv("RECSYS_DATA_DIR", raising=False)
    notebooks = _series_folder(tmp_path / "course" / "notebooks")
    argv = ["--dataset", "movielens-100k", "--profile", "smoke", "--notebooks-dir", str(notebooks)]
    monkeypatch.setattr(series, "_execute", lambda *a, **k: pytest.fail("kernel started"))
    assert series.main(argv) == 2
    err = capsys.readouterr().err
    assert f"data directory {tmp_path / 'course' / 'data' / 'raw'} (the default" in err, err
    assert "beside the notebooks folder" in err

    (tmp_path / "course" / "data" / "raw").mkdir(parents=True)
    calls = []
    monkeypatch.setattr(series, "_execute", lambda *a: calls.append(a) or {"01_first": 1.0})
    assert series.main(argv) == 0
    notebooks_run, dataset, profile, run_dir, data_dir = calls[0][:5]
    assert [p.name for p in notebooks_run] == ["01_first.ipynb"]
    assert run_dir == (tmp_path / "course" / "runs" / "movielens-100k-smoke").resolve()
    assert Path(data_dir) == tmp_path / "course" / "data" / "raw"
