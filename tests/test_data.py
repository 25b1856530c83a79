"""Tests of recsys_utils.data: the registry, the loaders and their error messages.

Tests that need the read-only mirror (../shared/data, or $RECSYS_DATA_DIR) skip
with a reason when it is absent; everything else runs on tiny hand-made inputs.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import types
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_utils import data
from recsys_utils.data import (
    DATASETS,
    ML100K_URL,
    default_data_dir,
    load_dataset,
    tfrs_protocol_split,
)
from recsys_utils.schema import DataError, Dataset, LoadReport

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CSV_TINY = FIXTURES / "csv_tiny"  # three items: the schema, not the series
CSV_GOOD = FIXTURES / "csv_good"  # the series-sized shop (tests/fixtures/make_csv_good.py)
SIM_COLUMNS = ["category", "gender", "colour", "usage", "season"]


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mirror_dir() -> Path:
    """The data mirror: $RECSYS_DATA_DIR, else ../shared/data beside the repository."""
    return Path(os.environ.get("RECSYS_DATA_DIR") or REPO.parent / "shared" / "data")


def _need(root: Path, sub: str) -> Path:
    if not (root / sub).is_dir():
        pytest.skip(f"data mirror has no {sub}/ at {root} (set RECSYS_DATA_DIR to the mirror)")
    return root


def _stub_simulation(calls: list | None = None) -> types.ModuleType:
    """A fast stand-in for recsys_utils.simulation: one view per user on a few items."""
    module = types.ModuleType("recsys_utils.simulation")

    def simulate_behaviour(items, attribute_columns, n_users, *, seed=42, **kwargs):
        if calls is not None:
            calls.append(dict(attribute_columns=list(attribute_columns), n_users=n_users,
                              seed=seed, n_items=len(items)))
        rng = np.random.default_rng(seed)
        users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n_users)]})
        picked = rng.choice(items["item_id"].to_numpy(), size=n_users)
        interactions = pd.DataFrame({
            "user_id": users["user_id"], "item_id": picked,
            "timestamp": np.arange(n_users, dtype="int64") + 1_700_000_000,
            "event": "view", "session_id": [f"s{i}" for i in range(n_users)],
        })
        return users, interactions

    module.simulate_behaviour = simulate_behaviour
    return module


@pytest.fixture
def stub_simulation(monkeypatch) -> list:
    """Replace the simulation module; returns the list of recorded calls."""
    calls: list = []
    monkeypatch.setitem(sys.modules, "recsys_utils.simulation", _stub_simulation(calls))
    return calls


@pytest.fixture(scope="module")
def movielens(mirror_dir) -> Dataset:
    return load_dataset("movielens-100k", _need(mirror_dir, "ml-100k"))


@pytest.fixture(scope="module")
def fashion_full(mirror_dir) -> Dataset:
    root = _need(mirror_dir, "fashion-product-images-small")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "recsys_utils.simulation", _stub_simulation())
        return load_dataset("fashion", root, n_users=5)


# ------------------------------------------------------------------------- registry


def test_unknown_name_lists_valid_names_and_suggests_closest(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("movielens", tmp_path)
    message = str(info.value)
    for name in DATASETS:
        assert repr(name) in message
    assert "Did you mean 'movielens-100k'?" in message


def test_default_data_dir_env_and_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("RECSYS_DATA_DIR")
    assert default_data_dir() == REPO / "data" / "raw"


def test_product_code_has_no_machine_paths():
    source = Path(data.__file__).read_text()
    assert "/work/" not in source and "../shared" not in source and "shared/data" not in source


# ---------------------------------------------------------------------- synthetic


def test_synthetic_passes_sizes_seed_and_image_dir(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("recsys_utils.synthetic")

    def generate(n_items, n_users, *, seed=42, image_dir=None, image_size=64, **kwargs):
        calls.append((n_items, n_users, seed, image_dir, image_size))
        items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"],
                              "description": ["", ""], "category": ["x", "y"]})
        interactions = pd.DataFrame({"user_id": ["u"], "item_id": ["a"],
                                     "timestamp": [1], "event": ["click"]})
        return Dataset("synthetic", items, interactions, [])

    fake.generate = generate
    monkeypatch.setitem(sys.modules, "recsys_utils.synthetic", fake)
    dataset = load_dataset("synthetic", tmp_path, seed=7, work_dir=tmp_path / "w")
    assert calls[-1] == (2000, 2000, 7, tmp_path / "w" / "images", 64)
    assert isinstance(dataset.report, LoadReport)
    load_dataset("synthetic", tmp_path, n_items=30, n_users=10)
    assert calls[-1][:2] == (30, 10) and calls[-1][3] is None


def test_synthetic_real_generator_loads_and_validates(tmp_path):
    pytest.importorskip("recsys_utils.synthetic", reason="recsys_utils.synthetic not written yet")
    dataset = load_dataset("synthetic", tmp_path, n_items=40, n_users=15, seed=3)
    assert len(dataset.items) == 40
    assert dataset.report is not None
    assert not dataset.simulated_interactions or dataset.name == "synthetic"


# ------------------------------------------------------------------ MovieLens 100K


def test_movielens_missing_files_name_exact_paths_and_url(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("movielens-100k", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "ml-100k" / "u.data") in message
    assert str(tmp_path / "ml-100k" / "u.item") in message
    assert "RECSYS_DATA_DIR" in message
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message


def test_movielens_counts_and_rating_distribution(movielens):
    assert len(movielens.interactions) == 100_000
    assert movielens.interactions["user_id"].nunique() == 943
    assert len(movielens.items) == 1_682
    assert len(movielens.users) == 943
    counts = movielens.interactions["rating"].value_counts().sort_index()
    assert counts.to_dict() == {1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}
    assert movielens.interactions["timestamp"].dtype == np.int64
    first = movielens.interactions.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == \
        ("196", "242", 3.0, 881250949)


def test_movielens_item_text_and_attributes(movielens):
    items = movielens.items.set_index("item_id")
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["description"] == "A 1995 animation, children's, comedy film."
    assert toy["category"] == "Animation"
    assert toy["genres"] == "Animation|Children's|Comedy"
    assert toy["year"] == "1995"
    assert items.loc["267", "year"] == "unknown"  # the one movie without a release date
    assert movielens.attribute_columns == ["genres", "year"]
    assert not movielens.has_images
    assert movielens.feedback == "rating"
    assert set(movielens.users.columns) >= {"user_id", "age", "gender", "occupation"}


# The first positions of the tutorial's shuffle of 100,000 rows (tf.random.set_seed(42),
# shuffle(100_000, seed=42, reshuffle_each_iteration=False)), measured with TensorFlow 2.20.
TFRS_FIRST_POSITIONS = [50633, 33113, 42358, 88434, 45144, 4086, 12219, 13956, 82858, 91309]


def _positions(n: int = 100_000) -> pd.DataFrame:
    """A table whose only column is the row position, so a split shows the permutation."""
    return pd.DataFrame({"position": np.arange(n)})


def _direct_tf_data_order(n: int, seed: int = 42) -> np.ndarray:
    """The tutorial's code, verbatim, on row positions (eager; restores the global seed)."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    previous = context.global_seed()
    try:
        tf.random.set_seed(seed)
        shuffled = tf.data.Dataset.range(n).shuffle(100_000, seed=seed,
                                                    reshuffle_each_iteration=False)
        return np.concatenate(list(shuffled.batch(10_000).as_numpy_iterator()))
    finally:
        tf.random.set_seed(previous)


