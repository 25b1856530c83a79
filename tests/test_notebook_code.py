"""The package modules written from notebook cells (``recsys_utils.notebook_code``)."""

from __future__ import annotations

import json
import re

import pytest

from recsys_utils import notebook_code


def test_generated_modules_match_their_notebooks():
    # Fails when a `# @save` cell was edited without regenerating (or the module by hand).
    assert notebook_code.main(["--check"]) == 0


def test_saved_cells_are_the_marked_code_cells_in_order(tmp_path):
    cells = [{"cell_type": "code", "source": ["# @save\n", "A = 1"]},
             {"cell_type": "markdown", "source": ["# @save\n", "not code"]},
             {"cell_type": "code", "source": ["B = 2  # not saved"]},
             {"cell_type": "code", "source": ["# @save\n", "def f():\n", "    return A\n"]}]
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": cells}))
    assert notebook_code.saved_cells(notebook) == ["A = 1", "def f():\n    return A"]


def test_check_reports_a_stale_module(tmp_path, monkeypatch, capsys):
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code",
                                               "source": ["# @save\n", "A = 1\n"]}]}))
    monkeypatch.setattr(notebook_code, "ROOT", tmp_path)
    monkeypatch.setattr(notebook_code, "SAVED", {"m.py": ("n.ipynb", "A module.")})
    assert notebook_code.main(["--check"]) == 1
    assert "m.py" in capsys.readouterr().err
    assert notebook_code.main([]) == 0  # writes it
    assert "A = 1" in (tmp_path / "m.py").read_text()
    assert notebook_code.main(["--check"]) == 0


def test_a_notebook_without_saved_cells_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "n.ipynb").write_text(json.dumps({"cells": []}))
    monkeypatch.setattr(notebook_code, "ROOT", tmp_path)
    monkeypatch.setattr(notebook_code, "SAVED", {"m.py": ("n.ipynb", "A module.")})
    with pytest.raises(ValueError, match="no code cell starting with"):
        notebook_code.render("m.py")


@pytest.mark.parametrize("notebook, shown", [
    ("04_tfrs_retrieval.ipynb", ["class ItemTower(tf.keras.layers.Layer)",
                                 "class QueryTower(tf.keras.layers.Layer)",
                                 "class RetrievalModel(tfrs.Model)", "def compute_loss(",
                                 "candidate_sampling_probability=probability",
                                 "tfrs.tasks.Retrieval(", "model.compile(", "model.fit("]),
    ("05_tfrs_ranking.ipynb", ["class RankingModel(tfrs.Model)", "tfrs.layers.dcn.Cross(",
                               "tfrs.tasks.Ranking(", "def compute_loss(", "model.compile(",
                               "model.fit("]),
])
def test_the_notebooks_show_their_models_and_training_in_cells(notebook, shown):
    path = notebook_code.ROOT / "notebooks" / notebook
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    missing = [s for s in shown if s not in code]
    assert not missing, f"{notebook} no longer shows {missing} in its code cells"


def test_the_models_are_defined_once():
    # The package holds the generated copy only: no second definition to drift.
    for module in ("retrieval.py", "ranking.py"):
        text = (notebook_code.ROOT / "recsys_utils" / module).read_text(encoding="utf-8")
        for name in ("class ItemTower", "class QueryTower", "class RetrievalModel",
                     "class RankingModel", "def train_retrieval", "def train_ranking"):
            assert name not in text, (module, name)


def test_every_notebook_ends_with_exercises_and_further_reading():
    for path in sorted((notebook_code.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        scaffold = [t for t in text if t.startswith("## Exercises")]
        assert len(scaffold) == 1 and "## Further reading" in scaffold[0], path.name
        # Two or three numbered exercises, each with a hint.
        exercises = [line for line in scaffold[0].splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
        assert 2 <= len(exercises) <= 3 and scaffold[0].count("*Hint:*") == len(exercises), path.name
        # Near the end: only a "Next:" pointer may follow it.
        assert text.index(scaffold[0]) >= len(text) - 2, path.name


def test_every_notebook_records_its_results_in_its_last_code_cell():
    for path in sorted((notebook_code.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        writes = [i for i, text in enumerate(code) if "run.write_metrics(" in text]
        # One results cell, last but for the search notebook's early exit (no queries).
        assert writes and writes[-1] >= len(code) - 2, path.name
        assert len(writes) == 1 or (path.name.startswith("07") and len(writes) == 2), path.name
        assert all("run.record(" in code[i] for i in writes), path.name
        # No hand-built results dict left beside it.
        assert not any(re.search(r"^(summary|metrics) = \{$", text, re.M) for text in code), path.name


def test_a_marker_can_name_its_module(tmp_path, monkeypatch):
    cells = [{"cell_type": "code", "source": ["# @save a.py\n", "A = 1\n"]},
             {"cell_type": "code", "source": ["# @save b.py\n", "B = 2\n"]},
             {"cell_type": "code", "source": ["# @save a.py\n", "C = 3\n"]}]
    (tmp_path / "n.ipynb").write_text(json.dumps({"cells": cells}))
    monkeypatch.setattr(notebook_code, "ROOT", tmp_path)
    monkeypatch.setattr(notebook_code, "SAVED", {"a.py": ("n.ipynb", "A."), "b.py": ("n.ipynb", "B.")})
    assert notebook_code.saved_cells(tmp_path / "n.ipynb", "a.py") == ["A = 1", "C = 3"]
    assert notebook_code.saved_cells(tmp_path / "n.ipynb", "b.py") == ["B = 2"]
    assert notebook_code.main([]) == 0
    assert "B = 2" not in (tmp_path / "a.py").read_text()


def test_every_notebook_opens_in_the_course_kernel():
    # `make setup` registers "recsys-course" inside the venv; Lab opens each notebook in it.
    for path in sorted((notebook_code.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        spec = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
        assert spec["name"] == "recsys-course", (path.name, spec)


@pytest.mark.parametrize("path", sorted((notebook_code.ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda path: path.name)
def test_committed_notebooks_are_nbformat_4_5_with_cell_ids_and_no_outputs(path):
    # Read as raw JSON: nbformat's reader quietly adds a missing cell id (and warns at run time).
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert (notebook["nbformat"], notebook["nbformat_minor"]) == (4, 5)
    ids = [cell.get("id") for cell in notebook["cells"]]
    assert None not in ids and len(set(ids)) == len(ids)
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert not any(cell["outputs"] or cell["execution_count"] for cell in code)
