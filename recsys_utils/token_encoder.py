"""The text encoder without its tokenizer, for TFLite (notebook 06): TFLite has no builtins for
the tensorflow-text tokenizer ops, so the transformer is exported alone, taking token ids, and
the helpers here tokenize in Python for it."""

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

__all__ = ["ENCODER_FLOAT_OPS", "encode_bucketed", "encoder_inputs", "encoder_samples",
           "export_token_encoder"]

#: Op types a BERT encoder must keep float under full-integer quantization
#: (``keep_float_ops``). Measured on MiniLM with everything int8: cosine to float
#: ~0.3, and the file fails at run time ("div.cc data[i] != 0"). Attention
#: (BATCH_MATMUL, TRANSPOSE, the mask's SELECT_V2, SOFTMAX): the mask's huge
#: negative logits stretch the int8 range to ~1e9, so every real logit rounds
#: to one code. LayerNorm (MEAN, SQUARED_DIFFERENCE, RSQRT): ranges too tiny for
#: per-tensor int8. Pooling (SUM, DIV): the int8 DIV rejects a token count of
#: code 0. Dynamic-range int8 keeps activations float and is the variant to ship.
ENCODER_FLOAT_OPS: tuple[str, ...] = (
    "BATCH_MATMUL", "TRANSPOSE", "SELECT_V2", "SOFTMAX", "MEAN", "SQUARED_DIFFERENCE", "RSQRT",
    "SUM", "DIV")


def export_token_encoder(encoder: Any, path: str | Path) -> Path:
    """Export a :class:`recsys_utils.text.TextEncoder`'s transformer for TFLite, atomically:
    signature ``serving_default(token_ids, padding_mask)``, both ``(batch, length)`` int32, output
    ``embedding`` ``(batch, dim)`` float32 unit vectors. The graph is the encoder's own
    ``embed_tokens`` (backbone, pooling, L2 norm), so the float model computes the same vectors
    as ``encoder.encode``. DataError if the encoder is not float32 (a bfloat16 graph is no float
    reference)."""
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
    """``{"token_ids", "padding_mask"}``, each ``(len(texts), length)`` int32, padded with the
    pad id to ``length`` (default: the longest text, at most ``encoder.max_length``)."""
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
    """``(len(texts), d)`` float32 from a TFLite token-id encoder, in input order.

    Unique texts go through ``encoder.batches`` (sorted by length, each batch padded to its longest
    text), so the TFLite model sees exactly the batches ``TextEncoder.encode`` computes."""
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
    """``full_int8`` calibration: one ``(1, own length)`` input dict per text, unpadded
    as single queries are served (padding would skew the ranges)."""
    inputs = encoder_inputs(encoder, texts)
    lengths = inputs["padding_mask"].sum(axis=1)
    return [{k: v[i:i + 1, : max(int(lengths[i]), 1)] for k, v in inputs.items()}
            for i in range(len(lengths))]
