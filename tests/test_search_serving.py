"""Tests of recsys_utils.search_serving: the exported search model answers any string, and
its ScaNN index searches the fewest leaves that keep the target recall."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import dataclasses

import numpy as np
import pytest

from recsys_utils import encoder_export, text
from recsys_utils.dense_search import DenseSearcher
from recsys_utils.schema import DataError
from recsys_utils.search_models import SearchModel
from recsys_utils.search_serving import (build_query_tower, export_search_model,
                                         load_search_model, served_overlap)
from recsys_utils.serving import leaves_to_sweep


@pytest.fixture(scope="module")
def exported_encoder(tmp_path_factory):
    from recsys_utils.profiles import get_profile

    encoder = text.load_text_encoder(**dataclasses.asdict(get_profile("smoke").text))
    path = encoder_export.export_encoder(encoder, tmp_path_factory.mktemp("enc") / "text_encoder")
    return encoder, path


def test_exported_search_model_answers_any_string(exported_encoder, tmp_path):
    encoder, path = exported_encoder
    titles = [f"{c} {k}" for c in ("red", "blue", "green", "black", "white", "grey", "pink", "brown")
              for k in ("shirt", "dress", "boots", "scarf", "handbag", "watch", "jeans")]
    item_vectors = encoder.encode(titles, progress=False)
    ids = [f"i{i:03d}" for i in range(len(titles))]
    model = SearchModel(item_vectors, np.zeros((len(titles), 2), np.float32))
    tower = build_query_tower(path, model.query_tower)
    out = export_search_model(tower, model.item_embeddings(), ids, tmp_path / "search", k=5)
    loaded = load_search_model(out)
    queries = ["", "x" * 5000, "çà日本語", "red dress", "a blue scarf " * 400]
    found, scores = loaded.search(queries)
    assert found.shape == (len(queries), 5) and scores.shape == (len(queries), 5)
    assert set(found.ravel()) <= set(ids) and np.isfinite(scores).all()
    assert titles[ids.index(found[3, 0])] == "red dress"
    # The served ranking agrees with brute force over the same vectors.
    exact, _ = DenseSearcher(item_vectors, encoder.encode).search(["red dress"], 5)
    assert found[3].tolist()[:3] == [ids[i] for i in exact[0, :3]]
    with pytest.raises(DataError, match="sequence of strings"):
        loaded.search("red dress")
    with pytest.raises(DataError, match="no SavedModel"):
        load_search_model(tmp_path / "nothing")


def test_exported_search_index_searches_the_fewest_leaves_that_keep_the_target(
        exported_encoder, tmp_path):
    encoder, path = exported_encoder
    titles = [f"{c} {m} {k}" for c in ("red", "blue", "green", "black", "white", "grey")
              for m in ("cotton", "wool", "leather", "silk")
              for k in ("shirt", "dress", "boots", "scarf", "handbag", "watch", "jeans")]
    item_vectors = encoder.encode(titles, progress=False)
    ids = [f"i{i:03d}" for i in range(len(titles))]
    tower = build_query_tower(path)
    queries = ["warm wool scarf", "black leather boots", "a silk dress for a party",
               "white cotton shirt", "green handbag", "grey jeans", "red watch"]
    out = export_search_model(tower, item_vectors, ids, tmp_path / "search", k=10,
                                     validation_queries=queries, target_recall=0.9)
    info = load_search_model(out).index_info
    assert info["num_leaves"] == round(len(titles) ** 0.5) and info["n_queries"] == len(queries)
    sweep = info["sweep"]
    assert [row["num_leaves_to_search"] for row in sweep] == leaves_to_sweep(
        info["num_leaves"])[: len(sweep)]
    assert info["num_leaves_to_search"] == sweep[-1]["num_leaves_to_search"]
    # It stopped at the first setting that reached the target (searching every leaf, with
    # every item re-scored exactly, reaches it for sure).
    assert all(row["recall_at_k"] < 0.9 for row in sweep[:-1])
    assert sweep[-1]["recall_at_k"] >= 0.9
    # The recorded recall is the exported index's: the same share on the same queries.
    loaded = load_search_model(out)
    exact, _ = DenseSearcher(item_vectors, encoder.encode).search(queries, 10)
    assert served_overlap(loaded, queries, exact, ids, k=10) == pytest.approx(
        sweep[-1]["recall_at_k"], abs=0.02)
    # Without validation queries: two thirds of the leaves, recorded the same way.
    fixed = export_search_model(tower, item_vectors, ids, tmp_path / "fixed", k=10)
    fixed_info = load_search_model(fixed).index_info
    assert fixed_info["num_leaves_to_search"] == max(min(10, fixed_info["num_leaves"]),
                                                     2 * fixed_info["num_leaves"] // 3)
    with pytest.raises(DataError, match="at least one validation query"):
        export_search_model(tower, item_vectors, ids, tmp_path / "none", k=10,
                                   validation_queries=[])
