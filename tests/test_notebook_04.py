"""Notebook 04 (TFRS retrieval), executed by papermill on the smoke profile.

Margins (also stated in the notebook's prose):

* every trained candidate model (ID-only, content, fused and the text
  variants, all with the log-Q correction) beats popularity on warm Recall@50
  by ``WARM_MARGIN``; ``content_facts`` (a content tower over the one-hot
  catalogue facts alone) is the reference that measures what the MiniLM text
  adds, not a candidate model (on the synthetic world it is far below
  popularity on warm items and the best model on cold ones);
* the fused model beats ID-only on cold-start Recall@50 (all items ranked) by
  ``COLD_MARGIN`` on the synthetic world (the ID model cannot rank cold items);
* the classic references (item-kNN, EASE, BPR, the content profile) are in
  the same table, evaluated on the same users, each beating popularity on warm
  Recall@50 (the oracle on synthetic only); the comparisons of the best
  two-tower model with the best reference carry a bootstrap interval that
  brackets the difference, and the carried model is the validation choice;
* at the content profile's share of new items, `fused` does not lose to
  `content` on cold-start Recall@50 (the interval reaches zero or above): the
  id part does not bury new items;
* on MovieLens, the TFRS tutorial's model on the tutorial's rows reproduces its
  top-100 accuracy (>= 0.233) and the project's model reaches >= 0.29 there;
* ScaNN keeps at least 90% of brute force's top 10;
* the reloaded serving SavedModel returns the in-memory top 10 (>= 99% overlap;
  eager vs graph rounding may swap items whose scores tie to ~1e-6), and answers
  every test user with and without the events since training (the next-event
  difference inside its interval, the requests' latency recorded);
* the replay of the last training periods updates the model on each of two
  periods by a warm start and by a retrain, a warm start in less training time,
  each way tested on the next period's users with a paired interval;
* a held-out cold item, encoded from its raw fields (notebooks 02 and 03's
  exported encoders) and added to an index that lacked it, is recommendable
  within a minute without retraining, with the vector the catalogue gives it,
  and ranks higher for the users who took it than random items do.
"""

from __future__ import annotations

import math

import pytest

from recsys_utils import artifacts
from recsys_utils.profiles import get_profile

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]
WARM_MARGIN = 0.01
COLD_MARGIN = 0.1
#: Variants that are references for an ablation, not candidate models.
REFERENCES = {"popularity", "content_facts"}
#: The classic references (recsys_utils.baselines).
CLASSIC = {"ease", "item_knn", "bpr", "content_profile", "content_regression", "oracle"}


