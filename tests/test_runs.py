from __future__ import annotations

import numpy as np
import pytest

from recsys_utils.runs import start_run
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


def test_series_runs_the_evaluation_notebook_last_and_selects_by_position(tmp_path):
    from recsys_utils.series import select_notebooks, series_notebooks

    for name in ("01_a", "02_b", "07_evaluation", "08_search"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    order = [p.name[:2] for p in series_notebooks(tmp_path)]
    assert order == ["01", "02", "08", "07"]
    notebooks = series_notebooks(tmp_path)
    assert [p.name[:2] for p in select_notebooks(notebooks, stop="07")] == ["01", "02", "08", "07"]
    assert [p.name[:2] for p in select_notebooks(notebooks, stop="08")] == ["01", "02", "08"]
    assert [p.name[:2] for p in select_notebooks(notebooks, start="02", stop="02")] == ["02"]
    with pytest.raises(DataError, match="no notebook numbered '05'"):
        select_notebooks(notebooks, start="05")


def test_run_write_metrics_stamps_the_run(tmp_path):
    from recsys_utils import artifacts

    run = start_run("synthetic", None, tmp_path, "smoke", 7)
    path = run.write_metrics("04_x", {"dataset": "other", "recall": 0.5})
    assert path == tmp_path / "metrics" / "04_x.json"
    written = artifacts.read_metrics(tmp_path)["04_x"]
    # The run's own parameters win over anything the summary says.
    assert written == {"recall": 0.5, "dataset": "synthetic", "profile": "smoke", "seed": 7}


@pytest.mark.parametrize("start, stop, printed", [("07", "07", True), (None, None, True),
                                                  ("02", "03", False), ("08", "08", False)])
def test_series_prints_the_report_only_when_notebook_07_ran(tmp_path, monkeypatch, capsys,
                                                            start, stop, printed):
    from recsys_utils import series

    calls = []
    monkeypatch.setattr(series, "run_series",
                        lambda *args, **kwargs: calls.append(kwargs) or {"x": 1.0})
    report = tmp_path / series.REPORT_DIR / "report.html"
    report.parent.mkdir()
    report.write_text("<html></html>")  # from an earlier run of notebook 07
    bounds = [*(["--start", start] if start else []), *(["--stop", stop] if stop else [])]
    assert series.main(["--profile", "smoke", "--run-dir", str(tmp_path), *bounds]) == 0
    assert calls and calls[0]["start"] == start and calls[0]["stop"] == stop
    assert ("Evaluation report:" in capsys.readouterr().out) == printed
