"""The image module: robust loading, and an encoder that learns on tiny shapes."""

from __future__ import annotations

import warnings

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
from PIL import Image, ImageDraw

from recsys_utils import images as img
from recsys_utils.content_metrics import combine_keys

COLOURS = [(220, 40, 40), (40, 170, 60), (40, 70, 220), (230, 200, 40)]
SHAPES = ["circle", "square", "triangle"]


def make_shapes(n_per_combo: int = 18, size: int = 32, seed: int = 0):
    """Coloured shapes of random size/position on noisy grey: (images, colour, shape)."""
    rng = np.random.default_rng(seed)
    pics, colour, shape = [], [], []
    for c, rgb in enumerate(COLOURS):
        for s, kind in enumerate(SHAPES):
            for _ in range(n_per_combo):
                bg = rng.integers(90, 170, size=(size, size, 3), dtype=np.uint8)
                im = Image.fromarray(bg)
                draw = ImageDraw.Draw(im)
                r = rng.uniform(0.22, 0.38) * size
                cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
                fill = tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in rgb)
                if kind == "circle":
                    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
                elif kind == "square":
                    draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
                else:
                    draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
                pics.append(np.asarray(im))
                colour.append(c)
                shape.append(s)
    order = rng.permutation(len(pics))
    return (np.stack(pics)[order], np.array(colour, np.int32)[order], np.array(shape, np.int32)[order])


# ---------------------------------------------------------------- loading
def test_load_images_handles_none_missing_and_corrupt(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (50, 50), (10, 200, 30)).save(good)
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(rgba)      # fully transparent
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not an image at all")
    paths = [str(good), None, str(tmp_path / "nope.jpg"), str(corrupt), float("nan"), str(rgba)]
    with pytest.warns(UserWarning, match="1 missing and 1 unreadable"):
        pixels, present, counts = img.load_images(paths, size=32, progress=False, return_counts=True)
    assert pixels.shape == (6, 32, 32, 3) and pixels.dtype == np.uint8
    assert present.tolist() == [True, False, False, False, False, True]
    assert counts == {"total": 6, "loaded": 2, "none": 2, "missing": 1, "unreadable": 1}
    assert (pixels[~present] == 0).all()
    assert tuple(pixels[0, 16, 16]) == (10, 200, 30)
    assert (pixels[5] == 255).all()          # transparency composited on the white padding


