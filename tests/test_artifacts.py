from __future__ import annotations

import numpy as np
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


# -- provenance ------------------------------------------------------------------------

@pytest.fixture
def run_context():
    """Activate a run context for a test and always clear it afterwards."""
    yield artifacts.set_run_context
    artifacts.clear_run_context()


def _fake_prepared(root, seed: int, n_items: int = 3) -> None:
    """The files load_prepared reads, written through the artifact helpers."""
    data = root / artifacts.DATA_DIR
    frame = pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)], "seed": seed})
    for name in ("items", "interactions"):
        artifacts.save_parquet(frame, data / f"{name}.parquet")
    for name in artifacts.SPLITS:
        artifacts.save_parquet(frame, data / "splits" / f"{name}.parquet")
    artifacts.save_json([], data / "splits" / "cold_items.json")
    artifacts.save_json({"dataset": "synthetic", "attribute_columns": [], "feedback": "implicit",
                         "simulated_interactions": True}, data / "dataset.json")


def test_reads_refuse_artifacts_of_another_seed_or_other_data(tmp_path, run_context):
    import numpy as np

    run_context(tmp_path, "synthetic", "smoke", 42)
    _fake_prepared(tmp_path, seed=42)
    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    assert len(artifacts.load_prepared(tmp_path).items) == 3
    assert artifacts.load_features(tmp_path, "item_text").shape == (3, 3)

    # A notebook run alone with another seed than notebook 01 used.
    run_context(tmp_path, "synthetic", "smoke", 1)
    with pytest.raises(DataError, match=r"seed=42.*seed=1.*re-run notebook 01"):
        artifacts.load_prepared(tmp_path)

    # Notebook 01 re-run with seed 1: the seed-42 text vectors are refused.
    _fake_prepared(tmp_path, seed=1)
    assert len(artifacts.load_prepared(tmp_path).items) == 3
    with pytest.raises(DataError, match=r"item_text\.npy.*seed=42.*re-run notebook 02"):
        artifacts.load_features(tmp_path, "item_text")
    # Same seed, but the prepared data changed under the vectors: refused by fingerprint.
    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    artifacts.save_parquet(pd.DataFrame({"item_id": ["x"]}), tmp_path / "data" / "items.parquet")
    with pytest.raises(DataError, match=r"other prepared data \(fingerprint"):
        artifacts.load_features(tmp_path, "item_text")


def test_provenance_problems_lists_stale_and_unrecorded_artifacts(tmp_path, run_context):
    import numpy as np

    run_context(tmp_path, "synthetic", "smoke", 42)
    _fake_prepared(tmp_path, seed=42)
    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    with artifacts.atomic_dir(artifacts.model_dir(tmp_path, "text_encoder")) as tmp:
        (tmp / "saved_model.pb").write_bytes(b"x")
    assert artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 42) == []
    artifacts.clear_run_context()
    np.save(artifacts.features_path(tmp_path, "item_fused"), np.eye(3))  # no record
    problems = {p.path: p for p in artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 7)}
    assert problems["features/item_text.npy"].prefix == "02"
    assert "seed=42" in problems["features/item_text.npy"].reason
    assert problems["data/dataset.json"].prefix == "01"
    assert "models/text_encoder" in problems
    assert "no provenance record" in problems["features/item_fused.npy"].reason
    assert problems["features/item_fused.npy"].prefix == "03"
    # A directory without a manifest (built by hand, or older) has nothing to compare.
    assert artifacts.provenance_problems(tmp_path / "other", "synthetic", "smoke", 7) == []


def test_corrupt_artifacts_name_the_file_and_the_notebook(tmp_path):
    import numpy as np

    _fake_prepared(tmp_path, seed=0)
    (tmp_path / "data" / "items.parquet").write_bytes(b"PAR1 not really a parquet file")
    with pytest.raises(DataError) as error:
        artifacts.load_prepared(tmp_path)
    assert "items.parquet" in str(error.value) and "notebook 01" in str(error.value)

    path = artifacts.save_features(tmp_path, "item_text", np.ones((50, 8), np.float32))
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.raises(DataError) as error:
        artifacts.load_features(tmp_path, "item_text")
    assert str(path) in str(error.value) and "notebook 02" in str(error.value)

    artifacts.write_metrics(tmp_path, "04_tfrs_retrieval", {"recall": 0.5})
    (tmp_path / "metrics" / "04_tfrs_retrieval.json").write_text('{"recall": 0.')
    with pytest.raises(DataError, match=r"04_tfrs_retrieval\.json.*re-run notebook 04_tfrs_retrieval"):
        artifacts.read_metrics(tmp_path)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o002, 0o664, 0o775),
                                                        (0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700)])
