"""Quantization: TFLite variants of exported models and int8 embedding indexes (notebook 06).

Two things get smaller here, and both are measured against the float model:

**Models.** :func:`convert_saved_model` turns a SavedModel signature into a
TFLite flatbuffer in one of four modes:

* ``float32``: the plain conversion, the reference;
* ``float16``: weights stored as float16 (half the file), computed in float32;
* ``dynamic_int8``: dynamic-range quantization: weights int8 (a quarter of the
  file), activations quantized on the fly inside matrix multiplies; no
  calibration data needed;
* ``full_int8``: weights *and* activations int8, with activation ranges
  calibrated on a representative sample of real inputs. Inputs and outputs stay
  float32 (the model quantizes at its entry), and with
  ``allow_float_fallback`` an op with no int8 kernel stays float instead of
  failing the conversion. ``keep_float_ops`` keeps named op types float on
  purpose (selective quantization through
  ``tf.lite.experimental.QuantizationDebugger``).

A failed conversion never raises: the :class:`ConversionResult` records the
converter's message (e.g. "TF Select ops: StridedSlice"), so a sweep over
models and modes always completes. Each result lists the op types that still
compute in float (:func:`analyze_tflite`, read from the flatbuffer with LiteRT's
schema reader). Conversion is TensorFlow's ``tf.lite.TFLiteConverter``; the
converted models run on LiteRT's interpreter (``ai-edge-litert``), the
maintained successor of the deprecated ``tf.lite.Interpreter``.

The text encoder needs care. Its export (:func:`recsys_utils.encoder_export.export_encoder`)
takes raw strings and tokenizes with tensorflow-text ops, which TFLite builtins
do not have; :func:`export_token_encoder` exports the transformer alone, taking
``token_ids`` and ``padding_mask`` (int32, ``(batch, length)``), with
tokenization done in Python by the encoder's own tokenizer
(:func:`encoder_inputs`). Full-integer int8 breaks a BERT encoder unless some
ops stay float (measured on MiniLM with everything int8: cosine to float ~0.3
in the quantization debugger, and the converted file fails at run time on an
int8 division in the pooling): the attention mask adds a huge negative number to the masked attention
logits, so the calibrated int8 range of the logits spans ~1e9 and every real
logit rounds to the same code (uniform attention); LayerNorm's mean, variance
and reciprocal square root live in tiny ranges that per-tensor int8 cannot
resolve; and the residual stream has outlier dimensions. :data:`ENCODER_FLOAT_OPS`
keeps the attention scores and LayerNorm statistics float; dynamic-range int8
keeps every activation float and is the int8 variant to ship.

Full-integer files can be larger than dynamic-range ones: a constant table
read by two GATHER ops (the ranker looks items up for the candidate and for
the history) is stored once per lookup, because each lookup's output has its
own calibrated scale and the int8 GATHER kernel needs its table at that scale.

**Indexes.** :func:`quantize_embeddings_int8` stores an item-embedding table as
int8 codes with a per-dimension (or per-row) scale and offset, 4x smaller;
:func:`index_variants` compares it, ScaNN's int8 brute force and ScaNN's
asymmetric hashing (4 bits per 2 dimensions, 16x smaller) against exact float
search by recall@K (:func:`recsys_utils.metrics.top_k_overlap`).

**Timing.** :func:`compare_latency` times the variants of one model on the
same inputs in interleaved rounds after a warm-up, so order, warm-up and
background-load effects hit every variant alike; it reports the median and
p95 of all single queries and the median of each round (their spread shows the
noise). Single queries run on a one-thread interpreter (a sub-millisecond model
spends more time waking extra threads than computing), batch throughput on
``batch_threads`` (default all cores); both counts are stated in the results.
Import ``recsys_utils`` before TensorFlow.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd

from . import metrics, retrieval
from .artifacts import atomic_dir, atomic_path
from .features import QuerySet
from .progress import track
from .schema import DataError
from .serving import QUERY_INPUTS

__all__ = [
    "ENCODER_FLOAT_OPS",
    "MODES",
    "ConversionResult",
    "QuantizedTable",
    "TFLiteRunner",
    "TFLiteTowers",
    "Timing",
    "TowerMeasurement",
    "analyze_tflite",
    "compare_latency",
    "constant_tensors",
    "convert_all",
    "convert_saved_model",
    "cosine_rows",
    "dequantize",
    "encode_bucketed",
    "encoder_inputs",
    "encoder_samples",
    "export_token_encoder",
    "index_variants",
    "load_calibration",
    "measure_latency",
    "measure_towers",
    "measure_variants",
    "plot_tradeoff",
    "quantize_embeddings_int8",
    "scann_search",
    "size_quality_table",
]

Mode = Literal["float32", "float16", "dynamic_int8", "full_int8"]
MODES: tuple[str, ...] = get_args(Mode)

#: Op types a BERT encoder keeps in float under full-integer quantization (see
#: the module docstring): attention scores (BATCH_MATMUL, TRANSPOSE, the mask's
#: SELECT_V2, SOFTMAX), LayerNorm statistics (MEAN, SQUARED_DIFFERENCE, RSQRT)
#: and the pooling's SUM / DIV (the int8 DIV kernel rejected a quantized
#: token count of code 0 at run time: "div.cc data[i] != 0").
ENCODER_FLOAT_OPS: tuple[str, ...] = (
    "BATCH_MATMUL", "TRANSPOSE", "SELECT_V2", "SOFTMAX", "MEAN", "SQUARED_DIFFERENCE", "RSQRT",
    "SUM", "DIV")

#: Ops that only move or describe data; a float input there costs nothing.
_PLUMBING = frozenset({"SHAPE", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "STRIDED_SLICE", "SLICE",
                       "PACK", "UNPACK", "CONCATENATION", "BROADCAST_TO", "GATHER", "QUANTIZE",
                       "DEQUANTIZE", "CAST", "ZEROS_LIKE", "TRANSPOSE"})


def _tf():
    import tensorflow as tf

    return tf


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ConversionResult:
    """One TFLite conversion attempt.

    Attributes:
        mode: one of :data:`MODES`.
        ok: whether a model was produced.
        path: the ``.tflite`` file (``None`` on failure).
        size_bytes: file size (``None`` on failure).
        seconds: conversion wall time.
        error: the converter's message, shortened to the lines that say why.
        op_counts: op type -> number of ops in the converted graph.
        float_ops: op type -> number of ops computing with float32 activations
            (data movement ops such as RESHAPE are left out). For
            ``dynamic_int8`` the matrix multiplies appear here: their weights
            are int8 but inputs and outputs float ("hybrid" kernels).
        kept_float: op types deliberately kept float (``keep_float_ops``).
        weight_bytes: dtype name -> bytes of constant tensors (weights).
    """

    mode: str
    ok: bool
    path: Path | None = None
    size_bytes: int | None = None
    seconds: float = 0.0
    error: str | None = None
    op_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    float_ops: dict[str, int] = dataclasses.field(default_factory=dict)
    kept_float: tuple[str, ...] = ()
    weight_bytes: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 1e6

    @property
    def int8_weight_share(self) -> float | None:
        """Fraction of weight bytes stored as int8 (``None`` without a model)."""
        total = sum(self.weight_bytes.values())
        return None if not total else self.weight_bytes.get("int8", 0) / total

    def summary(self) -> dict[str, Any]:
        """A flat row for a table."""
        return {"mode": self.mode, "ok": self.ok, "size_mb": self.size_mb,
                "convert_s": round(self.seconds, 2),
                "int8_weight_share": self.int8_weight_share,
                "float_ops": ", ".join(f"{k}x{v}" for k, v in sorted(self.float_ops.items())),
                "kept_float": ", ".join(self.kept_float), "error": self.error}


@contextlib.contextmanager
def _native_output_to_file() -> Iterator[None]:
    """Send C++-level stdout/stderr to a temporary file while the converter runs.

    The MLIR converter writes pages of diagnostics to file descriptor 2 while
    holding the GIL. In a Jupyter kernel that descriptor is a pipe drained by a
    Python thread, so a long enough message fills the pipe and the process
    deadlocks (seen: converting the string-input encoder hung a notebook). The
    exception text keeps what matters (see :func:`_error_text`).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
    saved = []
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no such descriptors (embedded interpreter): nothing to protect
            pass
        try:
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _error_text(exc: BaseException, limit: int = 700) -> str:
    """The informative lines of a converter error (its MLIR dumps run to pages)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if ln.startswith(("TF Select ops", "Some ops are not supported"))
            or "is neither a custom op nor a flex op" in ln or "Error code" in ln]
    keep = [ln.split("): ", 1)[-1] if "loc(" in ln else ln for ln in keep]
    text = " | ".join(dict.fromkeys(keep)) or " ".join(" ".join(lines).split())
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit] + " ..."


def _signature_inputs(saved_model_dir: Path, signature_key: str) -> dict[str, Any]:
    """Input name -> TensorSpec of one signature; DataError if absent."""
    if not (saved_model_dir / "saved_model.pb").exists():
        raise DataError(f"no SavedModel at {str(saved_model_dir)!r} (no saved_model.pb)",
                        source="saved_model")
    stamp = (saved_model_dir / "saved_model.pb").stat().st_mtime_ns
    return dict(_cached_signature_inputs(str(saved_model_dir.resolve()), signature_key, stamp))


@functools.lru_cache(maxsize=16)
def _cached_signature_inputs(saved_model_dir: str, signature_key: str, stamp: int
                             ) -> tuple[tuple[str, Any], ...]:
    """Loading a 90 MB encoder takes seconds: once per (path, signature, file version)."""
    tf = _tf()
    saved_model_dir = Path(saved_model_dir)
    try:
        import tensorflow_text  # noqa: F401 - registers text ops some exports use
    except ImportError:
        pass
    loaded = tf.saved_model.load(str(saved_model_dir))
    if signature_key not in loaded.signatures:
        raise DataError(f"SavedModel {str(saved_model_dir)!r} has no signature {signature_key!r}; "
                        f"it has {sorted(loaded.signatures)}", source="saved_model")
    _, kwargs = loaded.signatures[signature_key].structured_input_signature
    return tuple(sorted(kwargs.items()))


def _samples(representative_data: Any, limit: int | None = None) -> Callable[[], Iterable[dict]]:
    """Normalise calibration data to a zero-argument callable yielding input dicts.

    Accepted: a callable returning an iterable of ``{name: array}``; an
    iterable (list) of such dicts; or one ``{name: (n, ...) array}`` mapping,
    split into single-row samples.
    """
    if representative_data is None:
        raise DataError("full_int8 needs representative_data: real model inputs to calibrate "
                        "activation ranges", source="representative_data")
    if callable(representative_data):
        source = representative_data
    elif isinstance(representative_data, Mapping):
        arrays = {k: np.asarray(v) for k, v in representative_data.items()}
        n = len(next(iter(arrays.values())))
        n = n if limit is None else min(n, limit)

        def source():
            for i in range(n):
                yield {k: v[i:i + 1] for k, v in arrays.items()}
    else:
        items = list(representative_data)
        def source():
            return iter(items)

    def gen():
        for count, sample in enumerate(source()):
            if limit is not None and count >= limit:
                break
            if not isinstance(sample, Mapping):
                raise DataError("each representative sample must be a {input name: array} dict, "
                                f"got {type(sample).__name__}", source="representative_data")
            yield {k: np.asarray(v) for k, v in sample.items()}
    return gen


def _cast_samples(gen: Callable[[], Iterable[dict]], specs: Mapping[str, Any]
                  ) -> Callable[[], Iterable[dict]]:
    """Cast calibration samples to the signature's dtypes; check the names."""
    def cast():
        for sample in gen():
            missing = set(specs) - set(sample)
            if missing:
                raise DataError(f"representative sample lacks inputs {sorted(missing)}; the "
                                f"signature takes {sorted(specs)}", source="representative_data")
            yield {k: sample[k].astype(specs[k].dtype.as_numpy_dtype) for k in specs}
    return cast


