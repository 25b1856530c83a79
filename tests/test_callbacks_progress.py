"""EpochBar prints each epoch's losses and validation metrics as a line, and a summary
when training ends: what an executed notebook keeps of a training loop."""

from __future__ import annotations

import recsys_utils  # noqa: F401, I001 - first: TF_USE_LEGACY_KERAS before TensorFlow

import re

import numpy as np
import tensorflow as tf

from recsys_utils.callbacks import EpochBar, EpochClock, epoch_line


class AddsValidationMetric(tf.keras.callbacks.Callback):
    """Stands in for retrieval's ValidationRecall: writes a val_ metric into the epoch logs."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_recall_at_50"] = 0.1 * (epoch + 1)


def test_each_epoch_is_a_line_with_its_metrics_then_a_summary(monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_PROGRESS", "lines")
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    clock = EpochClock()
    fit = model.fit(x, y, epochs=3, batch_size=16, verbose=0,
                    callbacks=[clock, AddsValidationMetric(), EpochBar(3, "toy/model")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines
    for epoch, line in enumerate(lines[:3]):
        match = re.fullmatch(rf"toy/model epoch {epoch + 1}/3: loss (\S+), "
                             rf"val_recall_at_50 (\S+) \((\d+\.\d) s\)", line)
        assert match, line
        assert float(match[1]) == float(f"{fit.history['loss'][epoch]:.4g}")
        assert float(match[2]) == float(f"{0.1 * (epoch + 1):.4g}")
    assert lines[3].startswith("toy/model: 3/3 epochs in ")
    assert lines[3].endswith(f"loss={fit.history['loss'][-1]:.4g}, val_recall_at_50=0.3")
    assert len(clock.seconds) == 3


def test_early_stopping_ends_with_the_epochs_run(monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_PROGRESS", "lines")
    x = np.zeros((8, 2), np.float32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    stop = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 1))
    model.fit(x, np.zeros(8, np.float32), epochs=10, verbose=0,
              callbacks=[stop, EpochBar(10, "stops")])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["stops epoch 1/10", "stops epoch 2/10", "stops"]
    assert lines[-1].startswith("stops: 2/10 epochs in ")


def test_nothing_is_printed_when_progress_is_off(monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_PROGRESS", "off")
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 2), np.float32), np.zeros(4, np.float32), epochs=2, verbose=0,
              callbacks=[EpochBar(2, "quiet")])
    assert capsys.readouterr().out == ""


def test_epoch_line_shows_losses_and_validation_values_only():
    logs = {"loss": 1.23456, "regularization_loss": 0.0, "total_loss": 1.23456, "val_auc": 0.876543,
            "accuracy": 0.5}
    assert epoch_line("ranking/click", 0, 12, logs, 2.04) == (
        "ranking/click epoch 1/12: loss 1.235, val_auc 0.8765 (2.0 s)")
    # TFRS's extra losses stay when they say something
    logs = {"loss": 1.0, "regularization_loss": 0.25, "total_loss": 1.25}
    assert epoch_line("x", 1, 3, logs, 0.5) == (
        "x epoch 2/3: loss 1, regularization_loss 0.25, total_loss 1.25 (0.5 s)")
    assert epoch_line("x", 4, 5, {}, 0.0) == "x epoch 5/5: done (0.0 s)"
