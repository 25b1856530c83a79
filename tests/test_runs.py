from __future__ import annotations

import numpy as np
import pytest

from recsys_utils.runs import LOCK_NAME, start_run
from recsys_utils.schema import DataError


def test_start_run_creates_the_artifact_dir_and_seeds(tmp_path):
    run = start_run("synthetic", "", tmp_path / "a", "smoke", 7)
    assert run.artifact_dir.is_dir() and run.data_dir is None
    first = np.random.rand()
    start_run("synthetic", "", tmp_path / "a", "smoke", 7)
    assert np.random.rand() == first
    assert "profile=smoke" in run.describe()


def test_bad_parameters_list_the_valid_values(tmp_path):
    with pytest.raises(DataError, match="movielens-100k") as error:
        start_run("movielens", "", tmp_path, "smoke", 0)
    assert "Did you mean 'movielens-100k'" in str(error.value)
    with pytest.raises(DataError, match="smoke, default, full"):
        start_run("synthetic", "", tmp_path, "tiny", 0)


def test_series_runs_in_file_order_and_selects_by_number(tmp_path):
    from recsys_utils.series import select_notebooks, series_notebooks

    for name in ("08_evaluation", "01_a", "07_search", "02_b", "notes"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    notebooks = series_notebooks(tmp_path)
    assert [p.name[:2] for p in notebooks] == ["01", "02", "07", "08"]
    assert [p.name[:2] for p in select_notebooks(notebooks, stop="07")] == ["01", "02", "07"]
    assert [p.name[:2] for p in select_notebooks(notebooks, start="07")] == ["07", "08"]
    assert [p.name[:2] for p in select_notebooks(notebooks, start="02", stop="02")] == ["02"]
    with pytest.raises(DataError, match="no notebook numbered '05'"):
        select_notebooks(notebooks, start="05")


def test_run_records_results_and_writes_them_stamped(tmp_path):
    import dataclasses

    import pandas as pd

    from recsys_utils import artifacts
    from recsys_utils.runs import by_key

    @dataclasses.dataclass
    class Timed:
        median_ms: float
        rounds: tuple[float, ...]

    run = start_run("synthetic", None, tmp_path, "smoke", 7)
    table = pd.DataFrame({"variant": ["id", "fused"], "split": ["test", "test"],
                          "recall@10": [np.float32(0.25), 0.5], "note": ["a", "b"]})
    run.record(dataset="other", recall=np.float64(0.5), rows=table,
               table=by_key(table, "variant", "split"),
               latency={"ScaNN": Timed(1.5, (1.0, 2.0))})
    run.record(recall=0.75)  # a later record of the same name wins
    path = run.write_metrics("04_x")
    assert path == tmp_path / "metrics" / "04_x.json"
    written = artifacts.read_metrics(tmp_path)["04_x"]
    seconds = written.pop("notebook_seconds")
    assert 0 <= seconds < 60
    # The run's own parameters win over anything recorded.
    assert written == {
        "recall": 0.75, "dataset": "synthetic", "profile": "smoke", "seed": 7,
        "rows": [{"variant": "id", "split": "test", "recall@10": 0.25, "note": "a"},
                 {"variant": "fused", "split": "test", "recall@10": 0.5, "note": "b"}],
        "table": {"id|test": {"recall@10": 0.25, "note": "a"},
                  "fused|test": {"recall@10": 0.5, "note": "b"}},
        "latency": {"ScaNN": {"median_ms": 1.5, "rounds": [1.0, 2.0]}}}
    with pytest.raises(DataError, match="key columns"):
        by_key(table, "model")


@pytest.mark.parametrize("start, stop, printed", [("08", "08", True), (None, None, True),
                                                  ("02", "03", False), ("07", "07", False)])
def test_series_prints_the_report_only_when_notebook_08_ran(tmp_path, monkeypatch, capsys,
                                                            start, stop, printed):
    from recsys_utils import series

    calls = []
    monkeypatch.setattr(series, "run_series",
                        lambda *args, **kwargs: calls.append(kwargs) or {"x": 1.0})
    report = tmp_path / series.REPORT_DIR / "report.html"
    report.parent.mkdir()
    report.write_text("<html></html>")  # from an earlier run of notebook 08
    bounds = [*(["--start", start] if start else []), *(["--stop", stop] if stop else [])]
    assert series.main(["--profile", "smoke", "--run-dir", str(tmp_path), *bounds]) == 0
    assert calls and calls[0]["start"] == start and calls[0]["stop"] == stop
    assert ("Evaluation report:" in capsys.readouterr().out) == printed


# -- provenance recorded by a run ------------------------------------------------------

def test_a_run_records_who_wrote_each_artifact(tmp_path, monkeypatch):
    from recsys_utils import artifacts

    monkeypatch.delenv(artifacts.NOTEBOOK_ENV, raising=False)
    try:
        run = start_run("synthetic", None, tmp_path, "smoke", 7)
        artifacts.save_json({"dataset": "synthetic"}, tmp_path / "data" / "dataset.json")
        artifacts.save_features(tmp_path, "item_text", np.eye(2, dtype=np.float32))
        manifest = artifacts.read_manifest(tmp_path)
        text = manifest["features/item_text.npy"]
        assert (text["dataset"], text["profile"], text["seed"]) == ("synthetic", "smoke", 7)
        assert text["data_fingerprint"] == artifacts.data_fingerprint(tmp_path)
        assert text["written_by"] is None  # a notebook run alone: not known yet ...
        run.record(n=2)
        run.write_metrics("02_text_encoding")
        manifest = artifacts.read_manifest(tmp_path)
        # ... until it writes its metrics, which name the stage.
        assert manifest["features/item_text.npy"]["written_by"] == "02_text_encoding"
        assert manifest["metrics/02_text_encoding.json"]["written_by"] == "02_text_encoding"
        assert "data_fingerprint" not in manifest["data/dataset.json"]  # the data itself
        # The series runner names the notebook through the environment.
        monkeypatch.setenv(artifacts.NOTEBOOK_ENV, "03_multimodal_fusion")
        artifacts.save_features(tmp_path, "item_fused", np.eye(2, dtype=np.float32))
        assert (artifacts.read_manifest(tmp_path)["features/item_fused.npy"]["written_by"]
                == "03_multimodal_fusion")
    finally:
        artifacts.clear_run_context()


# -- the run directory's lock ----------------------------------------------------------

def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_refuses_a_live_holder_and_names_it(tmp_path):
    import json
    import os
    import socket

    from recsys_utils.runs import RunLock, RunLockedError

    with RunLock(tmp_path, ["python", "-m", "recsys_utils.series", "--seed", "1"]):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunLockedError) as error:
            RunLock(tmp_path, ["second"]).acquire()
        message = str(error.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message
        assert holder["started"] in message and "recsys_utils.series --seed 1" in message
    assert not (tmp_path / LOCK_NAME).exists()  # released on exit
    # A lock on another host cannot be proven dead: refused, with how to clear it.
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere",
                                                "started": "x", "command": "y"}))
    with pytest.raises(RunLockedError, match="delete .*recsys-run\\.lock"):
        RunLock(tmp_path).acquire()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path):
    import json
    import os
    import socket

    from recsys_utils.runs import RunLock

    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                "started": "yesterday", "command": "old run"}))
    with pytest.warns(UserWarning, match=f"stale lock.*pid {pid}"):
        lock = RunLock(tmp_path)
        lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_is_released_on_interrupts_and_errors(tmp_path):
    from recsys_utils.runs import RunLock

    for interruption in (KeyboardInterrupt, RuntimeError):
        with pytest.raises(interruption):
            with RunLock(tmp_path):
                assert (tmp_path / LOCK_NAME).exists()
                raise interruption()
        assert not (tmp_path / LOCK_NAME).exists()


def test_a_notebook_beside_a_live_run_refuses_its_directory(tmp_path):
    import subprocess
    import sys

    from recsys_utils.runs import RunLock

    run_dir = tmp_path / "run"
    # Held by this process (the series runner, whose kernels are its children): allowed.
    with RunLock(run_dir):
        start_run("synthetic", None, run_dir / "artifacts", "smoke", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from recsys_utils.runs import RunLock; "
         "RunLock(sys.argv[1], ['make', 'run-all']).acquire(); print('locked', flush=True); "
         "time.sleep(120)", str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=f"in use by another run .pid {holder.pid} .*make run-all"):
            start_run("synthetic", None, run_dir / "artifacts", "smoke", 1)
    finally:
        holder.kill()
        holder.wait()
    start_run("synthetic", None, run_dir / "artifacts", "smoke", 1)  # holder dead: stale, allowed
