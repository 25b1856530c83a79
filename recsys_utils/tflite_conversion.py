"""TFLite conversion of exported SavedModels (notebook 06): convert, inspect, run.

:func:`convert_saved_model` and :func:`convert_all` write a signature as a
``.tflite`` file in each of :data:`MODES` (a failed conversion is a recorded
result, never an exception); :func:`analyze_tflite` and :func:`constant_tensors`
read what a file computes in float and what it stores; :class:`TFLiteRunner`
runs it. Import ``recsys_utils`` before TensorFlow.
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

from .artifacts import atomic_path
from .latency import count_rows, slice_rows
from .progress import track
from .schema import DataError

__all__ = [
    "MODES",
    "PLUMBING_OPS",
    "ConversionResult",
    "TFLiteRunner",
    "analyze_tflite",
    "constant_tensors",
    "convert_all",
    "convert_saved_model",
    "load_calibration",
]

Mode = Literal["float32", "float16", "dynamic_int8", "full_int8"]
#: The conversion modes, the reference first:
#:
#: * ``float32``: the plain conversion, the reference;
#: * ``float16``: weights stored as float16 (half the file), computed in float32;
#: * ``dynamic_int8``: dynamic-range quantization: weights int8 (a quarter of the
#:   file), activations quantized on the fly inside matrix multiplies; no
#:   calibration data needed;
#: * ``full_int8``: weights *and* activations int8, with activation ranges
#:   calibrated on a representative sample of real inputs. Inputs and outputs stay
#:   float32 (the model quantizes at its entry); an op with no int8 kernel may stay
#:   float (``allow_float_fallback``), and ``keep_float_ops`` keeps named op types
#:   float on purpose (selective quantization through
#:   ``tf.lite.experimental.QuantizationDebugger``).
MODES: tuple[str, ...] = get_args(Mode)

#: Ops that only move or describe data; a float input there costs nothing, so
#: :func:`analyze_tflite` leaves them out of ``float_ops``.
PLUMBING_OPS = frozenset({"SHAPE", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "STRIDED_SLICE", "SLICE",
                          "PACK", "UNPACK", "CONCATENATION", "BROADCAST_TO", "GATHER", "QUANTIZE",
                          "DEQUANTIZE", "CAST", "ZEROS_LIKE", "TRANSPOSE"})


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
    import tensorflow as tf

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
            ``"SOFTMAX"``) to keep float on purpose; see
            :data:`recsys_utils.token_encoder.ENCODER_FLOAT_OPS`.
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
    import tensorflow as tf

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
        if name not in PLUMBING_OPS and any(
                details[i]["dtype"] == np.float32 for i in tensors if i in activations):
            float_ops[name] += 1
    weight_bytes: collections.Counter[str] = collections.Counter()
    for i in constants:
        weight_bytes[np.dtype(details[i]["dtype"]).name] += _nbytes(details[i])
    return {"op_counts": dict(op_counts), "float_ops": dict(float_ops),
            "weight_bytes": dict(weight_bytes)}


def constant_tensors(model: str | Path | bytes) -> pd.DataFrame:
    """The constant tensors (weights, embedding tables) of a TFLite model, largest first.

    Shows what a file stores. A full-integer file can be larger than the
    dynamic-range one: a constant table read by two GATHER ops (the ranker looks
    items up for the candidate and for the history) is stored once per lookup,
    because each lookup's output has its own calibrated scale and the int8
    GATHER kernel needs its table at that scale.

    Returns:
        DataFrame: ``name``, ``shape`` (tuple), ``dtype``, ``bytes``.
    """
    details, _, _, constants = _graph(model)
    rows = [{"name": details[i]["name"], "shape": tuple(int(v) for v in details[i]["shape"]),
             "dtype": np.dtype(details[i]["dtype"]).name, "bytes": _nbytes(details[i])}
            for i in sorted(constants)]
    frame = pd.DataFrame(rows, columns=["name", "shape", "dtype", "bytes"])
    return frame.sort_values("bytes", ascending=False, kind="stable").reset_index(drop=True)


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
        n = count_rows(inputs)
        if n == 0:
            raise DataError("predict needs at least one input row", source="tflite")
        outs = [self(slice_rows(inputs, s, s + batch_size)) for s in range(0, n, batch_size)]
        if isinstance(outs[0], Mapping):
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        return np.concatenate(outs)


def load_calibration(saved_model_dir: str | Path) -> dict[str, np.ndarray]:
    """The ``calibration.npz`` written beside an exported SavedModel, as ``{input: (n, ...)}``."""
    path = Path(saved_model_dir) / "calibration.npz"
    if not path.exists():
        raise DataError(f"no calibration.npz in {str(saved_model_dir)!r}; pass representative "
                        "inputs explicitly", source="calibration")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
