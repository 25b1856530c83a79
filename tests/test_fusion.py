"""Fusion layers: shapes, exact masking, gradients, weights, SavedModel, and the content task."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from recsys_utils import fusion as F
from recsys_utils.schema import DataError

B, DIMS, OUT = 6, {"text": 24, "image": 16, "attributes": 8}, 12
METHODS = list(F.FUSION_METHODS)
ORDER = ["text", "image", "attributes"]


def make_inputs(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(B, DIMS[name])).astype(np.float32) for name in ORDER]
    mask = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    return xs, mask


def layer(method: str, **kwargs) -> tf.keras.layers.Layer:
    tf.keras.utils.set_random_seed(0)
    return F.build_fusion(method, output_dim=OUT, modality_names=ORDER, **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_output_shapes_list_and_dict(method):
    xs, mask = make_inputs()
    fused = layer(method)(xs, modality_mask=mask)
    assert fused.shape == (B, OUT)
    # Dict inputs follow modality_names, whatever the dict order.
    by_name = layer(method)(dict(reversed(list(zip(ORDER, xs)))), modality_mask=mask)
    assert by_name.shape == (B, OUT)
    # No mask = everything present.
    assert layer(method)(xs).shape == (B, OUT)


@pytest.mark.parametrize("method", METHODS)
def test_masked_modality_does_not_contribute(method):
    xs, _ = make_inputs()
    fuse = layer(method)
    mask = np.ones((B, 3), np.float32)
    mask[:, 1] = 0                                   # image masked for every item
    base = fuse(xs, modality_mask=mask).numpy()
    for replacement in (np.zeros_like(xs[1]), 100 * np.random.default_rng(5).normal(size=xs[1].shape)):
        swapped = [xs[0], replacement.astype(np.float32), xs[2]]
        np.testing.assert_allclose(fuse(swapped, modality_mask=mask).numpy(), base, atol=1e-6, rtol=0)
    # NaN in an absent slot does not leak either.
    nan_image = np.full_like(xs[1], np.nan)
    np.testing.assert_allclose(fuse([xs[0], nan_image, xs[2]], modality_mask=mask).numpy(), base, atol=1e-6)
    # ...but the image does matter when present.
    present = fuse(xs, modality_mask=np.ones((B, 3), np.float32)).numpy()
    assert np.abs(present - base).max() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_single_present_modality_and_none_present_are_finite(method):
    xs, _ = make_inputs()
    fuse = layer(method)
    for m in range(3):
        mask = np.zeros((B, 3), np.float32)
        mask[:, m] = 1
        assert np.isfinite(fuse(xs, modality_mask=mask).numpy()).all()
    assert np.isfinite(fuse(xs, modality_mask=np.zeros((B, 3), np.float32)).numpy()).all()


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_present_and_not_masked(method):
    xs, mask = make_inputs()
    fuse = layer(method)
    fuse(xs, modality_mask=np.ones((B, 3), np.float32))       # build
    inputs = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.square(fuse(inputs, modality_mask=np.ones((B, 3), np.float32)) - 1.0))
    kernels = [p.kernel for p in fuse.projections]
    grads = tape.gradient(loss, kernels)
    for name, g in zip(ORDER, grads):
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, f"no gradient to proj_{name}"

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.square(fuse(inputs, modality_mask=mask) - 1.0))
    grads = tape.gradient(loss, inputs)
    for m, g in enumerate(grads):
        g = g.numpy()
        absent = mask[:, m] == 0
        assert (g[absent] == 0).all(), f"masked {ORDER[m]} received gradient"
        assert (np.abs(g[~absent]).sum(axis=1) > 0).all(), f"present {ORDER[m]} received none"


@pytest.mark.parametrize("method", ["gated", "attention"])
def test_modality_weights_sum_to_one_over_present(method):
    xs, mask = make_inputs()
    _, weights = layer(method)(xs, modality_mask=mask, return_weights=True)
    weights = weights.numpy()
    assert weights.shape == (B, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert (weights[mask == 0] == 0).all()
    assert (weights[mask == 1] > 0).all()


def test_gated_prior_weights():
    fuse = layer("gated")
    xs, mask = make_inputs()
    fuse(xs, modality_mask=mask)
    prior = fuse.prior_weights
    assert prior.shape == (3,)
    np.testing.assert_allclose(prior, 1 / 3, atol=1e-6)       # zero-initialised gate


def test_concat_hidden_units_and_dropout_config():
    fuse = layer("concat", hidden_units=(32, 16), dropout=0.2)
    xs, mask = make_inputs()
    assert fuse(xs, modality_mask=mask, training=True).shape == (B, OUT)
    config = fuse.get_config()
    assert config["hidden_units"] == [32, 16] and config["dropout"] == 0.2
    clone = F.ConcatFusion.from_config(config)
    assert clone(xs, modality_mask=mask).shape == (B, OUT)


def test_attribute_embedding():
    emb = F.AttributeEmbedding({"colour": 4, "brand": 3}, dim=5)
    codes = {"colour": np.array([0, 3, -1, 7]), "brand": np.array([2, 0, 1, 1])}
    out = emb(codes).numpy()
    assert out.shape == (4, 5)
    # -1 and out-of-range (7) share the "unknown" row.
    unknown = emb.embeddings["colour"].embeddings.numpy()[4]
    brand = emb.embeddings["brand"].embeddings.numpy()
    np.testing.assert_allclose(out[2], unknown + brand[1], atol=1e-6)
    np.testing.assert_allclose(out[3], unknown + brand[1], atol=1e-6)
    concat = F.AttributeEmbedding({"colour": 4, "brand": 3}, dim=5, combine="concat")
    assert concat(codes).shape == (4, 10)


def test_price_bands_and_keys():
    codes = F.price_bands([1.0, 2.0, 3.0, 4.0, np.nan, 100.0, 5.0, 6.0], n_bands=4)
    assert codes[4] == -1 and sorted(set(codes[np.arange(8) != 4])) == [0, 1, 2, 3]
    assert list(F.combine_keys(["a", "b"], [1, 2])) == ["a|1", "b|2"]


@pytest.mark.parametrize("method", METHODS)
def test_fusion_inside_savedmodel_roundtrip(method, tmp_path):
    tf.keras.utils.set_random_seed(0)
    text = tf.keras.Input((DIMS["text"],), name="text")
    image = tf.keras.Input((DIMS["image"],), name="image")
    colour = tf.keras.Input((), dtype=tf.int32, name="colour")
    mask_in = tf.keras.Input((3,), name="modality_mask")
    attributes = F.AttributeEmbedding({"colour": 4}, dim=DIMS["attributes"])({"colour": colour})
    fused = F.build_fusion(method, output_dim=OUT, modality_names=ORDER)(
        [text, image, attributes], modality_mask=mask_in)
    model = tf.keras.Model({"text": text, "image": image, "colour": colour, "modality_mask": mask_in}, fused)
    xs, mask = make_inputs()
    feed = {"text": xs[0], "image": xs[1], "colour": np.array([0, 1, 2, 3, -1, 1], np.int32),
            "modality_mask": mask}
    expected = model.predict(feed, verbose=0)
    path = tmp_path / "saved"
    model.save(path)                                      # SavedModel (directory) format
    assert (path / "saved_model.pb").exists()
    reloaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(feed, verbose=0), expected, atol=1e-5)
    assert type(reloaded.layers[-1]).__name__ == type(model.layers[-1]).__name__


def test_unknown_method_error():
    with pytest.raises(ValueError, match="concat, gated, attention"):
        F.build_fusion("transformer++", output_dim=8)


# ---------------------------------------------------------------- content task
@pytest.fixture(scope="module")
def world():
    """Items whose text shows attribute A, image shows attribute B; C only via attributes."""
    rng = np.random.default_rng(0)
    n = 600
    a, b, c = rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 5, n)
    text = np.concatenate([np.eye(4)[a], rng.normal(0, 0.3, (n, 12))], axis=1).astype(np.float32)
    image = np.concatenate([np.eye(3)[b], rng.normal(0, 0.3, (n, 8))], axis=1).astype(np.float32)
    image_present = rng.random(n) > 0.2
    image[~image_present] = 0
    idx = rng.permutation(n)
    return dict(n=n, a=a.astype(np.int32), b=b.astype(np.int32), c=c.astype(np.int32), text=text,
                image=image, image_present=image_present, train=idx[:450], test=idx[450:],
                key=F.combine_keys(a, b))


@pytest.mark.parametrize("method", [None, "concat", "gated", "attention"])
def test_fit_content_model(world, method):
    w = world
    modalities = {"text": w["text"]} if method is None else {"text": w["text"], "image": w["image"]}
    masks = {} if method is None else {"image": w["image_present"]}
    model, emb, history = F.fit_content_model(
        modalities, masks, {"a": w["a"], "b": w["b"]}, method=method, train_idx=w["train"],
        val_idx=w["test"], output_dim=16, epochs=15, batch_size=64, learning_rate=3e-3, seed=0,
        progress=False)
    assert emb.shape == (w["n"], 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert history["loss"][-1] < history["loss"][0] and "val_loss" in history
    metrics = F.content_retrieval_metrics(emb, w["test"], w["key"])
    assert {"precision@10", "recall@10", "ndcg@10", "n_queries"} <= set(metrics)
    with_image = w["test"][w["image_present"][w["test"]]]
    p_image = F.content_retrieval_metrics(emb, with_image, w["key"])["precision@10"]
    if method is None:
        assert metrics["precision@10"] < 0.45, metrics   # text alone cannot see attribute b
    else:
        # Fusion recovers a and b wherever the image is there (chance is 1/12).
        assert p_image > 0.85 and metrics["precision@10"] > 0.7, (p_image, metrics)
    if method in ("gated", "attention"):
        weights = model.modality_weights(modalities, masks)
        assert weights.shape == (w["n"], 2)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        assert (weights[~w["image_present"], 1] == 0).all()
    np.testing.assert_allclose(model.embed(modalities, masks), emb, atol=1e-5)


def test_fit_content_model_with_attribute_codes(world):
    w = world
    model, emb, _ = F.fit_content_model(
        {"text": w["text"], "attributes": {"c": w["c"]}}, None, {"a": w["a"], "c2": w["c"] % 2},
        method="gated", train_idx=w["train"], output_dim=8, epochs=2, batch_size=128, progress=False)
    assert emb.shape == (w["n"], 8)
    assert model.modality_names == ["text", "attributes"]


def test_fit_content_model_errors(world):
    w = world
    two = {"text": w["text"], "image": w["image"]}
    with pytest.raises(ValueError, match="exactly one"):
        F.fit_content_model(two, None, {"a": w["a"]}, method=None, train_idx=w["train"])
    with pytest.raises(ValueError, match="concat, gated, attention"):
        F.fit_content_model(two, None, {"a": w["a"]}, method="sum", train_idx=w["train"])
    with pytest.raises(DataError, match="both an input"):
        F.fit_content_model({"attributes": {"a": w["a"]}}, None, {"a": w["a"]}, method=None,
                            train_idx=w["train"])
    with pytest.raises(DataError, match="rows"):
        F.fit_content_model({"text": w["text"], "image": w["image"][:10]}, None, {"a": w["a"]},
                            method="concat", train_idx=w["train"])


def test_content_retrieval_metrics_by_hand():
    # Two tight clusters of 3 items; item 5 is an outlier of cluster 0's key.
    emb = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99], [-1, 0.05]], np.float32)
    key = np.array(["x", "x", "x", "y", "y", "x"])
    m = F.content_retrieval_metrics(emb, np.arange(6), key, k=2)
    # Query 0: neighbours 1, 2 (both x) -> p=1, recall=2/3. Query 5 (x): neighbours 3/4 (y) -> 0.
    ranked_hits = {0: 2, 1: 2, 2: 2, 3: 1, 4: 1, 5: 0}
    n_rel = {0: 3, 1: 3, 2: 3, 3: 1, 4: 1, 5: 3}
    assert m["precision@2"] == pytest.approx(np.mean([h / 2 for h in ranked_hits.values()]))
    assert m["recall@2"] == pytest.approx(np.mean([ranked_hits[i] / n_rel[i] for i in range(6)]))
    assert m["n_queries"] == 6
    only_eval = F.content_retrieval_metrics(emb, np.array([0, 3]), key, k=1, candidates="eval")
    assert only_eval["n_queries"] == 0 and only_eval["n_excluded"] == 2


# ---------------------------------------------------------------- notebook-03 helpers
def small_catalogue(n: int = 40, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "item_id": [f"i{i:03d}" for i in range(n)],
        "category": rng.choice(["hat", "bag", "shoe"], n),
        "colour": rng.choice(["red", "blue", "unknown"], n, p=[0.45, 0.45, 0.1]),
        "material": rng.choice(["wool", "silk"], n),
        "gender": rng.choice(["men", "women"], n),
        "price": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(5, 100, n)),
    })
    items["genres"] = items["category"] + "|" + items["gender"]     # determines the category
    return items


def test_content_task_labels_relevance_and_attribute_inputs():
    items = small_catalogue()
    task = F.content_task("synthetic", items, ["gender", "genres"])
    assert task.label_columns == ["category", "colour", "material"]
    assert task.relevance_columns == ["colour", "material"]
    # Label columns never become inputs; "genres" gives the category away; price -> bands.
    assert task.attribute_columns == ["gender", "price_band"]
    assert "category" in task.excluded["genres"] and set(task.attributes) == {"gender", "price_band"}
    unknown = (items["colour"] == "unknown").to_numpy()
    assert (task.labels["colour"][unknown] == -1).all() and (task.labels["colour"][~unknown] >= 0).all()
    assert set(task.labels["colour"][~unknown]) == {0, 1}        # dense codes without the placeholder
    # An unknown relevance value makes a key of its own: never relevant to anything.
    assert len(set(task.relevance_key[unknown])) == unknown.sum()
    assert not set(task.relevance_key[unknown]) & set(task.relevance_key[~unknown])
    assert task.image_columns == ["category", "colour"] and task.image_key is not None
    summary = task.summary()
    assert summary.loc["genres", "role"] == "excluded" and summary.loc["colour", "values"] == 2
    assert "colour + material" in task.describe()


def test_content_task_without_images_and_unknown_dataset():
    items = small_catalogue()
    task = F.content_task("movielens-100k", items, ["genres", "gender"], has_images=False)
    assert task.label_columns == ["category"] and task.image_columns == [] and task.image_key is None
    assert task.attribute_columns == ["gender", "price_band"]
    other = F.content_task("my-shop", items.drop(columns="price"), ["colour", "gender"])
    assert other.label_columns == ["category"] and other.attribute_columns == ["colour", "gender"]
    with pytest.raises(DataError, match="material"):
        F.content_task("synthetic", items.drop(columns="material"), ["gender"])


def test_label_purity():
    assert F.label_purity(["a", "a", "b", "b"], ["x", "x", "y", "y"]) == 1.0
    assert F.label_purity(["a", "a", "a", "a"], ["x", "x", "y", "y"]) == 0.5
    assert F.label_purity(["a", "unknown"], ["x", "y"]) == 1.0          # unknowns left out


def test_holdout_items_keeps_cold_items_out_of_training():
    ids = [f"i{i}" for i in range(50)]
    cold = ["i3", "i7", "i11"]
    train, held = F.holdout_items(ids, cold, share=0.2, seed=1)
    assert len(held) == 10 and {3, 7, 11} <= set(held)
    assert not set(train) & set(held) and len(train) + len(held) == 50
    again = F.holdout_items(ids, cold, share=0.2, seed=1)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(F.holdout_items(ids, cold, share=0.2, seed=2)[1], held)
    many_cold = [f"i{i}" for i in range(20)]                            # more cold items than the share
    assert len(F.holdout_items(ids, many_cold, share=0.2)[1]) == 20
    with pytest.raises(ValueError, match="share"):
        F.holdout_items(ids, cold, share=1.5)


def test_compare_content_models_fusion_beats_single_modalities(world):
    w = world
    comparison = F.compare_content_models(
        {"text": w["text"], "image": w["image"]}, {"image": w["image_present"]},
        {"a": w["a"], "b": w["b"]}, w["key"], train_idx=w["train"], eval_idx=w["test"],
        methods=("concat", "gated"), metric="precision@10", seed=0, progress=False,
        output_dim=16, epochs=15, batch_size=64, learning_rate=3e-3)
    table = comparison.table
    assert list(table.index) == ["text", "image", "concat", "gated"]
    assert list(table["kind"]) == ["single modality"] * 2 + ["fusion"] * 2
    assert set(comparison.embeddings) == set(table.index)
    # a is only in the text, b only in the image: fusion must win clearly.
    assert comparison.best_fusion in ("concat", "gated") and comparison.margin["absolute"] > 0.2, table
    weights = F.modality_weight_table(comparison, {"text": w["text"], "image": w["image"]},
                                      {"image": w["image_present"]}, w["test"])
    assert list(weights.index) == ["gated (prior)", "gated (mean)"]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)


def test_compare_content_models_skips_an_absent_modality(world):
    w = world
    comparison = F.compare_content_models(
        {"text": w["text"], "image": w["image"]}, {"image": np.zeros(w["n"], bool)}, {"a": w["a"]},
        w["key"], train_idx=w["train"], eval_idx=w["test"], progress=False, epochs=1, output_dim=8)
    assert comparison.table.loc["image", "note"] == "no item has this modality"
    assert list(comparison.embeddings) == ["text"] and comparison.best_single == "text"
    with pytest.raises(DataError, match="no modality"):
        F.compare_content_models({"image": w["image"]}, {"image": np.zeros(w["n"], bool)}, {"a": w["a"]},
                                 w["key"], train_idx=w["train"], eval_idx=w["test"], progress=False)


def test_neighbour_changes_by_hand():
    # Items 0-1-2 close in "before"; in "after" item 0 moves next to its relevant partner 3.
    before = np.array([[1, 0], [0.7, 0.7], [0.72, 0.7], [0, 1]], np.float32)
    after = np.array([[0, 1], [0.7, 0.7], [0.72, 0.7], [0.1, 0.9]], np.float32)
    key = np.array(["x", "y", "y", "x"])
    table = F.neighbour_changes(before, after, np.array([0, 1]), key, k=1)
    assert table.index[0] == 0
    assert table.loc[0].to_dict() == {"overlap": 0.0, "relevant_before": 0, "relevant_after": 1, "gain": 1}
    assert table.loc[1, "overlap"] == 1.0 and table.loc[1, "gain"] == 0
