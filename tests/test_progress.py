"""recsys_utils.progress: which form progress takes where, what its lines say, and which
stderr lines, warnings and log messages a notebook kernel drops or shows once."""

from __future__ import annotations

import io
import logging
import sys
import warnings

import pytest

from recsys_utils import progress as P


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def plain(monkeypatch):
    """No override, not in a kernel, no Jupyter session."""
    for name in (P.PROGRESS_ENV, P.INTERVAL_ENV, "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(P, "in_kernel", lambda: False)
    return monkeypatch


# ---------------------------------------------------------------------------- the form
def test_the_form_follows_where_the_code_runs(plain):
    plain.setattr(sys, "stderr", io.StringIO())
    assert P.progress_mode() == "lines"  # a pipe, a log file, pytest
    plain.setattr(sys, "stderr", Tty())
    assert P.progress_mode() == "bar"  # an interactive terminal
    plain.setattr(P, "in_kernel", lambda: True)
    assert P.progress_mode() == "lines"  # papermill / nbclient / nbconvert: nothing renders widgets
    plain.setenv("JPY_SESSION_NAME", "notebooks/04_tfrs_retrieval.ipynb")
    assert P.progress_mode() == "widget"  # a kernel a Jupyter server started for a frontend
    plain.setenv(P.PROGRESS_ENV, "Lines ")
    assert P.progress_mode() == "lines"  # the override wins
    plain.setenv(P.PROGRESS_ENV, "fancy")
    with pytest.raises(ValueError, match=r"RECSYS_PROGRESS='fancy': expected one of widget, bar"):
        P.progress_mode()


def test_lines_mode_ends_with_one_summary_line(plain, capsys):
    plain.setattr(sys, "stderr", io.StringIO())
    seen = [x for x in P.track(range(5), desc="drawing images", unit="image")]
    assert seen == list(range(5))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1, out
    assert out[0].startswith("drawing images: 5/5 images in ")
    assert out[0].endswith(" images/s)")
    assert sys.stderr.getvalue() == ""  # nothing red in a notebook


def test_summary_counts_what_was_done_and_the_last_postfix(plain, capsys):
    plain.setenv(P.PROGRESS_ENV, "lines")
    with P.track(total=30, desc="retrieval/fused", unit="epoch") as bar:
        for _ in range(12):  # early stopping: fewer than planned
            bar.update(1)
        bar.set_postfix({"loss": 812.4321, "val_recall": "0.2134"})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith("retrieval/fused: 12/30 epochs in ")
    assert out[0].endswith(" - loss=812.4, val_recall=0.2134")
    bar.close()  # closing twice prints nothing more
    assert capsys.readouterr().out == ""


def test_bytes_are_scaled_and_unknown_totals_counted(plain, capsys):
    plain.setenv(P.PROGRESS_ENV, "lines")
    with P.track(total=4_924_029, desc="ml-100k.zip", unit="B", unit_scale=True) as bar:
        bar.update(4_924_029)
    assert capsys.readouterr().out.startswith("ml-100k.zip: 4.9M/4.9M B in ")
    with P.track(desc="chunks") as bar:
        bar.update(3)
    assert capsys.readouterr().out.startswith("chunks: 3 it in ")


def test_a_long_loop_prints_a_heartbeat(plain, capsys):
    clock = [100.0]
    plain.setattr(P, "_clock", lambda: clock[0])
    plain.setenv(P.PROGRESS_ENV, "lines")
    plain.setenv(P.INTERVAL_ENV, "30")
    bar = P.track(total=100, desc="encoding (float32)", unit="text")
    clock[0] += 10
    bar.update(20)
    assert capsys.readouterr().out == ""  # quicker than the interval: silent
    clock[0] += 50
    bar.update(30)
    assert capsys.readouterr().out == (
        "encoding (float32): 50/100 texts, 50%, 1 min 00 s, ~1 min 00 s left\n")
    clock[0] += 5
    bar.update(10)
    assert capsys.readouterr().out == ""  # the next one waits another interval
    bar.write("a line of its own")
    clock[0] += 20
    bar.update(40)
    bar.close()
    assert capsys.readouterr().out.splitlines() == [
        "a line of its own", "encoding (float32): 100/100 texts in 1 min 25 s (1.18 texts/s)"]


def test_disabled_and_off_print_nothing(plain, capsys):
    bars = [P.track(range(3), desc="x", disable=True)]
    plain.setenv(P.PROGRESS_ENV, "off")
    for bar in [*bars, P.track(range(3), desc="x")]:
        assert list(bar) == [0, 1, 2]
        bar.write("not shown")
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_a_live_bar_on_stderr(plain, capsys):
    plain.setattr(sys, "stderr", Tty())
    with P.track(total=3, desc="content models", unit="model") as bar:
        assert bar.mode == "bar"
        for _ in range(3):
            bar.update(1)
    drawn = sys.stderr.getvalue()
    assert "content models" in drawn and "3/3" in drawn
    assert capsys.readouterr().out == ""  # the bar itself is the summary in a terminal


# ---------------------------------------------------------------------------- the noise
CUINIT = ("2026-11-29 21:41:13.338741: E external/local_xla/xla/stream_executor/cuda/"
          "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
          "cuInit: UNKNOWN ERROR (303)\n")
NOISY = [
    "2026-11-29 21:41:17.006143: E tensorflow/core/util/util.cc:131] oneDNN supports DT_INT64 "
    "only on platforms with AVX-512. Falling back to the default Eigen-based implementation if "
    "present.\n",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1795983094.414450    1610 partitioner_factory_base.cc:58] Size of sampled "
    "dataset for training partition: 3000\n",
    "I0000 00:00:1795983094.41    1610 kmeans_tree_partitioner_utils.h:90] PartitionerFactory "
    "ran in 5.05ms.\n",
    "W0000 00:00:1795983094.414450    1610 gmm_utils.cc:1026] Could not normalize centroid due "
    "to zero norm or empty or zero-weight partition.\n",
    "W0000 00:00:1795983069.715340    1276 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.\n",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
    "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, "
    "output_inference_type: FLOAT32\n",
]
REAL = [
    "2026-11-29 21:41:17.006143: E tensorflow/core/framework/op_kernel.cc:1830] OP_REQUIRES "
    "failed at strided_slice_op.cc:117 : INVALID_ARGUMENT: slice index 5 is out of bounds\n",
    "W0000 00:00:1795983094.414450    1610 some_file.cc:12] Something a user should see.\n",
    "E0000 00:00:1795983094.414450    1610 scann_ops.cc:99] Could not build the index.\n",
    "Traceback (most recent call last):\n",
    "ValueError: failed call to cuInit is not at the start of this line\n",
]


