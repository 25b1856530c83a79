"""Keras callbacks shared by every training loop of the package.

One progress bar and one epoch clock, so that fusion, retrieval, ranking and
search models report the same way.
"""

from __future__ import annotations

import time

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

__all__ = ["EpochBar", "EpochClock"]


class EpochBar(tf.keras.callbacks.Callback):
    """One tqdm bar over epochs, showing the last epoch's losses and validation metrics."""

    def __init__(self, epochs: int, desc: str) -> None:
        super().__init__()
        from tqdm.auto import tqdm
        self.bar = tqdm(total=epochs, desc=desc, unit="epoch")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if "loss" in k or "val" in k})
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
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
