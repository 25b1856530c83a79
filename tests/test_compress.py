"""Quantization: TFLite variants of SavedModels and int8 embedding indexes."""

from __future__ import annotations

import numpy as np
import pytest

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from recsys_utils import compress, metrics
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
    # Keeping ops float is a fallback: with the fallback forbidden it could only fail.
    with pytest.raises(DataError, match="keep_float_ops"):
        compress.convert_saved_model(tmp_path / "m", "full_int8", representative_data=[{}],
                                     keep_float_ops=("SOFTMAX",), allow_float_fallback=False)
    # A failed conversion has no file: running it says so instead of a TypeError.
    with pytest.raises(DataError, match="did not convert"):
        compress.TFLiteRunner(result.path)


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
        result = compress.convert_saved_model(tmp_path / "m", mode, representative_data=data,
                                              out_path=tmp_path / f"{mode}.tflite")
        constants = compress.constant_tensors(result.path)
        assert list(constants["bytes"]) == sorted(constants["bytes"], reverse=True)
        assert constants["bytes"].sum() == sum(result.weight_bytes.values())
        copies[mode] = constants[constants["shape"] == (300, 24)]["dtype"].tolist()
    assert copies == {"float32": ["float32"], "dynamic_int8": ["int8"], "full_int8": ["int8", "int8"]}


def test_measure_latency_reports_threads_and_throughput(dense_variants, dense_model):
    runner = compress.TFLiteRunner(dense_variants["float32"].path, num_threads=1)
    timing = compress.measure_latency(runner, {"features": dense_model[3]}, repeats=20, batch_size=32)
    assert timing.num_threads == 1 and timing.batch_threads == 1 and timing.batch_size == 32
    assert timing.rounds == 1 and len(timing.round_medians_ms) == 1
    assert timing.median_ms > 0 and timing.throughput > 0