def _metrics(series_runs, dataset):
    return artifacts.read_metrics(series_runs.upto(dataset, "04"))["04_tfrs_retrieval"]


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_models_beat_popularity_on_warm_items(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    warm = m["warm_recall@50"]
    for name, value in warm.items():
        assert 0.0 <= value <= 1.0 and not math.isnan(value), (name, value)
    popularity = warm["popularity"]
    trained = [v for v in warm if v not in REFERENCES | CLASSIC]
    assert {"id", "content", "fused"} <= set(trained), trained
    for variant in trained:
        assert warm[variant] > popularity + WARM_MARGIN, (dataset, variant, warm)
    # The facts-only reference is reported on warm and cold items, for notebook 08's claims.
    assert "content_facts" in warm and "content_facts" in m["cold_recall@50"]


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_cold_start_needs_content(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    cold = m["cold_recall@50"]
    assert cold["id"] == pytest.approx(0.0, abs=0.02)  # all cold items share one untrained row
    margin = COLD_MARGIN if dataset == "synthetic" else 0.02
    assert cold["fused"] > cold["id"] + margin, (dataset, cold)
    assert cold["content"] > cold["id"] + margin, (dataset, cold)


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_scann_and_serving_round_trip(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    assert m["scann"]["recall@10_vs_brute_force"] >= 0.9
    # Eager vs graph rounding can swap near-tied items; the lists must still agree.
    assert m["serving"]["top10_overlap_after_reload"] >= 0.99
    # The portable export: no op beyond TensorFlow's, brute force's own answers.
    assert m["serving"]["portable_custom_ops"] == []
    assert m["serving"]["portable_same_top10"] is True
    artifact_dir = series_runs.upto(dataset, "04")
    for name in ("retrieval", "retrieval_portable", "query_tower", "item_tower"):
        assert (artifacts.model_dir(artifact_dir, name) / "saved_model.pb").exists(), name
    for name in ("query_tower", "item_tower"):
        assert (artifacts.model_dir(artifact_dir, name) / "calibration.npz").exists(), name


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_served_model_answers_with_the_history_as_of_the_request(series_runs, dataset):
    """Every test user is asked twice through the served model; the gain (or its absence) is
    the mean per-user difference, inside its bootstrap interval, with the requests' latency."""
    m = _metrics(series_runs, dataset)
    real_time, n_test = m["real_time"], m["table"][f"{m['carried']}|test|all"]["n_queries"]
    assert real_time["n_users"] == n_test
    assert 0 < real_time["users_with_recent"] <= n_test
    assert real_time["difference"] == pytest.approx(
        real_time["recall@10_live"] - real_time["recall@10_frozen"], abs=1e-9)
    assert real_time["low"] <= real_time["difference"] <= real_time["high"]
    for recall in (real_time["recall@10_frozen"], real_time["recall@10_live"]):
        assert 0 < recall < 1
    latency = real_time["latency_ms"]
    assert 0 < latency["median_ms"] <= latency["p95_ms"] < 1000


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_warm_start_and_retrain_on_two_later_periods(series_runs, dataset):
    updates = _metrics(series_runs, dataset)["updates"]
    table = {(row["period"], row["way"]): row for row in updates["table"]}
    assert set(table) == {(p, w) for p in (1, 2) for w in ("no update", "warm start", "retrain")}
    for period in (1, 2):
        warm, retrain = table[(period, "warm start")], table[(period, "retrain")]
        assert 0 < warm["recall@10"] < 1 and 0 < retrain["recall@10"] < 1
        assert warm["test_users"] == retrain["test_users"] > 0
        assert 0 < warm["interactions_fitted"] < retrain["interactions_fitted"]
        assert 0 < warm["train_seconds"] < retrain["train_seconds"]
        assert table[(period, "no update")]["train_seconds"] == 0
    # Each warm start fits its own period only; the second retrain fits the first one's data too.
    assert (table[(2, "retrain")]["interactions_fitted"]
            == table[(1, "retrain")]["interactions_fitted"]
            + table[(2, "warm start")]["interactions_fitted"])
    assert [c["period"] for c in updates["comparisons"]] == [1, 2]
    for c in updates["comparisons"]:
        assert (c["a"], c["b"], c["metric"]) == ("warm start", "retrain", "recall@10")
        assert c["value_a"] == pytest.approx(table[(c["period"], "warm start")]["recall@10"])
        assert c["low"] <= c["difference"] <= c["high"]


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_tfrs_protocol_only_on_movielens(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    if dataset != "movielens-100k":
        assert m["tfrs_protocol"] is None
        return
    protocol = m["tfrs_protocol"]
    # The tutorial's own model on the tutorial's rows: its published ~0.23-0.24.
    assert m["tfrs_tutorial"]["top_100_accuracy"] >= 0.233, m["tfrs_tutorial"]
    assert protocol["TFRS tutorial model"] == m["tfrs_tutorial"]
    # The project's model on the same rows and metric (the deep-retrieval tutorial reaches ~0.29).
    assert protocol["project (id)"]["top_100_accuracy"] >= 0.29, protocol


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_classic_references_on_the_same_users(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    warm, cold = m["warm_recall@50"], m["cold_recall@50"]
    expected = {"ease", "item_knn", "bpr", "content_profile", "content_regression"} | (
        {"oracle"} if dataset == "synthetic" else set())
    assert expected <= set(warm) and set(m["references"]) == expected
    for name in ("ease", "item_knn", "bpr"):
        assert warm[name] > warm["popularity"] + WARM_MARGIN, (dataset, name, warm)
        assert cold[name] == pytest.approx(0.0, abs=0.02)  # no row for an item never seen
        test_rows = m["table"][f"{name}|test|all"]["n_queries"]
        assert test_rows == m["table"]["popularity|test|all"]["n_queries"]
    # The training-free content profile ranks cold items; on synthetic the oracle bounds it.
    assert cold["content_profile"] > cold["id"] + 0.02, (dataset, cold)
    # So does the content regression, its ridge chosen on items held out of its fit.
    assert cold["content_regression"] > cold["id"] + 0.02, (dataset, cold)
    assert m["references"]["content_regression"]["validated_on"] == "held-out items"
    if dataset == "synthetic":
        assert cold["oracle"] > cold["content_profile"], cold


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_comparisons_carry_intervals_and_the_carried_model_is_chosen(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    comparisons = m["comparisons"]
    warm = [c for c in comparisons if c["split"] == "test"]
    assert {c["metric"] for c in warm} == {"recall@10", "ndcg@10"}
    for c in comparisons:
        assert c["low"] <= c["difference"] <= c["high"], c
        assert c["value_a"] - c["value_b"] == pytest.approx(c["difference"], abs=1e-9)
        assert c["a"] == m["carried"] or c["split"] == "test_cold"
        assert c["b"] in ("ease", "item_knn", "bpr", "content_profile",
                          "content at the profile's exposure")
    assert m["carried"] in set(m["variants"]) - REFERENCES
    assert m["exports"]["variant"] == m["carried"]


#: The smoke profile's margins against the references, where its data are large enough to
#: hold them (the synthetic world's are asserted on the default profile, test_default_profile):
#: "win", the 95% interval of (carried - reference) lies above zero; "no loss", it reaches zero.
#: Measured at 817db2d: MovieLens `id` vs EASE Recall@10 +0.050 [+0.023, +0.077], NDCG@10
#: +0.035 [+0.018, +0.051], `fused` at the profile's exposure vs the profile +0.166 [+0.074,
#: +0.262]; fashion `fused_text` vs EASE -0.002 [-0.015, +0.013] and +0.001 [-0.007, +0.008],
#: and (at 9a60593, the cold-start tower chosen on held-out items) `fused` vs the profile
#: +0.002 [-0.040, +0.044].
SMOKE_MARGINS = {"movielens-100k": {"warm": "win", "cold": "win"},
                 "fashion": {"warm": "no loss", "cold": "no loss"}}


@pytest.mark.parametrize("dataset", sorted(SMOKE_MARGINS))
def test_04_carried_model_against_the_references_on_the_smoke_profile(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    holds = {"win": lambda c: c["low"] > 0.0, "no loss": lambda c: c["high"] >= 0.0}
    warm = [c for c in m["comparisons"] if c["split"] == "test"]
    cold = [c for c in m["comparisons"] if c["split"] == "test_cold"][0]
    assert cold["b"] == "content_profile" and len(warm) == 2, m["comparisons"]
    for c in warm:
        assert holds[SMOKE_MARGINS[dataset]["warm"]](c), (dataset, c)
    assert holds[SMOKE_MARGINS[dataset]["cold"]](cold), (dataset, cold)


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_the_query_is_the_one_validation_chose_and_every_variant_trains_with_it(
        series_runs, dataset):
    m = _metrics(series_runs, dataset)
    query, trials = m["query"], m["query"]["trials"]
    validation = {key.split("|")[0]: row["ndcg@10"] for key, row in trials.items()
                  if key.split("|")[1] == "validation"}
    assert len(validation) == len(get_profile("smoke").retrieval.queries) >= 2, validation
    # The best validation NDCG@10 chose; the test rows are beside it, not used.
    best = max(validation, key=validation.get)
    assert best.endswith(query["chosen"]) or (best.startswith("fused, content_dropout")
                                              and query["changes"] == {}), (best, query)
    for name, value in query["changes"].items():
        assert m["budget"][name] == value, (name, m["budget"])


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_cold_start_is_compared_at_the_content_profiles_exposure(series_runs, dataset):
    m = _metrics(series_runs, dataset)
    new = m["new_items"]
    # The cold model is chosen before test, on the newest warm items held out of training:
    # the best of the towers that read ids and content (and the carried model if it reads
    # content). It then gets the profile's share of new items in the validation users' top 50,
    # found without labels.
    held_out = new["validation_new_recall@50"]
    carried_reads_content = m["carried"] not in ("id", "popularity")
    assert set(held_out) == {"fused", "fused_text", *([m["carried"]] if carried_reads_content
                                                     else [])}, held_out
    assert all(0.0 < v <= 1.0 for v in held_out.values()), held_out
    assert new["model"] == max(held_out, key=held_out.get)
    assert 0.0 < new["profile_exposure"] < 1.0
    assert new["exposure_after"] == pytest.approx(new["profile_exposure"], abs=0.01), new
    cold = [c for c in m["comparisons"] if c["split"] == "test_cold"]
    assert [c["metric"] for c in cold] == ["recall@50", "recall@50"], cold
    assert (cold[0]["a"], cold[0]["b"]) == (f"{new['model']} at the profile's exposure",
                                           "content_profile")
    # The id part does not bury new items: at the same exposure `fused` orders them at least
    # as well as `content` (the 95% interval of fused - content reaches zero or above).
    footing = cold[1]
    assert (footing["a"], footing["b"]) == ("fused at the profile's exposure",
                                            "content at the profile's exposure"), footing
    assert footing["high"] >= 0.0, footing


@pytest.mark.parametrize("dataset", ["synthetic"])
def test_04_writes_tensorboard_logs_and_the_projector(series_runs, dataset):
    import pandas as pd

    artifact_dir = series_runs.upto(dataset, "04")
    logs = artifact_dir.parent / "tensorboard"
    # Every trained variant's epochs, with the validation metric early stopping watched.
    trained = {p.relative_to(logs / "retrieval").parts[0]
               for p in (logs / "retrieval").glob("*/*/validation/events.out.tfevents.*")}
    assert {"id", "content", "fused"} <= trained, trained
    # The carried model's item vectors for the projector, one title per item.
    carried = _metrics(series_runs, dataset)["carried"]
    (metadata,) = (logs / "projector" / carried).glob("*/metadata.tsv")
    n_items = len(pd.read_parquet(artifact_dir / "data" / "items.parquet"))
    assert len(metadata.read_text(encoding="utf-8").splitlines()) == n_items


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_04_new_item_is_recommendable_without_retraining(series_runs, dataset):
    new = _metrics(series_runs, dataset)["new_item"]
    assert new["recommendable"], new
    assert 0.0 < new["seconds_to_recommendable"] < 60.0, new
    assert set(new["seconds"]) == {"encode", "tower", "index", "total"}
    assert all(v >= 0.0 for v in new["seconds"].values()), new["seconds"]
    assert "text" in new["modalities"] and new["users"] >= 1
    if new["cold"]:  # raw fields -> encoders -> tower: the catalogue's own vector for the item
        assert new["vector_cosine"] > 0.99, new
    assert 0.0 < new["top_share"] <= 1.0
    assert new["top_share"] < new["random_item_top_share"], (dataset, new)