@pytest.fixture(scope="module")
def tutorial_order() -> np.ndarray:
    """The tutorial's shuffle of 100,000 row positions, computed directly once."""
    return _direct_tf_data_order(100_000)


def test_tfrs_protocol_split(movielens):
    train, test = tfrs_protocol_split(movielens.interactions)
    assert (len(train), len(test)) == (80_000, 20_000)
    assert list(train.columns) == list(movielens.interactions.columns)
    again_train, again_test = tfrs_protocol_split(movielens.interactions)
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(test, again_test)
    other_train, _ = tfrs_protocol_split(movielens.interactions, seed=1)
    assert not train.equals(other_train)
    # (user, item) pairs are unique in ML-100K, so they identify rows.
    pairs = lambda df: set(zip(df["user_id"], df["item_id"]))  # noqa: E731
    assert pairs(train).isdisjoint(pairs(test))
    assert pairs(train) | pairs(test) == pairs(movielens.interactions)
    assert len(pairs(train)) + len(pairs(test)) == len(movielens.interactions)
    # Shuffled, not the file order.
    assert not train["timestamp"].equals(movielens.interactions["timestamp"].iloc[:80_000])


def test_tfrs_protocol_split_is_the_tutorials_tf_data_shuffle(movielens, tutorial_order):
    """Row for row what the tutorial's tf.data code gives on u.data in file order."""
    interactions = movielens.interactions
    order = tutorial_order
    train, test = tfrs_protocol_split(interactions)
    pd.testing.assert_frame_equal(
        train, interactions.iloc[order[:80_000]].reset_index(drop=True))
    pd.testing.assert_frame_equal(
        test, interactions.iloc[order[80_000:]].reset_index(drop=True))
    # The loader keeps u.data's file order, which the tutorial's shuffle starts from.
    raw = pd.read_csv(Path(movielens.report.source) / "u.data", sep="\t", header=None,
                      names=["user_id", "item_id", "rating", "timestamp"], dtype=str)
    assert interactions["user_id"].tolist() == raw["user_id"].tolist()
    assert interactions["item_id"].tolist() == raw["item_id"].tolist()
    expected = raw.iloc[TFRS_FIRST_POSITIONS]
    assert train["user_id"].tolist()[:10] == expected["user_id"].tolist()
    assert train["item_id"].tolist()[:10] == expected["item_id"].tolist()


