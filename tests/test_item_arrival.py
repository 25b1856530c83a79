"""A new item added to the index without retraining: its vector, its rank, the raw-field chain."""

from __future__ import annotations

import json

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recsys_utils import features as F
from recsys_utils import item_arrival as A
from recsys_utils import serving as S
from recsys_utils import two_tower
from recsys_utils.content_model import fit_content_model
from recsys_utils.images import build_image_encoder, embed_images
from recsys_utils.item_text import item_text
from recsys_utils.profiles import RetrievalBudget
from recsys_utils.schema import DataError
from toy_world import make_toy

NOW = 1_600_000_000 + 90 * 86400


@pytest.fixture(scope="module")
def world():
    toy = make_toy(seed=1)
    data = F.build_features(toy.prepared, history_length=5)
    # Every path of the tower: id row, content, a cut content profile, the item bias.
    budget = RetrievalBudget(epochs=3, batch_size=128, embedding_dim=16, learning_rate=0.01,
                             loss="full_softmax", item_bias=True, bias_dropout=0.5,
                             profile_weight=2.0, profile_rank=8)
    result = two_tower.train_retrieval("fused", data, toy.content, budget, seed=0, progress=False)
    return toy, data, result


def test_a_new_items_vector_is_what_the_model_gives_an_unseen_item(world):
    toy, data, result = world
    cold = data.cold_items[:5]
    vectors = A.candidate_vectors(result.model, toy.content[cold])
    np.testing.assert_allclose(vectors, result.item_embeddings()[cold], atol=1e-5)


def test_an_added_item_is_returned_at_the_rank_its_vector_says(world):
    toy, data, result = world
    row = int(data.cold_items[0])
    item_id = str(data.vocab.item_ids[row])
    index = S.build_brute_force(result, data, without=[item_id], k=20)
    users = data.vocab.user_ids[1:9].astype(str)
    assert (A.item_ranks(index, users, NOW, [item_id]) == 0).all()   # not there yet

    A.add_items(index, A.candidate_vectors(result.model, toy.content[[row]]), [item_id])
    ranks = A.item_ranks(index, users, NOW, [item_id])[:, 0]
    scores = (result.query_embeddings(data.user_features(users, [NOW] * len(users)))
              @ result.item_embeddings().T)
    expected = (scores > scores[:, [row]] + 1e-5).sum(axis=1) + 1   # the full catalogue's ranks
    assert (np.abs(ranks - expected) <= 1).all()                      # ties within float noise
    best = users[int(np.argmin(ranks))]
    if ranks.min() <= 20:
        assert item_id in S.recommend(index, [best], NOW, k=20)[0][0]


def test_bad_new_items_give_readable_errors(world):
    toy, data, result = world
    item_id = str(data.vocab.item_ids[data.cold_items[0]])
    index = S.build_brute_force(result, data, without=[item_id])
    width = int(result.item_embeddings().shape[1])
    with pytest.raises(DataError, match="vectors must be"):
        A.add_items(index, np.zeros((1, width + 1)), [item_id])
    with pytest.raises(DataError, match="already in the index"):
        A.add_items(index, np.zeros((1, width)), [str(data.vocab.item_ids[data.warm_items][0])])
    with pytest.raises(DataError, match="content rows must be"):
        A.candidate_vectors(result.model, np.zeros((1, 3)))
    with pytest.raises(DataError, match="not in the catalogue"):
        S.build_brute_force(result, data, without=["no-such-item"])
    with pytest.raises(DataError, match="cannot be rebuilt"):
        A.item_content_rows({}, "tfidf", toy.prepared.items, toy.prepared.items[:1], ["colour"])
    id_only = two_tower.build_retrieval_model("id", data)
    with pytest.raises(DataError, match="reads no content"):
        A.candidate_vectors(id_only, toy.content[:1])


def test_raw_fields_rebuild_the_fused_vector_after_export(tmp_path):
    rng = np.random.default_rng(0)
    n, size = 60, 16
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n)], "title": [f"item {i}" for i in range(n)],
        "description": "soft", "category": rng.choice(["shoe", "hat"], n),
        "colour": rng.choice(["red", "blue", "green"], n), "price": rng.uniform(5, 50, n)})
    texts = item_text(items, ["colour"])
    text = rng.normal(size=(n, 12)).astype(np.float32)
    pixels = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    present = rng.random(n) > 0.2
    image_encoder = build_image_encoder(size, 8)
    codes = {"colour": pd.Categorical(items["colour"]).codes.astype(np.int32),
             "price_band": np.searchsorted(np.quantile(items["price"], [0.25, 0.5, 0.75]),
                                           items["price"], side="right").astype(np.int32)}
    modalities = {"text": text, "image": embed_images(image_encoder, pixels, present),
                  "attributes": codes}
    masks = {"image": present}
    labels = {"category": pd.Categorical(items["category"]).codes.astype(np.int32)}
    model, fused, _ = fit_content_model(modalities, masks, labels, method="gated",
                                        train_idx=np.arange(40), epochs=1, output_dim=8,
                                        attribute_dim=4, progress=False)
    path = A.export_item_encoder(tmp_path / "item_encoder", items=items,
                                 attribute_columns=["colour"], content_model=model,
                                 feed=model.feed(modalities, masks), attribute_codes=codes,
                                 image_encoder=image_encoder)
    assert A.attribute_spec(items, codes)["price_band"]["column"] == "price"
    by_text = dict(zip(texts, text))   # a stand-in for notebook 02's text encoder

    def text_encoder(text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"output_0": tf.constant(np.stack([by_text[t.decode()] for t in text.numpy()]))}

    encoder = A.ItemEncoder(
        spec=json.loads((path / "spec.json").read_text()), text_encoder=text_encoder,
        fusion=tf.saved_model.load(str(path / "fusion")),
        image_encoder=tf.saved_model.load(str(path / "image")))
    rows = np.flatnonzero(present)[:6]
    out = encoder.encode(items.iloc[rows], pixels=pixels[rows])
    np.testing.assert_allclose(out["fused"], fused[rows], atol=1e-5)
    # No photo: the fusion's "missing" vector, as in training.
    no_photo = np.flatnonzero(~present)[:3]
    out = encoder.encode(items.iloc[no_photo].assign(image_path=None))
    assert not out["image_present"].any()
    np.testing.assert_allclose(out["fused"], fused[no_photo], atol=1e-5)
    with pytest.raises(DataError, match="non-empty DataFrame"):
        encoder.encode(items.iloc[:0])
    with pytest.raises(DataError, match="pixels must be"):
        encoder.encode(items.iloc[rows], pixels=pixels[rows][:, :8])
    with pytest.raises(DataError):
        encoder.encode(items.iloc[rows].drop(columns=["title"]))