def convert_saved_model(
    saved_model_dir: str | Path,
    mode: Mode,
    *,
    out_path: str | Path | None = None,
    representative_data: Any = None,
    signature_key: str = "serving_default",
    allow_float_fallback: bool = True,
    keep_float_ops: Sequence[str] = (),
    calibration_limit: int | None = 200,
) -> ConversionResult:
    """Convert one SavedModel signature to TFLite; never raises on a converter failure.

    Args:
        saved_model_dir: a SavedModel directory.
        mode: ``"float32"``, ``"float16"``, ``"dynamic_int8"`` or ``"full_int8"``.
        out_path: where to write the flatbuffer (default:
            ``<saved_model_dir>.<mode>.tflite``); written atomically.
        representative_data: calibration inputs for ``full_int8`` (ignored
            otherwise): a callable returning an iterable of ``{input name:
            (1, ...) array}`` dicts, such an iterable, or one ``{input name:
            (n, ...) array}`` mapping (split into rows). Use real inputs: the
            activation ranges come from them.
        signature_key: the signature to convert.
        allow_float_fallback: ``full_int8`` only: ``True`` lets ops without an
            int8 kernel stay float; ``False`` demands int8 builtins for every
            compute op (the result is a recorded failure naming the ops that
            would stay float).
        keep_float_ops: ``full_int8`` only: op types (TFLite names such as
            ``"SOFTMAX"``) to keep float on purpose; see :data:`ENCODER_FLOAT_OPS`.
            Needs ``allow_float_fallback`` (keeping ops float is a fallback).
        calibration_limit: at most this many calibration samples.

    Returns:
        A :class:`ConversionResult`; ``ok=False`` with ``error`` set when the
        converter failed.

    Raises:
        DataError: unknown mode, no SavedModel / signature at the path, or
            ``keep_float_ops`` without ``allow_float_fallback`` (the caller's
            mistake, not a property of the model).
    """
    tf = _tf()
    if mode not in MODES:
        raise DataError(f"mode must be one of {MODES}, got {mode!r}", source="mode")
    if mode == "full_int8" and keep_float_ops and not allow_float_fallback:
        raise DataError(f"keep_float_ops={tuple(keep_float_ops)} keeps ops float, which "
                        "allow_float_fallback=False forbids: the conversion could only fail",
                        source="keep_float_ops")
    saved_model_dir = Path(saved_model_dir)
    specs = _signature_inputs(saved_model_dir, signature_key)
    out_path = Path(out_path) if out_path else saved_model_dir.with_name(
        f"{saved_model_dir.name}.{mode}.tflite")
    kept = tuple(keep_float_ops) if mode == "full_int8" else ()
    start = time.perf_counter()
    try:
        with _native_output_to_file(), warnings.catch_warnings():
            # Full-integer conversion (and the quantization debugger) builds a tf.lite.Interpreter
            # inside TensorFlow, which warns that LiteRT replaces it: the course runs models on
            # LiteRT (TFLiteRunner), so only that warning is dropped.
            warnings.filterwarnings("ignore", r"\s*Warning: tf\.lite\.Interpreter is deprecated",
                                    UserWarning)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                                 signature_keys=[signature_key])
            if mode == "float16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            elif mode == "dynamic_int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            elif mode == "full_int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                rep = _cast_samples(_samples(representative_data, calibration_limit), specs)
                converter.representative_dataset = rep
                if not allow_float_fallback:
                    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if kept:
                # Selective quantization: the debugger re-runs calibration and
                # leaves the denylisted op types in float.
                options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(kept))
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=rep, debug_options=options)
                model = debugger.get_nondebug_quantized_model()
            else:
                model = converter.convert()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed mode is a result, not a crash
        return ConversionResult(mode, ok=False, seconds=time.perf_counter() - start,
                                error=_error_text(exc), kept_float=kept)
    seconds = time.perf_counter() - start
    report = analyze_tflite(model)
    if mode == "full_int8" and not allow_float_fallback and report["float_ops"]:
        # TFLITE_BUILTINS_INT8 alone does not stop the converter from leaving
        # an op float, so the promise "every op int8" is checked here.
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(report["float_ops"].items()))
        return ConversionResult(mode, ok=False, seconds=seconds, kept_float=kept,
                                error=f"ops without an int8 kernel stayed float: {ops}")
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(model)
    return ConversionResult(mode, ok=True, path=out_path, size_bytes=out_path.stat().st_size,
                            seconds=seconds, kept_float=kept, **report)


