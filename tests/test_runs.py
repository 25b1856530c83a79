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
