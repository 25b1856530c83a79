"""The portable search export: the same string-in, ids-out signature with exact brute force
instead of ScaNN. A fresh process with TensorFlow and TF Text only (what stock TensorFlow
Serving links) loads it and ranks like numpy brute force over the same vectors."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recsys_utils import encoder_export, text
from recsys_utils.schema import DataError
from recsys_utils.search_models import SearchModel
from recsys_utils.search_serving import (build_query_tower, export_portable_search_model,
                                         load_search_model)
from recsys_utils.serving import custom_ops, saved_model_ops

QUERIES = ["red dress", "a warm wool scarf", "", "çà日本語", "black leather boots " * 300]

SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - the tokeniser's ops; stock TF Serving links them in
    from tensorflow.python.framework import op_def_registry

    path, queries, ops = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    out = tf.saved_model.load(path).signatures["serving_default"](query=tf.constant(queries))
    print("REPORT " + json.dumps({
        "unregistered": sorted(op for op in ops if op_def_registry.get(op) is None),
        "item_ids": out["item_ids"].numpy().astype(str).tolist(),
        "scores": out["scores"].numpy().tolist(),
        "modules": sorted(m for m in ("scann", "tensorflow_recommenders", "tensorflow_hub",
                                      "recsys_utils", "keras_hub") if m in sys.modules)}))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from recsys_utils.profiles import get_profile

    encoder = text.load_text_encoder(**dataclasses.asdict(get_profile("smoke").text))
    tmp = tmp_path_factory.mktemp("search")
    encoder_path = encoder_export.export_encoder(encoder, tmp / "text_encoder")
    titles = [f"{c} {m} {k}" for c in ("red", "blue", "black", "white")
              for m in ("cotton", "wool", "leather") for k in ("dress", "scarf", "boots", "shirt")]
    ids = [f"i{i:03d}" for i in range(len(titles))]
    model = SearchModel(encoder.encode(titles, progress=False), np.zeros((len(titles), 2), np.float32))
    tower = build_query_tower(encoder_path, model.query_tower)
    vectors = model.item_embeddings()
    path = export_portable_search_model(tower, vectors, ids, tmp / "search_portable", k=5)
    return tower, vectors, ids, titles, path


def test_the_portable_search_model_has_no_scann_op(exported):
    *_, path = exported
    extra = custom_ops(path)
    assert not [op for op in extra if "Scann" in op]
    assert "NormalizeUTF8" in extra  # the tokeniser's TF Text ops are what remains


def test_tensorflow_and_tf_text_alone_load_it_and_rank_exactly(exported):
    tower, vectors, ids, titles, path = exported
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    ops = json.dumps(sorted(saved_model_ops(path)))  # checked for registration over there
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), json.dumps(QUERIES), ops],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(next(x for x in done.stdout.splitlines()
                             if x.startswith("REPORT "))[len("REPORT "):])
    assert report["modules"] == [] and report["unregistered"] == []
    assert not [op for op in saved_model_ops(path) if "Scann" in op]
    found, scores = np.array(report["item_ids"]), np.array(report["scores"])
    assert found.shape == (len(QUERIES), 5)
    # numpy brute force over the same vectors, with the query tower run in this process
    exact = tower(np.array(QUERIES, dtype=object)).numpy() @ vectors.T
    row_of = {item: i for i, item in enumerate(ids)}
    for row, query in enumerate(QUERIES):
        best = np.sort(exact[row])[::-1][:5]
        np.testing.assert_allclose(scores[row], best, atol=1e-4, err_msg=query)
        # each rank holds an item with that rank's exact score (a swap only between ties)
        served = exact[row, [row_of[item] for item in found[row]]]
        np.testing.assert_allclose(served, best, atol=1e-4, err_msg=query)
        assert len(set(found[row])) == 5
    assert "dress" in titles[row_of[found[0, 0]]]  # "red dress"


def test_load_search_model_reads_it_and_records_the_index(exported, tmp_path):
    tower, vectors, ids, titles, path = exported
    loaded = load_search_model(path)
    assert loaded.index_info == {"index": "brute_force", "n_items": len(ids)}
    found, _ = loaded.search(["red dress"])
    assert found.shape == (1, 5) and "dress" in titles[ids.index(found[0, 0])]
    with pytest.raises(DataError, match="one vector per item id"):
        export_portable_search_model(tower, vectors[:3], ids, tmp_path / "bad")
