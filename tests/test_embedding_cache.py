"""Tests of recsys_utils.embedding_cache: shards, checksums, and the cache's address."""

import numpy as np

from recsys_utils.embedding_cache import CACHE_FORMAT, EmbeddingCache, shard_checksum, text_key


def test_the_address_of_cached_vectors_is_unchanged(tmp_path):
    # A changed directory name or text hash would re-embed every catalogue: pinned here
    # (this key and directory are notebook 02's on the smoke profile with bf16).
    key = {"format": CACHE_FORMAT, "model_id": "all-MiniLM-L6-v2@31b2a01fd56d", "max_length": 64,
           "pooling": "mean", "precision": "bfloat16"}
    assert EmbeddingCache(tmp_path, key).dir.name == "all-MiniLM-L6-v2_31b2a01fd56d-8346234811e3da59"
    assert text_key("Mug! Material: ceramic.") == "20bfc27c3725770aab3e634cf595322c1f3f7652"


def test_vectors_come_back_by_key(tmp_path):
    cache = EmbeddingCache(tmp_path, {"format": CACHE_FORMAT, "model_id": "m"})
    vectors = np.eye(3, 4, dtype=np.float32)
    cache.write(["a" * 40, "b" * 40, "c" * 40], vectors)
    found = cache.lookup(["c" * 40, "a" * 40, "z" * 40])
    assert set(found) == {"a" * 40, "c" * 40}
    np.testing.assert_array_equal(found["c" * 40], vectors[2])
    assert (cache.dir / "key.json").exists() and len(cache.shards()) == 1


def test_cache_shards_without_a_valid_checksum_are_dropped(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path, {"format": 2, "model_id": "m"})
    good = np.eye(2, 4, dtype=np.float32)
    path = cache.write(["a" * 40, "b" * 40], good)
    assert set(cache.lookup(["a" * 40, "b" * 40])) == {"a" * 40, "b" * 40}
    # Zeros with a matching checksum (a bug upstream) are not vectors either.
    zeros = np.zeros((1, 4), np.float32)
    keys = np.array(["c" * 40], dtype="S40")
    bad = cache.dir / "shard-zeros.npz"
    with open(bad, "wb") as f:
        np.savez(f, keys=keys, vectors=zeros, checksum=np.array(shard_checksum(keys, zeros)))
    zero_filled = cache.dir / "shard-zero-filled.npz"
    zero_filled.write_bytes(bytes(path.stat().st_size))
    with caplog.at_level("WARNING", logger="recsys_utils.embedding_cache"):
        found = cache.lookup(["a" * 40, "c" * 40])
    assert set(found) == {"a" * 40}
    assert not bad.exists() and not zero_filled.exists() and path.exists()
    assert "zero or non-finite" in caplog.text and "unreadable" in caplog.text
