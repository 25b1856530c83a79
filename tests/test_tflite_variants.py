"""Measuring TFLite variants: size, latency and quality per model, the tower pair, the table."""

from __future__ import annotations

import numpy as np
import matplotlib
import pytest

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from recsys_utils import metrics, plots, tflite_conversion, tflite_variants
from recsys_utils.schema import DataError


def test_plot_and_table(dense_variants):
    rows = [{"model": "tower", "variant": m, "size_mb": r.size_mb, "median_ms": 1.0 + i,
             "quality": 1.0 - 0.001 * i, "quality_metric": "cosine"}
            for i, (m, r) in enumerate(dense_variants.items())]
    df = tflite_variants.size_quality_table(rows)
    assert df.loc[df.variant == "float32", "x_smaller"].item() == 1.0
    assert df.loc[df.variant == "full_int8", "x_smaller"].item() >= 3.5
    # speedup: float32's median latency over the variant's (here 1 ms over 1 + i ms).
    expected = {row["variant"]: 1.0 / row["median_ms"] for row in rows}
    assert df.set_index("variant")["speedup"].to_dict() == pytest.approx(expected)
    assert list(df.variant) == list(tflite_conversion.MODES)
    fig = plots.plot_tradeoff(df, "size_mb", "quality")
    assert len(fig.axes) == 1
    # Qualities 0.997-1.0: the axis still spans MIN_QUALITY_SPAN, so they look close.
    low, high = fig.axes[0].get_ylim()
    assert high - low >= plots.MIN_QUALITY_SPAN
    assert low <= df.quality.min() and high >= df.quality.max()


def test_plot_tradeoff_layout_keywords():
    import pandas as pd

    df = pd.DataFrame([{"model": model, "variant": v, "size_mb": size, "quality": q,
                        "quality_metric": "cosine"}
                       for model in ("a", "b", "c")
                       for v, size, q in (("float32", 4.0, 1.0), ("dynamic_int8", 1.0, 0.99),
                                          ("full_int8", 1.0, 0.98))])
    # Default: one row of 4.4-inch panels over a legend; no label beside a point to collide.
    fig = plots.plot_tradeoff(df, "size_mb", "quality")
    assert len(fig.axes) == 3 and fig.get_size_inches()[0] == pytest.approx(13.2)
    assert not any(ax.texts for ax in fig.axes)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["float32", "dynamic_int8", "full_int8"]
    # Each variant has one style in every panel: its legend entry's colour and marker.
    for ax in fig.axes:
        for entry, points in zip(legend.legend_handles, ax.collections):
            assert entry.get_marker() == "o"
            assert tuple(points.get_facecolor()[0][:3]) == pytest.approx(
                matplotlib.colors.to_rgb(entry.get_color()))
    # ncols wraps the panels (the spare cell hidden), width fits them to a page; a variant
    # with a second word (pruned) keeps its format's colour and takes its own marker; any
    # column names will do (notebook 06 plots "gzipped size (MB)").
    pruned = df.assign(variant=df.variant.where(df.variant == "float32", "pruned50 " + df.variant)
                       ).rename(columns={"size_mb": "gzipped size (MB)"})
    fig = plots.plot_tradeoff(pruned, "gzipped size (MB)", "quality", ncols=2, width=7.2)
    assert fig.get_size_inches()[0] == pytest.approx(7.2)
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]
    styles = {h.get_label(): (h.get_color(), h.get_marker()) for h in fig.legends[0].legend_handles}
    assert styles == {"float32": ("C0", "o"), "pruned50 dynamic_int8": ("C1", "s"),
                      "pruned50 full_int8": ("C2", "s")}


