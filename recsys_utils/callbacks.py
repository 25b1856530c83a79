"""Keras callbacks shared by every training loop of the package, so that fusion, retrieval,
ranking and search models report progress and epoch times the same way."""

from __future__ import annotations

import time

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from .progress import Progress, track

__all__ = ["EpochBar", "EpochClock", "epoch_line", "shown_metrics"]


def shown_metrics(logs: dict | None) -> dict[str, float]:
    """An epoch's losses and validation metrics, without a zero ``regularization_loss`` or a
    ``total_loss`` equal to ``loss`` (TFRS's redundant ones)."""
    shown = {k: float(v) for k, v in (logs or {}).items() if "loss" in k or "val" in k}
    if shown.get("regularization_loss") == 0.0:
        del shown["regularization_loss"]
    if "total_loss" in shown and shown["total_loss"] == shown.get("loss"):
        del shown["total_loss"]
    return shown


def epoch_line(desc: str, epoch: int, epochs: int, logs: dict | None, seconds: float) -> str:
    """``"retrieval/fused epoch 3/30: loss 812.4, val_recall@50 0.2134 (4.1 s)"``: the losses
    and validation metrics of one epoch (``epoch`` counts from 0, as Keras passes it)."""
    shown = [f"{k} {v:.4g}" for k, v in shown_metrics(logs).items()]
    return f"{desc} epoch {epoch + 1}/{epochs}: {', '.join(shown) or 'done'} ({seconds:.1f} s)"


class EpochBar(tf.keras.callbacks.Callback):
    """Progress over epochs: an :func:`epoch_line` per epoch, a summary at the end, a live bar
    in a terminal or JupyterLab. Put it after callbacks that add validation metrics to logs."""

    def __init__(self, epochs: int, desc: str) -> None:
        super().__init__()
        self.epochs = int(epochs)
        self.desc = desc
        self.bar: Progress | None = None
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = track(total=self.epochs, desc=self.desc, unit="epoch")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.bar is None:  # used without fit's train_begin
            self.on_train_begin()
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown_metrics(logs).items()})
        self.bar.write(epoch_line(self.desc, epoch, self.epochs, logs,
                                  time.perf_counter() - self._epoch_start))
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.close()


class EpochClock(tf.keras.callbacks.Callback):
    """Records each epoch's wall time (``seconds``), for throughput without the tracing epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
