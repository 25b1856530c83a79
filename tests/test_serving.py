"""Serving: ScaNN vs brute force, SavedModel round trip, unknown users, latency."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import pytest

from recsys_utils import features as F
from recsys_utils import two_tower
from recsys_utils.profiles import RetrievalBudget
from recsys_utils import serving as S
from toy_world import make_toy

NOW = 1_600_000_000 + 90 * 86400


@pytest.fixture(scope="module")
def setup():
    toy = make_toy(seed=1)
    data = F.build_features(toy.prepared, history_length=5)
    budget = RetrievalBudget(epochs=5, batch_size=128, embedding_dim=32, learning_rate=0.01)
    result = two_tower.train_retrieval("fused", data, toy.content, budget, seed=0, progress=False)
    brute = S.build_brute_force(result, data, k=50)
    scann = S.build_scann(result, data, k=50)
    users = data.vocab.user_ids[1:].tolist()
    return data, result, brute, scann, users


def test_scann_recall_against_brute_force(setup):
    _data, _result, brute, scann, users = setup
    recall = S.scann_recall_at_k(scann, brute, users, k=10, timestamps=NOW)
    assert recall >= 0.9
    assert recall <= 1.0


def test_brute_force_index_matches_the_evaluation_ranking(setup):
    data, result, brute, _, users = setup
    some = users[:8]
    ids, scores = S.recommend(brute, some, NOW, k=10)
    q = result.query_embeddings(data.user_features(some, [NOW] * len(some)))
    exact = np.argsort(-(q @ result.item_embeddings().T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, data.vocab.item_ids[exact])
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_unknown_user_gets_the_oov_query(setup):
    data, result, brute, scann, _ = setup
    ids, scores = S.recommend(brute, ["never-seen", "also-new"], NOW, k=10)
    assert ids.shape == (2, 10) and np.isfinite(scores).all()
    assert set(ids[0]) <= set(data.vocab.item_ids)
    q = result.query_embeddings(data.user_features(["never-seen"], [NOW]))
    assert data.user_features(["never-seen"])["user"][0] == F.OOV_USER
    exact = np.argsort(-(q @ result.item_embeddings().T), axis=1, kind="stable")[0, :10]
    assert ids[0].tolist() == data.vocab.item_ids[exact].tolist()
    ids_scann, _ = S.recommend(scann, ["never-seen"], NOW, k=10)
    assert ids_scann.shape == (1, 10)


@pytest.mark.parametrize("kind", ["brute", "scann"])
def test_export_reload_gives_the_same_top_10(setup, tmp_path, kind):
    _data, _, brute, scann, users = setup
    index = brute if kind == "brute" else scann
    path = S.export_serving_model(index, tmp_path / f"retrieval_{kind}")
    assert (path / "saved_model.pb").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left over
    loaded = S.load_serving_model(path)
    some = users[::25] + ["never-seen"]
    if kind == "brute":
        assert S.same_top_k(index, loaded, some, NOW, k=10)
    else:
        # ScaNN scores candidates approximately: a last-bit difference in the query embedding
        # (eager in memory, a graph once reloaded) can move an item across its candidate
        # boundary, which is no tie in exact scores. Exactness is the brute-force case's test;
        # here the lists must agree almost everywhere (one CI run in many saw a swap).
        agreement = S.top_k_agreement(index, loaded, some, NOW, k=10)
        assert agreement["overlap"] >= 0.95, agreement
    ids, _scores = loaded.recommend(some, NOW)
    assert ids.shape == (len(some), 50) and ids.dtype.kind == "U"
    ids_now = loaded.module.signatures["recommend_now"](
        user_id=np.array(some[:2], dtype=object))["item_ids"].numpy()
    assert ids_now.shape == (2, 50)
    latency = S.request_latency(loaded, users[:20], n=30, warmup=3)
    assert 0 < latency.median_ms <= latency.p95_ms


def test_recent_items_change_the_query_as_a_longer_history_would(setup, tmp_path):
    """A request's recent items go before the stored history (cut to its length); unknown
    ids are skipped; no recent items is the stored history; the export answers both ways."""
    data, result, brute, _, users = setup
    user, new = users[3], data.vocab.item_ids[:2].tolist()
    stored = data.user_features([user], [NOW])
    history = stored["history"][0][stored["history_mask"][0] > 0].tolist()
    expected = (data.vocab.item_index(new).tolist() + history)[:data.history_length]
    features = {**stored, "history": np.full((1, data.history_length), -1, np.int32)}
    features["history"][0, :len(expected)] = expected
    features["history_mask"] = (features["history"] >= 0).astype(np.float32)
    q = result.query_embeddings(features)
    exact = np.argsort(-(q @ result.item_embeddings().T), axis=1, kind="stable")[0, :10]

    ids, _ = S.recommend(brute, [user], NOW, k=10, recent=[[new[0], "no-such-item", new[1]]])
    assert ids[0].tolist() == data.vocab.item_ids[exact].tolist()
    plain, _ = S.recommend(brute, [user], NOW, k=10)
    assert S.recommend(brute, [user], NOW, k=10, recent=[[]])[0].tolist() == plain.tolist()
    assert ids[0].tolist() != plain[0].tolist()

    loaded = S.load_serving_model(S.export_serving_model(brute, tmp_path / "retrieval"))
    served, _ = loaded.recommend([user, "never-seen"], NOW, recent=[new, []])
    assert served[0, :10].tolist() == data.vocab.item_ids[exact].tolist()
    assert served[1].tolist() == loaded.recommend(["never-seen"], NOW)[0][0].tolist()
    assert S.request_latency(loaded, [user], n=5, warmup=1, timestamps=NOW,
                             recent=[new]).median_ms > 0
    with pytest.raises(S.DataError, match="one list per user"):
        loaded.recommend([user], NOW, recent=[new, new])


def test_served_recall_removes_training_items_as_the_evaluator_does(setup):
    """Brute-force served lists, training items dropped, give the evaluator's Recall@10."""
    from recsys_utils import retrieval as R

    data, result, brute, _, _ = setup
    queries = data.queries("test")
    assert queries.exclude.sum(axis=1).max() <= 50 - 10  # the served top 50 keeps 10 unseen
    ids, _ = S.recommend(brute, queries.user_ids, queries.features["timestamp"])
    served = S.served_recall(ids, data, queries)
    expected = R.evaluate_retrieval(result, data, "test", ks=(10,), per_query=True)["recall@10"]
    np.testing.assert_allclose(served, expected.to_numpy())
    with pytest.raises(S.DataError, match="served lists"):
        S.served_recall(ids[:-1], data, queries)