def test_measure_variants_records_runtime_failures(dense_model, dense_variants):
    _, model, _, held_out = dense_model
    reference = model(held_out).numpy()

    def quality(mode, runner):
        if mode == "float16":
            raise RuntimeError("kernel failed at run time")
        return metrics.cosine_rows(runner.predict({"features": held_out}), reference).min()

    failed = tflite_conversion.ConversionResult("full_int8", ok=False, error="converter said no")
    results = [dense_variants["float32"], dense_variants["float16"],
               dense_variants["dynamic_int8"], failed]
    df = tflite_variants.measure_variants(results, model="tower", quality=quality,
                                          quality_metric="cosine",
                                          timing_inputs={"features": held_out}, batch_threads=2,
                                          latency_threads=1, repeats=5, rounds=2,
                                          progress=False).set_index("variant")
    assert df.loc["float32", "quality"] > 0.9999 and df.loc["dynamic_int8", "quality"] >= 0.99
    # Single queries on one thread, batches on two, both stated.
    assert df.loc["dynamic_int8", "median_ms"] > 0 and df.loc["dynamic_int8", "num_threads"] == 1
    assert (df.loc[["float32", "dynamic_int8"], "batch_threads"] == 2).all()
    assert df.loc["float32", "throughput"] > 0
    assert not df.loc["float16", "ok"] and "run time" in df.loc["float16", "error"]
    assert np.isnan(df.loc["float16", "median_ms"])
    assert not df.loc["full_int8", "ok"] and df.loc["full_int8", "error"] == "converter said no"
    assert np.isnan(df.loc["full_int8", "quality"])


def test_measure_variants_raises_the_callers_mistakes(dense_model, dense_variants):
    held_out = dense_model[3]

    def quality(mode, runner):  # wrong input name: a DataError, not a model's run-time failure
        return runner.predict({"wrong": held_out}).mean()

    with pytest.raises(DataError, match="missing model inputs"):
        tflite_variants.measure_variants([dense_variants["float32"]], model="tower",
                                         quality=quality, quality_metric="x",
                                         timing_inputs={"features": held_out},
                                         repeats=2, rounds=1, progress=False)


@pytest.fixture(scope="module")
def toy_towers(tmp_path_factory):
    """Query and item towers with serving.export_towers' signatures, and their test queries."""
    import scipy.sparse

    from recsys_utils.features import QuerySet

    rng = np.random.default_rng(4)
    n_users, n_items, history, dim = 30, 60, 4, 8
    users = tf.constant(rng.normal(size=(n_users, dim)), tf.float32)
    items = tf.constant(rng.normal(size=(n_items, dim)), tf.float32)

    query = tf.Module()
    query.f = tf.function(
        lambda user, history, history_mask, hour, dow: {"embedding": tf.gather(users, user) + tf.reduce_sum(
            tf.gather(items, tf.maximum(history, 0)) * tf.expand_dims(history_mask, -1), axis=1)
            + 0.01 * tf.expand_dims(tf.cast(hour + dow, tf.float32), -1)},
        input_signature=[tf.TensorSpec([None], tf.int32, name="user"),
                         tf.TensorSpec([None, history], tf.int32, name="history"),
                         tf.TensorSpec([None, history], tf.float32, name="history_mask"),
                         tf.TensorSpec([None], tf.int32, name="hour"),
                         tf.TensorSpec([None], tf.int32, name="dow")])
    item = tf.Module()
    item.f = tf.function(lambda item: {"embedding": 2.0 * tf.gather(items, item)},
                         input_signature=[tf.TensorSpec([None], tf.int32, name="item")])
    root = tmp_path_factory.mktemp("towers")
    for name, module in (("query", query), ("item", item)):
        tf.saved_model.save(module, str(root / name), signatures={"serving_default": module.f})
    n = 25
    features = {"user": rng.integers(0, n_users, n).astype(np.int32),
                "history": rng.integers(0, n_items, (n, history)).astype(np.int32),
                "history_mask": (rng.random((n, history)) < 0.7).astype(np.float32),
                "hour": rng.integers(0, 24, n).astype(np.int32),
                "dow": rng.integers(0, 7, n).astype(np.int32)}
    exclude = scipy.sparse.csr_matrix((np.ones(n, bool), (np.arange(n), rng.integers(0, n_items, n))),
                                      shape=(n, n_items))
    relevant = [set(rng.choice(n_items, 3, replace=False).tolist()) for _ in range(n)]
    queries = QuerySet("test", np.arange(n).astype(str), features, relevant, exclude)
    reference = (query.f(**{k: tf.constant(v) for k, v in features.items()})["embedding"].numpy(),
                 item.f(tf.range(n_items))["embedding"].numpy())
    return root, queries, n_items, reference


