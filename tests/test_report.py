"""recsys_utils.report on hand-built metrics dicts shaped like the notebooks' summaries.

Each verdict must follow the numbers: flip the numbers and the verdict flips;
remove a metrics file or key and it becomes "not measurable here".
"""

from __future__ import annotations

import copy
import re

import pytest

from recsys_utils import artifacts, report
from recsys_utils.report import NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED


def _rows(values: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{"variant|split|candidates": {"recall@10": .., "recall@50": .., "ndcg@10": ..}}``."""
    return {key: {"recall@10": v * 0.5, "recall@50": v, "recall@100": min(1.0, v * 1.3),
                  "ndcg@10": v * 0.3, "mrr": v * 0.2, "n_queries": 400.0}
            for key, v in values.items()}


def make_metrics() -> dict:
    """A run in which every claim is supported (the tests then flip one number at a time)."""
    warm = {"popularity": 0.30, "id": 0.32, "content": 0.36, "fused": 0.42,
            "content_text": 0.33, "fused_text": 0.38}
    cold = {"popularity": 0.0, "id": 0.0, "content": 0.25, "fused": 0.28,
            "content_text": 0.20, "fused_text": 0.18}
    cold_only = {"popularity": 0.05, "id": 0.05, "content": 0.40, "fused": 0.42,
                 "content_text": 0.35, "fused_text": 0.33}
    table = {}
    for variant in warm:
        table.update(_rows({f"{variant}|test|all": warm[variant],
                            f"{variant}|test_cold|all": cold[variant],
                            f"{variant}|test_cold|cold": cold_only[variant]}))
    ablation = _rows({"fused|test|all": 0.42, "fused|test_cold|all": 0.28,
                      "fused, popularity prior|test|all": 0.45,
                      "fused, popularity prior|test_cold|all": 0.05})
    fusion_models = {
        "text": {"kind": "single modality", "modalities": "text", "ndcg@10": 0.40},
        "image": {"kind": "single modality", "modalities": "image", "ndcg@10": 0.30},
        "attributes": {"kind": "single modality", "modalities": "attributes", "ndcg@10": 0.20},
        "concat": {"kind": "fusion", "modalities": "text + image + attributes", "ndcg@10": 0.50},
        "gated": {"kind": "fusion", "modalities": "text + image + attributes", "ndcg@10": 0.52},
        "attention": {"kind": "fusion", "modalities": "text + image + attributes", "ndcg@10": 0.60},
    }

    def variant(size, ms, quality, metric):
        return {"ok": True, "size_mb": size, "median_ms": ms, "p95_ms": ms * 1.5,
                "throughput": 1000 / ms, "num_threads": 2, "quality": quality,
                "quality_metric": metric}

    cos, rec, rmse = "worst cosine to float32", "Recall@10", "RMSE (lower is better)"
    variants = {
        "text encoder|float32": variant(90.0, 20.0, 1.0, cos),
        "text encoder|float16": variant(45.0, 21.0, 0.9999, cos),
        "text encoder|dynamic_int8": variant(23.0, 10.0, 0.997, cos),
        "text encoder|full_int8": variant(24.0, 12.0, 0.90, cos),
        "towers|float32": variant(0.8, 0.20, 0.300, rec),
        "towers|float16": variant(0.4, 0.20, 0.300, rec),
        "towers|dynamic_int8": variant(0.21, 0.15, 0.298, rec),
        "towers|full_int8": variant(0.30, 0.25, 0.296, rec),
        "ranker|float32": variant(1.0, 0.10, 0.950, rmse),
        "ranker|float16": variant(0.5, 0.10, 0.950, rmse),
        "ranker|dynamic_int8": variant(0.27, 0.08, 0.955, rmse),
        "ranker|full_int8": variant(0.40, 0.12, 0.960, rmse),
    }
    return {
        "01_data_preparation": {"dataset": "synthetic", "feedback": "event", "n_items": 600,
                                "n_users": 500, "n_interactions": 9000,
                                "splits": {"train": 8000, "test": 500}},
        "02_text_encoding": {"few_shot_probe_mean": {"MiniLM": 0.70, "TF-IDF": 0.50},
                             "full_probe_mean": {"MiniLM": 0.85, "TF-IDF": 0.80}},
        "03_multimodal_fusion": {"dataset": "synthetic", "metric": "ndcg@10", "models": fusion_models,
                                 "best_fusion": "attention", "best_fusion_score": 0.60,
                                 "best_single": "text", "best_single_score": 0.40,
                                 "images": {"present": 600, "objective": "supervised",
                                            "scores": {"supervised": 0.6, "contrastive": 0.5,
                                                       "random": 0.2}}},
        "04_tfrs_retrieval": {"dataset": "synthetic", "profile": "smoke", "variants": list(warm),
                              "warm_recall@50": warm, "cold_recall@50": cold, "table": table,
                              "ablation": ablation,
                              "train_seconds": {k: 10.0 for k in warm}, "tfrs_protocol": None,
                              "scann": {"recall@10_vs_brute_force": 0.99, "num_leaves_to_search": 5,
                                        "latency_ms": {"brute force": {"median_ms": 1.0, "p95_ms": 1.5},
                                                       "ScaNN": {"median_ms": 0.8, "p95_ms": 1.2}}}},
        "05_tfrs_ranking": {"dataset": "synthetic", "profile": "smoke", "target": "click",
                            "test": {"target": "click", "split": "test", "n": 500, "auc": 0.7,
                                     "auc_constant": 0.5},
                            "test_cold": None,
                            "chain": {"k_retrieve": 100, "k": 10, "n_queries": 480,
                                      "retrieval_ndcg@10": 0.10, "chain_ndcg@10": 0.12,
                                      "chain_ndcg@10_click_ranker": 0.08,
                                      "retrieval_recall@100": 0.5},
                            "multitask": None},
        "06_quantization": {"dataset": "synthetic", "profile": "smoke", "variants": variants,
                            "index": [{"index": "float32 exact", "bytes": 76800, "recall_at_k": 1.0,
                                       "median_ms": 0.05, "k": 10},
                                      {"index": "int8 scalar", "bytes": 19456, "recall_at_k": 0.98,
                                       "median_ms": 0.04, "k": 10}]},
        "08_product_search": {"dataset": "synthetic", "has_queries": True,
                              "test": {m: {"all": {"ndcg@10": v, "recall@100": 0.8, "mrr": 0.5},
                                           "exact": {"ndcg@10": v + 0.1},
                                           "paraphrase": {"ndcg@10": v - 0.1}}
                                       for m, v in (("bm25", 0.40), ("dense", 0.50),
                                                    ("hybrid_rrf", 0.52), ("two_tower", 0.55))},
                              "served_overlap_at_k": 0.98,
                              "served_latency_ms": {"median_ms": 12.0, "p95_ms": 20.0}},
    }


def verdicts(metrics) -> dict[str, str]:
    return report.claims_table(metrics)["verdict"].to_dict()


def test_every_claim_has_a_valid_verdict_and_all_are_supported_here():
    table = report.claims_table(make_metrics())
    assert list(table.columns) == ["claim", "evidence", "verdict"]
    assert list(table.index) == list(report.CLAIMS)
    assert set(table["verdict"]) <= set(report.VERDICTS)
    assert table["verdict"].eq(SUPPORTED).all(), table[["verdict", "evidence"]].to_dict()
    # The evidence carries the measured numbers.
    assert "0.600" in table.loc["attention_fusion", "evidence"]
    assert "0.520" in table.loc["attention_fusion", "evidence"]


def test_empty_metrics_make_every_claim_not_measurable():
    table = report.claims_table({})
    assert table["verdict"].eq(NOT_MEASURABLE).all()
    assert all("has not run" in e for e in table["evidence"]), table["evidence"].tolist()


def test_pretrained_text_verdict_flips_with_the_numbers():
    m = make_metrics()
    # Text adds nothing on warm items and only ties on new items; probe and search go against.
    t = m["04_tfrs_retrieval"]["table"]
    t["fused_text|test|all"]["recall@50"] = t["id|test|all"]["recall@50"]
    t["content_text|test_cold|cold"]["recall@10"] = t["id|test_cold|cold"]["recall@10"]
    # Probe and search alone cannot carry a claim about recommendation.
    assert verdicts(m)["pretrained_text"] == NOT_SUPPORTED
    m["02_text_encoding"]["few_shot_probe_mean"]["MiniLM"] = 0.30
    m["02_text_encoding"]["full_probe_mean"]["MiniLM"] = 0.60
    m["08_product_search"]["test"]["dense"]["all"]["ndcg@10"] = 0.20
    assert verdicts(m)["pretrained_text"] == NOT_SUPPORTED
    # Without notebook 04 the recommendation claim cannot be measured, whatever 02 and 08 say.
    m = make_metrics()
    del m["04_tfrs_retrieval"]
    assert verdicts(m)["pretrained_text"] == NOT_MEASURABLE


def test_fusion_verdict_flips_when_a_single_source_wins():
    m = make_metrics()
    m["04_tfrs_retrieval"]["table"]["popularity|test|all"]["recall@50"] = 0.50  # beats fused 0.42
    assert verdicts(m)["fusion_beats_single"] == NOT_SUPPORTED
    m = make_metrics()
    m["03_multimodal_fusion"]["best_single_score"] = 0.61
    assert verdicts(m)["fusion_beats_single"] == NOT_SUPPORTED
    m = make_metrics()
    del m["03_multimodal_fusion"], m["04_tfrs_retrieval"]
    assert verdicts(m)["fusion_beats_single"] == NOT_MEASURABLE


def test_attention_verdict_flips_and_ties_do_not_count():
    m = make_metrics()
    m["03_multimodal_fusion"]["models"]["attention"]["ndcg@10"] = 0.45
    assert verdicts(m)["attention_fusion"] == NOT_SUPPORTED
    m["03_multimodal_fusion"]["models"]["attention"]["ndcg@10"] = 0.52 + 0.004  # within tolerance
    assert verdicts(m)["attention_fusion"] == NOT_SUPPORTED
    del m["03_multimodal_fusion"]["models"]["attention"]
    assert verdicts(m)["attention_fusion"] == NOT_MEASURABLE


@pytest.mark.parametrize("key, field, value", [
    ("towers|dynamic_int8", "quality", 0.28),        # -6.7% Recall@10, and full_int8 too slow
    ("text encoder|dynamic_int8", "median_ms", 25.0),  # slower than float32
    ("ranker|dynamic_int8", "size_mb", 0.5),          # only 2x smaller
])
def test_quantization_verdict_flips_on_each_check(key, field, value):
    m = make_metrics()
    m["06_quantization"]["variants"][key][field] = value
    assert verdicts(m)["quantization"] == NOT_SUPPORTED
    model = key.split("|")[0]
    assert not report.quantization_checks(m).loc[model, "all ok"]


def test_quantization_fails_for_a_model_whose_int8_conversions_all_failed():
    m = make_metrics()
    for variant in ("dynamic_int8", "full_int8"):
        m["06_quantization"]["variants"][f"ranker|{variant}"]["ok"] = False
    claims = report.claims_table(m)
    assert claims.loc["quantization", "verdict"] == NOT_SUPPORTED
    assert "ranker: no int8 variant converted" in claims.loc["quantization", "evidence"]


def test_quantization_missing_file_is_not_measurable():
    m = make_metrics()
    del m["06_quantization"]
    claims = report.claims_table(m)
    assert claims.loc["quantization", "verdict"] == NOT_MEASURABLE
    assert "06_quantization" in claims.loc["quantization", "evidence"]
    assert report.quantization_table(m).empty


def test_approximate_search_verdict_flips():
    m = make_metrics()
    m["04_tfrs_retrieval"]["scann"]["recall@10_vs_brute_force"] = 0.80
    assert verdicts(m)["approximate_search"] == NOT_SUPPORTED
    m = make_metrics()
    m["08_product_search"]["served_latency_ms"]["p95_ms"] = 500.0
    assert verdicts(m)["approximate_search"] == NOT_SUPPORTED
    m = make_metrics()
    del m["04_tfrs_retrieval"]["scann"]
    assert verdicts(m)["approximate_search"] == NOT_MEASURABLE


def test_retrieval_table_has_every_variant_and_the_ablation():
    m = make_metrics()
    table = report.retrieval_table(m)
    expected = set(m["04_tfrs_retrieval"]["variants"]) | {"fused, popularity prior"}
    assert set(table.index) == expected
    assert table.loc["fused", "warm recall@50"] == pytest.approx(0.42)
    assert table.loc["id", "cold (new items only) recall@10"] == pytest.approx(0.025)
    # The ablation's repeat of "fused" does not overwrite the main row.
    assert table.loc["fused, popularity prior", "warm recall@50"] == pytest.approx(0.45)


def test_chain_and_quantization_tables_are_computed_from_the_metrics():
    m = make_metrics()
    chain = report.chain_table(m)
    assert chain["change vs retrieval only"].iloc[0] == 0
    assert chain.loc["retrieval → engagement re-ranker (DCN, hard negatives)",
                     "change vs retrieval only"] == pytest.approx(0.02)
    q = report.quantization_table(m).set_index(["model", "variant"])
    assert q.loc[("text encoder", "dynamic_int8"), "x_smaller"] == pytest.approx(90 / 23)
    assert q.loc[("text encoder", "dynamic_int8"), "speedup"] == pytest.approx(2.0)


def test_tfrs_protocol_table_only_measured_rows_unless_published_is_given():
    m = make_metrics()
    assert report.tfrs_protocol_table(m).empty  # not MovieLens
    m["04_tfrs_retrieval"]["tfrs_protocol"] = {
        "id": {"top_10_accuracy": 0.05, "top_100_accuracy": 0.3, "train_seconds": 4.0},
        "fused": {"top_10_accuracy": 0.06, "top_100_accuracy": 0.32, "train_seconds": 5.0}}
    table = report.tfrs_protocol_table(m)
    assert list(table.index) == ["this project: ID-only", "this project: fused"]
    assert set(table["source"]) == {"measured here (notebook 04)"}
    assert table.attrs["protocol"] == report.TFRS_PROTOCOL
    published = report.tfrs_protocol_table(m, published={"top_100_accuracy": 0.25})
    assert report.TFRS_TUTORIAL_URL in published.loc["TFRS tutorial model", "source"]
    assert "published by the tutorial" in published.loc["TFRS tutorial model", "source"]


def test_write_report_md_and_self_contained_html(tmp_path):
    m = make_metrics()
    paths = report.write_report(m, tmp_path / "report")
    md = paths["markdown"].read_text()
    page = paths["html"].read_text()
    # Every model notebook 04 trained, the fusion models, and every claim with its verdict.
    for name in [*m["04_tfrs_retrieval"]["variants"], "fused, popularity prior",
                 *m["03_multimodal_fusion"]["models"], "engagement re-ranker",
                 "text encoder", "towers", "ranker", "two_tower"]:
        assert name in md, name
        assert name in page, name
    claims = report.claims_table(m)
    for claim, verdict in zip(claims["claim"], claims["verdict"]):
        assert re.search(re.escape(claim) + r".*\| " + re.escape(verdict) + r" \|", md), claim
    # Markdown references PNG files written beside it.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"figure_retrieval.png", "figure_chain.png", "figure_fusion.png",
            "figure_quantization_size.png", "figure_quantization_latency.png"} <= set(images)
    for name in images:
        assert (paths["markdown"].parent / name).read_bytes()[:4] == b"\x89PNG"
    # The HTML embeds every figure and loads nothing from elsewhere.
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == len(images) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page
    assert not any(p.name.endswith(".tmp") for p in paths["markdown"].parent.iterdir())


def test_write_report_copes_with_missing_stages(tmp_path):
    m = make_metrics()
    del m["06_quantization"], m["08_product_search"], m["05_tfrs_ranking"]
    paths = report.write_report(m, tmp_path, figures={})
    md = paths["markdown"].read_text()
    assert md.count("Not measurable here") >= 3
    assert "figure_" not in md
    assert set(paths) == {"markdown", "html"}


def test_report_reads_the_metrics_files_notebooks_write(tmp_path):
    for stage, summary in make_metrics().items():
        artifacts.write_metrics(tmp_path, stage, summary)
    read = artifacts.read_metrics(tmp_path)
    assert report.claims_table(read)["verdict"].to_dict() == verdicts(make_metrics())
    assert copy.deepcopy(read) == read