def test_latency_of_in_memory_indexes(setup):
    _, _, brute, scann, users = setup
    for index in (brute, scann):
        latency = S.request_latency(index, users[:20], n=30, warmup=3, timestamps=NOW)
        assert latency.repeats == 30 and 0 < latency.median_ms <= latency.p95_ms


def test_export_errors_are_readable(tmp_path):
    with pytest.raises(Exception, match="no SavedModel"):
        S.load_serving_model(tmp_path / "missing")


def test_scann_sweep_trades_recall_for_leaves(setup):
    data, result, _, _, users = setup
    sweep = S.scann_sweep(result, data, users[:60], leaves_to_search=(1, 17), num_leaves=17,
                          k=10, index_k=50, n_latency=5, timestamps=NOW)
    table = sweep.table
    assert table["index"].tolist() == ["brute force", "scann", "scann"]
    one_leaf, all_leaves = table["recall_at_k"].iloc[1], table["recall_at_k"].iloc[2]
    assert all_leaves >= 0.95 and one_leaf < all_leaves
    assert (table["median_ms"] > 0).all()
    assert sweep.num_leaves == 17 and sorted(sweep.indexes) == [1, 17]


def test_one_rule_picks_the_leaves_every_scann_index_searches():
    """Retrieval (``ScannSweep.choose``) and search (``export_search_model``) both take the
    fewest leaves reaching the target, else the most, from the same list of shares."""
    assert S.leaves_to_sweep(55) == [3, 6, 11, 18, 28, 37, 55]
    assert S.leaves_to_sweep(4) == [1, 2, 3, 4]  # shares that round alike count once
    measured = {18: 0.97, 6: 0.91, 11: 0.95, 55: 1.0}
    assert S.fewest_leaves(measured, 0.95) == 11
    assert S.fewest_leaves(measured, 0.99) == 55
    assert S.fewest_leaves({6: 0.5, 11: 0.7}, 0.9) == 11  # unreachable: the most searched
    with pytest.raises(S.DataError, match="no ScaNN setting"):
        S.fewest_leaves({}, 0.9)


def test_sweep_serves_the_index_it_measured(setup):
    data, result, _, _, users = setup
    sweep = S.scann_sweep(result, data, users[:60], leaves_to_search=(1, 4, 17), num_leaves=17,
                          k=10, index_k=50, n_latency=2, timestamps=NOW)
    recall = dict(zip(sweep.table["num_leaves_to_search"].iloc[1:].astype(int),
                      sweep.table["recall_at_k"].iloc[1:]))
    target = recall[17]
    leaves, index = sweep.choose(target)
    assert leaves == min(n for n, r in recall.items() if r >= target)
    assert index is sweep.indexes[leaves]
    # The chosen index answers exactly as measured: the same recall, the index's full k.
    again = S.scann_recall_at_k(index, sweep.brute_force, users[:60], k=10, timestamps=NOW)
    assert again == pytest.approx(recall[leaves])
    ids, _ = S.recommend(index, users[:3], NOW)
    assert ids.shape == (3, 50)
    # Unreachable target: fall back to searching the most leaves.
    assert sweep.choose(1.01)[0] == 17