def test_measure_towers_scores_each_pair_once_and_reports_failed_item_towers(toy_towers, tmp_path):
    from recsys_utils import retrieval

    root, queries, n_items, (query_ref, item_ref) = toy_towers
    convert = tflite_conversion.convert_saved_model
    query_results = {m: convert(root / "query", m, out_path=tmp_path / f"q.{m}.tflite")
                     for m in ("float32", "float16", "dynamic_int8")}
    item_results = {m: convert(root / "item", m, out_path=tmp_path / f"i.{m}.tflite")
                    for m in ("float32", "dynamic_int8")}
    item_results["float16"] = tflite_conversion.ConversionResult("float16", ok=False,
                                                                 error="no float16 today")
    assert all(r.ok for r in query_results.values())
    measured = tflite_variants.measure_towers(query_results, item_results, queries, n_items, k=5,
                                              repeats=3, rounds=1, progress=False)
    table = measured.table.set_index("variant")
    # The float32 pair reproduces the SavedModels and is scored as evaluate_retrieval does.
    assert metrics.cosine_rows(measured.query_vectors, query_ref).min() >= 0.9999
    assert metrics.cosine_rows(measured.item_vectors, item_ref).min() >= 0.9999
    expected = retrieval.rank_items(query_ref, item_ref, 5, exclude=queries.exclude)
    assert metrics.top_k_overlap(measured.ranked["float32"], expected, 5).mean() >= 0.96
    assert table.loc["float32", "quality"] == pytest.approx(
        metrics.retrieval_metrics(measured.ranked["float32"], queries.relevant, ks=(5,))["recall@5"])
    assert table.loc["float32", "quality_metric"] == "Recall@5"
    assert not (measured.ranked["float32"][queries.exclude.nonzero()[0], :] ==
                queries.exclude.nonzero()[1][:, None]).any()  # training items never returned
    # Both files count; the query tower is timed on one thread.
    assert table.loc["float32", "size_mb"] * 1e6 == pytest.approx(
        query_results["float32"].size_bytes + item_results["float32"].size_bytes)
    assert table.loc["dynamic_int8", "ok"] and table.loc["dynamic_int8", "num_threads"] == 1
    assert measured.agreement["float32"] == 1.0 and 0 <= measured.agreement["dynamic_int8"] <= 1
    # The paired interval of each mode's Recall@5 minus float32's brackets the mean difference.
    assert measured.recall_interval["float32"] == (0.0, 0.0)
    low, high = measured.recall_interval["dynamic_int8"]
    difference = table.loc["dynamic_int8", "quality"] - table.loc["float32", "quality"]
    assert low - 1e-12 <= difference <= high + 1e-12
    # A mode whose item tower failed is a failed row that says why (no TypeError).
    assert not table.loc["float16", "ok"] and "item tower float16" in table.loc["float16", "error"]
    assert "no float16 today" in table.loc["float16", "error"] and "float16" not in measured.ranked
    # Gzipped sizes count both files too, each compressed on its own.
    import gzip
    assert table.loc["dynamic_int8", "gzip_mb"] * 1e6 == sum(
        len(gzip.compress(r.path.read_bytes(), compresslevel=6))
        for r in (query_results["dynamic_int8"], item_results["dynamic_int8"]))
    # Against other lists (e.g. unpruned towers'): float32 now differs from its reference.
    other = measured.ranked["float32"][:, ::-1].copy()
    other[: len(other) // 2] = n_items - 1 - other[: len(other) // 2]
    again = tflite_variants.measure_towers(query_results, item_results, queries, n_items, k=5,
                                           reference_lists=other, repeats=3, rounds=1,
                                           progress=False)
    assert again.agreement["float32"] < 1.0
    per_query = metrics.retrieval_metrics(other, queries.relevant, ks=(5,), per_query=True)
    gap = table.loc["float32", "quality"] - per_query["recall@5"].mean()
    low, high = again.recall_interval["float32"]
    assert (low, high) != (0.0, 0.0) and low - 1e-12 <= gap <= high + 1e-12
