"""On-disk cache of text embeddings, so no text is encoded twice.

:meth:`recsys_utils.text.TextEncoder.encode` looks every text up here by the
SHA-1 of its UTF-8 bytes, encodes only the misses and stores them chunk by
chunk, so a re-run encodes nothing and an interrupted run resumes where it
stopped. Vectors live under a sub-directory named after the encoder's settings
(its ``cache_key``: model id, max length, pooling, precision, format), so
vectors of different encoders never mix. Each shard carries a SHA-256 of its
keys and vectors: a shard that fails it (or holds non-finite or zero vectors)
is removed with a warning and its texts encoded again, never served.

The directory name and the text hash are the cache's address: changing how
either is computed would re-embed every catalogue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import atomic_path
from .bert_checkpoint import summarise_error

log = logging.getLogger(__name__)

#: Version of the shard layout, part of every cache key (2: shards carry a checksum).
CACHE_FORMAT = 2


def text_key(text: str) -> str:
    """A text's address in the cache: SHA-1 hex (40 characters) of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors by text hash, in shards under ``cache_dir/<encoder key>/``.

    Each completed chunk becomes one ``shard-<digest>.npz`` (``keys``: (n,)
    sha1 hex of the texts, ``vectors``: (n, dim) float32, ``checksum``), written
    to a temporary file and renamed into place, so a shard is either whole or
    absent. The set of shards is the index; ``key.json`` records what the
    directory is for.

    Args:
        cache_dir: the cache's root (one sub-directory per encoder key).
        key: everything that changes a vector for a given text (JSON-able).
    """

    def __init__(self, cache_dir: str | Path, key: dict[str, Any]) -> None:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        # The model id leads the name so a person can tell the directories apart.
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key.get("model_id", "model")))
        self.dir = Path(cache_dir) / f"{safe[:60]}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.exists():
            with atomic_path(key_file) as tmp:
                tmp.write_text(json.dumps(key, indent=1, sort_keys=True))

    def shards(self) -> list[Path]:
        """The shard files, sorted by name."""
        return sorted(self.dir.glob("shard-*.npz"))

    def lookup(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors (each ``(dim,)`` float32) of the requested text hashes that are cached.

        A shard that cannot be read, fails its checksum or holds vectors that
        are not finite unit-length rows is removed with a warning: its texts
        are encoded again.
        """
        wanted = set(keys)
        found: dict[str, np.ndarray] = {}
        for shard in self.shards():
            try:
                with np.load(shard) as data:
                    raw_keys, vectors = data["keys"], data["vectors"]
                    stored = str(data["checksum"]) if "checksum" in data.files else None
                problem = _shard_problem(raw_keys, vectors, stored)
            except Exception as exc:  # noqa: BLE001 - a bad shard is re-encoded, not fatal
                problem = f"unreadable: {summarise_error(exc)}"
            if problem is not None:
                log.warning("cache shard %s is %s: removed, its texts are encoded again",
                            shard, problem)
                shard.unlink(missing_ok=True)
                continue
            shard_keys = [k.decode() if isinstance(k, bytes) else str(k) for k in raw_keys]
            rows = [i for i, k in enumerate(shard_keys) if k in wanted]
            if rows:
                found.update(zip((shard_keys[i] for i in rows), vectors[rows]))
        return found

    def write(self, keys: Sequence[str], vectors: np.ndarray) -> Path:
        """Store one chunk (``keys`` (n,), ``vectors`` (n, dim)) atomically; return the shard path."""
        digest = hashlib.sha1("".join(keys).encode()).hexdigest()[:20]
        path = self.dir / f"shard-{digest}.npz"
        raw_keys = np.array(keys, dtype="S40")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # A file object, so numpy does not append ".npz" to the temporary name.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=raw_keys, vectors=vectors,
                     checksum=np.array(shard_checksum(raw_keys, vectors)))
            f.flush()
            os.fsync(f.fileno())
        return path


def shard_checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
    """SHA-256 over a shard's keys (S40) and vectors (float32, C order)."""
    digest = hashlib.sha256(np.ascontiguousarray(keys, dtype="S40").tobytes())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _shard_problem(keys: np.ndarray, vectors: np.ndarray, stored: str | None) -> str | None:
    """Why a shard must not be served, or None if it is sound."""
    if stored is None:
        return "without a checksum"
    if vectors.ndim != 2 or len(vectors) != len(keys):
        return f"malformed ({len(keys)} keys, vectors {vectors.shape})"
    if shard_checksum(keys, vectors) != stored:
        return "corrupt (checksum mismatch)"
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.ones(0)
    # Encoder output is unit length: zeros or NaNs mean a bug or a bad copy upstream.
    if not np.all(np.isfinite(norms)) or np.any(norms < 1e-3):
        return "holding zero or non-finite vectors"
    return None


__all__ = ["CACHE_FORMAT", "EmbeddingCache", "shard_checksum", "text_key"]