def convert_all(
    saved_model_dir: str | Path,
    out_dir: str | Path,
    name: str,
    *,
    representative_data: Any = None,
    modes: Sequence[str] = MODES,
    keep_float_ops: Sequence[str] = (),
    signature_key: str = "serving_default",
    progress: bool = True,
) -> list[ConversionResult]:
    """Convert one SavedModel in every mode to ``out_dir/<name>.<mode>.tflite``.

    Failures are recorded in their result; the sweep always completes.
    """
    out_dir = Path(out_dir)
    results = []
    for mode in track(list(modes), desc=f"converting {name}", unit="mode", disable=not progress):
        results.append(convert_saved_model(
            saved_model_dir, mode, out_path=out_dir / f"{name}.{mode}.tflite",
            representative_data=representative_data, signature_key=signature_key,
            keep_float_ops=keep_float_ops))
    return results


def _numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a TFLite tensor type (the schema's ``TensorType`` name, e.g.
    ``FLOAT32``); types numpy lacks (string, resource, int4, bfloat16...) give ``object``."""
    try:
        return np.dtype(name.lower())
    except TypeError:
        return np.dtype(object)


def _graph(model: str | Path | bytes) -> tuple[dict[int, dict], list[dict], set[int], set[int]]:
    """Tensor details by index, op details, activation and constant tensor indices.

    Read from the flatbuffer itself with LiteRT's schema reader
    (``ai_edge_litert.tools.flatbuffer_utils``), main subgraph: the interpreter's
    only op-level view is private (``_get_ops_details``) and the public
    ``tf.lite.experimental.Analyzer`` prints its report as text. Same fields as
    the interpreter's ``get_tensor_details``: ``index``, ``name``, ``shape``, ``dtype``.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    if isinstance(model, bytes):
        tree = flatbuffer_utils.read_model_from_bytearray(model)
    else:
        if not Path(model).is_file():
            raise DataError(f"no TFLite model at {str(model)!r}", source="tflite")
        tree = flatbuffer_utils.read_model(str(model))
    graph = tree.subgraphs[0]
    details = {}
    for i, tensor in enumerate(graph.tensors):
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        details[i] = {"index": i, "name": name, "shape": np.asarray(tensor.shape, np.int32),
                      "dtype": _numpy_dtype(flatbuffer_utils.type_to_name(tensor.type))}
    ops = []
    for op in graph.operators:
        code = tree.operatorCodes[op.opcodeIndex]
        name = flatbuffer_utils.opcode_to_name(tree, op.opcodeIndex)
        if name == "CUSTOM" and code.customCode:  # a custom op is known by its own name
            name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        ops.append({"op_name": name, "inputs": list(op.inputs), "outputs": list(op.outputs)})
    produced = {i for op in ops for i in op["outputs"]}
    activations = produced | set(graph.inputs)
    constants = {i for op in ops for i in op["inputs"]
                 if i >= 0 and i not in activations and i in details}
    return details, ops, activations, constants


def _nbytes(detail: Mapping[str, Any]) -> int:
    return int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize


def analyze_tflite(model: str | Path | bytes) -> dict[str, Any]:
    """Op inventory of a TFLite model.

    Returns:
        ``{"op_counts": {op: n}, "float_ops": {op: n}, "weight_bytes": {dtype: bytes}}``
        where ``float_ops`` counts compute ops with a float32 activation
        (non-constant) input or output, and ``weight_bytes`` sums constant
        tensors by dtype.
    """
    details, ops, activations, constants = _graph(model)
    op_counts: collections.Counter[str] = collections.Counter()
    float_ops: collections.Counter[str] = collections.Counter()
    for op in ops:
        name = op["op_name"]
        op_counts[name] += 1
        tensors = [i for i in [*op["inputs"], *op["outputs"]] if i >= 0 and i in details]
        if name not in _PLUMBING and any(
                details[i]["dtype"] == np.float32 for i in tensors if i in activations):
            float_ops[name] += 1
    weight_bytes: collections.Counter[str] = collections.Counter()
    for i in constants:
        weight_bytes[np.dtype(details[i]["dtype"]).name] += _nbytes(details[i])
    return {"op_counts": dict(op_counts), "float_ops": dict(float_ops),
            "weight_bytes": dict(weight_bytes)}