def test_tfrs_protocol_split_permutation_pinned_and_direct(tutorial_order):
    order = tutorial_order
    train, test = tfrs_protocol_split(_positions())
    assert train["position"].tolist()[:10] == TFRS_FIRST_POSITIONS
    np.testing.assert_array_equal(train["position"].to_numpy(), order[:80_000])
    np.testing.assert_array_equal(test["position"].to_numpy(), order[80_000:])


def test_tfrs_protocol_split_ignores_and_keeps_global_tf_state():
    import tensorflow as tf
    from tensorflow.python.eager import context

    first, _ = tfrs_protocol_split(_positions())
    previous = context.global_seed()
    try:
        tf.random.set_seed(7)
        tf.random.uniform([3])  # advance the op-seed counter
        second, _ = tfrs_protocol_split(_positions())
        assert context.global_seed() == 7  # the split did not touch the process's seed
        after = tf.random.uniform([3])
        tf.random.set_seed(7)
        tf.random.uniform([3])
        assert np.array_equal(after.numpy(), tf.random.uniform([3]).numpy())
    finally:
        tf.random.set_seed(previous)
    pd.testing.assert_frame_equal(first, second)


def test_tfrs_protocol_split_same_in_another_process():
    code = (
        "import numpy as np, pandas as pd\n"
        "from recsys_utils.data import tfrs_protocol_split\n"
        "train, test = tfrs_protocol_split(pd.DataFrame({'position': np.arange(100_000)}))\n"
        "print(','.join(map(str, train['position'].tolist() + test['position'].tolist())))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    other = [int(v) for v in done.stdout.strip().splitlines()[-1].split(",")]
    train, test = tfrs_protocol_split(_positions())
    assert other == train["position"].tolist() + test["position"].tolist()


def test_tfrs_protocol_split_n_train_and_partition():
    frame = _positions()
    train, test = tfrs_protocol_split(frame, n_train=90_000)
    assert (len(train), len(test)) == (90_000, 10_000)
    positions = np.concatenate([train["position"], test["position"]])
    assert sorted(positions.tolist()) == list(range(100_000))  # disjoint and complete
    # n_train only moves the cut: the shuffled order is the same.
    default_train, default_test = tfrs_protocol_split(frame)
    assert positions.tolist() == (default_train["position"].tolist()
                                  + default_test["position"].tolist())
    assert train.index.equals(pd.RangeIndex(90_000)) and test.index.equals(pd.RangeIndex(10_000))
    everything, nothing = tfrs_protocol_split(frame, n_train=100_000)
    assert (len(everything), len(nothing)) == (100_000, 0)


def test_tfrs_protocol_split_too_few_rows():
    frame = pd.DataFrame({"user_id": ["1"] * 10, "item_id": [str(i) for i in range(10)]})
    with pytest.raises(DataError, match="n_train=80000"):
        tfrs_protocol_split(frame)
    train, test = tfrs_protocol_split(frame, n_train=8)
    assert (len(train), len(test)) == (8, 2)
    assert sorted(train["item_id"].tolist() + test["item_id"].tolist()) == sorted(frame["item_id"])
    empty_train, empty_test = tfrs_protocol_split(frame.iloc[:0], n_train=0)
    assert (len(empty_train), len(empty_test)) == (0, 0)


# --- the download path, offline: urlopen is monkeypatched


GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _tiny_movielens_files() -> dict[str, bytes]:
    flags_toy = ["0"] * 19
    for g in (3, 4, 5):
        flags_toy[g] = "1"
    flags_unknown = ["1"] + ["0"] * 18
    u_item = (
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags_toy) + "\n"
        "2|Am\xe9lie (2001)|||http://y|" + "|".join(flags_unknown) + "\n"
    ).encode("latin-1")
    return {
        "u.data": b"1\t1\t5\t881250949\n2\t2\t3\t881250950\n2\t1\t4\t881250951\n",
        "u.item": u_item,
        "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n",
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)).encode() + b"\n",
    }


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(f"ml-100k/{name}", content)
    return buffer.getvalue()