class _FakeClock:
    """Stands in for time.perf_counter: fake models advance it by a known cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_compare_latency_interleaves_rounds_and_measures_alike(monkeypatch):
    import types

    clock = _FakeClock()
    monkeypatch.setattr(compress, "time", types.SimpleNamespace(perf_counter=clock))
    calls: list[tuple[str, tuple[int, ...]]] = []

    class Model:
        def __init__(self, name, ms_per_row, batch_ms_per_row, num_threads):
            self.name, self.ms, self.batch_ms, self.num_threads = name, ms_per_row, batch_ms_per_row, num_threads

        def __call__(self, x):
            calls.append((self.name, tuple(x[:, 0].astype(int))))
            clock.now += (self.ms if len(x) == 1 else self.batch_ms) * len(x) / 1e3

    inputs = np.arange(40, dtype=np.float32).reshape(20, 2)
    fns = {"a": Model("a", 1.0, 0.5, 1), "b": Model("b", 3.0, 0.5, 1), "c": Model("c", 2.0, 0.25, 1)}
    batch = {"a": Model("a", 9.0, 0.1, 4)}  # "a" batches on another, faster runner; b, c: no batches
    timings = compress.compare_latency(fns, inputs, batch_fns=batch, rounds=3, repeats=4,
                                       warmup=2, batch_size=8)
    assert {n: t.median_ms for n, t in timings.items()} == pytest.approx({"a": 1.0, "b": 3.0, "c": 2.0})
    assert timings["b"].round_medians_ms == pytest.approx((3.0, 3.0, 3.0))
    assert timings["a"].throughput == pytest.approx(8 / (8 * 0.1e-3))
    assert timings["a"].num_threads == 1 and timings["a"].batch_threads == 4
    assert np.isnan(timings["b"].throughput) and timings["b"].batch_size == 0
    # The order rotates every round (a b c, b c a, c a b), each round on the same rows for all.
    blocks = [name for i, (name, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != name]
    assert blocks[-9:] == list("abcbcacab")
    rows = {name: [r for n, r in calls if n == name and len(r) == 1] for name in fns}
    assert rows["a"] == rows["b"] == rows["c"] and len(rows["a"]) == 2 + 3 * (1 + 4)
    with pytest.raises(DataError, match="batch_fns"):
        compress.compare_latency(fns, inputs, batch_fns={"z": fns["a"]})
    with pytest.raises(DataError, match="at least one input row"):
        compress.compare_latency(fns, inputs[:0])


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
        exact = metrics.top_k(queries @ table.T, 10)
        assert metrics.top_k_overlap(metrics.top_k(q.scores(queries), 10), exact, 10).mean() >= 0.95
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
    assert (df["median_ms"] > 0).all()


def test_index_variants_time_float_and_int8_through_the_same_search(monkeypatch):
    rng = np.random.default_rng(3)
    table = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(30, 16)).astype(np.float32)
    timed = {}
    real = compress.compare_latency

    def capture(fns, inputs, **kwargs):
        timed.update(fns)
        return real(fns, inputs, **kwargs)

    monkeypatch.setattr(compress, "compare_latency", capture)
    compress.index_variants(queries, table, k=5, rounds=1, repeats=3)
    calls = []
    monkeypatch.setattr(metrics, "top_k", lambda scores, k, **kw: calls.append(("top_k", scores.shape)))
    monkeypatch.setattr(metrics, "brute_force_top_k",
                        lambda *a, **kw: calls.append(("brute_force_top_k", None)))
    for name in ("float32 exact", "int8 scalar"):
        calls.clear()
        timed[name](queries[:1])
        assert calls == [("top_k", (1, 500))], (name, calls)


def test_plot_and_table(dense_variants):
    rows = [{"model": "tower", "variant": m, "size_mb": r.size_mb, "median_ms": 1.0 + i,
             "quality": 1.0 - 0.001 * i, "quality_metric": "cosine"}
            for i, (m, r) in enumerate(dense_variants.items())]
    df = compress.size_quality_table(rows)
    assert df.loc[df.variant == "float32", "x_smaller"].item() == 1.0
    assert df.loc[df.variant == "full_int8", "x_smaller"].item() >= 3.5
    # speedup: float32's median latency over the variant's (here 1 ms over 1 + i ms).
    expected = {row["variant"]: 1.0 / row["median_ms"] for row in rows}
    assert df.set_index("variant")["speedup"].to_dict() == pytest.approx(expected)
    assert list(df.variant) == list(compress.MODES)
    fig = compress.plot_tradeoff(df, "size_mb", "quality")
    assert len(fig.axes) == 1
    # Qualities 0.997-1.0: the axis still spans MIN_QUALITY_SPAN, so they look close.
    low, high = fig.axes[0].get_ylim()
    assert high - low >= compress.MIN_QUALITY_SPAN
    assert low <= df.quality.min() and high >= df.quality.max()


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


def test_encode_bucketed_runs_the_keras_encoders_batches(minilm):
    encoder, _ = minilm
    texts = SENTENCES[:7] + SENTENCES[2:4] + ["", SENTENCES[0]]  # repeats are encoded once
    fed = []

    def runner(inputs):  # records each batch; returns the first token id as a 1-d "vector"
        fed.append((inputs["token_ids"].copy(), inputs["padding_mask"].copy()))
        return inputs["token_ids"][:, 1:2].astype(np.float32)

    out = compress.encode_bucketed(runner, encoder, texts, batch_size=3)
    expected = list(encoder.batches(list(dict.fromkeys(texts)), batch_size=3))
    assert len(fed) == len(expected)
    for (ids, mask), (_, want_ids, want_mask) in zip(fed, expected):
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(mask, want_mask)
    first_token = [t[1] for t in encoder.tokenize(texts)]  # [CLS] x ... [SEP]
    np.testing.assert_array_equal(out[:, 0], first_token)  # input order restored, repeats included


def test_encoder_samples_are_single_texts_at_their_own_length(minilm):
    encoder, _ = minilm
    texts = [SENTENCES[0], "red", SENTENCES[5]]
    samples = compress.encoder_samples(encoder, texts)
    tokens = encoder.tokenize(texts)
    assert len(samples) == len(texts)
    for sample, t in zip(samples, tokens):
        assert set(sample) == {"token_ids", "padding_mask"}
        assert sample["token_ids"].shape == sample["padding_mask"].shape == (1, len(t))
        np.testing.assert_array_equal(sample["token_ids"][0], t)
        assert sample["padding_mask"].all()


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
                                   timing_inputs={"features": held_out}, batch_threads=2,
                                   latency_threads=1, repeats=5, rounds=2,
                                   progress=False).set_index("variant")
    assert df.loc["float32", "quality"] > 0.9999 and df.loc["dynamic_int8", "quality"] >= 0.99
    # Single queries on one thread, batches on two, both stated.
    assert df.loc["dynamic_int8", "median_ms"] > 0 and df.loc["dynamic_int8", "num_threads"] == 1
    assert (df.loc[["float32", "dynamic_int8"], "batch_threads"] == 2).all()
    assert df.loc["float32", "throughput"] > 0
    assert not df.loc["float16", "ok"] and "run time" in df.loc["float16", "error"]
    assert np.isnan(df.loc["float16", "median_ms"])
    assert not df.loc["full_int8", "ok"] and df.loc["full_int8", "error"] == "converter said no"
    assert np.isnan(df.loc["full_int8", "quality"])


def test_measure_variants_raises_the_callers_mistakes(dense_model, dense_variants):
    held_out = dense_model[3]

    def quality(mode, runner):  # wrong input name: a DataError, not a model's run-time failure
        return runner.predict({"wrong": held_out}).mean()

    with pytest.raises(DataError, match="missing model inputs"):
        compress.measure_variants([dense_variants["float32"]], model="tower", quality=quality,
                                  quality_metric="x", timing_inputs={"features": held_out},
                                  repeats=2, rounds=1, progress=False)


@pytest.fixture(scope="module")
def toy_towers(tmp_path_factory):
    """Query and item towers with serving.export_towers' signatures, and their test queries."""
    import scipy.sparse

    from recsys_utils.features import QuerySet

    rng = np.random.default_rng(4)
    n_users, n_items, history, dim = 30, 60, 4, 8
    users = tf.constant(rng.normal(size=(n_users, dim)), tf.float32)
    items = tf.constant(rng.normal(size=(n_items, dim)), tf.float32)

    query = tf.Module()
    query.f = tf.function(
        lambda user, history, history_mask, hour, dow: {"embedding": tf.gather(users, user) + tf.reduce_sum(
            tf.gather(items, tf.maximum(history, 0)) * tf.expand_dims(history_mask, -1), axis=1)
            + 0.01 * tf.expand_dims(tf.cast(hour + dow, tf.float32), -1)},
        input_signature=[tf.TensorSpec([None], tf.int32, name="user"),
                         tf.TensorSpec([None, history], tf.int32, name="history"),
                         tf.TensorSpec([None, history], tf.float32, name="history_mask"),
                         tf.TensorSpec([None], tf.int32, name="hour"),
                         tf.TensorSpec([None], tf.int32, name="dow")])
    item = tf.Module()
    item.f = tf.function(lambda item: {"embedding": 2.0 * tf.gather(items, item)},
                         input_signature=[tf.TensorSpec([None], tf.int32, name="item")])
    root = tmp_path_factory.mktemp("towers")
    for name, module in (("query", query), ("item", item)):
        tf.saved_model.save(module, str(root / name), signatures={"serving_default": module.f})
    n = 25
    features = {"user": rng.integers(0, n_users, n).astype(np.int32),
                "history": rng.integers(0, n_items, (n, history)).astype(np.int32),
                "history_mask": (rng.random((n, history)) < 0.7).astype(np.float32),
                "hour": rng.integers(0, 24, n).astype(np.int32),
                "dow": rng.integers(0, 7, n).astype(np.int32)}
    exclude = scipy.sparse.csr_matrix((np.ones(n, bool), (np.arange(n), rng.integers(0, n_items, n))),
                                      shape=(n, n_items))
    relevant = [set(rng.choice(n_items, 3, replace=False).tolist()) for _ in range(n)]
    queries = QuerySet("test", np.arange(n).astype(str), features, relevant, exclude)
    reference = (query.f(**{k: tf.constant(v) for k, v in features.items()})["embedding"].numpy(),
                 item.f(tf.range(n_items))["embedding"].numpy())
    return root, queries, n_items, reference


