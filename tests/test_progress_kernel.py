"""One real Jupyter kernel, run the way papermill runs it (nbclient, no Jupyter server):
what an executed notebook keeps of progress, stderr noise and repeated warnings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from recsys_utils import progress as P

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
ONEDNN = ("2026-11-29 21:41:17.006143: E tensorflow/core/util/util.cc:131] oneDNN supports "
          "DT_INT64 only on platforms with AVX-512. Falling back to the default Eigen-based "
          "implementation if present.")
CUINIT = ("2026-11-29 21:41:13.338741: E external/local_xla/xla/stream_executor/cuda/"
          "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
          "cuInit: UNKNOWN ERROR (303)")
ABSL = ("I0000 00:00:1795983094.414450    1610 partitioner_factory_base.cc:58] Size of sampled "
        "dataset for training partition: 3000")
REAL = "E0000 00:00:1795983094.414450    1610 scann_ops.cc:99] Could not build the index."


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kernel")
    spec = tmp / "kernels" / "recsys-progress-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "progress test", "language": "python"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(tmp))
    mp.setenv("PYTHONPATH", str(REPO))  # this checkout's recsys_utils in the kernel
    # ipykernel does not forward file descriptor 2 to the notebook under pytest: as papermill.
    for name in ("JPY_SESSION_NAME", P.PROGRESS_ENV, P.VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL",
                 "PYTEST_CURRENT_TEST"):
        mp.delenv(name, raising=False)
    noise = "\n".join([ONEDNN, CUINIT, ABSL, REAL, ABSL]) + "\n"
    cells = [
        "import os, sys, time, warnings\nimport recsys_utils\nfrom recsys_utils import progress as P\n"
        "print(P.progress_mode(), os.environ['TF_CPP_MIN_LOG_LEVEL'])",
        # C++ libraries write to file descriptor 2 directly; ipykernel forwards it to the cell.
        f"os.write(2, {noise.encode()!r})\ntime.sleep(1.0)",
        "for _ in range(3):\n    with warnings.catch_warnings():\n"
        "        warnings.simplefilter('always')\n        warnings.warn('the same warning')",
        "for _ in P.track(range(3), desc='loop', unit='step'):\n    time.sleep(0.01)",
        "os.environ['JPY_SESSION_NAME'] = 'lab'  # as if JupyterLab had started the kernel\n"
        "for _ in P.track(range(3), desc='widget loop', unit='step'):\n    time.sleep(0.01)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    try:
        nbclient.NotebookClient(nb, kernel_name="recsys-progress-test", timeout=120,
                                resources={"metadata": {"path": str(tmp)}}).execute()
    finally:
        mp.undo()
    return nb


def _streams(cell, name):
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == name)


def test_an_executed_notebook_gets_text_lines_and_the_tf_log_default(executed):
    assert _streams(executed.cells[0], "stdout").split() == ["lines", "2"]


def test_known_noise_leaves_the_notebook_and_real_errors_stay(executed):
    stderr = _streams(executed.cells[1], "stderr")
    assert REAL in stderr
    assert ONEDNN not in stderr and ABSL not in stderr
    if not P._gpu_device_present():
        assert CUINIT not in stderr
    assert stderr.strip() == REAL or (P._gpu_device_present() and CUINIT in stderr)


def test_a_repeated_warning_is_shown_once(executed):
    assert _streams(executed.cells[2], "stderr").count("UserWarning: the same warning") == 1


def test_a_loop_leaves_one_summary_line_and_no_widget(executed):
    cell = executed.cells[3]
    out = _streams(cell, "stdout").splitlines()
    assert len(out) == 1 and out[0].startswith("loop: 3/3 steps in "), out
    assert _streams(cell, "stderr") == ""


def test_a_live_widget_is_replaced_by_its_summary_when_the_loop_ends(executed):
    outputs = executed.cells[4].outputs
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in outputs), outputs
    texts = [o["data"]["text/plain"] for o in outputs if o.output_type == "display_data"]
    assert len(texts) == 1 and texts[0].startswith("widget loop: 3/3 steps in "), outputs