def _machine(monkeypatch, gpu_present: bool) -> None:
    """drop_noise as on a machine with or without an NVIDIA device."""
    monkeypatch.setattr(P, "_gpu_device_present", lambda: gpu_present)
    monkeypatch.setattr(P, "_noise_re", None)


def test_known_noise_is_dropped_and_everything_else_kept(monkeypatch):
    _machine(monkeypatch, gpu_present=False)
    text = "".join(NOISY[:3] + REAL[:2] + NOISY[3:] + REAL[2:])
    assert P.drop_noise(text) == "".join(REAL)
    assert P.drop_noise("".join(REAL)) == "".join(REAL)
    assert P.drop_noise("partial line without newline") == "partial line without newline"


def test_the_cuda_probe_is_noise_only_without_an_nvidia_device(monkeypatch):
    _machine(monkeypatch, gpu_present=False)
    assert P.drop_noise(CUINIT) == ""
    _machine(monkeypatch, gpu_present=True)
    assert P.drop_noise(CUINIT) == CUINIT  # a real driver problem then


class FakeStream:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)


def test_the_kernels_stderr_is_filtered_once_and_for_good(monkeypatch):
    monkeypatch.setattr(P, "_gpu_device_present", lambda: False)
    monkeypatch.setattr(P, "_noise_re", None)
    stream = FakeStream()
    recorded = []

    def cell(text):
        """What IPython does around every cell: wrap stream.write, then put back what it found."""
        found = stream.write

        def tee(data):
            recorded.append(data)
            return found(data)

        stream.write = tee
        stream.write(text)
        stream.write = found

    # The package is imported inside a cell: IPython's wrapper is already in place.
    plain = stream.write
    stream.write = lambda data: recorded.append(data) or plain(data)
    assert P._filter_stream(stream) and not P._filter_stream(stream)  # installed once
    assert isinstance(stream, FakeStream)
    assert stream.write(CUINIT + REAL[0]) == len(REAL[0])
    assert stream.write(NOISY[2]) == len(NOISY[2])  # an all-noise write writes nothing
    stream.write = plain  # that cell ends
    cell(NOISY[0] + REAL[1])
    cell(NOISY[1])
    stream.write(NOISY[3] + REAL[2])  # between cells: ipykernel's fd watcher
    assert stream.parts == [REAL[0], REAL[1], REAL[2]]
    assert recorded == [REAL[0], REAL[1]]  # IPython records the filtered text


