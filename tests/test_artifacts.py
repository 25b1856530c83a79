from __future__ import annotations

import pandas as pd
import pytest

from recsys_utils import artifacts
from recsys_utils.schema import DataError


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "table.parquet"
    artifacts.save_parquet(pd.DataFrame({"a": [1, 2]}), path)
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(path) as tmp:
            tmp.write_bytes(b"half a table")
            raise RuntimeError("interrupted")
    assert pd.read_parquet(path)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]  # no temp file left


def test_metrics_round_trip(tmp_path):
    import numpy as np

    artifacts.write_metrics(tmp_path, "01_x", {"recall": np.float32(0.5), "n": np.int64(3)})
    artifacts.write_metrics(tmp_path, "02_y", {"ok": True})
    assert artifacts.read_metrics(tmp_path) == {"01_x": {"n": 3, "recall": 0.5},
                                               "02_y": {"ok": True}}


def test_load_prepared_says_which_notebook_to_run(tmp_path):
    with pytest.raises(DataError, match="notebook 01"):
        artifacts.load_prepared(tmp_path)


def test_features_round_trip_and_missing_names_the_notebook(tmp_path):
    import numpy as np

    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    assert artifacts.load_features(tmp_path, "item_text").shape == (3, 3)
    with pytest.raises(DataError, match="notebook 03"):
        artifacts.load_features(tmp_path, "item_fused")


def test_atomic_dir_replaces_whole_directories(tmp_path):
    target = tmp_path / "model"
    with artifacts.atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(target) as tmp:
            (tmp / "v").write_text("half")
            raise RuntimeError
    assert (target / "v").read_text() == "1"
    with artifacts.atomic_dir(target) as tmp:
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
