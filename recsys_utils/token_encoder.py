"""The text encoder without its tokenizer, for TFLite (notebook 06).

The string-input export (:func:`recsys_utils.encoder_export.export_encoder`)
tokenizes with tensorflow-text ops that TFLite's builtins lack, so
:func:`export_token_encoder` exports the transformer alone, taking token ids, and
the helpers here tokenize in Python for it. :data:`ENCODER_FLOAT_OPS` is what its
full-integer conversion must keep float, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np

from .artifacts import atomic_dir, save_module
from .schema import DataError

if TYPE_CHECKING:
    from .tflite_conversion import TFLiteRunner

__all__ = [
    "ENCODER_FLOAT_OPS",
    "encode_bucketed",
    "encoder_inputs",
    "encoder_samples",
    "export_token_encoder",
]

#: Op types a BERT encoder keeps in float under full-integer quantization
#: (``keep_float_ops`` of :func:`recsys_utils.tflite_conversion.convert_saved_model`):
#: attention scores (BATCH_MATMUL, TRANSPOSE, the mask's SELECT_V2, SOFTMAX),
#: LayerNorm statistics (MEAN, SQUARED_DIFFERENCE, RSQRT) and the pooling's SUM /
#: DIV (the int8 DIV kernel rejected a quantized token count of code 0 at run
#: time: "div.cc data[i] != 0").
#:
#: Full-integer int8 breaks a BERT encoder unless these stay float (measured on
#: MiniLM with everything int8: cosine to float ~0.3 in the quantization
#: debugger, and the converted file fails at run time on that int8 division):
#: the attention mask adds a huge negative number to the masked attention
#: logits, so the calibrated int8 range of the logits spans ~1e9 and every real
#: logit rounds to the same code (uniform attention); LayerNorm's mean, variance
#: and reciprocal square root live in tiny ranges that per-tensor int8 cannot
#: resolve; and the residual stream has outlier dimensions. Dynamic-range int8
#: keeps every activation float and is the int8 variant to ship.
ENCODER_FLOAT_OPS: tuple[str, ...] = (
    "BATCH_MATMUL", "TRANSPOSE", "SELECT_V2", "SOFTMAX", "MEAN", "SQUARED_DIFFERENCE", "RSQRT",
    "SUM", "DIV")


def export_token_encoder(encoder: Any, path: str | Path) -> Path:
    """Export a :class:`recsys_utils.text.TextEncoder`'s transformer for TFLite.

    Signature ``serving_default(token_ids, padding_mask)``, both ``(batch,
    length)`` int32 (any batch and length), output ``embedding`` ``(batch, dim)``
    float32 unit vectors, the same vectors as ``encoder.encode`` (mean pooling;
    ``cls`` pooling is honoured too). The tokenizer stays outside
    (:func:`encoder_inputs`): its tensorflow-text ops have no TFLite builtin.
    The graph is the encoder's own :meth:`~recsys_utils.text.TextEncoder.embed_tokens`
    (backbone, masked pooling, L2 norm), so the float TFLite model is the same
    function as :meth:`encode`. Written atomically.

    Raises:
        DataError: the encoder is not float32 (a bfloat16 graph is no float reference).
    """
    import tensorflow as tf

    if getattr(encoder, "precision", "float32") != "float32":
        raise DataError(
            f"export_token_encoder needs a float32 encoder (got precision={encoder.precision!r}): "
            "the float TFLite model is the reference the quantized ones are measured against; "
            "load it with text.load_text_encoder(..., precision='float32')", source="encoder")

    def pooled(token_ids, padding_mask):
        return {"embedding": encoder.embed_tokens(token_ids, padding_mask)}

    module = tf.Module()
    module.encoder_variables = [w.value for w in encoder.backbone.weights]
    module.serve = tf.function(pooled, input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        tf.TensorSpec([None, None], tf.int32, name="padding_mask")])
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_module(module, tmp, signatures={"serving_default": module.serve})
    return path


def encoder_inputs(encoder: Any, texts: Sequence[str], length: int | None = None
                   ) -> dict[str, np.ndarray]:
    """Tokenize texts for :func:`export_token_encoder` models.

    Returns ``{"token_ids", "padding_mask"}``, each ``(len(texts), length)``
    int32, padded with the encoder's pad id to ``length`` (default: the longest
    text, at most ``encoder.max_length``).
    """
    tokens = encoder.tokenize(list(texts))
    width = length or max((len(t) for t in tokens), default=1)
    ids = np.full((len(tokens), width), encoder.pad_id, np.int32)
    mask = np.zeros((len(tokens), width), np.int32)
    for i, t in enumerate(tokens):
        t = t[:width]
        ids[i, :len(t)] = t
        mask[i, :len(t)] = 1
    return {"token_ids": ids, "padding_mask": mask}


def encode_bucketed(runner: TFLiteRunner, encoder: Any, texts: Sequence[str], *,
                    batch_size: int | None = None) -> np.ndarray:
    """Encode texts with a TFLite token-id encoder in the batches ``TextEncoder.encode`` uses.

    Duplicate texts are encoded once, and the unique texts go through
    :meth:`recsys_utils.text.TextEncoder.batches` (sorted by token length, each
    batch padded to its own longest text rounded up to ``pad_multiple``), so
    the TFLite model sees exactly the batches the Keras encoder computes (without
    a cache); rows come back in the input order.

    Returns:
        ``(len(texts), d)`` float32, the model's output rows.
    """
    unique = list(dict.fromkeys(texts))
    position = {t: i for i, t in enumerate(unique)}
    vectors: np.ndarray | None = None
    for rows, ids, mask in encoder.batches(unique, batch_size=batch_size):
        out = np.asarray(runner({"token_ids": ids, "padding_mask": mask}), np.float32)
        if vectors is None:
            vectors = np.zeros((len(unique), out.shape[-1]), np.float32)
        vectors[rows] = out
    if vectors is None:
        return np.zeros((0, 0), np.float32)
    return vectors[[position[t] for t in texts]]


def encoder_samples(encoder: Any, texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """One ``{"token_ids", "padding_mask"}`` sample per text, each ``(1, its own length)``.

    Calibration inputs for ``full_int8``: texts at their real lengths, as
    single queries are served (no padding columns to skew the ranges).
    """
    inputs = encoder_inputs(encoder, texts)
    lengths = inputs["padding_mask"].sum(axis=1)
    return [{k: v[i:i + 1, : max(int(lengths[i]), 1)] for k, v in inputs.items()}
            for i in range(len(lengths))]
