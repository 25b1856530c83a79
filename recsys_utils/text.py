"""The sentence encoder: texts -> unit-length vectors with a BERT on keras-hub (Keras 3).

One encoder embeds item texts and search queries into the same space::

    from recsys_utils import text
    from recsys_utils.item_text import item_text
    encoder = text.load_text_encoder(**profile.text)      # offline MiniLM by default
    item_vecs = encoder.encode(item_text(items, attribute_columns),
                               cache_dir=run.cache_dir / "text")   # (n_items, 384)
    query_vecs = encoder.encode(queries["text"].tolist())          # same space
    scores = query_vecs @ item_vecs.T                              # cosine similarity

* **Checkpoint**: found and loaded by :mod:`recsys_utils.bert_checkpoint` (the
  bundled offline MiniLM by default, a directory, or a keras-hub preset name).
* **Sentence embedding**: the backbone's last hidden states, pooled by
  :func:`recsys_utils.sentence_pooling.sentence_vectors` (masked mean, then L2
  normalisation: the checkpoint's sentence-transformers convention; ``pooling
  ="cls"`` takes the ``[CLS]`` state instead), the function notebook 02 shows.
  Vectors are float32, unit length.
* **Speed**: texts are tokenised once, sorted by token length and batched, each
  batch padded only to its own longest text (rounded up to a multiple of 8), and
  the original order restored; a short title no longer pays for 128 tokens.
  ``precision="bfloat16"`` runs the backbone under Keras' ``mixed_bfloat16``
  policy (pooling stays float32); ``"auto"`` picks it where the hardware has
  native bf16 (AVX512-BF16/AMX CPUs, Ampere+ GPUs).
* **Cache**: with ``cache_dir``, vectors are looked up and stored by text hash
  in :class:`recsys_utils.embedding_cache.EmbeddingCache`, keyed by
  :attr:`TextEncoder.cache_key`; a re-run encodes nothing twice and an
  interrupted run resumes where it stopped.
* **Export**: :mod:`recsys_utils.encoder_export` writes the encoder as a TF
  SavedModel for tf-keras (Keras 2) and TensorFlow Recommenders.

Import ``recsys_utils`` before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .bert_checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_bert
from .embedding_cache import CACHE_FORMAT, EmbeddingCache, text_key
from .schema import DataError, as_string_list
from .sentence_pooling import POOLINGS, sentence_vectors

PRECISIONS = ("float32", "bfloat16", "auto")


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
            to cosine >= 0.9999; on the project's 2-core AVX512-BF16 CPUs they
            ran 1.3-2x faster than float32 (``benchmarks/bench_text.py``,
            ``bench_peers.py``; noisy). float32 compiles with XLA.
        batch_size: default texts per forward pass for :meth:`encode`.
        pad_multiple: dynamic padding rounds each batch up to a multiple of this.

    Attributes:
        model_id: identifies the weights (part of the cache key).
        dim: embedding width (384 for MiniLM).
        precision: the resolved precision (never ``"auto"``).
        tokenizer, backbone: the keras-hub layers. :meth:`tokenize` runs the checkpoint's
            ``tokenizer.json`` through Hugging Face ``tokenizers`` (Rust, the same ids, ~25x
            faster) when the checkpoint has one; the keras-hub tokenizer runs in graphs
            (:meth:`strings_to_vectors`, the exports) and for other checkpoints.

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
        bert = load_bert(checkpoint,
                         dtype="mixed_bfloat16" if self.precision == "bfloat16" else "float32")
        self.tokenizer, self.backbone = bert.tokenizer, bert.backbone
        self.model_id, self.source = bert.model_id, bert.source
        self.max_length = int(min(max_length, self.backbone.max_sequence_length))
        self.dim = int(self.backbone.hidden_dim)
        self.cls_id = int(self.tokenizer.cls_token_id)
        self.sep_id = int(self.tokenizer.sep_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self._fast_tokenizer = _fast_tokenizer(bert.source, self.max_length)
        self._build_functions()

    # -- graph functions ------------------------------------------------------

    def _build_functions(self) -> None:
        import tensorflow as tf

        ids_spec = tf.TensorSpec([None, None], tf.int32)
        # Unknown dims: one trace serves every (batch, length) that dynamic padding makes.
        # float32 compiles with XLA (one program per padded shape, few with pad_multiple):
        # ~1.2x the forward throughput here; bfloat16 stays on oneDNN, which XLA slowed.
        self._forward = tf.function(self.embed_tokens, input_signature=[ids_spec, ids_spec],
                                    jit_compile=self.precision == "float32")
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
        the token-id export that :mod:`recsys_utils.token_encoder` writes for TFLite.
        """
        import tensorflow as tf

        out = self.backbone({"token_ids": token_ids, "padding_mask": padding_mask,
                             "segment_ids": tf.zeros_like(token_ids)}, training=False)
        return sentence_vectors(out["sequence_output"], padding_mask, self.pooling)

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
        if self._fast_tokenizer is not None:
            return [np.asarray(e.ids, np.int32)
                    for e in self._fast_tokenizer.encode_batch(list(texts))]
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
        of :mod:`recsys_utils.token_encoder`, can run these batches.

        Yields:
            ``(rows, token_ids, padding_mask)``: ``rows`` ``(b,)`` int64
            positions in ``texts``; ``token_ids`` and ``padding_mask`` ``(b, L)``
            int32 (``L`` <= ``max_length``, pad id where the mask is 0).
        """
        batch_size = int(batch_size or self.batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not len(texts):
            return
        tokens = self.tokenize(list(texts))
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        order = (np.argsort(-lengths, kind="stable") if bucketing
                 else np.arange(len(tokens), dtype=np.int64))
        multiple = self.pad_multiple
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = self.max_length
            if bucketing:  # the batch's longest text, rounded up to the multiple
                width = min(-(-int(lengths[rows].max()) // multiple) * multiple, width)
            ids = np.full((len(rows), width), self.pad_id, np.int32)
            mask = np.zeros((len(rows), width), np.int32)
            for j, i in enumerate(rows):
                ids[j, :lengths[i]] = tokens[i]
                mask[j, :lengths[i]] = 1
            yield rows, ids, mask

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
            progress: show progress (:mod:`recsys_utils.progress`: a summary line
                in executed notebooks, a live bar in a terminal or JupyterLab).
            chunk_size: texts per cache shard (whole batches: a shard holds
                the first batches that reach it); an interrupted run loses at
                most one chunk of work.
        """
        texts = as_string_list(texts, source="texts")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [text_key(t) for t in texts]
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)

        cache = EmbeddingCache(cache_dir, self.cache_key) if cache_dir is not None else None
        known = cache.lookup(first) if cache is not None else {}
        todo = [k for k in first if k not in known]
        vectors: dict[str, np.ndarray] = dict(known)
        if todo:
            from .progress import track

            pending_keys: list[str] = []
            pending: list[np.ndarray] = []

            def store() -> None:
                chunk = np.concatenate(pending)
                if cache is not None:
                    cache.write(pending_keys, chunk)
                vectors.update(zip(pending_keys, chunk))
                pending_keys.clear()
                pending.clear()

            with track(total=len(todo), desc=f"encoding ({self.precision})", unit="text",
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
        return {"format": CACHE_FORMAT, "model_id": self.model_id, "max_length": self.max_length,
                "pooling": self.pooling, "precision": self.precision}

    def __repr__(self) -> str:
        return (f"TextEncoder(model_id={self.model_id!r}, dim={self.dim}, max_length={self.max_length}, "
                f"pooling={self.pooling!r}, precision={self.precision!r})")


def load_text_encoder(checkpoint: str | Path | None = None, **kwargs: Any) -> TextEncoder:
    """Build a :class:`TextEncoder`; ``kwargs`` are its options (e.g. ``**profile.text``)."""
    return TextEncoder(checkpoint, **kwargs)


def _fast_tokenizer(source: str, max_length: int) -> Any:
    """The checkpoint directory's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` that adds
    [CLS] / [SEP] and truncates to ``max_length`` ids, or ``None`` (a preset name, no file)."""
    path = Path(source) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


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


# CheckpointError and DEFAULT_CHECKPOINT belong to the encoder's interface (what
# its constructor raises and accepts); they are defined in bert_checkpoint.
__all__ = ["DEFAULT_CHECKPOINT", "POOLINGS", "PRECISIONS", "CheckpointError", "TextEncoder",
           "load_text_encoder"]
