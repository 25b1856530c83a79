"""The text encoder as a TF SavedModel: raw strings in, sentence vectors out.

keras-hub runs on Keras 3, TensorFlow Recommenders on Keras 2 (``tf-keras``); models of the
two cannot be nested, but a SavedModel loaded as a ``tensorflow_hub.KerasLayer`` can.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import atomic_dir, save_module
from .bert_checkpoint import CheckpointError

if TYPE_CHECKING:
    from .text import TextEncoder


def export_encoder(encoder: TextEncoder, path: str | Path) -> Path:
    """Save the encoder, tokeniser included, as a TF SavedModel; return its path.

    Signature ``serving_default``: ``text`` (batch,) tf.string -> ``output_0`` (batch, dim)
    float32 unit vectors, padded per call to the longest text. A plain ``tf.Module``:
    Keras 3's ``ExportArchive`` stores every weight twice (177 MB instead of 90 for MiniLM).
    """
    import tensorflow as tf

    path = Path(path)
    module = tf.Module()
    # Keras 3 variables wrap tf.Variables; tracking the latter lets the saver
    # map the function's captured handles to checkpointed values.
    module.encoder_variables = [w.value for w in encoder.backbone.weights]
    module.serve = tf.function(encoder.strings_to_vectors,
                               input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    with atomic_dir(path) as tmp:
        save_module(module, tmp, signatures={"serving_default": module.serve})
    return path


def load_exported(path: str | Path, *, trainable: bool = False) -> Any:
    """Load an :func:`export_encoder` SavedModel as a ``tensorflow_hub.KerasLayer``:
    (batch,) tf.string -> (batch, dim) float32, usable inside a tf-keras model."""
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - registers the tokeniser's ops before loading

    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise CheckpointError(f"{str(path)!r} is not a SavedModel directory (no saved_model.pb); "
                              "create one with export_encoder()", source="export")
    return hub.KerasLayer(str(path), signature="serving_default", output_key="output_0",
                          trainable=trainable)


__all__ = ["export_encoder", "load_exported"]
