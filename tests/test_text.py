"""Tests of recsys_utils.text: the sentence encoder (tokens, batches, precision, cached encode)."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from recsys_utils import sentence_pooling, text
from recsys_utils.embedding_cache import EmbeddingCache
from recsys_utils.schema import DataError

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder() -> text.TextEncoder:
    return text.load_text_encoder(max_length=128, precision="float32", batch_size=4)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# -- numerics --------------------------------------------------------

def test_token_ids_match_the_reference_tokenizer(encoder, reference):
    # Includes "Café ... ÜBER": Hugging Face strips accents when lower-casing.
    ours = [t.tolist() for t in encoder.tokenize(reference["sentences"])]
    assert ours == reference["token_ids"]


def test_fast_tokenizer_gives_the_graph_tokenizer_ids(encoder, reference, tmp_path):
    """tokenize() runs tokenizer.json (Rust); the exports run the keras-hub graph tokenizer:
    the same ids, truncation to max_length included."""
    assert encoder._fast_tokenizer is not None
    texts = [*reference["sentences"], "wool " * 300, "", "Ünïcödé naïve CAFÉ-crème, 42%!"]
    import tensorflow as tf

    graph = encoder._tokenize_fn(tf.constant(texts)).to_list()
    assert [t.tolist() for t in encoder.tokenize(texts)] == graph
    assert len(graph[len(reference["sentences"])]) == encoder.max_length
    assert text._fast_tokenizer(str(tmp_path), 128) is None  # no tokenizer.json: graph path


def test_embeddings_match_the_pytorch_reference(encoder, reference):
    vectors = encoder.encode(reference["sentences"], progress=False)
    expected = np.asarray(reference["vectors"], dtype=np.float64)
    assert vectors.shape == (len(reference["sentences"]), 384) == expected.shape
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(vectors, expected).min() >= 0.999, cosine(vectors, expected)


def test_paraphrases_score_higher_than_unrelated_pairs(encoder):
    pairs = [
        ("waterproof hiking boots", "boots for walking in the rain"),
        ("wireless headphones", "bluetooth earphones without cables"),
        ("a warm winter coat", "insulated jacket for cold weather"),
    ]
    unrelated = ["stainless steel frying pan", "children's picture book about dinosaurs",
                 "quarterly tax report"]
    left = encoder.encode([a for a, _ in pairs], progress=False)
    right = encoder.encode([b for _, b in pairs], progress=False)
    other = encoder.encode(unrelated, progress=False)
    paraphrase = (left * right).sum(1)
    for i in range(len(pairs)):
        assert paraphrase[i] > (left[i] * other).sum(1).max() + 0.1


def test_bucketed_and_fixed_length_agree_and_keep_order(encoder):
    texts = ["red", "a long product description " * 12, "blue cotton shirt", "",
             "Lightweight running shoe with a breathable mesh upper and a cushioned sole.", "red"]
    bucketed = encoder.encode(texts, bucketing=True, batch_size=2, progress=False)
    fixed = encoder.encode(texts, bucketing=False, batch_size=2, progress=False)
    assert cosine(bucketed, fixed).min() >= 0.9999
    one_by_one = np.concatenate([encoder.encode([t], progress=False) for t in texts])
    assert cosine(bucketed, one_by_one).min() >= 0.9999  # original order restored
    np.testing.assert_array_equal(bucketed[0], bucketed[5])  # duplicates encoded once


def test_batches_pad_each_bucket_and_cover_every_text_once(encoder):
    texts = ["red", "a long product description " * 40, "blue cotton shirt", "",
             "Lightweight running shoe with a breathable mesh upper.", "green"]
    tokens = encoder.tokenize(texts)
    bucketed = list(encoder.batches(texts, batch_size=2))
    rows = np.concatenate([r for r, _, _ in bucketed])
    assert sorted(rows.tolist()) == list(range(len(texts)))
    assert [len(tokens[i]) for i in rows] == sorted((len(t) for t in tokens), reverse=True)
    for r, ids, mask in bucketed:
        longest = max(len(tokens[i]) for i in r)
        assert ids.dtype == mask.dtype == np.int32 and ids.shape == mask.shape == (len(r), ids.shape[1])
        assert ids.shape[1] == min(-(-longest // encoder.pad_multiple) * encoder.pad_multiple,
                                   encoder.max_length)
        for j, i in enumerate(r):
            np.testing.assert_array_equal(ids[j, :len(tokens[i])], tokens[i])
            assert mask[j].sum() == len(tokens[i]) and (ids[j][mask[j] == 0] == encoder.pad_id).all()
    fixed = list(encoder.batches(texts, batch_size=4, bucketing=False))
    assert np.concatenate([r for r, _, _ in fixed]).tolist() == list(range(len(texts)))
    assert all(ids.shape[1] == encoder.max_length for _, ids, _ in fixed)
    assert list(encoder.batches([], batch_size=2)) == []


def test_encode_runs_the_batches_of_its_distinct_texts(encoder, monkeypatch):
    texts = ["blue shirt", "a pair of long woollen socks for winter", "blue shirt", "cap"]
    shapes: list[tuple[int, int]] = []
    real = encoder._encode_batch

    def recording(ids, mask):
        shapes.append(ids.shape)
        return real(ids, mask)

    monkeypatch.setattr(encoder, "_encode_batch", recording)
    encoder.encode(texts, batch_size=2, progress=False, in_flight=1)  # one pass at a time: in order
    assert shapes == [ids.shape for _, ids, _ in encoder.batches(list(dict.fromkeys(texts)),
                                                                 batch_size=2)]


def test_forward_passes_in_flight_give_the_same_vectors_in_order(encoder):
    texts = [f"{colour} {thing}, item {i}" for i, (colour, thing) in enumerate(
        (c, t) for c in ("red", "navy blue", "green") for t in ("shirt", "cap",
                                                                "sock with a long woollen cuff"))]
    one_at_a_time = encoder.encode(texts, batch_size=2, in_flight=1, progress=False)
    for in_flight in (2, 3):
        np.testing.assert_array_equal(
            encoder.encode(texts, batch_size=2, in_flight=in_flight, progress=False), one_at_a_time)
    with pytest.raises(DataError, match="in_flight"):
        encoder.encode(texts, in_flight=0)


def test_long_texts_are_truncated_to_max_length(encoder):
    tokens = encoder.tokenize(["word " * 500])[0]
    assert len(tokens) == encoder.max_length
    assert tokens[0] == encoder.cls_id and tokens[-1] == encoder.sep_id


def test_empty_input_and_non_strings(encoder):
    assert encoder.encode([], progress=False).shape == (0, encoder.dim)
    with pytest.raises(DataError, match="not strings"):
        encoder.encode(["ok", None], progress=False)
    with pytest.raises(DataError, match="wrap a single text in a list"):
        encoder.encode("a single string", progress=False)


def test_bfloat16_and_cls_pooling(encoder, reference):
    full = encoder.encode(reference["sentences"], progress=False)
    bf16 = text.load_text_encoder(precision="bfloat16")
    assert bf16.precision == "bfloat16" and bf16.cache_key != encoder.cache_key
    half = bf16.encode(reference["sentences"], progress=False)
    assert half.dtype == np.float32
    assert cosine(full, half).min() >= 0.999  # the faster path: same vectors (bench_peers)
    cls = text.load_text_encoder(pooling="cls")
    cls_vectors = cls.encode(reference["sentences"], progress=False)
    np.testing.assert_allclose(np.linalg.norm(cls_vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(full, cls_vectors).max() < 0.99  # really a different pooling


def test_flattened_feedforward_gives_the_dense_layers_own_outputs():
    """The 2-D call computes what keras' Dense computes on (batch, tokens, d), weights and
    activation included, for the layer with GELU and the one without."""
    import keras
    import tensorflow as tf

    layers = [keras.layers.Dense(12, activation="gelu"), keras.layers.Dense(6)]
    inputs = tf.random.stateless_normal((3, 5, 6), seed=(1, 2))
    for layer, width in zip(layers, (6, 12)):
        layer.build((None, None, width))
        layer.bias.assign(tf.random.stateless_normal(layer.bias.shape, seed=(3, 4)))
    before = [layers[0](inputs), layers[1](layers[0](inputs))]
    block = SimpleNamespace(_feedforward_intermediate_dense=layers[0],
                            _feedforward_output_dense=layers[1])
    text.flatten_feedforward(SimpleNamespace(transformer_layers=[block]))
    after = [layers[0](inputs), layers[1](layers[0](inputs))]
    for old, new in zip(before, after):
        assert new.shape == old.shape
        np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-5, atol=1e-6)
    # A graph with unknown batch and length, as TextEncoder's forward pass is traced.
    spec = tf.TensorSpec([None, None, 6], tf.float32)
    graph = tf.function(lambda x: layers[1](layers[0](x)), input_signature=[spec])
    np.testing.assert_allclose(graph(inputs).numpy(), before[1].numpy(), rtol=1e-5, atol=1e-6)


def test_profiles_text_sections_are_valid_encoder_options():
    import dataclasses
    import inspect

    from recsys_utils.profiles import PROFILES

    for profile in PROFILES.values():  # TypeError on a setting TextEncoder does not take
        inspect.signature(text.TextEncoder).bind(**dataclasses.asdict(profile.text))
        assert profile.text.pooling in sentence_pooling.POOLINGS
        assert profile.text.precision in text.PRECISIONS


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="pooling"):
        text.TextEncoder(pooling="max")
    with pytest.raises(ValueError, match="precision"):
        text.TextEncoder(precision="int4")


def test_the_forward_pass_pools_with_the_notebook_function(encoder, monkeypatch):
    # One definition: the encoder calls sentence_pooling.sentence_vectors, written from notebook 02.
    calls = []
    real = sentence_pooling.sentence_vectors
    monkeypatch.setattr(text, "sentence_vectors",
                        lambda *args: calls.append(args[2]) or real(*args))
    import tensorflow as tf

    ids = tf.constant([[encoder.cls_id, 2000, encoder.sep_id]], tf.int32)
    vectors = encoder.embed_tokens(ids, tf.ones_like(ids)).numpy()
    assert calls == ["mean"] and vectors.shape == (1, encoder.dim)


# -- the cache, as encode uses it -----------------------------------------------------------------------

def test_cache_is_hit_on_rerun(encoder, tmp_path, monkeypatch):
    texts = ["blue denim jacket", "green tea 100 bags", "usb-c charging cable 2 m"]
    first = encoder.encode(texts, cache_dir=tmp_path, progress=False)
    assert list(tmp_path.rglob("shard-*.npz"))

    def must_not_run(*args, **kwargs):
        raise AssertionError("the encoder ran although every text was cached")

    monkeypatch.setattr(encoder, "_encode_batch", must_not_run)
    again = encoder.encode(list(reversed(texts)), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again, first[::-1])
    monkeypatch.undo()

    # A new text is encoded alone; the cached ones are not recomputed.
    seen: list[int] = []
    real = encoder._encode_batch

    def counting(ids, mask):
        seen.append(len(ids))
        return real(ids, mask)

    monkeypatch.setattr(encoder, "_encode_batch", counting)
    mixed = encoder.encode(texts + ["a brand new text"], cache_dir=tmp_path, progress=False)
    assert sum(seen) == 1
    np.testing.assert_array_equal(mixed[:3], first)


def test_cache_is_keyed_by_encoder_settings(encoder, tmp_path):
    other = EmbeddingCache(tmp_path, {**encoder.cache_key, "pooling": "cls"})
    mine = EmbeddingCache(tmp_path, encoder.cache_key)
    assert other.dir != mine.dir
    other.write(["0" * 40], np.ones((1, encoder.dim), np.float32))
    assert mine.lookup(["0" * 40]) == {}


def test_a_shard_failing_its_checksum_is_recomputed_not_served(encoder, tmp_path, monkeypatch,
                                                               caplog):
    texts = ["wool scarf, red", "steel water bottle 750 ml"]
    first = encoder.encode(texts, cache_dir=tmp_path, progress=False)
    (shard,) = tmp_path.rglob("shard-*.npz")
    with np.load(shard) as data:
        keys, checksum = data["keys"], data["checksum"]
    # A valid .npz whose vectors were zeroed (disk error, bad copy): the checksum no longer fits.
    with open(shard, "wb") as f:
        np.savez(f, keys=keys, vectors=np.zeros((2, encoder.dim), np.float32), checksum=checksum)
    seen: list[int] = []
    real = encoder._encode_batch
    monkeypatch.setattr(encoder, "_encode_batch",
                        lambda ids, mask: seen.append(len(ids)) or real(ids, mask))
    with caplog.at_level("WARNING", logger="recsys_utils.embedding_cache"):
        again = encoder.encode(texts, cache_dir=tmp_path, progress=False)
    assert sum(seen) == 2  # both texts encoded again
    assert "checksum mismatch" in caplog.text and str(shard) in caplog.text
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert np.linalg.norm(again, axis=1).min() > 0.99  # never the zeros


def test_interrupted_run_resumes(encoder, tmp_path, monkeypatch):
    texts = [f"product number {i} in size {s}" for i, s in enumerate("SMLXSMLX")]
    real = encoder._encode_batch
    calls = {"n": 0}

    def crash_after_two_batches(ids, mask):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(ids, mask)

    monkeypatch.setattr(encoder, "_encode_batch", crash_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        # chunk_size 4 = two batches of 2: the first chunk completes and is stored.
        encoder.encode(texts, cache_dir=tmp_path, batch_size=2, chunk_size=4, progress=False)
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 1
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written shard left behind

    encoded: list[int] = []

    def counting(ids, mask):
        encoded.append(len(ids))
        return real(ids, mask)

    monkeypatch.setattr(encoder, "_encode_batch", counting)
    resumed = encoder.encode(texts, cache_dir=tmp_path, batch_size=2, chunk_size=4, progress=False)
    assert sum(encoded) == 4  # only the unfinished half
    monkeypatch.undo()
    fresh = encoder.encode(texts, progress=False)
    assert cosine(resumed, fresh).min() >= 0.9999