def constant_tensors(model: str | Path | bytes) -> pd.DataFrame:
    """The constant tensors (weights, embedding tables) of a TFLite model, largest first.

    Shows what a file stores, e.g. an embedding table kept twice by a
    full-integer conversion (see the module docstring).

    Returns:
        DataFrame: ``name``, ``shape`` (tuple), ``dtype``, ``bytes``.
    """
    details, _, _, constants = _graph(model)
    rows = [{"name": details[i]["name"], "shape": tuple(int(v) for v in details[i]["shape"]),
             "dtype": np.dtype(details[i]["dtype"]).name, "bytes": _nbytes(details[i])}
            for i in sorted(constants)]
    frame = pd.DataFrame(rows, columns=["name", "shape", "dtype", "bytes"])
    return frame.sort_values("bytes", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------
# Running and timing
# --------------------------------------------------------------------------


class TFLiteRunner:
    """Run a ``.tflite`` model on numpy batches: ``runner(inputs) -> outputs``.

    The interpreter is LiteRT's (``ai_edge_litert.interpreter.Interpreter``), the
    maintained successor of the deprecated ``tf.lite.Interpreter``: the same
    kernels and the same outputs (tested on every conversion mode).

    Args:
        path: the flatbuffer.
        num_threads: interpreter threads (default: all cores). The XNNPACK
            delegate is applied by default to float ops.
        signature_key: the signature to call.

    ``inputs`` is ``{input name: (batch, ...) array}`` (a bare array for a
    single-input model); inputs are resized to each call's batch and cast to
    the model's dtypes. Returns the output array for a single-output model,
    else ``{output name: array}``.

    Raises:
        DataError: no model at ``path`` (``None``: a conversion that failed).
    """

    def __init__(self, path: str | Path | None, num_threads: int | None = None,
                 signature_key: str = "serving_default") -> None:
        from ai_edge_litert.interpreter import Interpreter

        if path is None:
            raise DataError("no TFLite model (path is None): this variant did not convert; "
                            "its ConversionResult.error says why", source="tflite")
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"no TFLite model at {str(self.path)!r}", source="tflite")
        self.num_threads = int(num_threads or os.cpu_count() or 1)
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
        self._runner = self.interpreter.get_signature_runner(signature_key)
        self.input_details = self._runner.get_input_details()
        self.output_names = sorted(self._runner.get_output_details())

    def __call__(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> Any:
        if not isinstance(inputs, Mapping):
            if len(self.input_details) != 1:
                raise DataError(f"model takes inputs {sorted(self.input_details)}; pass a dict",
                                source="tflite")
            inputs = {next(iter(self.input_details)): inputs}
        missing = set(self.input_details) - set(inputs)
        if missing:
            raise DataError(f"missing model inputs {sorted(missing)}; the model takes "
                            f"{sorted(self.input_details)}", source="tflite")
        feed = {k: np.asarray(inputs[k]).astype(d["dtype"], copy=False)
                for k, d in self.input_details.items()}
        out = self._runner(**feed)
        return out[self.output_names[0]] if len(self.output_names) == 1 else out

    def predict(self, inputs: Mapping[str, np.ndarray] | np.ndarray, batch_size: int = 256) -> Any:
        """Run ``(n, ...)`` inputs in batches and concatenate the outputs."""
        n = _n_rows(inputs)
        if n == 0:
            raise DataError("predict needs at least one input row", source="tflite")
        outs = [self(_rows(inputs, s, s + batch_size)) for s in range(0, n, batch_size)]
        if isinstance(outs[0], Mapping):
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        return np.concatenate(outs)


@dataclasses.dataclass
class Timing:
    """CPU cost of one model variant.

    Attributes:
        median_ms, p95_ms: single-query (batch of one) latency over all
            ``rounds * repeats`` timed calls.
        throughput: rows per second on batches of ``batch_size`` (median over
            the timed batch calls; NaN when batches were not timed).
        repeats: timed single queries per round; rounds: interleaved rounds.
        batch_size: rows per batch call (0: not timed).
        num_threads: threads of the single-query function (its ``num_threads``).
        batch_threads: threads of the batch function.
        round_medians_ms: ``(rounds,)`` median single-query latency of each
            round; their spread shows how much of a difference is noise.
    """

    median_ms: float
    p95_ms: float
    throughput: float
    repeats: int
    batch_size: int
    num_threads: int | None = None
    batch_threads: int | None = None
    rounds: int = 1
    round_medians_ms: tuple[float, ...] = ()

    @property
    def spread_ms(self) -> tuple[float, float]:
        """``(fastest, slowest)`` round median."""
        values = self.round_medians_ms or (self.median_ms,)
        return min(values), max(values)


def _n_rows(inputs: Mapping[str, np.ndarray] | np.ndarray) -> int:
    return len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)


def _rows(inputs: Mapping[str, np.ndarray] | np.ndarray, start: int, stop: int) -> Any:
    if isinstance(inputs, Mapping):
        return {k: np.asarray(v)[start:stop] for k, v in inputs.items()}
    return np.asarray(inputs)[start:stop]