class _FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _serve(monkeypatch, payload: bytes) -> list:
    requests = []

    def fake_urlopen(url, timeout=None):
        requests.append((url, timeout))
        return _FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requests


def test_movielens_download_unzips_verifies_and_loads(monkeypatch, tmp_path):
    files = _tiny_movielens_files()
    monkeypatch.setattr(data, "ML100K_UDATA_MD5", hashlib.md5(files["u.data"]).hexdigest())
    requests = _serve(monkeypatch, _zip_bytes(files))
    dataset = load_dataset("movielens-100k", tmp_path, download=True)
    assert requests == [(ML100K_URL, 30)]
    assert (tmp_path / "ml-100k" / "u.data").read_bytes() == files["u.data"]
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k"]  # no temp folder left
    assert len(dataset.interactions) == 3 and len(dataset.items) == 2
    amelie = dataset.items.set_index("item_id").loc["2"]
    assert amelie["title"] == "Am\xe9lie (2001)"  # read as Latin-1
    assert amelie["year"] == "unknown" and amelie["category"] == "unknown"
    assert any("downloaded" in note for note in dataset.report.notes)
    # Second load finds the files and does not touch the network.
    monkeypatch.setattr(urllib.request, "urlopen", None)
    assert len(load_dataset("movielens-100k", tmp_path, download=True).interactions) == 3


def test_movielens_download_rejects_wrong_checksum(monkeypatch, tmp_path):
    _serve(monkeypatch, _zip_bytes(_tiny_movielens_files()))  # real md5 expected: mismatch
    with pytest.raises(DataError) as info:
        load_dataset("movielens-100k", tmp_path, download=True)
    assert "md5" in str(info.value) and "download failed" in str(info.value)
    assert not (tmp_path / "ml-100k").exists()
    assert list(tmp_path.iterdir()) == []


