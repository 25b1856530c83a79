"""The text encoder as a TF SavedModel: raw strings in, sentence vectors out.

keras-hub runs on Keras 3, TensorFlow Recommenders on Keras 2 (``tf-keras``);
models of the two cannot be nested. A SavedModel is the bridge:
:func:`export_encoder` writes the encoder, tokenizer included, and
:func:`load_exported` loads it as a ``tensorflow_hub.KerasLayer`` that composes
inside a tf-keras model, such as notebook 07's search query tower.
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

    Signature ``serving_default``: input ``text`` (batch,) tf.string, output
    ``output_0`` (batch, dim) float32 unit vectors; each call pads to its
    longest text. Load it with :func:`load_exported` (or ``tf.saved_model.load``
    after ``import tensorflow_text``, whose ops the tokeniser uses).

    Written as a plain ``tf.Module`` holding the backbone's variables and one
    ``tf.function``: Keras 3's ``ExportArchive`` stores every weight twice here
    (177 MB instead of 90 MB for MiniLM), with the same outputs.
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
    """Load an :func:`export_encoder` SavedModel as a ``tensorflow_hub.KerasLayer``.

    The layer maps a (batch,) tf.string tensor to (batch, dim) float32 and
    composes inside a tf-keras (Keras 2) model, e.g. a TFRS query tower::

        inputs = tf.keras.Input(shape=(), dtype=tf.string)
        model = tf.keras.Model(inputs, load_exported(path)(inputs))
    """
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - registers the tokeniser's ops before loading

    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise CheckpointError(f"{str(path)!r} is not a SavedModel directory (no saved_model.pb); "
                              "create one with export_encoder()", source="export")
    return hub.KerasLayer(str(path), signature="serving_default", output_key="output_0",
                          trainable=trainable)


__all__ = ["export_encoder", "load_exported"]
