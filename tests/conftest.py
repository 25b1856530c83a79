"""Shared fixtures: the data mirror, smoke-profile runs of the notebook series, and a small
model converted to TFLite in every mode."""

from __future__ import annotations

import os
from pathlib import Path

# pytest-xdist workers share the cores: the default thread pools of TensorFlow and of
# OpenBLAS/OpenMP (one thread per core in every worker and every notebook kernel they start)
# oversubscribe them. Two processes on two cores, one thread each: the two-tower model
# trained 25-30% faster, NumPy's inverses and matmuls ran ~20% faster than with the defaults.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    for _pool in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                  "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_pool, _threads)

import recsys_utils  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before any TensorFlow import)
import pytest

REPO = Path(__file__).resolve().parent.parent

#: Which mirror folder each real data set needs.
MIRROR_FOLDERS = {"movielens-100k": "ml-100k", "fashion": "fashion-product-images-small"}


def find_mirror() -> Path | None:
    """$RECSYS_DATA_DIR, else the shared read-only mirror beside the repository."""
    configured = os.environ.get("RECSYS_DATA_DIR")
    candidates = [Path(configured)] if configured else [REPO.parent / "shared" / "data"]
    return next((p.resolve() for p in candidates if p.is_dir()), None)


def require_mirror(dataset: str) -> Path | None:
    """The data dir holding ``dataset``; skip the test with the reason if absent."""
    if dataset not in MIRROR_FOLDERS:
        return None
    mirror = find_mirror()
    if mirror is None or not (mirror / MIRROR_FOLDERS[dataset]).is_dir():
        pytest.skip(f"{dataset}: no {MIRROR_FOLDERS[dataset]}/ in the data mirror "
                    f"(set RECSYS_DATA_DIR to a folder holding it)")
    return mirror


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    mirror = find_mirror()
    if mirror is None:
        pytest.skip("no data mirror: set RECSYS_DATA_DIR")
    return mirror


class SeriesRuns:
    """Runs the notebook series on one profile (smoke unless told), each notebook
    once per data set.

    A test asks for the run of one data set up to a notebook prefix; notebooks
    already executed in this session are not run again.
    """

    def __init__(self, root: Path, profile: str = "smoke") -> None:
        self.root = root
        self.profile = profile
        self.done: dict[str, set[str]] = {}

    def upto(self, dataset: str, stop: str) -> Path:
        from recsys_utils.series import run_series, select_notebooks, series_notebooks

        data_dir = require_mirror(dataset)
        run_dir = self.root / dataset
        done = self.done.setdefault(dataset, set())
        for notebook in select_notebooks(series_notebooks(), stop=stop):
            prefix = notebook.name[:2]
            if prefix in done:
                continue
            run_series(dataset, self.profile, run_dir, data_dir=data_dir,
                       start=prefix, stop=prefix, progress=False)
            done.add(prefix)
        return run_dir / "artifacts"


#: Session fixtures that build something costly: every test using one runs on one worker.
_SHARED_FIXTURES = {"default_runs": "series-default", "dense_model": "dense-model",
                    "dense_variants": "dense-model"}
#: Modules whose tests call ranx: numba compiles its metrics and fusions once per process (a
#: minute), so they share a worker (measured cold: 104 s together, 171 s apart).
_SHARED_MODULES = {"test_metrics": "ranx", "test_metrics_oracles": "ranx",
                   "test_search_fusion_ranx": "ranx"}
