"""The token-id text encoder export for TFLite and its Python-side tokenization."""

from __future__ import annotations

import numpy as np
import pytest

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from recsys_utils import metrics, tflite_conversion, token_encoder
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
def minilm(tmp_path_factory):
    from recsys_utils import text

    try:
        encoder = text.load_text_encoder(max_length=32, precision="float32")
    except text.CheckpointError as exc:
        pytest.skip(f"MiniLM checkpoint unavailable: {exc}")
    path = token_encoder.export_token_encoder(encoder, tmp_path_factory.mktemp("enc") / "encoder")
    return encoder, path


def test_minilm_dynamic_int8_keeps_cosine_and_shrinks(minilm):
    encoder, path = minilm
    inputs = token_encoder.encoder_inputs(encoder, SENTENCES)
    reference = encoder.encode(SENTENCES, progress=False)
    results = {m: tflite_conversion.convert_saved_model(path, m,
                                                        out_path=path.parent / f"{m}.tflite")
               for m in ("float32", "dynamic_int8")}
    assert all(r.ok for r in results.values()), {m: r.error for m, r in results.items()}
    float_out = tflite_conversion.TFLiteRunner(results["float32"].path).predict(inputs)
    int8_out = tflite_conversion.TFLiteRunner(results["dynamic_int8"].path).predict(inputs)
    # The token-id export reproduces encoder.encode (which pads per length bucket).
    assert metrics.cosine_rows(float_out, reference).min() >= 0.9999
    assert metrics.cosine_rows(int8_out, float_out).min() >= 0.99
    assert results["float32"].size_bytes / results["dynamic_int8"].size_bytes >= 3.5
    # Bucketed TFLite encoding: same rows, in the input order, whatever the batch split.
    texts = SENTENCES[::-1] + SENTENCES[:3]
    bucketed = token_encoder.encode_bucketed(
        tflite_conversion.TFLiteRunner(results["float32"].path), encoder, texts, batch_size=3)
    expected = np.concatenate([reference[::-1], reference[:3]])
    assert bucketed.shape == expected.shape
    assert metrics.cosine_rows(bucketed, expected).min() >= 0.9999


def test_encode_bucketed_runs_the_keras_encoders_batches(minilm):
    encoder, _ = minilm
    texts = SENTENCES[:7] + SENTENCES[2:4] + ["", SENTENCES[0]]  # repeats are encoded once
    fed = []

    def runner(inputs):  # records each batch; returns the first token id as a 1-d "vector"
        fed.append((inputs["token_ids"].copy(), inputs["padding_mask"].copy()))
        return inputs["token_ids"][:, 1:2].astype(np.float32)

    out = token_encoder.encode_bucketed(runner, encoder, texts, batch_size=3)
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
    samples = token_encoder.encoder_samples(encoder, texts)
    tokens = encoder.tokenize(texts)
    assert len(samples) == len(texts)
    for sample, t in zip(samples, tokens):
        assert set(sample) == {"token_ids", "padding_mask"}
        assert sample["token_ids"].shape == sample["padding_mask"].shape == (1, len(t))
        np.testing.assert_array_equal(sample["token_ids"][0], t)
        assert sample["padding_mask"].all()


def test_export_token_encoder_rejects_non_float_encoders(tmp_path):
    class Bf16Encoder:
        precision = "bfloat16"

    with pytest.raises(DataError, match="float32"):
        token_encoder.export_token_encoder(Bf16Encoder(), tmp_path / "enc")
