"""TFLite conversion: every mode, recorded failures, the op inventory, the LiteRT runner."""

from __future__ import annotations

import numpy as np
import pytest

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from recsys_utils import metrics, tflite_conversion
from recsys_utils.schema import DataError


def test_all_modes_convert_and_sizes_are_ordered(dense_variants):
    assert all(r.ok for r in dense_variants.values()), {m: r.error for m, r in dense_variants.items()}
    size = {m: r.size_bytes for m, r in dense_variants.items()}
    assert size["float32"] > size["float16"] > size["dynamic_int8"]
    assert size["float32"] / size["dynamic_int8"] >= 3.5
    assert size["float32"] / size["full_int8"] >= 3.5
    # int8 weights dominate the int8 files; the float32 file has none.
    assert dense_variants["dynamic_int8"].int8_weight_share > 0.9
    assert dense_variants["float32"].int8_weight_share == 0
    # Full-integer: the matrix multiplies run in int8; dynamic-range keeps float activations.
    assert "FULLY_CONNECTED" not in dense_variants["full_int8"].float_ops
    assert dense_variants["dynamic_int8"].float_ops.get("FULLY_CONNECTED", 0) == 3


def test_quantized_outputs_stay_close_to_float(dense_model, dense_variants):
    _, model, _, held_out = dense_model
    reference = model(held_out).numpy()
    for mode, result in dense_variants.items():
        out = tflite_conversion.TFLiteRunner(result.path, num_threads=1).predict(
            {"features": held_out}, batch_size=64)
        cos = metrics.cosine_rows(out, reference)
        bound = 0.9999 if mode in ("float32", "float16") else 0.99
        assert cos.min() >= bound, (mode, cos.min())


def test_failure_is_recorded_not_raised(tmp_path):
    module = tf.Module()
    # String hashing has no TFLite builtin: every mode must fail, recorded.
    module.f = tf.function(lambda text: {"bucket": tf.strings.to_hash_bucket_fast(text, 100)},
                           input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.f})
    result = tflite_conversion.convert_saved_model(tmp_path / "m", "dynamic_int8")
    assert not result.ok and result.path is None
    assert "StringToHashBucketFast" in result.error
    assert "\n" not in result.error and len(result.error) < 800
    with pytest.raises(DataError, match="representative_data"):
        tflite_conversion.convert_saved_model(tmp_path / "m", "full_int8")
    with pytest.raises(DataError, match="mode must be"):
        tflite_conversion.convert_saved_model(tmp_path / "m", "int4")
    with pytest.raises(DataError, match="no SavedModel"):
        tflite_conversion.convert_saved_model(tmp_path / "missing", "float32")
    # A failed conversion has no file: running it says so instead of a TypeError.
    with pytest.raises(DataError, match="did not convert"):
        tflite_conversion.TFLiteRunner(result.path)


def test_full_int8_stores_a_table_once_per_lookup(tmp_path):
    rng = np.random.default_rng(5)
    table = tf.constant(rng.normal(size=(300, 24)), tf.float32)

    def two_lookups(a, b):  # one table read by two GATHERs, like the ranker's item table
        return {"y": tf.reduce_sum(tf.gather(table, a) * tf.gather(table, b), axis=-1)}

    module = tf.Module()
    module.f = tf.function(two_lookups, input_signature=[tf.TensorSpec([None], tf.int32, name="a"),
                                                         tf.TensorSpec([None], tf.int32, name="b")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.f})
    data = {k: rng.integers(0, 300, 50).astype(np.int32) for k in ("a", "b")}
    copies = {}
    for mode in ("float32", "dynamic_int8", "full_int8"):
        result = tflite_conversion.convert_saved_model(tmp_path / "m", mode,
                                                       representative_data=data,
                                                       out_path=tmp_path / f"{mode}.tflite")
        constants = tflite_conversion.constant_tensors(result.path)
        assert list(constants["bytes"]) == sorted(constants["bytes"], reverse=True)
        assert constants["bytes"].sum() == sum(result.weight_bytes.values())
        copies[mode] = constants[constants["shape"] == (300, 24)]["dtype"].tolist()
    assert copies == {"float32": ["float32"], "dynamic_int8": ["int8"], "full_int8": ["int8", "int8"]}


# -- LiteRT in place of tf.lite.Interpreter: the previous numbers -------------------------


def _previous_interpreter(path, **kwargs):
    """The deprecated tf.lite.Interpreter, which the conversion code used before ai-edge-litert."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=str(path), **kwargs)


def _previous_report(path):
    """analyze_tflite and constant_tensors as computed before, from the interpreter's private
    _get_ops_details: op counts, float ops, weight bytes by dtype, and the constants' rows."""
    interpreter = _previous_interpreter(path)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    activations = {i for op in ops for i in op["outputs"]} | {
        d["index"] for d in interpreter.get_input_details()}
    constants = {i for op in ops for i in op["inputs"]
                 if i >= 0 and i not in activations and i in details}
    op_counts, float_ops = {}, {}
    for op in ops:
        name = op["op_name"]
        op_counts[name] = op_counts.get(name, 0) + 1
        if name not in tflite_conversion.PLUMBING_OPS and any(
                details[i]["dtype"] == np.float32 for i in [*op["inputs"], *op["outputs"]]
                if i >= 0 and i in details and i in activations):
            float_ops[name] = float_ops.get(name, 0) + 1
    weight_bytes, rows = {}, []
    for i in sorted(constants):
        d = details[i]
        size = int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
        weight_bytes[np.dtype(d["dtype"]).name] = weight_bytes.get(np.dtype(d["dtype"]).name, 0) + size
        rows.append((d["name"], tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]).name, size))
    return {"op_counts": op_counts, "float_ops": float_ops, "weight_bytes": weight_bytes}, rows


def test_op_report_from_the_flatbuffer_equals_the_interpreters(dense_variants, tmp_path):
    # The four conversions of the dense tower, and a full-int8 model with a float-only op.
    paths = [r.path for r in dense_variants.values()]
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": tf.math.sin(tf.matmul(x, tf.ones([64, 8])))},
                           input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.f})
    calibration = {"x": np.random.default_rng(0).normal(size=(50, 64)).astype(np.float32)}
    paths.append(tflite_conversion.convert_saved_model(tmp_path / "m", "full_int8",
                                                       representative_data=calibration).path)
    for path in paths:
        report, rows = _previous_report(path)
        assert tflite_conversion.analyze_tflite(path) == report, path.name
        assert tflite_conversion.analyze_tflite(path.read_bytes()) == report
        table = tflite_conversion.constant_tensors(path)
        assert sorted(map(tuple, table[["name", "shape", "dtype", "bytes"]].itertuples(index=False))) \
            == sorted(rows)
    with pytest.raises(DataError, match="no TFLite model"):
        tflite_conversion.analyze_tflite(tmp_path / "missing.tflite")


def test_litert_runs_every_variant_as_tf_lite_did(dense_model, dense_variants):
    held_out = dense_model[3]
    for mode, result in dense_variants.items():
        runner = tflite_conversion.TFLiteRunner(result.path, num_threads=1)
        assert type(runner.interpreter).__module__.startswith("ai_edge_litert")
        new = runner.predict({"features": held_out}, batch_size=64)
        previous = _previous_interpreter(result.path, num_threads=1).get_signature_runner()
        old = np.concatenate([next(iter(previous(features=held_out[s:s + 64]).values()))
                              for s in range(0, len(held_out), 64)])
        # Same kernels: the quantized variants' outputs too, to float32 rounding.
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-6, err_msg=mode)