def test_movielens_download_network_failure(monkeypatch, tmp_path):
    def failing_urlopen(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", failing_urlopen)
    with pytest.raises(DataError) as info:
        load_dataset("movielens-100k", tmp_path, download=True)
    message = str(info.value)
    assert "download failed" in message and "name resolution" in message
    assert str(tmp_path / "ml-100k" / "u.data") in message and ML100K_URL in message
    assert not (tmp_path / "ml-100k").exists()


def test_movielens_download_not_a_zip(monkeypatch, tmp_path):
    _serve(monkeypatch, b"<html>captive portal</html>")
    with pytest.raises(DataError, match="download failed"):
        load_dataset("movielens-100k", tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_movielens_download_of_the_real_archive(monkeypatch, tmp_path, mirror_dir):
    """A zip of the mirror's files passes the real md5 check."""
    source = _need(mirror_dir, "ml-100k") / "ml-100k"
    files = {name: (source / name).read_bytes() for name in data.ML100K_FILES}
    _serve(monkeypatch, _zip_bytes(files))
    dataset = load_dataset("movielens-100k", tmp_path / "raw", download=True)
    assert len(dataset.interactions) == 100_000


# ------------------------------------------------------------------------ fashion


def test_fashion_missing_names_paths_and_kaggle(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("fashion", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "fashion-product-images-small" / "styles.csv") in message
    assert str(tmp_path / "myntradataset" / "styles.csv") in message
    assert "paramaggarwal/fashion-product-images-small" in message


def test_fashion_full_catalogue(fashion_full):
    items = fashion_full.items
    assert len(items) == 44_446
    assert items["item_id"].is_unique
    assert fashion_full.attribute_columns == [
        "gender", "master_category", "sub_category", "colour", "season", "usage", "year"]
    assert set(items.columns) >= {"item_id", "title", "description", "category", "image_path"}
    shirt = items.set_index("item_id").loc["15970"]
    assert (shirt["title"], shirt["category"], shirt["colour"], shirt["usage"]) == \
        ("Turtle Check Men Navy Blue Shirt", "Shirts", "Navy Blue", "Casual")
    assert "navy blue" in shirt["description"]
    assert not items[fashion_full.attribute_columns].isin(["", "NA"]).any().any()
    assert (items["usage"] == "unknown").sum() == 317  # 316 "NA" + 1 empty


def test_fashion_malformed_rows_are_repaired(fashion_full):
    report = fashion_full.report
    assert (report.malformed_rows, report.repaired_rows, report.dropped_rows) == (22, 22, 0)
    titles = fashion_full.items.set_index("item_id")["title"]
    assert titles["44065"] == "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    assert titles["23124"] == "Converse Unisex Navy Blue Liv,Laugh,Love Flip-flops"  # 12 fields
    repaired = fashion_full.items.set_index("item_id").loc["44065"]
    assert (repaired["category"], repaired["usage"]) == ("Perfume and Body Mist", "Casual")
    assert titles["7491"] == "Nike Women's EM Tempo 3.5\" Pink Short"  # a stray quote survives


def test_fashion_missing_images_counted(fashion_full):
    paths = fashion_full.items["image_path"]
    assert fashion_full.report.missing_images == 44_446 - 12_000 == paths.isna().sum()
    present = paths.dropna()
    assert len(present) == 12_000
    assert all(Path(p).is_absolute() for p in present)
    assert all(Path(p).is_file() for p in present.iloc[:50])
    assert paths[paths.isna()].map(lambda p: p is None).all()  # None, as the schema says


def test_fashion_sample_has_images_and_is_deterministic(mirror_dir, stub_simulation):
    root = _need(mirror_dir, "fashion-product-images-small")
    first = load_dataset("fashion", root, n_items=500, n_users=3)
    second = load_dataset("fashion", root, n_items=500, n_users=3)
    other = load_dataset("fashion", root, n_items=500, n_users=3, seed=7)
    assert len(first.items) == 500
    assert first.items["image_path"].notna().all() and first.report.missing_images == 0
    assert first.items["item_id"].tolist() == second.items["item_id"].tolist()
    assert first.items["item_id"].tolist() != other.items["item_id"].tolist()
    assert stub_simulation[0] == dict(attribute_columns=SIM_COLUMNS, n_users=3, seed=42,
                                      n_items=500)


def test_fashion_sample_larger_than_photos_fills_with_imageless(mirror_dir, stub_simulation):
    root = _need(mirror_dir, "fashion-product-images-small")
    dataset = load_dataset("fashion", root, n_items=12_005, n_users=2)
    assert len(dataset.items) == 12_005
    assert dataset.report.missing_images == 5


def test_fashion_interactions_flagged_as_simulated(fashion_full):
    assert fashion_full.simulated_interactions is True
    assert "SIMULATED" in fashion_full.report.notes[0]
    assert "real" in fashion_full.report.notes[0]
    assert set(fashion_full.interactions["item_id"]) <= set(fashion_full.items["item_id"])


STYLES = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
    "productDisplayName\n"
    "1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Men Navy Shirt\n"
    "2,Women,Accessories,Jewellery,Earrings,Gold,Winter,2016,NA,Estelle Gold, Silver Earrings\n"
    "3,Unisex,Footwear,Shoes,Casual Shoes,,,,,Plain Shoes\n"
)


@pytest.mark.parametrize("layout", ["fashion-product-images-small/myntradataset", "myntradataset"])
def test_fashion_kaggle_layouts(tmp_path, stub_simulation, layout):
    folder = tmp_path / layout
    (folder / "images").mkdir(parents=True)
    (folder / "styles.csv").write_text(STYLES)
    (folder / "images" / "2.jpg").write_bytes(b"jpeg")
    dataset = load_dataset("fashion", tmp_path, n_users=4)
    items = dataset.items.set_index("item_id")
    assert items.loc["2", "title"] == "Estelle Gold, Silver Earrings"
    assert items.loc["2", "usage"] == "unknown"
    assert items.loc["3", ["colour", "season", "year", "usage"]].tolist() == ["unknown"] * 4
    assert items.loc["3", "description"] == "Casual Shoes for unisex; footwear, shoes."
    assert items.loc["2", "image_path"] == str((folder / "images" / "2.jpg").absolute())
    assert items.loc["1", "image_path"] is None
    assert (dataset.report.repaired_rows, dataset.report.missing_images) == (1, 2)
    assert dataset.report.source == str(folder / "styles.csv")


def test_fashion_repaired_row_is_named_by_record_not_line(tmp_path, stub_simulation):
    """A quoted name spanning lines shifts the lines, not the record count."""
    folder = tmp_path / "fashion-product-images-small"
    folder.mkdir()
    styles = STYLES.replace("Turtle Men Navy Shirt", '"Turtle Men\nNavy\nShirt"')
    (folder / "styles.csv").write_text(styles)
    notes = load_dataset("fashion", tmp_path, n_users=4).report.notes
    assert any("first at record 2 (line 5), id 2" in note for note in notes), notes


def test_fashion_with_real_simulation(mirror_dir):
    pytest.importorskip("recsys_utils.simulation", reason="recsys_utils.simulation not written yet")
    root = _need(mirror_dir, "fashion-product-images-small")
    dataset = load_dataset("fashion", root, n_items=300, n_users=20, seed=5)
    assert dataset.simulated_interactions
    assert {"user_id", "item_id", "timestamp", "event", "session_id"} <= set(
        dataset.interactions.columns)
    assert dataset.interactions["user_id"].nunique() <= 20
    assert set(dataset.interactions["item_id"]) <= set(dataset.items["item_id"])


# ---------------------------------------------------------------------------- csv


def test_csv_tiny_folder_loads(tmp_path):
    dataset = load_dataset("csv", csv_dir=CSV_TINY)
    items = dataset.items.set_index("item_id")
    assert list(items.index) == ["007", "008", "009"]  # ids keep their leading zeros
    assert items.loc["007", "image_path"] == str(CSV_TINY / "images" / "007.png")
    assert Path(items.loc["007", "image_path"]).is_absolute()
    assert items.loc["008", "image_path"] is None
    assert items.loc["009", "image_path"] is None  # names a file that does not exist
    assert dataset.report.missing_images == 1
    assert items.loc["007", "description"] == "A light shirt, for summer"
    assert items.loc["007", "price"] == pytest.approx(19.9) and np.isnan(items.loc["008", "price"])
    assert dataset.attribute_columns == ["colour", "brand"]
    assert dataset.interactions["timestamp"].dtype == np.int64
    assert dataset.feedback == "event"
    assert dataset.users["user_id"].tolist() == ["u1", "u2"]
    assert dataset.judgements["relevance"].tolist() == [3, 0, 3]
    assert dataset.report.source == str(CSV_TINY)
    # data_dir doubles as the folder when csv_dir is not given.
    assert len(load_dataset("csv", CSV_TINY).items) == 3


def _bad_folder(tmp_path: Path, **files: str | None) -> Path:
    """A copy of the good fixture with some files replaced (text) or removed (None)."""
    folder = tmp_path / "shop"
    shutil.copytree(CSV_TINY, folder)
    for stem, content in files.items():
        path = folder / f"{stem}.csv"
        if content is None:
            path.unlink()
        else:
            path.write_text(content)
    return folder


ITEMS_HEADER = "item_id,title,description,category,colour,brand,price,image_path\n"
INTERACTIONS_HEADER = "user_id,item_id,timestamp,event\n"

BAD_CSV = {
    "misnamed item column": (
        dict(items="itemid,title,description,category\n007,Shirt,,shirts\n"),
        ["items.csv", "'item_id'", "found 'itemid', did you mean 'item_id'?", "line 2",
         "'Shirt'"]),
    "misnamed interaction column": (
        dict(interactions="user,item_id,timestamp,event\nu1,007,1700000000,view\n"),
        ["interactions.csv", "'user_id'", "found 'user', did you mean 'user_id'?", "line 2",
         "'u1'"]),
    "no feedback column": (
        dict(interactions="user_id,item_id,timestamp,ratings\nu1,007,1700000000,4\n"),
        ["interactions.csv", "'rating'", "found 'ratings'", "line 2", "'u1'"]),
    "duplicate item ids": (
        dict(items=ITEMS_HEADER + "007,A,,x,,,,\n008,B,,x,,,,\n007,C,,x,,,,\n"),
        ["items.csv", "column 'item_id'", "duplicate", "line 4", "'C'"]),
    "interaction with unknown item": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000,view\nu2,999,1700000001,view\n"),
        ["interactions.csv", "column 'item_id'", "not in the items table", "line 3", "'999'"]),
    "non-numeric timestamp": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000,view\nu2,008,yesterday,click\n"),
        ["interactions.csv", "column 'timestamp'", "not numeric", "line 3", "'yesterday'"]),
    "item without title": (
        dict(items=ITEMS_HEADER + "007,A,,x,,,,\n008,,,x,,,,\n"),
        ["items.csv", "column 'title'", "line 3", "'008'"]),
    "unknown event": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000,like\n"),
        ["interactions.csv", "column 'event'", "line 2", "'like'"]),
    "header-only items": (
        dict(items=ITEMS_HEADER), ["items.csv", "empty"]),
    "header-only interactions": (
        dict(interactions=INTERACTIONS_HEADER), ["interactions.csv", "empty"]),
    "empty items file": (dict(items=""), ["items.csv", "empty", "no"]),
    "empty interactions file": (dict(interactions=""), ["interactions.csv", "empty"]),
    "missing items file": (dict(items=None), ["file not found", "items.csv"]),
    "missing interactions file": (dict(interactions=None), ["file not found", "interactions.csv"]),
    "queries without judgements": (dict(judgements=None), ["file not found", "judgements.csv"]),
    "bad relevance": (
        dict(judgements="query_id,item_id,relevance\nq1,007,3\nq1,008,high\n"),
        ["judgements.csv", "column 'relevance'", "line 3", "'high'"]),
    "judgement for unknown query": (
        dict(judgements="query_id,item_id,relevance\nq9,007,3\n"),
        ["judgements.csv", "column 'query_id'", "line 2", "'q9'"]),
    "judgement for unknown item": (
        dict(judgements="query_id,item_id,relevance\nq1,042,3\n"),
        ["judgements.csv", "column 'item_id'", "line 2", "'042'"]),
    "users without user_id": (
        dict(users="uid,age_band\nu1,25-34\n"),
        ["users.csv", "'user_id'", "found 'uid'", "line 2"]),
    # ---- impossible values (issue 14)
    "timestamp overflowing int64": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000,view\n"
             "u2,008,99999999999999999999,click\n"),
        ["interactions.csv", "column 'timestamp'", "out of range", "overflows",
         "record 2 (line 3)", "'99999999999999999999'", "unix seconds"]),
    "negative timestamp": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,-5,view\nu2,008,1700000000,click\n"),
        ["interactions.csv", "column 'timestamp'", "is negative", "line 2", "'-5'"]),
    "timestamp in the year 5138": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000,view\n"
             "u2,008,99999999999,click\n"),
        ["interactions.csv", "column 'timestamp'", "5138-", "line 3", "'99999999999'"]),
    "milliseconds mixed with seconds": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000,view\n"
             "u2,008,1700000000000,click\n"),
        ["interactions.csv", "column 'timestamp'", "mixed units", "milliseconds", "line 3",
         "'1700000000000'"]),
    "milliseconds throughout": (
        dict(interactions=INTERACTIONS_HEADER + "u1,007,1700000000000,view\n"
             "u2,008,1700000060000,click\n"),
        ["interactions.csv", "column 'timestamp'", "milliseconds", "divide the column by 1000",
         "line 2"]),
    "infinite rating": (
        dict(interactions="user_id,item_id,timestamp,rating\nu1,007,1700000000,4\n"
             "u2,008,1700000001,inf\n"),
        ["interactions.csv", "column 'rating'", "not finite", "line 3", "'inf'"]),
    "rating of 1000": (
        dict(interactions="user_id,item_id,timestamp,rating\nu1,007,1700000000,1000\n"),
        ["interactions.csv", "column 'rating'", "outside the scale 0..5", "line 2", "'1000'",
         "rating_scale"]),
    "negative rating": (
        dict(interactions="user_id,item_id,timestamp,rating\nu1,007,1700000000,3\n"
             "u1,008,1700000001,-5\n"),
        ["interactions.csv", "column 'rating'", "outside the scale", "line 3", "'-5'"]),
    "rating and event without a choice": (
        dict(interactions="user_id,item_id,timestamp,rating,event\n"
             "u1,007,1700000000,4,view\n"),
        ["interactions.csv", "'rating' and an 'event' column", "feedback", "dataset.json",
         "line 2", "'u1'"]),
    "title 'nan'": (
        dict(items=ITEMS_HEADER + "007,A shirt,,x,,,,\n008,nan,,x,,,,\n"),
        ["items.csv", "column 'title'", "placeholder", "line 3", "'008'", "real title"]),
    "title '-'": (
        dict(items=ITEMS_HEADER + "007,-,,x,,,,\n"),
        ["items.csv", "column 'title'", "placeholder", "line 2", "'007'"]),
    "bad title after a multi-line record": (
        dict(items=ITEMS_HEADER + '007,Shirt,"two\nlines\nhere",x,,,,\n008,n/a,,x,,,,\n'),
        ["items.csv", "column 'title'", "record 2 (line 5)", "'008'"]),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_csv_bad_input_names_file_column_and_example(tmp_path, case):
    files, expected = BAD_CSV[case]
    folder = _bad_folder(tmp_path, **files)
    with pytest.raises(DataError) as info:
        load_dataset("csv", csv_dir=folder)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in: {message}"
    stem = next(iter(files))
    assert str(folder / f"{stem}.csv") in message  # the full path of the file


