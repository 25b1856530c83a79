"""The portable recommendation export: brute force over the item embeddings, TensorFlow's own
ops only. Loaded in a fresh process that never imports scann (as stock TensorFlow Serving
would have it), it answers with the in-memory brute-force index's top 10; the ScaNN export
does not even load there."""

from __future__ import annotations

import recsys_utils  # noqa: F401, I001 - first: TF_USE_LEGACY_KERAS before TensorFlow

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recsys_utils import features as F
from recsys_utils import serving as S
from recsys_utils import two_tower
from recsys_utils.profiles import RetrievalBudget
from toy_world import make_toy

NOW = 1_600_000_000 + 90 * 86400

# Runs in a fresh interpreter: TensorFlow alone, no recsys_utils, TFRS, scann or tensorflow_text.
LOAD_WITHOUT_SCANN = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    path, users, now, ops = (sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]),
                             json.loads(sys.argv[4]))
    report = {"unregistered": sorted(op for op in ops if op_def_registry.get(op) is None)}
    try:
        loaded = tf.saved_model.load(path)
        out = loaded.signatures["serving_default"](
            user_id=tf.constant(users), timestamp=tf.constant([now] * len(users), tf.int64))
        report["item_ids"] = out["item_ids"].numpy().astype(str).tolist()
        report["scores"] = out["scores"].numpy().tolist()
    except Exception as error:  # the ScaNN export: reported, not raised
        report["error"] = f"{type(error).__name__}: {error}"[:500]
    report["modules"] = sorted(m for m in ("scann", "tensorflow_recommenders", "tensorflow_text",
                                           "recsys_utils", "tf_keras") if m in sys.modules)
    print("REPORT " + json.dumps(report))
""")


def load_in_a_fresh_process(path, users):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # The op list is read here (parsing the graph needs no op); the fresh process checks
    # that each one is registered without scann.
    ops = json.dumps(sorted(S.saved_model_ops(path)))
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_SCANN, str(path), json.dumps(users),
                           str(NOW), ops], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    toy = make_toy(seed=1)
    data = F.build_features(toy.prepared, history_length=5)
    budget = RetrievalBudget(epochs=5, batch_size=128, embedding_dim=32, learning_rate=0.01)
    result = two_tower.train_retrieval("fused", data, toy.content, budget, seed=0, progress=False)
    brute = S.build_brute_force(result, data, k=50)
    tmp = tmp_path_factory.mktemp("serving")
    portable = S.export_portable_serving_model(brute, tmp / "retrieval_portable")
    scann = S.export_serving_model(S.build_scann(result, data, k=50), tmp / "retrieval_scann")
    users = data.vocab.user_ids[1:].tolist()[::20] + ["never-seen"]
    return data, result, brute, portable, scann, users


def test_the_portable_export_has_only_tensorflow_ops_and_the_scann_one_does_not(exported):
    _, _, _, portable, scann, _ = exported
    assert S.custom_ops(portable) == set()
    assert {"MatMul", "TopKV2", "LookupTableFindV2"} <= S.saved_model_ops(portable)
    assert not any("Scann" in op for op in S.saved_model_ops(portable))
    scann_ops = S.custom_ops(scann)
    assert scann_ops and all(op.startswith("Scann>") for op in scann_ops), scann_ops
    assert S.scann_ops(scann) == scann_ops and S.scann_ops(portable) == set()


def test_a_process_without_scann_loads_it_and_gets_the_brute_force_top_10(exported):
    _, _, brute, portable, _, users = exported
    report = load_in_a_fresh_process(portable, users)
    assert report["modules"] == [], report["modules"]  # no scann, TFRS, TF Text or Keras loaded
    assert report["unregistered"] == [] and not [op for op in S.saved_model_ops(portable)
                                                 if "Scann" in op]
    assert "error" not in report, report.get("error")

    class Served:
        def recommend(self, user_ids, timestamps=None):
            return np.array(report["item_ids"]), np.array(report["scores"], np.float32)

    ids = np.array(report["item_ids"])
    assert ids.shape == (len(users), 50)
    assert S.same_top_k(brute, Served(), users, NOW, k=10)  # equal up to float ties
    expected, _ = S.recommend(brute, users, NOW, k=10)
    assert (ids[:, :10] == expected).mean() >= 0.98


def test_the_scann_export_does_not_load_without_scann(exported):
    *_, scann, users = exported
    report = load_in_a_fresh_process(scann, users[:2])
    assert "scann" not in report["modules"]
    assert report["unregistered"] and all(op.startswith("Scann>") for op in report["unregistered"])
    assert "Op type not registered" in report["error"] and "Scann" in report["error"]


def test_load_serving_model_reads_the_portable_export(exported):
    _, _, brute, portable, _, users = exported
    loaded = S.load_serving_model(portable)
    assert S.same_top_k(brute, loaded, users, NOW, k=10)
    now_ids = loaded.module.signatures["recommend_now"](
        user_id=np.array(users[:2], dtype=object))["item_ids"].numpy()
    assert now_ids.shape == (2, 50)


def test_the_portable_export_refuses_scann(exported, tmp_path):
    data, result, brute, *_ = exported
    with pytest.raises(S.DataError, match="portable export holds brute force, got ScaNN"):
        S.export_portable_serving_model(S.build_scann(result, data, k=10), tmp_path / "scann")
    with pytest.raises(S.DataError, match="no SavedModel"):
        S.custom_ops(tmp_path / "nothing")
