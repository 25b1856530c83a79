"""TensorBoard logs: epoch scalars of a real training loop, a hand-written loop's writer and
the projector files, under <run_dir>/tensorboard/ during a run and nowhere outside one."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recsys_utils import artifacts, features, training_logs, two_tower
from recsys_utils.profiles import RetrievalBudget
from recsys_utils.runs import start_run
from recsys_utils.schema import DataError
from toy_world import make_toy


@pytest.fixture
def run_dir(tmp_path):
    start_run("synthetic", None, tmp_path / "artifacts", "smoke", 0)
    try:
        yield tmp_path
    finally:
        artifacts.clear_run_context()


def scalars(folder, tag):
    """``{step: value}`` of one scalar in the event files of ``folder``."""
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    # Keras 2 writes epoch scalars as tensors, tf.summary.scalar too (TF 2 summaries).
    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


def test_nothing_is_written_outside_a_run(tmp_path):
    artifacts.clear_run_context()
    assert training_logs.log_dir("x") is None and training_logs.callbacks("x") == []
    training_logs.scalar_writer("x")(0, {"loss": 1.0})  # a no-op
    assert training_logs.write_projector("p", np.eye(2), ["a", "b"]) is None
    with pytest.raises(DataError, match="n labels"):
        training_logs.write_projector("p", np.eye(2), ["only one"])


def test_a_training_run_logs_its_loss_and_validation_recall_per_epoch(run_dir):
    toy = make_toy(n_users=80, n_items=60, per_user=10, seed=0)
    data = features.build_features(toy.prepared, history_length=3)
    budget = RetrievalBudget(epochs=3, batch_size=128, early_stopping=True, patience=5)
    result = two_tower.train_retrieval("id", data, None, budget, progress=False)
    (log,) = (run_dir / "tensorboard" / "retrieval" / "id").iterdir()
    losses = scalars(log / "train", "epoch_loss")
    assert sorted(losses) == [0, 1, 2]
    assert losses[2] == pytest.approx(result.history["loss"][2], rel=1e-5)
    recall = scalars(log / "validation", "epoch_recall@50")
    assert sorted(recall) == [0, 1, 2] and all(0 <= v <= 1 for v in recall.values())
    # A second training of the same name is a second TensorBoard run beside the first.
    two_tower.train_retrieval("id", data, None, budget.replace(epochs=1), progress=False)
    assert len(list((run_dir / "tensorboard" / "retrieval" / "id").iterdir())) == 2


def test_a_hand_written_loop_and_the_projector(run_dir):
    write = training_logs.scalar_writer("image_encoder/supervised")
    for epoch, loss in enumerate([2.0, 1.5, 1.25]):
        write(epoch, {"loss": loss})
    (log,) = (run_dir / "tensorboard" / "image_encoder" / "supervised").iterdir()
    assert scalars(log, "epoch_loss") == {0: 2.0, 1: 1.5, 2: 1.25}

    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = training_logs.write_projector("projector/fused", vectors,
                                         ["red\tdress", "blue\nshirt", "  "])
    assert path.parent == run_dir / "tensorboard" / "projector" / "fused"
    # One line per item, whatever the titles hold.
    assert (path / "metadata.tsv").read_text().splitlines() == ["red dress", "blue shirt",
                                                                 "(no title)"]
    config = (path / "projector_config.pbtxt").read_text()
    assert "metadata.tsv" in config and "embedding/.ATTRIBUTES/VARIABLE_VALUE" in config
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(path)))
    np.testing.assert_array_equal(saved.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE"),
                                  vectors)