def test_one_sweep_builds_fewest_leaves_first_and_stops_at_the_target():
    """Retrieval's and search's sweeps share :func:`sweep_leaves`: fewest leaves first, the
    measured indexes handed back, and with a target no index beyond the first to reach it."""
    recall_of = {1: 0.4, 3: 0.96, 7: 0.99, 10: 1.0}
    built = []

    def build(searched):
        built.append(searched)
        return f"index searching {searched}"

    def recall(index):
        return recall_of[int(index.rsplit(" ", 1)[1])]

    recalls, indexes = S.sweep_leaves(build, recall, (7, 1, 10, 3), target_recall=0.95)
    assert built == [1, 3] and recalls == {1: 0.4, 3: 0.96}
    assert indexes == {1: "index searching 1", 3: "index searching 3"}
    assert S.fewest_leaves(recalls, 0.95) == 3
    built.clear()
    recalls, _ = S.sweep_leaves(build, recall, (7, 1, 10, 3))  # no target: every setting
    assert built == [1, 3, 7, 10] and recalls == recall_of


def test_saved_models_load_through_one_door_with_what_to_run_when_they_do_not(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.double = tf.function(lambda x: 2.0 * x,
                                input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "ok"))
    loaded = S.load_saved_model(tmp_path / "ok", "run the export")
    assert loaded.double(tf.constant([1.5])).numpy().tolist() == [3.0]
    with pytest.raises(S.DataError, match=r"no SavedModel at .*missing: run the export"):
        S.load_saved_model(tmp_path / "missing", "run the export")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protocol buffer")
    with pytest.raises(S.DataError, match="run the export"):
        S.load_saved_model(broken, "run the export")


def test_a_sweep_measured_elsewhere_chooses_without_a_brute_force_index():
    # Product search measures recall against numpy brute force: only ScaNN rows, no exact index.
    table = pd.DataFrame({"index": "scann", "num_leaves": 10, "num_leaves_to_search": [1, 3, 7],
                          "recall_at_k": [0.5, 0.97, 0.99]})
    indexes = {1: "one", 3: "three", 7: "seven"}  # stand-ins: choose only hands them back
    sweep = S.ScannSweep(table, indexes)
    assert sweep.brute_force is None and sweep.num_leaves == 10
    assert sweep.choose(0.95) == (3, "three")
    assert sweep.choose(0.999) == (7, "seven")  # unreachable: the most leaves searched


def test_exported_towers_reproduce_the_scores(setup, tmp_path):
    data, result, _brute, _scann, _users = setup
    paths = S.export_towers(result, data, tmp_path / "query", tmp_path / "item", n_calibration=32)
    towers = S.load_towers(paths["query"], paths["item"], data.n_items)
    features = data.queries("test").features
    np.testing.assert_allclose(towers.query_embeddings(features),
                               result.query_embeddings(features), atol=1e-5)
    np.testing.assert_allclose(towers.item_embeddings(), result.item_embeddings(), atol=1e-5)
    calibration = np.load(paths["query"] / "calibration.npz")
    assert set(calibration.files) == set(S.QUERY_INPUTS)
    assert calibration["history"].shape == (32, data.history_length)
    assert set(np.load(paths["item"] / "calibration.npz").files) == {"item"}
    with pytest.raises(Exception, match="notebook 04"):
        S.load_towers(tmp_path / "missing", paths["item"], data.n_items)


def test_same_top_k_forgives_only_swaps_of_tied_scores(monkeypatch):
    class Fixed:
        """A stand-in for the in-memory index and the loaded model (recommend() duck type)."""

        def __init__(self, ids, scores):
            self.ids, self.scores = np.array(ids), np.array(scores, np.float32)

        def recommend(self, user_ids, timestamps=None):
            return self.ids, self.scores

    base = Fixed([["a", "b", "c"]], [[3.0, 2.0, 1.0]])
    tied = Fixed([["a", "b", "c"]], [[3.0, 2.0, 2.0]])
    swapped_tie = Fixed([["a", "c", "b"]], [[3.0, 2.0, 2.0]])
    swapped = Fixed([["b", "a", "c"]], [[3.0, 2.0, 1.0]])
    monkeypatch.setattr(S, "recommend", lambda index, users, ts=None, k=None: index.recommend(users))
    assert S.same_top_k(base, base, ["u"], k=3)
    assert S.same_top_k(tied, swapped_tie, ["u"], k=3)
    assert not S.same_top_k(base, swapped, ["u"], k=3)
    assert not S.same_top_k(base, tied, ["u"], k=3)  # scores differ at rank 3