def test_csv_stated_feedback_keeps_one_column(tmp_path):
    folder = _bad_folder(tmp_path, interactions="user_id,item_id,timestamp,rating,event\n"
                         "u1,007,1700000000,4,view\nu2,008,1700000001,2,click\n")
    (folder / "dataset.json").write_text('{"feedback": "event"}')
    dataset = load_dataset("csv", csv_dir=folder)
    assert dataset.feedback == "event" and "rating" not in dataset.interactions
    assert any("using 'event'" in note for note in dataset.report.notes)
    rated = load_dataset("csv", csv_dir=folder, feedback="rating")  # the argument wins
    assert rated.feedback == "rating" and "event" not in rated.interactions


def test_csv_declared_rating_scale(tmp_path):
    folder = _bad_folder(tmp_path, interactions="user_id,item_id,timestamp,rating\n"
                         "u1,007,1700000000,8\nu2,008,1700000001,10\n")
    with pytest.raises(DataError, match="outside the scale 0..5"):
        load_dataset("csv", csv_dir=folder)
    (folder / "dataset.json").write_text('{"rating_scale": [1, 10]}')
    dataset = load_dataset("csv", csv_dir=folder)
    assert dataset.rating_scale == (1.0, 10.0)
    assert dataset.interactions["rating"].tolist() == [8.0, 10.0]
    (folder / "dataset.json").write_text('{"rating_scale": [10, 1]}')
    with pytest.raises(DataError, match="dataset.json.*low < high"):
        load_dataset("csv", csv_dir=folder)


