"""Notebook 08 (evaluation report), executed by papermill on the smoke profile.

The report must hold every model the earlier notebooks trained, notebook 07's
search methods included (read here from their own metrics files, not from the
report module), each as a table row of its own section, and a verdict for every
claim (quantization one per model), the answer first. With notebooks 01-07
run every claim about models is measured; approximate search is not judged on
a smoke catalogue (the ANN benchmark is cited). Run alone on a copy
of the metrics without notebook 06's file, the quantization claim becomes
"not measurable here" and the notebook still writes its report.
"""

from __future__ import annotations

import re
import shutil

import pytest

from recsys_utils import artifacts, report
from recsys_utils.series import run_series
from report_markdown import has_html_row, has_row, html_section, section

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]


def _trained_models(metrics: dict) -> dict[str, list[tuple[str, bool]]]:
    """The models notebooks 03-06 and 08 trained or converted, from their metrics files.

    Returns:
        report section heading -> ``(row label, label is a prefix)`` of the rows
        that section's tables must have.
    """
    fusion = metrics["03_multimodal_fusion"]
    retrieval = metrics["04_tfrs_retrieval"]
    ranking = metrics["05_tfrs_ranking"]
    rows: dict[str, list[tuple[str, bool]]] = {
        "The fusion comparison": [(n, False) for n in [
            *fusion["models"], *((fusion.get("images") or {}).get("scores") or {})]],
        "All retrieval models": [(n, False) for n in [
            *retrieval["variants"], *retrieval["references"],
            *sorted({key.split("|")[0] for key in retrieval["ablation"]})]],
        "Retrieval alone versus the chain": [(f"DCN ranker ({ranking['target']})", True),
                                             ("retrieval → engagement re-ranker", True)],
    }
    if ranking.get("multitask"):
        rows["Retrieval alone versus the chain"].append(("joint multitask model", True))
    if retrieval.get("tfrs_protocol"):
        rows["Published numbers under their own protocol"] = [
            (label, False) for label in retrieval["tfrs_protocol"]]
    search = metrics.get("07_product_search") or {}
    if search.get("has_queries") is not False and search.get("test"):
        # bm25, dense, hybrid_rrf, hybrid_interpolation, two_tower: whichever notebook 07 ran.
        rows["Product search"] = [(method, False) for method in search["test"]]
    return rows


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_08_report_has_every_model_and_a_verdict_for_every_claim(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "08")
    run_dir = artifact_dir.parent
    metrics = artifacts.read_metrics(artifact_dir)
    evaluation = metrics.pop("08_evaluation")
    markdown = (run_dir / evaluation["report"]["markdown"]).read_text()
    page = (run_dir / evaluation["report"]["html"]).read_text()
    assert (run_dir / evaluation["report"]["markdown"]).parent == report.report_dir(run_dir)

    # Every model is a row of its own section's table, in the Markdown and the HTML.
    for heading, rows in _trained_models(metrics).items():
        md_part, html_part = section(markdown, heading), html_section(page, heading)
        for name, prefix in rows:
            assert has_row(md_part, name, prefix), (dataset, heading, name)
            assert has_html_row(html_part, name, prefix), (dataset, heading, name)
    # Every converted variant of every quantized model has its row.
    quantization = section(markdown, "The quantization trade-off")
    for key in metrics["06_quantization"]["variants"]:
        model, variant = key.split("|")
        assert f"| {model} | {variant} |" in quantization, (dataset, key)
    # The files come from this one run: no mixed-runs warning.
    assert report.mixed_runs(metrics) == {} and "**Warning:**" not in markdown

    # One verdict per claim, quantization one per model notebook 06 converted, pruning one per
    # model it pruned.
    keys = [key.split("|") for key in metrics["06_quantization"]["variants"]]
    quantized = {model for model, _ in keys}
    pruned = {model for model, variant in keys if variant.startswith("pruned")}
    assert pruned == {"towers", "ranker"}, keys
    expected = ({*report.CLAIMS, *(f"quantization: {m}" for m in quantized),
                 *(f"pruning: {m}" for m in pruned)} - {"quantization", "pruning"})
    assert set(evaluation["verdicts"]) == expected, evaluation["verdicts"]
    for claim_id, verdict in evaluation["verdicts"].items():
        claim = evaluation["claims"][claim_id]["claim"]
        assert verdict in report.VERDICTS, (claim_id, verdict)
        assert re.search(r"^\| " + re.escape(claim) + r" \| " + re.escape(verdict) + r" \|", markdown,
                         re.M), claim
    # Notebooks 01-07 ran: the claims about models are measured. Approximate search is not
    # judged on a smoke catalogue (far below MIN_ANN_ITEMS): the ANN benchmark is cited instead.
    for claim_id in ("pretrained_text", "fusion_beats_single", "attention_fusion"):
        assert evaluation["verdicts"][claim_id] != report.NOT_MEASURABLE, (
            dataset, claim_id, evaluation["claims"][claim_id])
    assert metrics["01_data_preparation"]["n_items"] < report.MIN_ANN_ITEMS
    assert evaluation["verdicts"]["approximate_search"] == report.NOT_MEASURABLE
    assert "docs/performance.md" in evaluation["claims"]["approximate_search"]["evidence"]
    # The verdicts follow from the metrics files alone.
    assert report.claims_table(metrics)["verdict"].to_dict() == evaluation["verdicts"]
    # The answer comes first, generated from the same files.
    assert evaluation["answer"] == report.summary_sentences(metrics, evaluation["verdicts"])
    assert markdown.index("## The answer") < markdown.index("## The verdicts") < markdown.index(
        "## The data")
    assert evaluation["answer"][0] in markdown

    # One self-contained HTML file; the Markdown's figures are PNG files beside it.
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]+)"', page))
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (run_dir / evaluation["report"]["markdown"]).with_name(png).is_file(), png


@pytest.mark.xdist_group("series-synthetic")  # the series it reads
def test_08_runs_without_the_quantization_metrics(series_runs, tmp_path):
    source = series_runs.upto("synthetic", "08")
    run_dir = tmp_path / "run"
    shutil.copytree(source / artifacts.METRICS_DIR, run_dir / "artifacts" / artifacts.METRICS_DIR)
    (run_dir / "artifacts" / artifacts.METRICS_DIR / "06_quantization.json").unlink()
    (run_dir / "artifacts" / artifacts.METRICS_DIR / "08_evaluation.json").unlink()
    run_series("synthetic", "smoke", run_dir, start="08", stop="08", progress=False)
    evaluation = artifacts.read_metrics(run_dir / "artifacts")["08_evaluation"]
    assert evaluation["verdicts"]["quantization"] == report.NOT_MEASURABLE
    assert "06_quantization" in evaluation["claims"]["quantization"]["evidence"]
    markdown = (run_dir / evaluation["report"]["markdown"]).read_text()
    assert "Not measurable here" in markdown
    assert evaluation["verdicts"]["attention_fusion"] != report.NOT_MEASURABLE