def test_quiet_noise_acts_only_in_a_kernel_and_not_when_verbose(monkeypatch):
    monkeypatch.setattr(P, "in_kernel", lambda: False)
    monkeypatch.delenv(P.VERBOSE_ENV, raising=False)
    assert not P.quiet_noise()
    monkeypatch.setenv(P.VERBOSE_ENV, "1")
    monkeypatch.setattr(P, "in_kernel", lambda: True)
    assert not P.quiet_noise()


def test_each_warning_is_shown_once(monkeypatch):
    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, *a, **k:
                        shown.append((category, str(message))))
    P._once_warnings()
    P._once_warnings()  # a second install does not wrap twice
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # what libraries' catch_warnings effectively does
        for _ in range(4):
            warnings.warn("tf.lite.Interpreter is deprecated", UserWarning)
        warnings.warn("another", UserWarning)
        warnings.warn("tf.lite.Interpreter is deprecated", DeprecationWarning)
    assert shown == [(UserWarning, "tf.lite.Interpreter is deprecated"), (UserWarning, "another"),
                     (DeprecationWarning, "tf.lite.Interpreter is deprecated")]


def test_tensorflow_log_messages_once_by_one_handler_and_no_info(monkeypatch):
    logger = logging.getLogger("recsys-test-tensorflow")
    monkeypatch.setattr(logger, "propagate", True)
    out, root_out = io.StringIO(), io.StringIO()
    own, root_handler = logging.StreamHandler(out), logging.StreamHandler(root_out)
    logger.addHandler(own)  # TensorFlow's own handler (stdout in a kernel)
    logging.getLogger().addHandler(root_handler)  # a library configured the root logger (stderr)
    once = P._Once(logging.WARNING, logger)
    logger.addFilter(once)
    monkeypatch.setattr(logger, "level", logging.INFO)  # what TensorFlow does in an interactive shell
    try:
        for address in ("0x7f91ec13e650", "0x7f91ec13e990", "0x7f91ec13e650"):
            logger.warning("Skipping full serialization of TF-Keras layer <RetrievalModel object "
                           "at %s>, because it is not built.", address)
        logger.info("Assets written to: /tmp/x/assets")
        logger.error("a real error")
        logger.error("a real error")
        logger.warning("another warning")
    finally:
        logger.removeFilter(once)
        logger.removeHandler(own)
        logging.getLogger().removeHandler(root_handler)
    assert out.getvalue().splitlines() == [
        "Skipping full serialization of TF-Keras layer <RetrievalModel object at 0x7f91ec13e650>, "
        "because it is not built.",
        "a real error",
        "another warning",
    ]
    assert root_out.getvalue() == ""  # not a second time, red, on stderr
