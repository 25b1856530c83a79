"""Notebook 07 (evaluation report), executed by papermill on the smoke profile.

The report must hold every model the earlier notebooks trained (read here from
their own metrics files, not from the report module) and a verdict for every
claim; with notebooks 01-06 run, every claim is measurable. Run alone on a copy
of the metrics without notebook 06's file, the quantization claim becomes
"not measurable here" and the notebook still writes its report.
"""

from __future__ import annotations

import re
import shutil

import pytest

from recsys_utils import artifacts, report
from recsys_utils.series import run_series

pytestmark = pytest.mark.notebook

ALL_DATASETS = ["synthetic", "movielens-100k", "fashion"]


def _trained_models(metrics: dict) -> list[str]:
    """Names of the models notebooks 03-06 trained or converted, from their metrics files."""
    names = list(metrics["03_multimodal_fusion"]["models"])
    names += list((metrics["03_multimodal_fusion"].get("images") or {}).get("scores") or {})
    retrieval = metrics["04_tfrs_retrieval"]
    names += list(retrieval["variants"])
    names += sorted({key.split("|")[0] for key in retrieval["ablation"]})
    ranking = metrics["05_tfrs_ranking"]
    names += [f"DCN ranker ({ranking['target']})", "engagement re-ranker"]
    if ranking.get("multitask"):
        names.append("joint multitask model")
    if retrieval.get("tfrs_protocol"):
        names += ["this project: ID-only", "this project: fused"]
    return names


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_07_report_has_every_model_and_a_verdict_for_every_claim(series_runs, dataset):
    artifact_dir = series_runs.upto(dataset, "07")
    run_dir = artifact_dir.parent
    metrics = artifacts.read_metrics(artifact_dir)
    evaluation = metrics.pop("07_evaluation")
    markdown = (run_dir / evaluation["report"]["markdown"]).read_text()
    page = (run_dir / evaluation["report"]["html"]).read_text()
    assert (run_dir / evaluation["report"]["markdown"]).parent == report.report_dir(run_dir)

    for name in _trained_models(metrics):
        assert name in markdown and name in page, (dataset, name)
    # Every converted variant of every quantized model has its row.
    for key in metrics["06_quantization"]["variants"]:
        model, variant = key.split("|")
        assert f"| {model} | {variant} |" in markdown, (dataset, key)

    assert set(evaluation["verdicts"]) == set(report.CLAIMS)
    for claim_id, claim in report.CLAIMS.items():
        verdict = evaluation["verdicts"][claim_id]
        assert verdict in report.VERDICTS, (claim_id, verdict)
        assert re.search(re.escape(claim) + r" \| .+ \| " + re.escape(verdict) + r" \|", markdown), claim
        # Notebooks 01-06 ran, so every claim is measured (search evidence is optional).
        assert verdict != report.NOT_MEASURABLE, (dataset, claim_id, evaluation["claims"][claim_id])
    # The verdicts follow from the metrics files alone.
    assert report.claims_table(metrics)["verdict"].to_dict() == evaluation["verdicts"]

    # One self-contained HTML file; the Markdown's figures are PNG files beside it.
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]+)"', page))
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (run_dir / evaluation["report"]["markdown"]).with_name(png).is_file(), png


def test_07_runs_without_the_quantization_metrics(series_runs, tmp_path):
    source = series_runs.upto("synthetic", "07")
    run_dir = tmp_path / "run"
    shutil.copytree(source / artifacts.METRICS_DIR, run_dir / "artifacts" / artifacts.METRICS_DIR)
    (run_dir / "artifacts" / artifacts.METRICS_DIR / "06_quantization.json").unlink()
    (run_dir / "artifacts" / artifacts.METRICS_DIR / "07_evaluation.json").unlink()
    run_series("synthetic", "smoke", run_dir, start="07", stop="07", progress=False)
    evaluation = artifacts.read_metrics(run_dir / "artifacts")["07_evaluation"]
    assert evaluation["verdicts"]["quantization"] == report.NOT_MEASURABLE
    assert "06_quantization" in evaluation["claims"]["quantization"]["evidence"]
    markdown = (run_dir / evaluation["report"]["markdown"]).read_text()
    assert "Not measurable here" in markdown
    assert evaluation["verdicts"]["attention_fusion"] != report.NOT_MEASURABLE
