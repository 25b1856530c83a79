"""The artifact directory: what each notebook writes, atomically and with the umask's
permissions (a team can share it). Inside a run, ``manifest.json`` records who produced each
artifact (data set, profile, seed, notebook, data fingerprint); reads refuse another run's,
naming the notebook to re-run."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from .schema import DataError, summarise_error

SPLITS = ("train", "validation", "test", "test_cold")
METRICS_DIR = "metrics"
DATA_DIR = "data"
FEATURES_DIR = "features"
MODELS_DIR = "models"
_PREPARER = "01 (data preparation)"
#: Which notebook writes each named feature array (for the error message).
FEATURE_WRITERS = {
    **dict.fromkeys(("item_text", "query_text"), "02 (BERT text encoding)"),
    **dict.fromkeys(("item_image", "item_image_present", "item_fused"), "03 (multimodal fusion)"),
    "search_query_text": "07 (product search)",
}


def _apply_umask(path: Path, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would (mkstemp/mkdtemp use 0600/0700),
    the umask read without changing it where the OS allows."""
    try:
        mask = next(int(line.split()[1], 8) for line in
                    Path("/proc/self/status").read_text().splitlines() if line.startswith("Umask:"))
    except (OSError, ValueError, IndexError, StopIteration):
        mask = os.umask(0o022)  # no getter elsewhere: set and restore at once
        os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, renamed onto it on success (removed on an
    exception); inside a run, record the artifact in ``manifest.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp made it 0600; a mode the caller set on purpose is kept.
        if tmp_path.exists() and (tmp_path.stat().st_mode & 0o777) == 0o600:
            _apply_umask(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    record_artifact(path)


def _save(path: str | Path, write: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def save_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    return _save(path, lambda tmp: df.to_parquet(tmp, index=False))


def save_json(obj: Any, path: str | Path) -> Path:
    return _save(path, lambda tmp: tmp.write_text(
        json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"))


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # np.save would append ".npy" to a file name
            np.save(f, array)
    return _save(path, write)


def save_lines(lines: list[str], path: str | Path) -> Path:
    return _save(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in lines),
                                                  encoding="utf-8"))


def _json_default(value: Any) -> Any:
    """NumPy values as numbers and lists, a DataFrame as its rows, a Series as a dict, a
    dataclass as its fields (what notebooks record with :meth:`~recsys_utils.runs.Run.record`)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, pd.Series):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_metrics(artifact_dir: str | Path, stage: str, metrics: dict[str, Any]) -> Path:
    """Write one stage's headline numbers to ``metrics/<stage>.json`` (atomically)."""
    return save_json(metrics, Path(artifact_dir) / METRICS_DIR / f"{stage}.json")


def read_metrics(artifact_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every stage's metrics so far, keyed by stage name."""
    folder = Path(artifact_dir) / METRICS_DIR
    return {p.stem: _read_artifact(p, read_json, p.stem) for p in sorted(folder.glob("*.json"))}


@dataclasses.dataclass
class Prepared:
    """What notebook 01 wrote. ``truth_columns`` (synthetic only) are planted labels, never
    features; ``splits``: ``train``, ``validation``, ``test`` (each user's last interaction)
    and ``test_cold`` (the ``cold_items``, never seen in training)."""

    dataset: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    attribute_columns: list[str]
    splits: dict[str, pd.DataFrame]
    cold_items: list[str]
    feedback: str
    simulated_interactions: bool = False
    truth_columns: list[str] = dataclasses.field(default_factory=list)
    users: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None
    judgements: pd.DataFrame | None = None

    @property
    def has_images(self) -> bool:
        return "image_path" in self.items and self.items["image_path"].notna().any()


def _read_artifact(path: Path, reader: Callable[[Path], Any], writer: str) -> Any:
    """``reader(path)``; a missing or corrupt file is a :class:`DataError` naming its writer."""
    try:
        return reader(path)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"missing artifact: run notebook {writer} first", source=path) from None
    except Exception as exc:  # noqa: BLE001 - pyarrow, numpy and json raise many kinds
        raise DataError(f"corrupt or unreadable artifact ({summarise_error(exc, 200)}); "
                        f"re-run notebook {writer}, which writes it", source=path) from None


def read_parquet(path: str | Path, writer: str | None = None) -> pd.DataFrame:
    """A Parquet artifact; a corrupt file raises :class:`DataError` naming it and its writer."""
    path = Path(path)
    return _read_artifact(path, pd.read_parquet, writer or writer_of_path(path))


def load_prepared(artifact_dir: str | Path) -> Prepared:
    """Load the prepared data set from ``artifact_dir``: a :class:`DataError` if notebook 01
    has not run there, a file is corrupt or (inside a run) the data are another run's."""
    root = Path(artifact_dir) / DATA_DIR
    if not (root / "dataset.json").exists():
        raise DataError(f"no prepared data at {root}: run notebook 01 (data preparation) with "
                        f"artifact_dir={str(artifact_dir)!r} first")
    check_provenance(artifact_dir, f"{DATA_DIR}/dataset.json")
    manifest = _read_artifact(root / "dataset.json", read_json, _PREPARER)

    def table(name: str) -> pd.DataFrame:
        return read_parquet(root / f"{name}.parquet", _PREPARER)

    return Prepared(
        dataset=manifest["dataset"], items=table("items"), interactions=table("interactions"),
        attribute_columns=list(manifest["attribute_columns"]),
        splits={name: table(f"splits/{name}") for name in SPLITS},
        cold_items=_read_artifact(root / "splits" / "cold_items.json", read_json, _PREPARER),
        feedback=manifest["feedback"],
        simulated_interactions=bool(manifest["simulated_interactions"]),
        truth_columns=list(manifest.get("truth_columns", [])),
        **{name: table(name) if (root / f"{name}.parquet").exists() else None
           for name in ("users", "queries", "judgements")})


def features_path(artifact_dir: str | Path, name: str) -> Path:
    return Path(artifact_dir) / FEATURES_DIR / f"{name}.npy"


def save_features(artifact_dir: str | Path, name: str, array: np.ndarray) -> Path:
    """Save a feature array (rows aligned with the items, or queries, table)."""
    return save_npy(np.asarray(array), features_path(artifact_dir, name))


def load_features(artifact_dir: str | Path, name: str) -> np.ndarray:
    """Load a feature array written by an earlier notebook: a :class:`DataError` naming the
    notebook to run when it is missing, corrupt or (inside a run) another run's."""
    path = features_path(artifact_dir, name)
    writer = FEATURE_WRITERS.get(name, "an earlier notebook")
    if not path.exists():
        raise DataError(f"no {name!r} features at {path}: run notebook {writer} "
                        f"with artifact_dir={str(artifact_dir)!r} first")
    check_provenance(artifact_dir, f"{FEATURES_DIR}/{name}.npy")
    return _read_artifact(path, np.load, writer)


def model_dir(artifact_dir: str | Path, name: str) -> Path:
    """Where an exported model (a SavedModel directory or a .tflite file) lives."""
    return Path(artifact_dir) / MODELS_DIR / name


def save_module(module: Any, directory: str | Path, signatures: Any, options: Any = None) -> None:
    """``tf.saved_model.save`` without tf-keras' "contain non-serializable objects" and "not
    built" notices, moot for modules served through their ``signatures``, never rebuilt from a
    Keras config (a model rebuilt from its weights is called through methods, never built)."""
    import tensorflow as tf

    def notice(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("contain non-serializable objects" in message
                    or "Skipping full serialization" in message)

    logger = logging.getLogger("tensorflow")
    logger.addFilter(notice)
    try:
        tf.saved_model.save(module, str(directory), signatures=signatures, options=options)
    finally:
        logger.removeFilter(notice)


#: Where a model export keeps the Keras model's weights (:func:`save_weights`).
WEIGHTS = "checkpoint/model"


def save_weights(model: Any, export_dir: str | Path) -> Path:
    """Write ``model``'s variables as a TensorFlow checkpoint under ``export_dir``: a SavedModel
    of a subclassed model serves, but cannot be rebuilt as Keras layers (pruning needs them)."""
    import tensorflow as tf

    return Path(tf.train.Checkpoint(model=model).write(str(Path(export_dir) / WEIGHTS)))


def _weights(export_dir: str | Path) -> Path:
    path = Path(export_dir) / WEIGHTS
    if not Path(f"{path}.index").exists():
        raise DataError(f"no model weights at {path}: re-run the notebook that exported "
                        f"{Path(export_dir).name}")
    return path


def restore_weights(model: Any, export_dir: str | Path) -> Any:
    """Load the weights :func:`save_weights` wrote into ``model``, built beforehand with the
    same architecture (called once); every variable of ``model`` must be found."""
    import tensorflow as tf

    path = _weights(export_dir)
    try:
        status = tf.train.Checkpoint(model=model).read(str(path)).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as exc:  # a variable missing, or of another shape
        raise DataError(f"the weights at {path} do not fit this model (another variant or "
                        f"budget?): {summarise_error(exc)}") from None
    return model


def saved_array(export_dir: str | Path, attribute: str) -> np.ndarray:
    """One variable of the weights :func:`save_weights` wrote, by its attribute path from the
    model (``"item_tower/content"``): the data a model was built around, e.g. its content table."""
    import tensorflow as tf

    path = _weights(export_dir)
    key = f"model/{attribute}/.ATTRIBUTES/VARIABLE_VALUE"
    try:
        return tf.train.load_checkpoint(str(path)).get_tensor(key)
    except (tf.errors.NotFoundError, ValueError):
        raise DataError(f"no variable {attribute!r} in the model weights at {path}") from None


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``, swapped into place on success: a reader
    sees the old directory or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        _apply_umask(tmp, directory=True)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record_artifact(path)


# -- Provenance: which run produced each artifact ---------------------------------------

MANIFEST = "manifest.json"
#: Set by the series runner for each notebook's kernel (e.g. ``02_text_encoding``).
NOTEBOOK_ENV = "RECSYS_NOTEBOOK"
#: Not recorded: the embedding cache checks itself (content hash and checksum).
_UNRECORDED = ("cache/", MANIFEST)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """The run that writes (and reads) an artifact directory in this process."""

    artifact_dir: Path
    dataset: str
    profile: str
    seed: int


_context: RunContext | None = None
#: Artifacts this process wrote without knowing its notebook (claimed by write_metrics).
_unclaimed: set[str] = set()
#: Everything this process wrote in the run: its own notebook has not finished yet.
_written_here: set[str] = set()
_fingerprint_cache: dict[tuple, str] = {}


def set_run_context(artifact_dir: str | Path, dataset: str, profile: str, seed: int) -> RunContext:
    """Make later writes under ``artifact_dir`` record this run, and reads check against it."""
    global _context
    clear_run_context()
    _context = RunContext(Path(artifact_dir).resolve(), dataset, profile, int(seed))
    return _context


def dir_bytes(path: str | Path) -> int:
    """Bytes of every file under ``path`` (a SavedModel, a serialized index)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run_context() -> RunContext | None:
    """The active run (:func:`recsys_utils.runs.start_run`), or ``None`` outside one."""
    return _context


def clear_run_context() -> None:
    global _context
    _context = None
    _unclaimed.clear()
    _written_here.clear()


def data_fingerprint(artifact_dir: str | Path) -> str | None:
    """A hash of the names and contents of the files under ``data/`` (None if none), cached
    on their sizes and modification times: checking it before each read costs a walk."""
    root = Path(artifact_dir) / DATA_DIR
    if not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        return None
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if signature not in _fingerprint_cache:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        _fingerprint_cache[signature] = digest.hexdigest()[:16]
    return _fingerprint_cache[signature]


def read_manifest(artifact_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{relative path: record}`` for the artifacts of ``artifact_dir`` (empty if none)."""
    path = Path(artifact_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        return dict(read_json(path)["artifacts"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"corrupt provenance manifest ({type(exc).__name__}): delete it and "
                        "re-run the series from notebook 01", source=path) from None


def record_artifact(path: str | Path) -> None:
    """Record the active run as the producer of ``path`` in ``manifest.json`` (no-op outside
    a run or its artifact directory); outside ``data/`` with the data fingerprint."""
    context = _context
    if context is None or not Path(path).resolve().is_relative_to(context.artifact_dir):
        return
    rel = Path(path).resolve().relative_to(context.artifact_dir).as_posix()
    if rel.startswith(_UNRECORDED) or rel == ".":
        return
    stage = os.environ.get(NOTEBOOK_ENV) or None
    entry = {"dataset": context.dataset, "profile": context.profile, "seed": context.seed,
             "written_by": stage, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not rel.startswith(f"{DATA_DIR}/"):
        entry["data_fingerprint"] = data_fingerprint(context.artifact_dir)
    if stage is None:
        _unclaimed.add(rel)
    _written_here.add(rel)
    _update_manifest(context.artifact_dir, {rel: entry})


def claim_artifacts(stage: str) -> None:
    """Mark the artifacts this process wrote (notebook unknown) as written by ``stage``: a
    notebook run alone, not by the series runner, names itself when it writes metrics."""
    context = _context
    if context is None or not _unclaimed:
        return
    manifest = read_manifest(context.artifact_dir)
    updates = {rel: {**manifest[rel], "written_by": stage} for rel in _unclaimed
               if rel in manifest and not manifest[rel].get("written_by")}
    _unclaimed.clear()
    if updates:
        _update_manifest(context.artifact_dir, updates)


def _update_manifest(artifact_dir: Path, updates: dict[str, dict[str, Any]]) -> None:
    """Merge ``updates`` into the manifest; a new record gets the next write ``order``
    (which of two artifacts was written later, without trusting clocks)."""
    try:
        manifest = read_manifest(artifact_dir)
    except DataError as error:  # start over: what it recorded is lost, later reads refuse
        warnings.warn(f"{error}; starting a new manifest", stacklevel=3)
        manifest = {}
    order = max((int(r.get("order", 0)) for r in manifest.values()), default=0)
    for rel, record in updates.items():
        if "order" not in record:
            order += 1
            record = {**record, "order": order}
        manifest[rel] = record
    with atomic_path(artifact_dir / MANIFEST) as tmp:  # not recorded itself (_UNRECORDED)
        tmp.write_text(json.dumps({"format": 1, "artifacts": manifest}, indent=1, sort_keys=True))


def writer_of_path(path: str | Path, record: dict[str, Any] | None = None) -> str:
    """The notebook that writes an artifact, for messages: recorded, else known by its place."""
    if record and record.get("written_by"):
        return str(record["written_by"])
    parts, stem = Path(path).parts, Path(path).stem
    if DATA_DIR in parts:
        return _PREPARER
    if METRICS_DIR in parts:
        return stem
    if FEATURES_DIR in parts:
        return FEATURE_WRITERS.get(stem, "the notebook that writes it")
    return "the notebook that writes it"


@dataclasses.dataclass(frozen=True)
class ProvenanceProblem:
    """An artifact produced by another run than the one reading it."""

    path: str
    writer: str
    reason: str

    @property
    def prefix(self) -> str | None:
        """The writer's two-digit notebook number, when known."""
        return self.writer[:2] if self.writer[:2].isdigit() else None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}; re-run notebook {self.writer}"


def _describe(record: dict[str, Any]) -> str:
    return (f"dataset={record.get('dataset')!r} profile={record.get('profile')!r} "
            f"seed={record.get('seed')!r}")


def _record_problem(rel: str, record: dict[str, Any] | None, context: RunContext,
                    fingerprint: str | None, manifest: dict[str, dict[str, Any]] | None = None,
                    ) -> ProvenanceProblem | None:
    writer = writer_of_path(rel, record)
    if record is None:
        return ProvenanceProblem(rel, writer, "no provenance record in manifest.json "
                                 "(written outside this run's series, or before it kept one)")
    wanted = {"dataset": context.dataset, "profile": context.profile, "seed": context.seed}
    if any(record.get(k) != v for k, v in wanted.items()):
        return ProvenanceProblem(rel, writer, f"written for {_describe(record)}, "
                                 f"this run is {_describe(wanted)}")
    if not rel.startswith(f"{DATA_DIR}/") and record.get("data_fingerprint") != fingerprint:
        return ProvenanceProblem(
            rel, writer, f"computed from other prepared data (fingerprint "
            f"{record.get('data_fingerprint')}, now {fingerprint}: notebook 01 ran again since)")
    if rel in _written_here and _context is not None and _context.artifact_dir == context.artifact_dir:
        return None  # written by this very notebook, which is still running
    stage = record.get("written_by")
    if stage is None:
        return ProvenanceProblem(rel, writer, "written by a notebook that did not finish "
                                 "(it never wrote its metrics file)")
    done = (manifest or {}).get(f"{METRICS_DIR}/{stage}.json")
    if rel != f"{METRICS_DIR}/{stage}.json" and (
            done is None or int(done.get("order", 0)) < int(record.get("order", 0))):
        return ProvenanceProblem(rel, writer, f"written by a run of notebook {stage} that did "
                                 "not finish (its metrics file is missing or older)")
    return None


def check_provenance(artifact_dir: str | Path, rel: str) -> None:
    """Refuse to read ``rel`` if the active run did not produce it (no-op outside a run):
    a :class:`DataError` naming the artifact, its run and the notebook to re-run."""
    context = _context
    if context is None or Path(artifact_dir).resolve() != context.artifact_dir:
        return
    manifest = read_manifest(context.artifact_dir)
    if f"{DATA_DIR}/dataset.json" not in manifest:
        return  # data prepared before provenance, or by hand: nothing to compare with
    problem = _record_problem(rel, manifest.get(rel), context,
                              data_fingerprint(context.artifact_dir), manifest)
    if problem is not None:
        raise DataError(f"stale or foreign artifact: {problem}",
                        source=context.artifact_dir / rel)


def provenance_problems(artifact_dir: str | Path, dataset: str, profile: str, seed: int,
                        ) -> list[ProvenanceProblem]:
    """Every artifact another run produced, or the manifest does not know ([] without one)."""
    root = Path(artifact_dir).resolve()
    manifest = read_manifest(root)
    if f"{DATA_DIR}/dataset.json" not in manifest:
        return []
    context = RunContext(root, dataset, profile, int(seed))
    fingerprint = data_fingerprint(root)
    checked = {rel: _record_problem(rel, record, context, fingerprint, manifest)
               for rel, record in sorted(manifest.items()) if (root / rel).exists()}
    # What a notebook that last finished soundly wrote before and did not write again
    # (e.g. query vectors of a data set without queries) is a leftover nobody reads: not
    # a reason to refuse --start, and still refused by a read.
    finished = {rel[len(METRICS_DIR) + 1:-len(".json")]: int(manifest[rel].get("order", 0))
                for rel, problem in checked.items()
                if rel.startswith(f"{METRICS_DIR}/") and problem is None}
    problems = [problem for rel, problem in checked.items() if problem is not None and not (
        manifest[rel].get("written_by") in finished
        and finished[manifest[rel]["written_by"]] > int(manifest[rel].get("order", 0)))]
    for folder, pattern in ((FEATURES_DIR, "*.npy"), (METRICS_DIR, "*.json"), (MODELS_DIR, "*")):
        for path in sorted((root / folder).glob(pattern)):
            rel = path.relative_to(root).as_posix()
            known = rel in manifest or any(k.startswith(f"{rel}/") for k in manifest)
            if not path.name.startswith(".") and not known:
                problems.append(_record_problem(rel, None, context, fingerprint))
    return [p for p in problems if p is not None]
