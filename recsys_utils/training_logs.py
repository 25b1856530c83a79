"""TensorBoard logs of a run: every training loop's epoch scalars and the item embeddings
for the projector, under ``<run_dir>/tensorboard/`` (``make tensorboard`` opens them).

Outside a run (no :func:`recsys_utils.runs.start_run`) nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import run_context
from .schema import DataError

#: Folder of the run directory that holds every TensorBoard log.
LOG_DIR = "tensorboard"


def log_dir(name: str) -> Path | None:
    """A new folder ``<run_dir>/tensorboard/<name>/<start time>`` (one TensorBoard run per
    training, so a re-run sits beside the last one), or ``None`` outside a run."""
    context = run_context()
    if context is None:
        return None
    root = context.artifact_dir.parent / LOG_DIR / name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = root / stamp, 1
    while path.exists():  # two trainings of one name in the same second
        n += 1
        path = root / f"{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def callbacks(name: str) -> list[Any]:
    """``[tf.keras.callbacks.TensorBoard]`` writing epoch scalars of ``model.fit`` to
    :func:`log_dir`, or ``[]`` outside a run. Put it after the callbacks that add metrics
    to the epoch's logs (a validation recall), so TensorBoard records them too."""
    path = log_dir(name)
    if path is None:
        return []
    import tensorflow as tf

    return [tf.keras.callbacks.TensorBoard(str(path), write_graph=False, profile_batch=0)]


def scalar_writer(name: str) -> Callable[[int, Mapping[str, float]], None]:
    """``write(epoch, {tag: value})`` for a hand-written training loop (the image encoder),
    to :func:`log_dir`; a no-op outside a run."""
    path = log_dir(name)
    if path is None:
        return lambda epoch, scalars: None
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(path))

    def write(epoch: int, scalars: Mapping[str, float]) -> None:
        with writer.as_default(step=epoch):
            for tag, value in scalars.items():
                tf.summary.scalar(f"epoch_{tag}", float(value))
        writer.flush()

    return write


def write_projector(name: str, vectors: np.ndarray, labels: Sequence[str]) -> Path | None:
    """Item vectors ``(n, d)`` and one label per item (its title) for TensorBoard's
    embedding projector, in :func:`log_dir`; ``None`` outside a run."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(labels) or not len(vectors):
        raise DataError(f"write_projector needs (n, d) vectors and n labels, got "
                        f"{vectors.shape} and {len(labels)}")
    path = log_dir(name)
    if path is None:
        return None
    import tensorflow as tf
    from tensorboard.plugins import projector

    # One label per line: tabs and newlines inside a title would shift every later row.
    clean = [" ".join(str(label).split()) or "(no title)" for label in labels]
    (path / "metadata.tsv").write_text("\n".join(clean) + "\n", encoding="utf-8")
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(vectors))
    checkpoint.save(str(path / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(path), config)
    return path
