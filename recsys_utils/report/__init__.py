"""The evaluation report (notebook 08): every stage's numbers side by side, and the claims tested.

Each function takes ``{notebook stem: summary}`` (:func:`recsys_utils.artifacts.read_metrics`)
and returns pandas tables, sentences or matplotlib figures; nothing here imports TensorFlow.
A missing metrics file or key gives an empty table (``attrs["note"]`` says why) or a
"not measurable here" verdict. :func:`write_report` writes ``report.md`` and ``report.html``.
Modules: :mod:`.reading` (lookups), :mod:`.tables`, :mod:`.rules` (claims, thresholds),
:mod:`.claims` (verdicts), :mod:`.summary` (the answer in words), :mod:`.figures`, :mod:`.render`.
The names imported here are the package's interface.
"""

from __future__ import annotations

# Claims, and the answer they lead to.
from .claims import claims_table, quantization_checks
# Figures.
from .figures import (figure_png, plot_chain, plot_fusion, plot_quantization, plot_retrieval,
                      plot_search)
# Notebook stems, and the run fields every metrics file carries.
from .reading import (DATA, EVALUATION, FUSION, QUANTIZATION, RANKING, RETRIEVAL, RUN_FIELDS,
                      SEARCH, STAGES, TEXT, mixed_runs)
# The document, and where it goes.
from .render import REPORT_DIR, report_dir, write_report
# Verdicts, their thresholds, the claims and their rules.
from .rules import (ABS_TOLERANCE, ANN_BENCHMARK, CLAIM_RULES, CLAIMS, MAX_REALTIME_P95_MS,
                    MAX_RELATIVE_QUALITY_LOSS, MIN_ANN_ITEMS, MIN_ANN_RECALL, MIN_ANN_SPEEDUP,
                    MIN_COSINE, MIN_MEASURABLE_MS, MIN_SPEEDUP, MIN_X_SMALLER, NOT_MEASURABLE,
                    NOT_SUPPORTED, REL_TOLERANCE, SUPPORTED, UNFUSED, VERDICTS)
from .summary import summary_sentences
# Tables, and the TFRS tutorial's protocol.
from .tables import (TFRS_TUTORIAL_URL, chain_table, data_table, fusion_table,
                     image_encoder_table, index_table, quantization_table, ranking_table,
                     retrieval_table, scann_table, search_table, sources_table, text_probe_table,
                     tfrs_protocol_table, tfrs_protocol_text)