def test_measure_towers_scores_each_pair_once_and_reports_failed_item_towers(toy_towers, tmp_path):
    from recsys_utils import retrieval

    root, queries, n_items, (query_ref, item_ref) = toy_towers
    query_results = {m: compress.convert_saved_model(root / "query", m, out_path=tmp_path / f"q.{m}.tflite")
                     for m in ("float32", "float16", "dynamic_int8")}
    item_results = {m: compress.convert_saved_model(root / "item", m, out_path=tmp_path / f"i.{m}.tflite")
                    for m in ("float32", "dynamic_int8")}
    item_results["float16"] = compress.ConversionResult("float16", ok=False, error="no float16 today")
    assert all(r.ok for r in query_results.values())
    measured = compress.measure_towers(query_results, item_results, queries, n_items, k=5,
                                       repeats=3, rounds=1, progress=False)
    table = measured.table.set_index("variant")
    # The float32 pair reproduces the SavedModels and is scored as evaluate_retrieval does.
    assert compress.cosine_rows(measured.query_vectors, query_ref).min() >= 0.9999
    assert compress.cosine_rows(measured.item_vectors, item_ref).min() >= 0.9999
    expected = retrieval.rank_items(query_ref, item_ref, 5, exclude=queries.exclude)
    assert metrics.top_k_overlap(measured.ranked["float32"], expected, 5).mean() >= 0.96
    assert table.loc["float32", "quality"] == pytest.approx(
        metrics.retrieval_metrics(measured.ranked["float32"], queries.relevant, ks=(5,))["recall@5"])
    assert table.loc["float32", "quality_metric"] == "Recall@5"
    assert not (measured.ranked["float32"][queries.exclude.nonzero()[0], :] ==
                queries.exclude.nonzero()[1][:, None]).any()  # training items never returned
    # Both files count; the query tower is timed on one thread.
    assert table.loc["float32", "size_mb"] * 1e6 == pytest.approx(
        query_results["float32"].size_bytes + item_results["float32"].size_bytes)
    assert table.loc["dynamic_int8", "ok"] and table.loc["dynamic_int8", "num_threads"] == 1
    assert measured.agreement["float32"] == 1.0 and 0 <= measured.agreement["dynamic_int8"] <= 1
    # The paired interval of each mode's Recall@5 minus float32's brackets the mean difference.
    assert measured.recall_interval["float32"] == (0.0, 0.0)
    low, high = measured.recall_interval["dynamic_int8"]
    difference = table.loc["dynamic_int8", "quality"] - table.loc["float32", "quality"]
    assert low - 1e-12 <= difference <= high + 1e-12
    # A mode whose item tower failed is a failed row that says why (no TypeError).
    assert not table.loc["float16", "ok"] and "item tower float16" in table.loc["float16", "error"]
    assert "no float16 today" in table.loc["float16", "error"] and "float16" not in measured.ranked