def test_image_plots_never_raise_on_an_unreadable_file(tmp_path):
    """A file that stopped decoding after notebook 01's check is an empty cell, not a crash."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from recsys_utils import plots

    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (10, 200, 30)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"],
                          "image_path": [str(good), str(bad), str(tmp_path / "gone.png")]})
    grid = plots.sample_image_grid(items, n=3, seed=0, columns=3)
    texts = [t.get_text() for ax in grid.axes for t in ax.texts]
    assert texts.count("unreadable") == 2 and sum(bool(ax.images) for ax in grid.axes) == 1
    neighbours = pd.DataFrame({"query": ["q", "q"], "rank": [1, 2], "item_id": ["b", "c"]})
    grid = plots.neighbour_grid(neighbours, items, query_items=["a"])
    assert sum(bool(ax.images) for ax in grid.axes) == 1
    # Long titles wrap onto two lines and end in "…", never cut mid-word.
    items["title"] = ["Men's vintage washed denim jacket in indigo blue", "B", "C"]
    grid = plots.neighbour_grid(neighbours, items, query_items=["a"])
    assert grid.axes[0].get_title() == "query: Men's vintage\nwashed denim jacket …"


def test_load_images_keeps_aspect_ratio_with_padding(tmp_path):
    path = tmp_path / "fashion.jpg"
    Image.new("RGB", (60, 80), (200, 30, 30)).save(path, quality=95)   # width 60, height 80
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # a clean load warns about nothing
        pixels, present = img.load_images([str(path)], size=64, progress=False)
    assert pixels.shape == (1, 64, 64, 3) and present.all()
    im = pixels[0].astype(int)
    # 60x80 -> 48x64: 8 white columns each side, the red photo in between, full height.
    assert (im[:, :8] == 255).all() and (im[:, -8:] == 255).all()
    centre = im[:, 10:54]
    assert (abs(centre - [200, 30, 30]) < 12).all()


# ---------------------------------------------------------------- encoder
def test_build_image_encoder_shapes_and_unit_norm():
    encoder = img.build_image_encoder(size=32, dim=16)
    x = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3)).astype(np.float32)
    v = encoder.predict(x, verbose=0)
    assert v.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="small_cnn"):
        img.build_image_encoder(backbone="resnet9000")


def test_embed_images_zero_rows_for_absent():
    encoder = img.build_image_encoder(size=32, dim=8)
    pixels = np.full((4, 32, 32, 3), 120, np.uint8)
    present = np.array([True, False, True, False])
    out = img.embed_images(encoder, pixels, present)
    assert out.shape == (4, 8) and out.dtype == np.float32
    assert (out[~present] == 0).all() and (np.linalg.norm(out[present], axis=1) > 0.99).all()


@pytest.fixture(scope="module")
def shapes():
    pixels, colour, shape = make_shapes()
    n = len(pixels)
    present = np.ones(n, dtype=bool)
    present[::25] = False                       # a few items without an image
    pixels[~present] = 0
    rng = np.random.default_rng(1)
    test_idx = np.sort(rng.choice(n, size=n // 4, replace=False))
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    key = combine_keys(colour, shape)
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    random_encoder = img.build_image_encoder(size=32, dim=32)
    random_score = img.image_retrieval_score(img.embed_images(random_encoder, pixels, present),
                                             present, key, query_idx=test_idx)
    return dict(pixels=pixels, colour=colour, shape=shape, present=present, key=key,
                train_idx=train_idx, test_idx=test_idx, random_score=random_score)


@pytest.mark.parametrize("objective", ["supervised", "contrastive"])
def test_encoder_learns(shapes, objective):
    s = shapes
    kwargs = {}
    if objective == "supervised":
        kwargs["labels"] = {"colour": s["colour"], "shape": s["shape"]}
    else:
        combo = s["colour"] * len(SHAPES) + s["shape"]
        noise = np.random.default_rng(2).normal(0, 0.3, size=(len(combo), 12))
        kwargs["text_embeddings"] = (np.eye(12)[combo] + noise).astype(np.float32)
    encoder, history = img.train_image_encoder(
        s["pixels"], s["present"], objective=objective, train_idx=s["train_idx"], dim=32,
        epochs=20, batch_size=32, temperature=0.1, seed=0, progress=False, **kwargs)
    losses = history["loss"]
    assert len(losses) == 20 and losses[-1] < 0.7 * losses[0], losses
    vectors = img.embed_images(encoder, s["pixels"], s["present"])
    assert (vectors[~s["present"]] == 0).all()
    score = img.image_retrieval_score(vectors, s["present"], s["key"], query_idx=s["test_idx"])
    print(f"{objective}: p@10 trained {score:.3f} vs random {s['random_score']:.3f}; losses {losses[0]:.2f}->{losses[-1]:.2f}")
    assert score > s["random_score"] + 0.15, (score, s["random_score"])


def test_training_is_repeatable_with_a_seed(shapes):
    s = shapes
    runs = []
    for _ in range(2):
        encoder, history = img.train_image_encoder(
            s["pixels"][:64], s["present"][:64], objective="supervised",
            labels={"colour": s["colour"][:64]}, dim=8, epochs=2, batch_size=16, seed=7, progress=False)
        runs.append((history["loss"], img.embed_images(encoder, s["pixels"][:64], s["present"][:64])))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_allclose(runs[0][1], runs[1][1], atol=1e-6)


def test_train_image_encoder_input_errors(shapes):
    from recsys_utils.schema import DataError

    s = shapes
    with pytest.raises(ValueError, match="supervised, contrastive"):
        img.train_image_encoder(s["pixels"], s["present"], objective="magic")
    with pytest.raises(DataError, match="needs labels"):
        img.train_image_encoder(s["pixels"], s["present"], objective="supervised")
    with pytest.raises(DataError, match="text_embeddings"):
        img.train_image_encoder(s["pixels"], s["present"], objective="contrastive",
                                text_embeddings=np.zeros((3, 4)))


def test_pretrained_backbone_fails_clearly_offline(monkeypatch):
    import tensorflow as tf

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -3]")

    monkeypatch.setattr(tf.keras.applications, "MobileNetV3Small", no_network)
    with pytest.raises(RuntimeError, match="backbone='small_cnn'"):
        img.build_image_encoder(backbone="mobilenet_v3_small_imagenet")


def test_choose_image_encoder_keeps_the_better_objective(shapes):
    s = shapes
    # Text that knows only the colour: the contrastive encoder cannot learn the shape.
    text = np.eye(len(COLOURS))[s["colour"]] + np.random.default_rng(3).normal(0, 0.3, (len(s["colour"]), 4))
    choice = img.choose_image_encoder(
        s["pixels"], s["present"], labels={"colour": s["colour"], "shape": s["shape"]},
        text_embeddings=text.astype(np.float32), key=s["key"], train_idx=s["train_idx"],
        validation_idx=s["test_idx"][::2], test_idx=s["test_idx"][1::2], dim=32, epochs=8,
        batch_size=32, temperature=0.1, seed=0, progress=False)
    assert set(choice.scores) == set(choice.validation_scores) == {"random", "supervised",
                                                                   "contrastive"}
    assert choice.objective == "supervised"
    assert choice.validation_scores["supervised"] > choice.validation_scores["contrastive"]
    assert choice.scores["supervised"] > choice.scores["random"] + 0.1, choice.scores   # seen +0.21
    assert choice.embeddings.shape == (len(s["pixels"]), 32)
    assert (choice.embeddings[~s["present"]] == 0).all()
    table = choice.table()
    assert table["kept"].sum() == 1 and table.loc["supervised", "kept"]
    with pytest.raises(ValueError, match="valid objectives"):
        img.choose_image_encoder(s["pixels"], s["present"], labels={}, text_embeddings=None, key=s["key"],
                                 train_idx=s["train_idx"], validation_idx=s["test_idx"][::2],
                                 test_idx=s["test_idx"][1::2], objectives=("magic",))
