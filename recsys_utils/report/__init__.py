"""The evaluation report (notebook 08): every stage's numbers side by side, and the claims tested.

Every public function takes the dict that :func:`recsys_utils.artifacts.read_metrics`
returns (``{notebook stem: summary}``) and gives back pandas tables or
matplotlib figures, so the report never holds a number typed by hand. The report
answers first (:func:`summary_sentences`), then gives the verdicts, then the details. Nothing
here imports TensorFlow. Where a metrics file or key is missing, a table is
empty (its ``attrs["note"]`` says why) and a claim's verdict is
``"not measurable here"`` with the reason.

:func:`write_report` renders the same tables as ``report.md`` (figures as PNG
files beside it) and as one self-contained ``report.html`` (figures embedded as
base64), each written atomically.

The modules, one job each (import the names from here):

- :mod:`.reading`: the notebook stems, the helpers that read a metrics dict, and
  :func:`mixed_runs` (do the files come from one run?);
- :mod:`.tables`: one DataFrame per stage (data, retrieval, ranking, fusion, ...);
- :mod:`.rules`: the claims, the rule of each verdict and its thresholds;
- :mod:`.claims`: the claims tested against the numbers (quantization one row per model);
- :mod:`.summary`: the answer in plain words, every sentence built from the metrics;
- :mod:`.figures`: the plots, and PNG bytes of them;
- :mod:`.render`: the Markdown and HTML report, written by :func:`write_report`.
"""

from __future__ import annotations

from .claims import claims_table, quantization_checks
from .figures import (default_figures, figure_png, plot_chain, plot_fusion, plot_quantization,
                      plot_retrieval, plot_search)
from .reading import (DATA, EVALUATION, FUSION, QUANTIZATION, RANKING, RETRIEVAL, RUN_FIELDS,
                      SEARCH, STAGES, TEXT, mixed_runs)
from .render import REPORT_DIR, report_dir, write_report
from .rules import (ABS_TOLERANCE, ANN_BENCHMARK, CLAIM_RULES, CLAIMS, MAX_REALTIME_P95_MS,
                    MAX_RELATIVE_QUALITY_LOSS, MIN_ANN_ITEMS, MIN_ANN_RECALL, MIN_ANN_SPEEDUP,
                    MIN_COSINE, MIN_MEASURABLE_MS, MIN_SPEEDUP, MIN_X_SMALLER, NOT_MEASURABLE,
                    NOT_SUPPORTED, REL_TOLERANCE, SUPPORTED, UNFUSED, VERDICTS)
from .summary import summary_sentences
from .tables import (TFRS_TUTORIAL_URL, chain_table, data_table, fusion_table,
                     image_encoder_table, index_table, quantization_table, ranking_table,
                     retrieval_table, scann_table, search_table, sources_table, text_probe_table,
                     tfrs_protocol_table, tfrs_protocol_text)

__all__ = [
    # notebook stems and where the report goes
    "DATA", "TEXT", "FUSION", "RETRIEVAL", "RANKING", "QUANTIZATION", "EVALUATION", "SEARCH",
    "STAGES", "REPORT_DIR", "RUN_FIELDS", "mixed_runs",
    # verdicts, their thresholds, the claims and their rules
    "SUPPORTED", "NOT_SUPPORTED", "NOT_MEASURABLE", "VERDICTS", "ABS_TOLERANCE",
    "REL_TOLERANCE", "MIN_X_SMALLER", "MIN_SPEEDUP", "MIN_MEASURABLE_MS", "MIN_COSINE",
    "MAX_RELATIVE_QUALITY_LOSS",
    "MIN_ANN_RECALL", "MAX_REALTIME_P95_MS", "MIN_ANN_SPEEDUP", "MIN_ANN_ITEMS", "ANN_BENCHMARK",
    "CLAIMS", "CLAIM_RULES", "UNFUSED",
    # the TFRS tutorial protocol
    "tfrs_protocol_text", "TFRS_TUTORIAL_URL",
    # tables
    "sources_table", "data_table", "retrieval_table", "ranking_table", "chain_table",
    "fusion_table", "image_encoder_table", "text_probe_table", "quantization_table",
    "index_table", "scann_table", "search_table", "tfrs_protocol_table",
    # claims, and the answer they lead to
    "quantization_checks", "claims_table", "summary_sentences",
    # figures
    "figure_png", "plot_retrieval", "plot_chain", "plot_fusion", "plot_quantization",
    "plot_search", "default_figures",
    # the document
    "report_dir", "write_report",
]