def compare_latency(
    fns: Mapping[str, Callable[[Any], Any]],
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    *,
    batch_fns: Mapping[str, Callable[[Any], Any]] | None = None,
    rounds: int = 3,
    repeats: int = 20,
    warmup: int = 5,
    batch_size: int = 64,
    batch_repeats: int = 3,
) -> dict[str, Timing]:
    """Single-query latency and batch throughput of several functions, measured alike.

    Every function is first warmed up (``warmup`` single calls and one batch
    call). Then, ``rounds`` times, each function in turn (the order rotates
    every round) is timed on ``repeats`` single rows, the same rows for all
    functions in a round, and on ``batch_repeats`` batches. Interleaving makes
    warm-up, order and background-load effects hit every function alike; each
    timed block starts with one untimed call (a shape change re-allocates a
    TFLite interpreter's tensors).

    Args:
        fns: name -> single-query function, called with a one-row slice of
            ``inputs`` (same type: a dict of arrays or an array), e.g. a
            one-thread :class:`TFLiteRunner`.
        inputs: ``(n, ...)`` rows; single queries cycle through them.
        batch_fns: name -> function for the batch calls (default: ``fns``;
            ``{}`` skips throughput), e.g. a runner with more threads.
        batch_size: rows per batch call (capped at ``n``).

    Returns:
        name -> :class:`Timing`; thread counts are read from each function's
        ``num_threads`` attribute when it has one.
    """
    n = _n_rows(inputs)
    if n == 0:
        raise DataError("timing needs at least one input row")
    if not fns:
        raise DataError("compare_latency needs at least one function to time")
    if rounds < 1 or repeats < 1:
        raise DataError(f"rounds and repeats must be >= 1, got {rounds}, {repeats}")
    batch_fns = dict(fns) if batch_fns is None else dict(batch_fns)
    unknown = set(batch_fns) - set(fns)
    if unknown:
        raise DataError(f"batch_fns has names without a single-query function: {sorted(unknown)}")
    b = min(batch_size, n) if batch_fns and batch_size > 0 else 0
    batch = _rows(inputs, 0, b)
    names = list(fns)
    for name in names:
        for i in range(warmup):
            fns[name](_rows(inputs, i % n, i % n + 1))
        if name in batch_fns:
            batch_fns[name](batch)
    single = {name: np.empty((rounds, repeats)) for name in names}
    batch_seconds: dict[str, list[float]] = {name: [] for name in batch_fns}
    for r in range(rounds):
        rows = [(r * repeats + i) % n for i in range(repeats)]
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            fn(_rows(inputs, rows[0], rows[0] + 1))
            for i, row in enumerate(rows):
                x = _rows(inputs, row, row + 1)
                start = time.perf_counter()
                fn(x)
                single[name][r, i] = time.perf_counter() - start
            if name in batch_fns:
                batch_fns[name](batch)
                for _ in range(batch_repeats):
                    start = time.perf_counter()
                    batch_fns[name](batch)
                    batch_seconds[name].append(time.perf_counter() - start)
    out = {}
    for name in names:
        times = single[name] * 1e3
        seconds = batch_seconds.get(name)
        out[name] = Timing(
            median_ms=float(np.median(times)), p95_ms=float(np.percentile(times, 95)),
            throughput=float(b / np.median(seconds)) if seconds else float("nan"),
            repeats=repeats, batch_size=b if seconds else 0,
            num_threads=getattr(fns[name], "num_threads", None),
            batch_threads=getattr(batch_fns[name], "num_threads", None) if seconds else None,
            rounds=rounds, round_medians_ms=tuple(float(v) for v in np.median(times, axis=1)))
    return out


def measure_latency(
    fn: Callable[[Any], Any],
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    *,
    repeats: int = 50,
    warmup: int = 3,
    batch_size: int = 64,
    batch_repeats: int = 3,
    num_threads: int | None = None,
) -> Timing:
    """Single-query latency and batch throughput of one function on CPU.

    :func:`compare_latency` with one function and one round; to compare
    variants, time them together with :func:`compare_latency` instead.

    Args:
        fn: called with a slice of ``inputs`` (same type: a dict of arrays or an
            array), e.g. a :class:`TFLiteRunner`.
        inputs: ``(n, ...)`` rows; single queries cycle through them.
        repeats: timed single-row calls (after ``warmup``).
        batch_size: rows per call for throughput (capped at ``n``).
        batch_repeats: timed batch calls; throughput uses their median.
        num_threads: recorded in the result (``fn``'s own setting); taken from
            ``fn.num_threads`` when not given.

    (``recsys_utils.serving.measure_latency`` times TFRS indexes by user id; this
    one times any callable on array inputs.)
    """
    timing = compare_latency({"fn": fn}, inputs, rounds=1, repeats=repeats, warmup=warmup,
                             batch_size=batch_size, batch_repeats=batch_repeats)["fn"]
    if num_threads is not None:
        timing.num_threads = timing.batch_threads = num_threads
    return timing


def _as_by_mode(results: Mapping[str, ConversionResult] | Sequence[ConversionResult]
                ) -> dict[str, ConversionResult]:
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    return {r.mode: r for r in items}


def _run_time_error(exc: BaseException) -> str:
    return f"run time: {' '.join(str(exc).split())[:300]}"