def test_csv_placeholder_description_is_empty_text(tmp_path):
    folder = _bad_folder(tmp_path, items=ITEMS_HEADER + "007,Shirt,nan,x,,,,\n008,Scarf,-,x,,,,\n"
                         "009,Cap,A cap,x,,,,\n")
    items = load_dataset("csv", csv_dir=folder).items
    assert items["description"].tolist() == ["", "", "A cap"]


def test_csv_missing_image_is_recorded(tmp_path):
    report = load_dataset("csv", csv_dir=CSV_TINY).report
    assert report.bad_images == [{"item_id": "009", "image_path": "images/missing.png",
                                  "problem": "missing"}]


def test_csv_good_fixture_is_series_sized():
    dataset = load_dataset("csv", csv_dir=CSV_GOOD)
    per_user = dataset.interactions.groupby("user_id").size()
    assert 200 <= len(dataset.items) <= 1000 and 200 <= len(per_user) <= 1000
    assert 2000 <= len(dataset.interactions) <= 10000
    assert (per_user >= 3).mean() > 0.8  # enough history for train, validation and test
    assert dataset.queries is not None and dataset.judgements["relevance"].nunique() == 4
    assert sum(p.stat().st_size for p in CSV_GOOD.glob("*.csv")) < 400_000


def test_csv_missing_folder_names_the_path(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("csv", csv_dir=tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_csv_error_attributes_are_structured(tmp_path):
    folder = _bad_folder(tmp_path, interactions=INTERACTIONS_HEADER + "u1,007,soon,view\n")
    with pytest.raises(DataError) as info:
        load_dataset("csv", csv_dir=folder)
    error = info.value
    assert error.source == str(folder / "interactions.csv")
    assert (error.column, error.line) == ("timestamp", 2)
    assert error.example["timestamp"] == "soon"
