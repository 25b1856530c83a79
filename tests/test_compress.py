"""Quantization: TFLite variants of SavedModels and int8 embedding indexes."""

from __future__ import annotations

import numpy as np
import pytest

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from recsys_utils import compress
from recsys_utils.schema import DataError

SENTENCES = [
    "red cotton t-shirt with a crew neck", "black leather chelsea boots",
    "a warm wool scarf for cold winter days", "lightweight running shoes with mesh upper",
    "navy linen shirt, relaxed fit", "Waterproof hiking jacket with a hood",
    "silver necklace with a small pendant", "denim jeans, slim fit, dark wash",
    "floral summer dress in cream", "grey hoodie made of organic cotton",
    "brown suede ankle boots", "striped polo shirt in green and white",
    "cashmere sweater, soft and warm", "canvas backpack with laptop sleeve",
    "pink sneakers for kids", "Leather belt with a brass buckle",
    "checked flannel shirt", "olive cargo trousers with many pockets",
    "white sports socks, pack of five", "rain boots in bright yellow",
]


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    """A Dense tf-keras tower (~330k weights) saved as a SavedModel, plus held-out inputs."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(shape=(64,), name="features")
    x = tf.keras.layers.Dense(512, activation="relu")(inputs)
    x = tf.keras.layers.Dense(512, activation="relu")(x)
    outputs = tf.keras.layers.Dense(64)(x)
    model = tf.keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("dense") / "tower"
    tf.saved_model.save(model, str(path))
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(100, 64)).astype(np.float32)
    held_out = rng.normal(size=(200, 64)).astype(np.float32)
    return path, model, calibration, held_out


@pytest.fixture(scope="module")
def dense_variants(dense_model):
    path, _, calibration, _ = dense_model
    return {r.mode: r for r in compress.convert_all(
        path, path.parent / "tflite", "tower", representative_data={"features": calibration},
        progress=False)}


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
        out = compress.TFLiteRunner(result.path, num_threads=1).predict({"features": held_out},
                                                                         batch_size=64)
        cos = compress.cosine_rows(out, reference)
        bound = 0.9999 if mode in ("float32", "float16") else 0.99
        assert cos.min() >= bound, (mode, cos.min())


def test_failure_is_recorded_not_raised(tmp_path):
    module = tf.Module()
    # String hashing has no TFLite builtin: every mode must fail, recorded.
    module.f = tf.function(lambda text: {"bucket": tf.strings.to_hash_bucket_fast(text, 100)},
                           input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.f})
    result = compress.convert_saved_model(tmp_path / "m", "dynamic_int8")
    assert not result.ok and result.path is None
    assert "StringToHashBucketFast" in result.error
    assert "\n" not in result.error and len(result.error) < 800
    with pytest.raises(DataError, match="representative_data"):
        compress.convert_saved_model(tmp_path / "m", "full_int8")
    with pytest.raises(DataError, match="mode must be"):
        compress.convert_saved_model(tmp_path / "m", "int4")
    with pytest.raises(DataError, match="no SavedModel"):
        compress.convert_saved_model(tmp_path / "missing", "float32")


def test_strict_int8_without_fallback_fails_cleanly(dense_model, tmp_path):
    calibration = dense_model[2]
    module = tf.Module()
    # SIN has a float kernel only: with fallback it stays float, without it fails.
    module.f = tf.function(lambda x: {"y": tf.math.sin(tf.matmul(x, tf.ones([64, 8])))},
                           input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.f})
    data = {"x": calibration}
    loose = compress.convert_saved_model(tmp_path / "m", "full_int8", representative_data=data)
    strict = compress.convert_saved_model(tmp_path / "m", "full_int8", representative_data=data,
                                          allow_float_fallback=False)
    assert loose.ok and loose.float_ops == {"SIN": 1}
    assert "FULLY_CONNECTED" not in loose.float_ops
    assert not strict.ok and strict.path is None and "SIN" in strict.error


def test_measure_latency_reports_threads_and_throughput(dense_variants, dense_model):
    runner = compress.TFLiteRunner(dense_variants["float32"].path, num_threads=1)
    timing = compress.measure_latency(runner, {"features": dense_model[3]}, repeats=20, batch_size=32)
    assert timing.num_threads == 1 and timing.batch_size == 32
    assert 0 < timing.median_ms <= timing.p95_ms
    assert timing.throughput > 1000 / timing.median_ms  # batching amortises per-call overhead


def test_int8_table_recall_and_size():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 32))
    table = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 20, 200)] + 0.3 * rng.normal(size=(200, 32))).astype(np.float32)
    for per in ("dimension", "row"):
        q = compress.quantize_embeddings_int8(table, per=per)
        assert q.codes.dtype == np.int8 and np.abs(q.codes).max() <= 127
        assert np.abs(compress.dequantize(q) - table).max() <= q.scale.max() / 2 + 1e-6
        np.testing.assert_allclose(q.scores(queries[:5]), queries[:5] @ compress.dequantize(q).T,
                                   rtol=1e-4, atol=1e-3)
        assert compress.int8_search_recall(queries, table, 10, per=per) >= 0.95
    assert table.nbytes / compress.quantize_embeddings_int8(table).nbytes > 3.9
    with pytest.raises(DataError, match="NaN"):
        compress.quantize_embeddings_int8(np.array([[np.nan, 1.0]]))


def test_scann_quantized_scoring_recall():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(20, 32))
    table = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 20, 100)] + 0.3 * rng.normal(size=(100, 32))).astype(np.float32)
    df = compress.index_variants(queries, table, k=10, reorder=100).set_index("index")
    # Stated bounds: int8 scoring keeps >= 0.95 of the exact top-10. 4-bit AH
    # codes alone are a coarse ranker (~0.3 here, chance is 10/3000): >= 0.2;
    # re-scoring 100 AH candidates exactly recovers >= 0.95.
    assert df.loc["int8 scalar", "recall_at_k"] >= 0.95
    assert df.loc["scann int8 brute force", "recall_at_k"] >= 0.95
    assert df.loc["scann AH", "recall_at_k"] >= 0.2
    assert df.loc["scann AH", "x_smaller"] > 5
    assert df.loc["scann AH + reorder", "recall_at_k"] >= 0.95
    assert df.loc["int8 scalar", "x_smaller"] > 3.5


def test_plot_and_table(dense_variants):
    rows = [{"model": "tower", "variant": m, "size_mb": r.size_mb, "median_ms": 1.0 + i,
             "quality": 1.0 - 0.001 * i, "quality_metric": "cosine"}
            for i, (m, r) in enumerate(dense_variants.items())]
    df = compress.size_quality_table(rows)
    assert df.loc[df.variant == "float32", "x_smaller"].item() == 1.0
    assert df.loc[df.variant == "full_int8", "x_smaller"].item() >= 3.5
    fig = compress.plot_tradeoff(df, "size_mb", "quality")
    assert len(fig.axes) == 1


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from recsys_utils import text

    try:
        encoder = text.load_text_encoder(max_length=32, precision="float32")
    except text.CheckpointError as exc:
        pytest.skip(f"MiniLM checkpoint unavailable: {exc}")
    path = compress.export_token_encoder(encoder, tmp_path_factory.mktemp("enc") / "encoder")
    return encoder, path


def test_minilm_dynamic_int8_keeps_cosine_and_shrinks(minilm):
    encoder, path = minilm
    inputs = compress.encoder_inputs(encoder, SENTENCES)
    reference = encoder.encode(SENTENCES, progress=False)
    results = {m: compress.convert_saved_model(path, m, out_path=path.parent / f"{m}.tflite")
               for m in ("float32", "dynamic_int8")}
    assert all(r.ok for r in results.values()), {m: r.error for m, r in results.items()}
    float_out = compress.TFLiteRunner(results["float32"].path).predict(inputs)
    int8_out = compress.TFLiteRunner(results["dynamic_int8"].path).predict(inputs)
    # The token-id export reproduces encoder.encode (which pads per length bucket).
    assert compress.cosine_rows(float_out, reference).min() >= 0.9999
    assert compress.cosine_rows(int8_out, float_out).min() >= 0.99
    assert results["float32"].size_bytes / results["dynamic_int8"].size_bytes >= 3.5
    # Bucketed TFLite encoding: same rows, in the input order, whatever the batch split.
    texts = SENTENCES[::-1] + SENTENCES[:3]
    bucketed = compress.encode_bucketed(compress.TFLiteRunner(results["float32"].path), encoder,
                                        texts, batch_size=3)
    expected = np.concatenate([reference[::-1], reference[:3]])
    assert bucketed.shape == expected.shape
    assert compress.cosine_rows(bucketed, expected).min() >= 0.9999


def test_measure_variants_records_runtime_failures(dense_model, dense_variants):
    _, model, _, held_out = dense_model
    reference = model(held_out).numpy()

    def quality(mode, runner):
        if mode == "float16":
            raise RuntimeError("kernel failed at run time")
        return compress.cosine_rows(runner.predict({"features": held_out}), reference).min()

    failed = compress.ConversionResult("full_int8", ok=False, error="converter said no")
    results = [dense_variants["float32"], dense_variants["float16"],
               dense_variants["dynamic_int8"], failed]
    df = compress.measure_variants(results, model="tower", quality=quality, quality_metric="cosine",
                                   timing_inputs={"features": held_out}, num_threads=1, repeats=5,
                                   progress=False).set_index("variant")
    assert df.loc["float32", "quality"] > 0.9999 and df.loc["dynamic_int8", "quality"] >= 0.99
    assert df.loc["dynamic_int8", "median_ms"] > 0 and df.loc["dynamic_int8", "num_threads"] == 1
    assert not df.loc["float16", "ok"] and "run time" in df.loc["float16", "error"]
    assert not df.loc["full_int8", "ok"] and df.loc["full_int8", "error"] == "converter said no"
    assert np.isnan(df.loc["full_int8", "quality"])


def test_export_token_encoder_rejects_non_float_encoders(tmp_path):
    class Bf16Encoder:
        precision = "bfloat16"

    with pytest.raises(DataError, match="float32"):
        compress.export_token_encoder(Bf16Encoder(), tmp_path / "enc")