def measure_variants(
    results: Mapping[str, ConversionResult] | Sequence[ConversionResult],
    *,
    model: str,
    quality: Callable[[str, TFLiteRunner], float],
    quality_metric: str,
    timing_inputs: Mapping[str, np.ndarray] | np.ndarray,
    batch_threads: int | None = None,
    latency_threads: int = 1,
    repeats: int = 20,
    rounds: int = 3,
    batch_size: int = 32,
    extra_bytes: Mapping[str, int] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Size, CPU cost and quality of each converted variant of one model.

    Quality is computed first, variant by variant, on a runner with
    ``batch_threads``; then the variants whose quality ran are timed together
    by :func:`compare_latency` (interleaved rounds): single queries on a
    runner with ``latency_threads`` (default 1), batches of ``batch_size`` on
    the ``batch_threads`` runner.

    Args:
        results: the conversions (e.g. from :func:`convert_all`); failed ones
            get a row with their error and no measurements.
        model: the model's name in the table.
        quality: ``quality(mode, runner) -> float`` on held-out data (cosine to
            float, Recall@10, RMSE, ...). A ``RuntimeError`` or ``ValueError``
            inside (an int8 kernel can fail at run time) is recorded in
            ``error``, not raised; a :class:`DataError` (the caller's mistake)
            is raised.
        quality_metric: what ``quality`` measures, for the table and plots.
        timing_inputs: ``(n, ...)`` rows for :func:`compare_latency`.
        batch_threads: interpreter threads for quality and throughput
            (``None``: all cores).
        latency_threads: interpreter threads for single queries.
        repeats, rounds: timed single queries per round, interleaved rounds.
        extra_bytes: mode -> bytes to add to the file size (e.g. a second
            tower that ships with this one).

    Returns:
        DataFrame, one row per mode: ``model, variant, ok, size_mb, median_ms,
        p95_ms, round_min_ms, round_max_ms, throughput, num_threads`` (threads
        of the single-query timings), ``batch_threads, quality,
        quality_metric, float_ops, kept_float, error``.
    """
    batch_threads = int(batch_threads or os.cpu_count() or 1)
    rows, runners = {}, {}
    for r in track(list(_as_by_mode(results).values()), desc=f"quality of {model}", unit="variant",
                  disable=not progress):
        row = {"model": model, "variant": r.mode, "ok": r.ok, "size_mb": r.size_mb,
               "median_ms": np.nan, "p95_ms": np.nan, "round_min_ms": np.nan,
               "round_max_ms": np.nan, "throughput": np.nan, "num_threads": latency_threads,
               "batch_threads": batch_threads, "quality": np.nan, "quality_metric": quality_metric,
               "float_ops": ", ".join(f"{k} x{v}" for k, v in sorted(r.float_ops.items())),
               "kept_float": ", ".join(r.kept_float), "error": r.error}
        rows[r.mode] = row
        if not r.ok:
            continue
        if extra_bytes and r.mode in extra_bytes:
            row["size_mb"] = (r.size_bytes + extra_bytes[r.mode]) / 1e6
        runner = TFLiteRunner(r.path, num_threads=batch_threads)
        try:
            row["quality"] = float(quality(r.mode, runner))
        except DataError:
            raise
        except (RuntimeError, ValueError) as exc:
            row["ok"], row["error"] = False, _run_time_error(exc)
            continue
        single = (runner if latency_threads == batch_threads
                  else TFLiteRunner(r.path, num_threads=latency_threads))
        runners[r.mode] = (single, runner)
    for mode, (single, batch) in list(runners.items()):
        try:  # a kernel that fails on the timing inputs is recorded, not timed
            single(_rows(timing_inputs, 0, 1))
            batch(_rows(timing_inputs, 0, batch_size))
        except DataError:
            raise
        except (RuntimeError, ValueError) as exc:
            rows[mode]["ok"], rows[mode]["error"] = False, _run_time_error(exc)
            del runners[mode]
    if runners:
        timings = compare_latency({m: single for m, (single, _) in runners.items()}, timing_inputs,
                                  batch_fns={m: batch for m, (_, batch) in runners.items()},
                                  rounds=rounds, repeats=repeats, batch_size=batch_size)
        for mode, timing in timings.items():
            fastest, slowest = timing.spread_ms
            rows[mode].update(median_ms=timing.median_ms, p95_ms=timing.p95_ms,
                              round_min_ms=fastest, round_max_ms=slowest,
                              throughput=timing.throughput, num_threads=timing.num_threads,
                              batch_threads=timing.batch_threads)
    return pd.DataFrame(list(rows.values()))


class TFLiteTowers:
    """Query and item towers exported by ``serving.export_towers``, run by TFLite.

    Has ``variant``, ``query_embeddings(features)`` and ``item_embeddings()``
    like a :class:`~recsys_utils.retrieval.RetrievalResult`, so
    :func:`recsys_utils.retrieval.evaluate_retrieval` scores a quantized pair.
    The query tower takes :data:`recsys_utils.serving.QUERY_INPUTS`.
    """

    def __init__(self, query: TFLiteRunner, item: TFLiteRunner, n_items: int,
                 variant: str = "tflite", batch_size: int = 256) -> None:
        self.query, self.item, self.n_items = query, item, int(n_items)
        self.variant, self.batch_size = variant, batch_size

    def query_embeddings(self, features: Mapping[str, np.ndarray], batch_size: int | None = None
                         ) -> np.ndarray:
        """``(n, D)`` float32 from query feature arrays (each ``(n, ...)``)."""
        inputs = {k: np.asarray(features[k]) for k in QUERY_INPUTS}
        return np.asarray(self.query.predict(inputs, batch_size or self.batch_size), np.float32)

    def item_embeddings(self, batch_size: int | None = None) -> np.ndarray:
        """``(n_items, D)`` float32 embeddings of the whole catalogue."""
        items = np.arange(self.n_items, dtype=np.int32)
        return np.asarray(self.item.predict({"item": items}, batch_size or self.batch_size),
                          np.float32)


@dataclasses.dataclass
class TowerMeasurement:
    """Every variant of the query + item tower pair, measured (:func:`measure_towers`).

    Attributes:
        table: :func:`measure_variants` rows; ``quality`` is Recall@k.
        ranked: mode -> ``(n_queries, k)`` top-k item indices of that pair.
        agreement: mode -> mean share of the reference pair's top-k lists that
            the mode's lists contain (:func:`recsys_utils.metrics.top_k_overlap`).
        query_vectors: ``(n_queries, D)`` from the reference query tower (``None``
            when it did not run).
        item_vectors: ``(n_items, D)`` from the reference item tower.
        recall_interval: mode -> 95% bootstrap interval over queries of the
            mode's Recall@k minus the reference's (paired: the same queries).
            A loss whose interval holds 0 is within the query sample's noise.
    """

    table: pd.DataFrame
    ranked: dict[str, np.ndarray]
    agreement: dict[str, float]
    query_vectors: np.ndarray | None
    item_vectors: np.ndarray | None
    recall_interval: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def measure_towers(
    query_results: Mapping[str, ConversionResult] | Sequence[ConversionResult],
    item_results: Mapping[str, ConversionResult] | Sequence[ConversionResult],
    queries: QuerySet,
    n_items: int,
    *,
    k: int = 10,
    reference: str = "float32",
    batch_threads: int | None = None,
    latency_threads: int = 1,
    repeats: int = 20,
    rounds: int = 3,
    batch_size: int = 32,
    progress: bool = True,
) -> TowerMeasurement:
    """Size, query-tower latency and Recall@k of each tower pair variant.

    Each mode pairs the query tower and the item tower converted in that mode.
    Quality ranks the whole catalogue for every query (the user's training
    items removed: ``queries.exclude``) with
    :func:`recsys_utils.retrieval.rank_items` and scores the lists with
    :func:`recsys_utils.metrics.retrieval_metrics` against
    ``queries.relevant``, as :func:`~recsys_utils.retrieval.evaluate_retrieval`
    does; each pair embeds and ranks once. The size is both files; latency is
    the query tower's (item vectors are computed offline). A mode whose item
    tower did not convert gets a failed row saying so.

    Args:
        query_results, item_results: conversions of the two towers, by mode.
        queries: the evaluation queries (``features`` hold
            :data:`recsys_utils.serving.QUERY_INPUTS`).
        n_items: catalogue size (item tower inputs are ``0 .. n_items - 1``).
        k: the cut-off of Recall@k and of the agreement.
        reference: the mode the agreement compares with and whose vectors
            are returned.
        batch_threads, latency_threads, repeats, rounds, batch_size: as in
            :func:`measure_variants`.
    """
    query_by_mode, item_by_mode = _as_by_mode(query_results), _as_by_mode(item_results)
    pairs = {}
    for mode, q in query_by_mode.items():
        item = item_by_mode.get(mode)
        if q.ok and (item is None or not item.ok):
            why = "was not converted" if item is None else f"did not convert: {item.error}"
            q = dataclasses.replace(q, ok=False, path=None, size_bytes=None,
                                    error=f"item tower {mode} {why}")
        pairs[mode] = q
    ranked: dict[str, np.ndarray] = {}
    vectors: dict[str, np.ndarray] = {}

    def recall(mode: str, query_runner: TFLiteRunner) -> float:
        towers = TFLiteTowers(query_runner, TFLiteRunner(item_by_mode[mode].path,
                                                         num_threads=query_runner.num_threads),
                              n_items, variant=mode)
        query_vectors, item_vectors = towers.query_embeddings(queries.features), towers.item_embeddings()
        ranked[mode] = retrieval.rank_items(query_vectors, item_vectors, k, exclude=queries.exclude)
        if mode == reference:
            vectors.update(query=query_vectors, item=item_vectors)
        return metrics.retrieval_metrics(ranked[mode], queries.relevant, ks=(k,))[f"recall@{k}"]

    table = measure_variants(
        pairs, model="towers", quality=recall, quality_metric=f"Recall@{k}",
        timing_inputs={name: queries.features[name] for name in QUERY_INPUTS},
        extra_bytes={m: r.size_bytes for m, r in item_by_mode.items() if r.ok},
        batch_threads=batch_threads, latency_threads=latency_threads, repeats=repeats,
        rounds=rounds, batch_size=batch_size, progress=progress)
    agreement, interval = {}, {}
    if reference in ranked:
        per_query = {mode: metrics.retrieval_metrics(lists, queries.relevant, ks=(k,),
                                                     per_query=True)[f"recall@{k}"]
                     for mode, lists in ranked.items()}
        for mode, lists in ranked.items():
            agreement[mode] = float(metrics.top_k_overlap(lists, ranked[reference], k).mean())
            interval[mode] = metrics.bootstrap_ci((per_query[mode] - per_query[reference]).to_numpy())
    return TowerMeasurement(table, ranked, agreement, vectors.get("query"), vectors.get("item"),
                            interval)


def load_calibration(saved_model_dir: str | Path) -> dict[str, np.ndarray]:
    """The ``calibration.npz`` written beside an exported SavedModel, as ``{input: (n, ...)}``."""
    path = Path(saved_model_dir) / "calibration.npz"
    if not path.exists():
        raise DataError(f"no calibration.npz in {str(saved_model_dir)!r}; pass representative "
                        "inputs explicitly", source="calibration")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


# --------------------------------------------------------------------------
# The text encoder without its tokenizer
# --------------------------------------------------------------------------


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
    tf = _tf()
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
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
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


# --------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, d)`` arrays -> ``(n,)``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise DataError(f"shapes differ: {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(denom, 1e-12)


# --------------------------------------------------------------------------
# Embedding tables
# --------------------------------------------------------------------------


@dataclasses.dataclass
class QuantizedTable:
    """An int8 embedding table: ``table ≈ codes * scale + offset``.

    Attributes:
        codes: ``(n, d)`` int8 in [-127, 127].
        scale, offset: ``(1, d)`` (per dimension) or ``(n, 1)`` (per row) float32.
        per: ``"dimension"`` or ``"row"``.
    """

    codes: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    per: str

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale.nbytes + self.offset.nbytes)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """``(n_queries, n)`` dot products with the dequantized table.

        Computed as ``(q * scale) @ codes.T + q @ offset.T`` for per-dimension
        tables, without building the dequantized table. numpy has no int8
        matrix multiply, so each call still converts the codes to a float32
        copy: this shows what int8 storage costs in accuracy, not int8 speed
        (ScaNN's int8 scoring in :func:`index_variants` has real int8 kernels).
        """
        q = np.asarray(queries, np.float32)
        if self.per == "dimension":
            return (q * self.scale) @ self.codes.T.astype(np.float32) + q @ self.offset.T
        # Per row: q . (s_i c_i + o_i 1) = s_i (q . c_i) + o_i sum(q).
        return (q @ self.codes.T.astype(np.float32)) * self.scale.T + q.sum(1, keepdims=True) * self.offset.T


def quantize_embeddings_int8(table: np.ndarray, per: Literal["dimension", "row"] = "dimension"
                             ) -> QuantizedTable:
    """Scalar-quantize a float table to int8, symmetric around each slice's midpoint.

    Each dimension (``per="dimension"``) or row (``per="row"``) is mapped
    linearly from ``[min, max]`` onto ``[-127, 127]``: ``offset = (max + min) / 2``,
    ``scale = (max - min) / 254``; the worst rounding error is ``scale / 2``.

    Args:
        table: ``(n, d)`` finite floats.

    Returns:
        A :class:`QuantizedTable` (about 4x smaller than float32).
    """
    x = np.asarray(table, np.float32)
    if x.ndim != 2 or x.size == 0:
        raise DataError(f"table must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("table contains NaN or inf")
    if per not in ("dimension", "row"):
        raise DataError(f"per must be 'dimension' or 'row', got {per!r}")
    axis = 0 if per == "dimension" else 1
    lo, hi = x.min(axis=axis, keepdims=True), x.max(axis=axis, keepdims=True)
    offset = (hi + lo) / 2
    scale = np.maximum((hi - lo) / 254.0, 1e-12).astype(np.float32)
    codes = np.clip(np.rint((x - offset) / scale), -127, 127).astype(np.int8)
    return QuantizedTable(codes, scale, offset.astype(np.float32), per)


def dequantize(q: QuantizedTable) -> np.ndarray:
    """``(n, d)`` float32 reconstruction ``codes * scale + offset``."""
    return q.codes.astype(np.float32) * q.scale + q.offset


def scann_search(
    queries: np.ndarray,
    table: np.ndarray,
    k: int = 10,
    *,
    scoring: Literal["int8", "ah"] = "ah",
    dimensions_per_block: int = 2,
    anisotropic_quantization_threshold: float = 0.2,
    reorder: int | None = None,
    seed_threads: int = 1,
) -> tuple[np.ndarray, Any]:
    """Top-k by a ScaNN searcher with quantized scoring over the whole table (no tree).

    Args:
        scoring: ``"int8"``: brute force over int8 scalar-quantized rows
            (ScaNN's ``score_brute_force(quantize=INT8)``); ``"ah"``: asymmetric
            hashing, each block of ``dimensions_per_block`` dimensions coded as
            one of 16 centres (4 bits), scored against the float query through
            lookup tables; anisotropic loss weights the error parallel to the
            vector (what matters for dot products) by the threshold.
        reorder: re-score this many AH candidates with exact float dot products
            (``None``: report the quantized ranking itself).

    Returns:
        ``(indices (n_queries, k) int64, searcher)``.
    """
    from scann import scann_ops_pybind
    from scann.scann_ops.py.scann_builder import ReorderType

    db = np.ascontiguousarray(table, np.float32)
    builder = scann_ops_pybind.builder(db, k, "dot_product")
    builder.set_n_training_threads(seed_threads)
    if scoring == "int8":
        builder = builder.score_brute_force(quantize=ReorderType.INT8)
    elif scoring == "ah":
        if len(db) < 16:
            raise DataError(f"asymmetric hashing needs >= 16 rows to train, got {len(db)}")
        builder = builder.score_ah(dimensions_per_block,
                                   anisotropic_quantization_threshold=anisotropic_quantization_threshold,
                                   training_sample_size=len(db))
        if reorder:
            builder = builder.reorder(int(reorder))
    else:
        raise DataError(f"scoring must be 'int8' or 'ah', got {scoring!r}")
    searcher = builder.build()
    idx, _ = searcher.search_batched(np.ascontiguousarray(queries, np.float32), final_num_neighbors=k)
    return np.asarray(idx, np.int64), searcher


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _search_all(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
                block: int = 1024) -> np.ndarray:
    """Run a ``(b, d) -> (b, k)`` search over the queries in blocks (bounded memory)."""
    return np.concatenate([search(queries[s:s + block]) for s in range(0, len(queries), block)])


def index_variants(queries: np.ndarray, table: np.ndarray, k: int = 10, *,
                   dimensions_per_block: int = 2, reorder: int | None = None,
                   rounds: int = 3, repeats: int = 50) -> pd.DataFrame:
    """Item-index variants against exact float search: size, recall@k, single-query time.

    Rows: ``float32 exact`` (numpy), ``int8 scalar`` (this module, per dimension),
    ``scann int8 brute force``, ``scann AH`` (asymmetric hashing without
    re-scoring) and, when ``reorder``, ``scann AH + reorder``. The two numpy
    rows search the same way, ``metrics.top_k`` over all scores of the query
    (``q @ table.T`` against :meth:`QuantizedTable.scores`), so their times
    compare the scoring alone. Recall@k is
    :func:`recsys_utils.metrics.top_k_overlap` against the float32 lists.
    Sizes are the table bytes (float32 / int8 + scales) or the serialized
    ScaNN index (``searcher.serialize``, which also stores the float rows it
    needs to reorder, so AH + reorder is not smaller than float). Every
    variant is timed one query at a time by :func:`compare_latency`
    (interleaved rounds), with numpy's and ScaNN's own thread settings.

    Returns:
        DataFrame: ``index``, ``bytes``, ``recall_at_k``, ``median_ms``,
        ``p95_ms``, ``k``, ``x_smaller``.
    """
    queries = np.ascontiguousarray(queries, np.float32)
    table = np.ascontiguousarray(table, np.float32)
    qt = quantize_embeddings_int8(table)
    searches: dict[str, Callable[[np.ndarray], Any]] = {
        "float32 exact": lambda q: metrics.top_k(q @ table.T, k),
        "int8 scalar": lambda q: metrics.top_k(qt.scores(q), k)}
    sizes = {"float32 exact": table.nbytes, "int8 scalar": qt.nbytes}
    lists = {name: _search_all(fn, queries) for name, fn in searches.items()}
    configs: list[tuple[str, dict[str, Any]]] = [
        ("scann int8 brute force", {"scoring": "int8"}),
        ("scann AH", {"scoring": "ah", "dimensions_per_block": dimensions_per_block})]
    if reorder:
        configs.append(("scann AH + reorder", {"scoring": "ah", "reorder": reorder,
                                               "dimensions_per_block": dimensions_per_block}))
    for name, kwargs in configs:
        lists[name], searcher = scann_search(queries, table, k, **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            searcher.serialize(tmp)
            sizes[name] = _dir_bytes(Path(tmp))
        searches[name] = lambda q, s=searcher: s.search_batched(q, final_num_neighbors=k)
    timings = compare_latency(searches, queries, batch_fns={}, rounds=rounds, repeats=repeats)
    exact = lists["float32 exact"]
    df = pd.DataFrame([{"index": name, "bytes": sizes[name],
                        "recall_at_k": float(metrics.top_k_overlap(lists[name], exact, k).mean()),
                        "median_ms": timings[name].median_ms, "p95_ms": timings[name].p95_ms}
                       for name in searches])
    df["k"] = k
    df["x_smaller"] = df["bytes"].iloc[0] / df["bytes"]
    return df


# --------------------------------------------------------------------------
# Tables and plots
# --------------------------------------------------------------------------


def size_quality_table(rows: Sequence[Mapping[str, Any]], *, reference: str = "float32"
                       ) -> pd.DataFrame:
    """One row per (model, variant) with size relative to the model's float32 file.

    Args:
        rows: dicts with at least ``model``, ``variant`` and ``size_mb``, plus
            any measurements (``median_ms``, ``p95_ms``, ``throughput``,
            ``quality``, ``quality_metric``, ``num_threads``, ...).
        reference: the variant that defines 1x for ``x_smaller`` / ``speedup``.

    Returns:
        DataFrame (models in order of appearance, variants in :data:`MODES`
        order), with ``x_smaller`` (reference size
        / size) and, when ``median_ms`` is present, ``speedup`` (reference
        median latency / median latency).
    """
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    for column in ("model", "variant", "size_mb"):
        if column not in df:
            raise DataError(f"rows need a {column!r} entry", source="size_quality_table")
    ref = df[df["variant"] == reference].set_index("model")
    df["x_smaller"] = df["model"].map(ref["size_mb"]) / df["size_mb"]
    if "median_ms" in df:
        df["speedup"] = df["model"].map(ref["median_ms"]) / df["median_ms"]
    # Models in order of appearance, variants in MODES order (others after).
    model_rank = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
    variant_rank = {m: i for i, m in enumerate(MODES)}
    key = df["model"].map(model_rank) * 100 + df["variant"].map(variant_rank).fillna(len(MODES))
    return df.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key"
                                                                      ).reset_index(drop=True)


_AXIS_LABELS = {"size_mb": "file size (MB)", "median_ms": "single-query latency, median (ms)",
                "p95_ms": "single-query latency, p95 (ms)", "throughput": "rows per second"}


#: The smallest quality range a trade-off panel shows (cosine, recall and RMSE alike).
MIN_QUALITY_SPAN = 0.05


def plot_tradeoff(df: pd.DataFrame, x: str, y: str, *, label: str = "variant",
                  group: str = "model", logx: bool = True, title: str | None = None):
    """Scatter ``y`` (quality) against ``x`` (size or latency), one panel per ``group``.

    Each point is annotated with its ``label``; quality metrics differ between
    models (cosine, recall, RMSE), hence one panel each with its own y axis,
    labelled with the rows' ``quality_metric``. ``logx`` applies to panels
    whose x values span more than a factor of 10.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    data = df.dropna(subset=[x, y])
    groups = list(dict.fromkeys(data[group])) if group in data else [None]
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(4.4 * max(len(groups), 1), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], groups):
        part = data if name is None else data[data[group] == name]
        ax.scatter(part[x], part[y], s=36)
        for _, row in part.iterrows():
            ax.annotate(str(row[label]), (row[x], row[y]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        values = part[x].to_numpy(float)
        # Log only when the points span a decade; otherwise no tick would be labelled.
        if logx and len(values) and values.min() > 0 and values.max() / values.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25)
        # At least MIN_QUALITY_SPAN tall: a 0.001 difference must not look like a cliff.
        low, high = part[y].min(), part[y].max()
        half = max(high - low, MIN_QUALITY_SPAN) * 0.6
        ax.set_ylim((low + high) / 2 - half, (low + high) / 2 + half)
        ax.set_xlabel(_AXIS_LABELS.get(x, x))
        metric = part["quality_metric"].iloc[0] if "quality_metric" in part and len(part) else y
        ax.set_ylabel(str(metric))
        ax.set_title(str(name) if name is not None else (title or ""))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