#: The longest groups, longest first: started first, they do not finish alone at the end
#: (``make test`` passes --no-loadscope-reorder, which would otherwise put the groups with
#: the most tests first).
_LONGEST_FIRST = ("series-default", "series-movielens-100k", "series-fashion",
                  "series-synthetic", "test_notebook_csv")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(items) -> None:
    """Group the tests for ``pytest -n 2 --dist loadgroup`` (``make test``).

    A notebook run is a session fixture built once per worker, so the tests that read one
    data set's series share a group (``series-<dataset>``); other tests are grouped by
    module, so module fixtures are built once too (the modules that call ranx share one).
    """
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "series_runs" in fixtures:
            if "dataset" not in params:
                raise pytest.UsageError(f"{item.nodeid} uses series_runs without a dataset "
                                        "parameter: mark it @pytest.mark.xdist_group"
                                        "('series-<dataset>')")
            group = f"series-{params['dataset']}"
        else:
            module = item.module.__name__ if item.module else item.nodeid
            group = next((_SHARED_FIXTURES[f] for f in sorted(fixtures & set(_SHARED_FIXTURES))),
                         _SHARED_MODULES.get(module, module))
        item.add_marker(pytest.mark.xdist_group(group))
    rank = {group: i for i, group in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.get_closest_marker("xdist_group").args[0],
                                         len(rank)))


@pytest.hookimpl(trylast=True)  # after xdist has written the groups into the test ids
def pytest_collection_finish(session) -> None:
    """Stop, rather than run every notebook series on every worker, when pytest-xdist's
    ``--dist loadgroup`` did not group (pytest-xdist#1386: pytest >= 9.2 ignores its ids)."""
    config = session.config
    if getattr(config.option, "loadgroup", False) and session.items \
            and not any("@" in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist --dist loadgroup wrote no group into the test ids "
                                f"(pytest {pytest.__version__}); pin the pytest of "
                                "requirements.txt (pytest-xdist#1386)")


@pytest.fixture(scope="session")
def series_runs(tmp_path_factory) -> SeriesRuns:
    return SeriesRuns(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="session")
def default_runs(tmp_path_factory) -> SeriesRuns:
    """The series on the default profile (what ``make run-all`` runs)."""
    return SeriesRuns(tmp_path_factory.mktemp("series-default"), profile="default")


@pytest.fixture(scope="module")
def content_world() -> dict:
    """Items whose text shows attribute A, image shows attribute B; C only via attributes."""
    import numpy as np

    from recsys_utils.content_metrics import combine_keys

    rng = np.random.default_rng(0)
    n = 600
    a, b, c = rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 5, n)
    text = np.concatenate([np.eye(4)[a], rng.normal(0, 0.3, (n, 12))], axis=1).astype(np.float32)
    image = np.concatenate([np.eye(3)[b], rng.normal(0, 0.3, (n, 8))], axis=1).astype(np.float32)
    image_present = rng.random(n) > 0.2
    image[~image_present] = 0
    idx = rng.permutation(n)
    return dict(n=n, a=a.astype(np.int32), b=b.astype(np.int32), c=c.astype(np.int32), text=text,
                image=image, image_present=image_present, train=idx[:450],
                validation=idx[450:500], test=idx[500:],
                key=combine_keys(a, b))


# ------------------------------------------------------------------ a small model in every TFLite mode


@pytest.fixture(scope="session")
def dense_model(tmp_path_factory):
    """A Dense tf-keras tower (~330k weights) saved as a SavedModel, plus held-out inputs."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(shape=(64,), name="features")
    x = tf.keras.layers.Dense(512, activation="relu")(inputs)
    x = tf.keras.layers.Dense(512, activation="relu")(x)
    outputs = tf.keras.layers.Dense(64)(x)
    model = tf.keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("dense") / "tower"
    tf.saved_model.save(model, str(path))
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(100, 64)).astype(np.float32)
    held_out = rng.normal(size=(200, 64)).astype(np.float32)
    return path, model, calibration, held_out


@pytest.fixture(scope="session")
def dense_variants(dense_model):
    """The dense tower converted in every mode of :data:`recsys_utils.tflite_conversion.MODES`."""
    from recsys_utils import tflite_conversion

    path, _, calibration, _ = dense_model
    return {r.mode: r for r in tflite_conversion.convert_all(
        path, path.parent / "tflite", "tower", representative_data={"features": calibration},
        progress=False)}