def test_artifacts_respect_the_umask(tmp_path, umask, file_mode, dir_mode):
    import os
    import stat

    previous = os.umask(umask)
    try:
        table = artifacts.save_parquet(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
        with artifacts.atomic_dir(tmp_path / "model") as tmp:
            (tmp / "v").write_text("1")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(table.stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == dir_mode


def test_data_prepared_before_provenance_is_not_second_guessed(tmp_path, run_context):
    import numpy as np

    _fake_prepared(tmp_path, seed=3)  # no run active: no records for the data
    run_context(tmp_path, "synthetic", "smoke", 42)
    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    assert set(artifacts.read_manifest(tmp_path)) == {"features/item_text.npy"}
    # Nothing to compare with: reads work as before, and --start has nothing to refuse.
    assert len(artifacts.load_prepared(tmp_path).items) == 3
    assert artifacts.load_features(tmp_path, "item_text").shape == (3, 3)
    assert artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 7) == []


def test_artifacts_of_a_notebook_that_did_not_finish_are_refused(tmp_path, run_context, monkeypatch):
    import numpy as np

    run_context(tmp_path, "synthetic", "smoke", 42)
    monkeypatch.setenv(artifacts.NOTEBOOK_ENV, "01_data_preparation")
    _fake_prepared(tmp_path, seed=42)
    artifacts.write_metrics(tmp_path, "01_data_preparation", {})
    monkeypatch.setenv(artifacts.NOTEBOOK_ENV, "02_text_encoding")
    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    # Notebook 02 itself may read back what it wrote; it is still running.
    assert artifacts.load_features(tmp_path, "item_text").shape == (3, 3)
    # ... it crashed before its metrics: the next notebook (a new process) refuses the vectors.
    run_context(tmp_path, "synthetic", "smoke", 42)
    with pytest.raises(DataError, match=r"item_text\.npy.*02_text_encoding that did not finish"):
        artifacts.load_features(tmp_path, "item_text")
    (problem,) = artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 42)
    assert problem.path == "features/item_text.npy" and problem.prefix == "02"
    # Notebook 02 re-run to the end: vectors and metrics file newer, all sound.
    artifacts.save_features(tmp_path, "item_text", np.eye(3, dtype=np.float32))
    artifacts.write_metrics(tmp_path, "02_text_encoding", {})
    run_context(tmp_path, "synthetic", "smoke", 42)
    assert artifacts.load_features(tmp_path, "item_text").shape == (3, 3)
    assert artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 42) == []


def test_a_leftover_the_notebook_no_longer_writes_does_not_block_start(tmp_path, run_context,
                                                                         monkeypatch):
    import numpy as np

    def notebook(stage, write):
        run_context(tmp_path, "synthetic", "smoke", 42)  # a fresh kernel
        monkeypatch.setenv(artifacts.NOTEBOOK_ENV, stage)
        write()
        artifacts.write_metrics(tmp_path, stage, {})

    vectors = np.eye(3, dtype=np.float32)
    notebook("01_data_preparation", lambda: _fake_prepared(tmp_path, seed=42))
    notebook("02_text_encoding", lambda: (artifacts.save_features(tmp_path, "item_text", vectors),
                                          artifacts.save_features(tmp_path, "query_text", vectors)))
    # Other prepared data, without queries this time: 02 writes item vectors only.
    notebook("01_data_preparation", lambda: _fake_prepared(tmp_path, seed=42, n_items=4))
    assert {p.path for p in artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 42)} == {
        "features/item_text.npy", "features/query_text.npy", "metrics/02_text_encoding.json"}
    notebook("02_text_encoding", lambda: artifacts.save_features(tmp_path, "item_text", vectors))
    assert artifacts.provenance_problems(tmp_path, "synthetic", "smoke", 42) == []
    run_context(tmp_path, "synthetic", "smoke", 42)
    with pytest.raises(DataError, match="other prepared data"):
        artifacts.load_features(tmp_path, "query_text")  # but never read


def test_a_corrupt_manifest_is_reported_and_replaced(tmp_path, run_context):
    import numpy as np

    (tmp_path / artifacts.MANIFEST).write_text('{"artifacts": {"data/')
    with pytest.raises(DataError, match="manifest.json.*corrupt provenance manifest.*notebook 01"):
        artifacts.read_manifest(tmp_path)
    run_context(tmp_path, "synthetic", "smoke", 42)
    with pytest.warns(UserWarning, match="starting a new manifest"):
        artifacts.save_features(tmp_path, "item_text", np.eye(2, dtype=np.float32))
    assert list(artifacts.read_manifest(tmp_path)) == ["features/item_text.npy"]


def test_save_module_drops_only_the_keras_config_notice(tmp_path):
    import logging

    import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    import tensorflow as tf

    class Scorer(tf.keras.Model):  # an init argument Keras cannot serialize
        def __init__(self, table: np.ndarray) -> None:
            super().__init__()
            self.table = tf.Variable(table)

        def call(self, rows):
            return tf.gather(self.table, rows)

    module = tf.Module()
    module.model = Scorer(np.eye(3, dtype=np.float32))
    module.model(tf.constant([0]))  # built, as a trained model is
    module.serve = tf.function(module.model.call,
                               input_signature=[tf.TensorSpec([None], tf.int32)])
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, collect = logging.getLogger("tensorflow"), Collect()
    logger.addHandler(collect)
    try:
        tf.saved_model.save(module, str(tmp_path / "plain"), signatures=module.serve)
        plain = list(messages)
        messages.clear()
        artifacts.save_module(module, tmp_path / "quiet", signatures=module.serve)
        logger.warning("another warning")
    finally:
        logger.removeHandler(collect)
    assert any("non-serializable objects" in m for m in plain), plain
    assert messages == ["another warning"]
    loaded = tf.saved_model.load(str(tmp_path / "quiet")).signatures["serving_default"]
    out = next(iter(loaded(tf.constant([2], tf.int32)).values())).numpy()
    np.testing.assert_array_equal(out, [[0.0, 0.0, 1.0]])
