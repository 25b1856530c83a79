"""On-disk cache of text embeddings, so no text is encoded twice.
:meth:`recsys_utils.text.TextEncoder.encode` looks texts up by the SHA-1 of their UTF-8 bytes and
stores the misses chunk by chunk, so re-runs and interrupted runs encode nothing twice. A shard
failing its SHA-256 checksum (or holding non-finite or zero vectors) is removed with a warning and
re-encoded, never served. Changing how the directory name or the text hash is computed would
re-embed every catalogue."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import atomic_path
from .schema import summarise_error

log = logging.getLogger(__name__)

#: Version of the shard layout, part of every cache key (2: shards carry a checksum).
CACHE_FORMAT = 2


def text_key(text: str) -> str:
    """A text's address in the cache: SHA-1 hex (40 characters) of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors by text hash, under ``cache_dir/<model id>-<digest of key>/``.

    ``key`` is everything that changes a vector for a given text (JSON-able; saved as
    ``key.json``). Each chunk is one ``shard-<digest>.npz`` (``keys`` (n,) S40 text hashes,
    ``vectors`` (n, dim) float32, ``checksum``), written atomically: whole or absent."""

    def __init__(self, cache_dir: str | Path, key: dict[str, Any]) -> None:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        # The model id leads the name so a person can tell the directories apart.
        safe = re.sub(r"[^\w.-]", "_", str(key.get("model_id", "model")))  # \w: isalnum or _
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
        """Vectors (each ``(dim,)`` float32) of the requested text hashes that are cached;
        bad shards are removed with a warning (see the module)."""
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
            found.update((k, v) for k, v in zip(raw_keys.astype(str).tolist(), vectors)
                         if k in wanted)
        return found

    def write(self, keys: Sequence[str], vectors: np.ndarray) -> Path:
        """Store one chunk (``keys`` (n,), ``vectors`` (n, dim)) atomically; return its path."""
        path = self.dir / f"shard-{hashlib.sha1(''.join(keys).encode()).hexdigest()[:20]}.npz"
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
    norms = np.linalg.norm(vectors, axis=1)
    # Encoder output is unit length: zeros or NaNs mean a bug or a bad copy upstream.
    if not np.all(np.isfinite(norms)) or np.any(norms < 1e-3):
        return "holding zero or non-finite vectors"
    return None


__all__ = ["CACHE_FORMAT", "EmbeddingCache", "shard_checksum", "text_key"]
