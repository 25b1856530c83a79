"""TFLite conversion of exported SavedModels (notebook 06): convert, inspect, run. A failed
conversion is a recorded :class:`ConversionResult`, never an exception. Import ``recsys_utils``
before TensorFlow."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
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

__all__ = ["MODES", "PLUMBING_OPS", "ConversionResult", "TFLiteRunner", "analyze_tflite",
           "constant_tensors", "convert_all", "convert_saved_model", "load_calibration"]

Mode = Literal["float32", "float16", "dynamic_int8", "full_int8"]
#: Conversion modes, the float32 reference first. ``float16``: float16 weights,
#: float32 compute. ``dynamic_int8``: int8 weights, activations quantized on the
#: fly in matrix multiplies (no calibration). ``full_int8``: int8 weights and
#: activations calibrated on real inputs; inputs and outputs stay float32.
MODES: tuple[str, ...] = get_args(Mode)

#: Ops that only move or describe data; a float input there costs nothing, so
#: :func:`analyze_tflite` leaves them out of ``float_ops``.
PLUMBING_OPS = frozenset({"SHAPE", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "STRIDED_SLICE", "SLICE",
                          "PACK", "UNPACK", "CONCATENATION", "BROADCAST_TO", "GATHER", "QUANTIZE",
                          "DEQUANTIZE", "CAST", "ZEROS_LIKE", "TRANSPOSE"})
#: The one signature converted and run.
SIGNATURE = "serving_default"
#: ``full_int8`` calibrates on at most this many representative samples.
CALIBRATION_LIMIT = 200


@dataclasses.dataclass
class ConversionResult:
    """One TFLite conversion attempt.

    ``path`` and ``size_bytes`` are ``None`` on failure, when ``error`` holds the converter's
    message shortened to the lines that say why. ``float_ops`` counts compute ops with float32
    activations (for ``dynamic_int8`` the "hybrid" matrix multiplies: int8 weights, float inputs
    and outputs); ``kept_float`` the op types kept float on purpose; ``weight_bytes`` the bytes of
    constant tensors by dtype name."""

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
                "convert_s": round(self.seconds, 2), "int8_weight_share": self.int8_weight_share,
                "float_ops": ", ".join(f"{k}x{v}" for k, v in sorted(self.float_ops.items())),
                "kept_float": ", ".join(self.kept_float), "error": self.error}


@contextlib.contextmanager
def _native_output_to_file() -> Iterator[None]:
    """Send C++-level stdout/stderr to a temporary file while the converter runs.

    The MLIR converter writes pages of diagnostics to fd 2 while holding the GIL; in Jupyter that
    fd is a pipe drained by a Python thread, so a long message fills it and the kernel deadlocks
    (seen with the string-input encoder)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.flush()
    saved = []
    with tempfile.TemporaryFile() as sink:
        with contextlib.suppress(OSError):  # no such fds (embedded interpreter): nothing to do
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
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


