"""What `make run-all` shows while a notebook runs (the cells' lines, a heartbeat in
a silent cell) and which kernel runs the notebooks."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from recsys_utils import series
from recsys_utils.schema import DataError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_lines_are_prefixed_and_progress_bars_collapse_to_their_last_state():
    out = io.StringIO()
    echo = series.CellEcho("04", out=out)
    stdout, stderr = echo.stream("|"), echo.stream("!")
    stdout.write("Epoch 1/3 val recall@50 0.1")
    assert lines(out) == []  # no newline yet: nothing written
    stdout.write("21\nEpoch 2/3")
    stderr.write("W0000 a warning\n")
    stdout.write(" val recall@50 0.135\n\n")
    # tqdm redraws with carriage returns, Keras' progress bar with backspaces.
    stderr.write("\r  0%|          | 0/20\r 50%|#####     | 10/20\r100%|##########| 20/20\n")
    stdout.write("1/5 [=>...]\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\r5/5 [=====] loss 0.3\n")
    stdout.write("\x1b[1mbold\x1b[0m text\n")
    assert lines(out) == [
        "  04 | Epoch 1/3 val recall@50 0.121",
        "  04 ! W0000 a warning",
        "  04 | Epoch 2/3 val recall@50 0.135",
        "  04 ! 100%|##########| 20/20",
        "  04 | 5/5 [=====] loss 0.3",
        "  04 | bold text",
    ]
    stderr.write("\r 30%|###       | 3/10")
    echo.close()  # what was left without a newline: its final state
    assert lines(out)[-1] == "  04 !  30%|###       | 3/10"


def test_a_silent_cell_gets_a_heartbeat_naming_it():
    out, clock = io.StringIO(), Clock()
    echo = series.CellEcho("02", out=out, heartbeat=60, clock=clock)
    echo.beat()
    assert lines(out) == []  # no cell has started
    echo.cell_started(7, 31, "\n# Encode every item text\nvectors = encoder.encode(texts)\n")
    clock.now += 59
    echo.beat()
    assert lines(out) == []
    echo.stream("!").write("\r 40%|####      | 1200/3000")
    clock.now += 1
    echo.beat()
    assert lines(out) == ["  02 . cell 7/31 still running after 1.0 min: # Encode every item "
                          "text  [last output:  40%|####      | 1200/3000]"]
    clock.now += 30
    echo.beat()
    assert len(lines(out)) == 1  # a minute after the last line, not at every beat
    clock.now += 30
    echo.stream("|").write("a line\n")  # a printed line resets the silence
    clock.now += 59
    echo.beat()
    assert lines(out)[-1] == "  02 | a line"
    clock.now += 1
    echo.beat()
    assert lines(out)[-1].startswith("  02 . cell 7/31 still running after 3.0 min")
    echo.cell_started(8, 31, "x = 1  " + "y" * 80)
    # The progress bar cell 7 left without a newline: its final state, once.
    assert lines(out)[-1] == "  02 !  40%|####      | 1200/3000"
    clock.now += 60
    echo.beat()
    assert lines(out)[-1].endswith("after 1.0 min: x = 1  " + "y" * 50 + "...")


def _spec(tmp_path, name, argv):
    folder = tmp_path / "kernels" / name
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": name, "language": "python"}))
    return folder


@pytest.fixture
def kernels(tmp_path, monkeypatch):
    """Jupyter finds kernel specs only in tmp_path/kernels."""
    from jupyter_client import kernelspec

    monkeypatch.setattr(kernelspec, "jupyter_path", lambda *parts: [str(tmp_path / "kernels")])
    (tmp_path / "kernels").mkdir()
    other = tmp_path / "other-checkout" / ".venv" / "bin"
    other.mkdir(parents=True)
    (other / "python").write_text("")
    return tmp_path, str(other / "python")


def test_the_course_kernel_is_used_when_it_runs_this_python(kernels):
    tmp_path, _ = kernels
    here = str(Path(sys.executable).parent / "python")
    _spec(tmp_path, "recsys-course", [here, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    _spec(tmp_path, "python3", ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    assert series.notebook_kernel() == "recsys-course"


def test_a_course_kernel_of_another_checkout_is_not_used(kernels):
    tmp_path, other = kernels
    _spec(tmp_path, "recsys-course", [other, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    _spec(tmp_path, "python3", ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    assert series.notebook_kernel() == "python3"


def test_no_kernel_for_this_python_is_a_clear_error(kernels):
    tmp_path, other = kernels
    _spec(tmp_path, "recsys-course", [other, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    _spec(tmp_path, "python3", ["/nowhere/bin/python", "-m", "ipykernel_launcher"])
    with pytest.raises(DataError, match=r"no Jupyter kernel runs this Python .*ipykernel install "
                                        r"--sys-prefix --name recsys-course"):
        series.notebook_kernel()


def _notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "recsys-course", "display_name": "Python (recsys course)",
                                 "language": "python"}
    parameters = nbformat.v4.new_code_cell(
        'dataset = "synthetic"\ndata_dir = ""\nartifact_dir = ""\nprofile = "smoke"\nseed = 42')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny series"), parameters,
                *[nbformat.v4.new_code_cell(source) for source in cells]]
    nbformat.write(nb, path)


def test_a_running_notebook_streams_its_lines_and_a_heartbeat(tmp_path, monkeypatch, capfd):
    """One real kernel: the cells' lines reach the terminal while the notebook runs,
    a silent cell gets a heartbeat, and the kernel is this environment's Python,
    started without the plain-TCP warning (encrypted sockets)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_tiny.ipynb", [
        "import sys, time\nprint('kernel python', sys.executable)\n"
        "print(f'profile {profile} seed {seed}')",
        "# wait in silence\ntime.sleep(2.5)",
        "import os\nos.write(2, b'a native line\\n')  # as C++ code logs\ntime.sleep(0.5)",
        "print('a warning', file=sys.stderr)\nprint('\\r 50%|#  | 1/2\\r100%|## | 2/2', "
        "end='', file=sys.stderr)",
    ])
    monkeypatch.setattr(series, "HEARTBEAT_SECONDS", 1.0)
    # ipykernel leaves native output alone under pytest (it sees this variable);
    # `make run-all` is not under pytest.
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    timings = series.run_series("synthetic", "smoke", tmp_path / "run", seed=7,
                                notebook_dir=notebooks)
    assert set(timings) == {"01_tiny"}
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err, captured.err
    # Native output reaches the terminal once, through the notebook's stream.
    assert "a native line" not in captured.err, captured.err
    kernel_log = tmp_path / "run" / "notebooks" / "01_tiny.kernel.log"
    assert "a native line" in kernel_log.read_text()
    out = captured.out.splitlines()
    assert out.count("  01 ! a native line") == 1, out
    assert out[0].endswith(f"01_tiny.ipynb (synthetic, smoke; kernel {series.notebook_kernel()})")
    kernel_python = next(line for line in out if "| kernel python" in line).split()[-1]
    assert Path(kernel_python).parent == Path(sys.executable).parent  # this environment
    assert "  01 | profile smoke seed 7" in out  # the injected parameters ran
    assert any(line.startswith("  01 . cell 4/6 still running after 0.0 min: # wait in silence")
               for line in out), out
    assert out[-3:-1] == ["  01 ! a warning", "  01 ! 100%|## | 2/2"]
    assert out[-1].startswith("    done in ")
    executed = json.loads((tmp_path / "run" / "notebooks" / "01_tiny.ipynb").read_text())
    assert executed["metadata"]["kernelspec"]["name"] == "recsys-course"


def test_quiet_runs_show_one_line_per_notebook(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_tiny.ipynb", ["print('not shown')"])
    series.run_series("synthetic", "smoke", tmp_path / "run", notebook_dir=notebooks,
                      progress=False)
    out = capsys.readouterr().out
    assert "not shown" not in out and "01_tiny.ipynb" in out and "done in" in out


def test_a_kernel_that_dies_is_one_error_line_naming_its_log(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_tiny.ipynb", [
        "import os\nos.write(2, b'native code: out of memory\\n')\nos._exit(9)"])
    run_dir = tmp_path / "run"
    assert series.main(["--notebooks-dir", str(notebooks), "--run-dir", str(run_dir),
                        "--profile", "smoke", "--quiet"]) == 2
    err = capsys.readouterr().err
    log = run_dir / "notebooks" / "01_tiny.kernel.log"
    assert err.startswith("error: notebook 01_tiny.ipynb failed: DeadKernelError: Kernel died")
    assert err.count("\n") == 1 and f"the kernel's own output: {log}" in err, err
    assert "native code: out of memory" in log.read_text()