def test_export_token_encoder_rejects_non_float_encoders(tmp_path):
    class Bf16Encoder:
        precision = "bfloat16"

    with pytest.raises(DataError, match="float32"):
        compress.export_token_encoder(Bf16Encoder(), tmp_path / "enc")


# -- LiteRT in place of tf.lite.Interpreter: the previous numbers -------------------------


def _previous_interpreter(path, **kwargs):
    """The deprecated tf.lite.Interpreter, which compress used before ai-edge-litert."""
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
        if name not in compress._PLUMBING and any(
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
    paths.append(compress.convert_saved_model(tmp_path / "m", "full_int8",
                                              representative_data=calibration).path)
    for path in paths:
        report, rows = _previous_report(path)
        assert compress.analyze_tflite(path) == report, path.name
        assert compress.analyze_tflite(path.read_bytes()) == report
        table = compress.constant_tensors(path)
        assert sorted(map(tuple, table[["name", "shape", "dtype", "bytes"]].itertuples(index=False))) \
            == sorted(rows)
    with pytest.raises(DataError, match="no TFLite model"):
        compress.analyze_tflite(tmp_path / "missing.tflite")


def test_litert_runs_every_variant_as_tf_lite_did(dense_model, dense_variants):
    held_out = dense_model[3]
    for mode, result in dense_variants.items():
        runner = compress.TFLiteRunner(result.path, num_threads=1)
        assert type(runner.interpreter).__module__.startswith("ai_edge_litert")
        new = runner.predict({"features": held_out}, batch_size=64)
        previous = _previous_interpreter(result.path, num_threads=1).get_signature_runner()
        old = np.concatenate([next(iter(previous(features=held_out[s:s + 64]).values()))
                              for s in range(0, len(held_out), 64)])
        # Same kernels: the quantized variants' outputs too, to float32 rounding.
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-6, err_msg=mode)