def _signature_inputs(saved_model_dir: Path) -> dict[str, Any]:
    """Input name -> TensorSpec of ``serving_default``; DataError if absent."""
    pb = saved_model_dir / "saved_model.pb"
    if not pb.exists():
        raise DataError(f"no SavedModel at {str(saved_model_dir)!r} (no saved_model.pb)",
                        source="saved_model")
    return dict(_cached_signature_inputs(str(saved_model_dir.resolve()), pb.stat().st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _cached_signature_inputs(saved_model_dir: str, stamp: int) -> tuple[tuple[str, Any], ...]:
    """Loading a 90 MB encoder takes seconds: once per (path, file version)."""
    from .serving import load_saved_model  # TensorFlow only when a SavedModel is read

    loaded = load_saved_model(saved_model_dir, "export the model again")
    if SIGNATURE not in loaded.signatures:
        raise DataError(f"SavedModel {saved_model_dir!r} has no signature {SIGNATURE!r}; "
                        f"it has {sorted(loaded.signatures)}", source="saved_model")
    _, kwargs = loaded.signatures[SIGNATURE].structured_input_signature
    return tuple(sorted(kwargs.items()))


def _samples(data: Any, specs: Mapping[str, Any]) -> Callable[[], Iterable[dict]]:
    """``representative_data`` as a callable yielding the first :data:`CALIBRATION_LIMIT`
    input dicts cast to ``specs``."""
    if data is None:
        raise DataError("full_int8 needs representative_data: real model inputs to calibrate "
                        "activation ranges", source="representative_data")
    if isinstance(data, Mapping):  # one (1, ...) sample per row
        data = [slice_rows(data, i, i + 1) for i in range(count_rows(data))]
    samples = list(itertools.islice(data, CALIBRATION_LIMIT))

    def gen():
        for sample in samples:
            if not isinstance(sample, Mapping):
                raise DataError("each representative sample must be a {input name: array} dict, "
                                f"got {type(sample).__name__}", source="representative_data")
            if missing := set(specs) - set(sample):
                raise DataError(f"representative sample lacks inputs {sorted(missing)}; the "
                                f"signature takes {sorted(specs)}", source="representative_data")
            yield {k: np.asarray(sample[k]).astype(specs[k].dtype.as_numpy_dtype) for k in specs}
    return gen


def convert_saved_model(
    saved_model_dir: str | Path, mode: Mode, *, out_path: str | Path | None = None,
    representative_data: Any = None, keep_float_ops: Sequence[str] = (),
) -> ConversionResult:
    """Convert a SavedModel's ``serving_default`` to TFLite; never raises on a converter failure.

    ``out_path``: where to write the flatbuffer, atomically (default
    ``<saved_model_dir>.<mode>.tflite``). ``representative_data``: ``full_int8`` calibration
    inputs, real ones (the activation ranges come from them): an iterable of ``{input name:
    (1, ...) array}`` or one ``{input name: (n, ...) array}`` mapping. ``keep_float_ops``
    (``full_int8``): TFLite op types (e.g. ``"SOFTMAX"``) kept float on purpose through the
    quantization debugger, see :data:`recsys_utils.token_encoder.ENCODER_FLOAT_OPS`.
    DataError: unknown mode, or no SavedModel / signature at the path."""
    import tensorflow as tf

    if mode not in MODES:
        raise DataError(f"mode must be one of {MODES}, got {mode!r}", source="mode")
    saved_model_dir = Path(saved_model_dir)
    specs = _signature_inputs(saved_model_dir)
    out_path = Path(out_path) if out_path else saved_model_dir.with_name(
        f"{saved_model_dir.name}.{mode}.tflite")
    kept = tuple(keep_float_ops) if mode == "full_int8" else ()
    start = time.perf_counter()
    try:
        with _native_output_to_file(), warnings.catch_warnings():
            # Full-integer conversion builds a tf.lite.Interpreter inside TensorFlow, which warns
            # that LiteRT replaces it; the course runs models on LiteRT, so drop that warning only.
            warnings.filterwarnings("ignore", r"\s*Warning: tf\.lite\.Interpreter is deprecated",
                                    UserWarning)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                                 signature_keys=[SIGNATURE])
            if mode != "float32":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode == "float16":
                converter.target_spec.supported_types = [tf.float16]
            elif mode == "full_int8":
                rep = _samples(representative_data, specs)
                converter.representative_dataset = rep
            if kept:  # the debugger re-runs calibration and leaves denylisted op types float
                options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(kept))
                model = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=rep, debug_options=options
                ).get_nondebug_quantized_model()
            else:
                model = converter.convert()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed mode is a result, not a crash
        return ConversionResult(mode, ok=False, seconds=time.perf_counter() - start,
                                error=_error_text(exc), kept_float=kept)
    seconds = time.perf_counter() - start
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(model)
    return ConversionResult(mode, ok=True, path=out_path, size_bytes=out_path.stat().st_size,
                            seconds=seconds, kept_float=kept, **analyze_tflite(model))


def convert_all(
    saved_model_dir: str | Path, out_dir: str | Path, name: str, *, representative_data: Any = None,
    modes: Sequence[str] = MODES, keep_float_ops: Sequence[str] = (), progress: bool = True,
) -> list[ConversionResult]:
    """Convert one SavedModel in every mode to ``out_dir/<name>.<mode>.tflite``; failures are
    recorded in their result, so the sweep always completes."""
    return [convert_saved_model(saved_model_dir, mode,
                                out_path=Path(out_dir) / f"{name}.{mode}.tflite",
                                representative_data=representative_data,
                                keep_float_ops=keep_float_ops)
            for mode in track(list(modes), desc=f"converting {name}", unit="mode",
                              disable=not progress)]


def _numpy_dtype(name: str) -> np.dtype:
    """numpy dtype of a TFLite ``TensorType`` name; ``object`` for types numpy lacks."""
    try:
        return np.dtype(name.lower())
    except TypeError:
        return np.dtype(object)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _graph(model: str | Path | bytes) -> tuple[dict[int, dict], list[dict], set[int], set[int]]:
    """Tensor details by index, op details, activation and constant tensor indices.

    Read from the flatbuffer's main subgraph with LiteRT's schema reader: the interpreter's
    op-level view is private and ``tf.lite.experimental.Analyzer`` only prints text."""
    from ai_edge_litert.tools import flatbuffer_utils

    if isinstance(model, bytes):
        tree = flatbuffer_utils.read_model_from_bytearray(model)
    elif Path(model).is_file():
        tree = flatbuffer_utils.read_model(str(model))
    else:
        raise DataError(f"no TFLite model at {str(model)!r}", source="tflite")
    graph = tree.subgraphs[0]
    details = {i: {"index": i, "name": _text(t.name), "shape": np.asarray(t.shape, np.int32),
                   "dtype": _numpy_dtype(flatbuffer_utils.type_to_name(t.type))}
               for i, t in enumerate(graph.tensors)}
    ops = []
    for op in graph.operators:
        code = tree.operatorCodes[op.opcodeIndex]
        name = flatbuffer_utils.opcode_to_name(tree, op.opcodeIndex)
        if name == "CUSTOM" and code.customCode:  # a custom op is known by its own name
            name = _text(code.customCode)
        ops.append({"op_name": name, "inputs": list(op.inputs), "outputs": list(op.outputs)})
    activations = {i for op in ops for i in op["outputs"]} | set(graph.inputs)
    constants = {i for op in ops for i in op["inputs"]
                 if i >= 0 and i not in activations and i in details}
    return details, ops, activations, constants


def _nbytes(detail: Mapping[str, Any]) -> int:
    return int(np.prod(detail["shape"])) * detail["dtype"].itemsize


def analyze_tflite(model: str | Path | bytes) -> dict[str, Any]:
    """Op inventory: ``{"op_counts": {op: n}, "float_ops": {op: n}, "weight_bytes": {dtype: n}}``;
    ``float_ops`` counts compute ops with a float32 activation (non-constant) input or output."""
    details, ops, activations, constants = _graph(model)
    op_counts = collections.Counter(op["op_name"] for op in ops)
    float_ops = collections.Counter(
        op["op_name"] for op in ops if op["op_name"] not in PLUMBING_OPS
        and any(i in activations and i in details and details[i]["dtype"] == np.float32
                for i in [*op["inputs"], *op["outputs"]]))
    weight_bytes: collections.Counter[str] = collections.Counter()
    for i in constants:
        weight_bytes[details[i]["dtype"].name] += _nbytes(details[i])
    return {"op_counts": dict(op_counts), "float_ops": dict(float_ops),
            "weight_bytes": dict(weight_bytes)}


def constant_tensors(model: str | Path | bytes) -> pd.DataFrame:
    """The constant tensors of a TFLite model, largest first: ``name, shape, dtype, bytes``.

    A full-integer file can be larger than the dynamic-range one: a table read by two GATHER ops
    (the ranker's candidate and history lookups) is stored once per lookup, since each output has
    its own calibrated scale."""
    details, _, _, constants = _graph(model)
    rows = [{"name": details[i]["name"], "shape": tuple(int(v) for v in details[i]["shape"]),
             "dtype": details[i]["dtype"].name, "bytes": _nbytes(details[i])}
            for i in sorted(constants)]
    frame = pd.DataFrame(rows, columns=["name", "shape", "dtype", "bytes"])
    return frame.sort_values("bytes", ascending=False, kind="stable").reset_index(drop=True)


class TFLiteRunner:
    """Run a ``.tflite`` model on numpy batches with LiteRT's interpreter.

    ``runner(inputs)`` takes ``{input name: (batch, ...) array}`` (a bare array for a single-input
    model), cast to the model's dtypes, and returns the output array of a single-output model, else
    ``{output name: array}``. ``num_threads`` defaults to all cores. DataError when there is no
    model at ``path`` (``None``: a conversion that failed)."""

    def __init__(self, path: str | Path | None, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if path is None:
            raise DataError("no TFLite model (path is None): this variant did not convert; "
                            "its ConversionResult.error says why", source="tflite")
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"no TFLite model at {str(self.path)!r}", source="tflite")
        self.num_threads = int(num_threads or os.cpu_count() or 1)
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
        self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.input_details = self._runner.get_input_details()
        self.output_names = sorted(self._runner.get_output_details())

    def __call__(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> Any:
        if not isinstance(inputs, Mapping):
            if len(self.input_details) != 1:
                raise DataError(f"model takes inputs {sorted(self.input_details)}; pass a dict",
                                source="tflite")
            inputs = {next(iter(self.input_details)): inputs}
        if missing := set(self.input_details) - set(inputs):
            raise DataError(f"missing model inputs {sorted(missing)}; the model takes "
                            f"{sorted(self.input_details)}", source="tflite")
        out = self._runner(**{k: np.asarray(inputs[k]).astype(d["dtype"], copy=False)
                              for k, d in self.input_details.items()})
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
