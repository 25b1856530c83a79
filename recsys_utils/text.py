"""The sentence encoder: texts -> unit-length float32 vectors with a BERT on keras-hub (Keras 3).

One encoder embeds item texts and search queries into the same space::

    encoder = text.load_text_encoder(**profile.text)      # offline MiniLM by default
    item_vecs = encoder.encode(item_texts, cache_dir=run.cache_dir / "text")  # (n_items, 384)
    scores = encoder.encode(query_texts) @ item_vecs.T    # cosine similarity

Import ``recsys_utils`` before TensorFlow (it sets ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

import collections
import types
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf  # already loaded by sentence_pooling

from .bert_checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_bert
from .embedding_cache import CACHE_FORMAT, EmbeddingCache, text_key
from .progress import track
from .schema import DataError, as_string_list
from .sentence_pooling import POOLINGS, sentence_vectors

PRECISIONS = ("float32", "bfloat16", "auto")
#: Version of the forward pass, part of the cache key (2: bfloat16 weights, fused feed-forward;
#: 3: float32 fused feed-forward instead of XLA).
FORWARD_VERSION = 3


class TextEncoder:
    """BERT tokenizer + backbone (keras-hub, Keras 3) producing sentence vectors.

    Args:
        checkpoint: directory, keras-hub preset name, or ``None`` (bundled offline MiniLM).
        max_length: tokens per text including ``[CLS]``/``[SEP]``; longer texts are
            truncated (the checkpoint was trained at 128).
        pooling: ``"mean"`` (masked mean, the checkpoint's convention) or ``"cls"``.
        precision: ``"float32"``, ``"bfloat16"`` (weights and compute in bfloat16, layer
            norms and pooling in float32) or ``"auto"``: bfloat16 where the
            hardware has native bf16 (AVX512-BF16/AMX CPUs, Ampere+ GPUs). bfloat16 vectors
            agree with float32 to cosine >= 0.999 (0.99992 on ``bench_text.py``'s texts).
        batch_size: default texts per forward pass for :meth:`encode`.
        pad_multiple: dynamic padding rounds each batch up to a multiple of this.

    In both precisions each feed-forward block runs as one fused oneDNN kernel
    (:func:`flatten_feedforward`).

    Has ``model_id`` (part of the cache key), ``dim``, the resolved ``precision``, keras-hub
    ``tokenizer`` and ``backbone``; raises :class:`CheckpointError` if the checkpoint does not
    load. :meth:`tokenize` runs the checkpoint's ``tokenizer.json`` by Hugging Face
    ``tokenizers`` if it has one (same ids, ~25x faster than the graph tokenizer).
    """

    def __init__(self, checkpoint: str | Path | None = None, *, max_length: int = 128,
                 pooling: str = "mean", precision: str = "auto", batch_size: int = 64,
                 pad_multiple: int = 8) -> None:
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
        bert = load_bert(checkpoint, dtype=self.precision)
        self.tokenizer, self.backbone = bert.tokenizer, bert.backbone
        flatten_feedforward(self.backbone)
        self.model_id, self.source = bert.model_id, bert.source
        self.max_length = int(min(max_length, self.backbone.max_sequence_length))
        self.dim = int(self.backbone.hidden_dim)
        self.cls_id = int(self.tokenizer.cls_token_id)
        self.sep_id = int(self.tokenizer.sep_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self._fast_tokenizer = _fast_tokenizer(bert.source, self.max_length)
        ids_spec = tf.TensorSpec([None, None], tf.int32)
        # Unknown dims: one trace serves every (batch, length) that dynamic padding makes.
        # No XLA: on the fused feed-forward it ran float32 at the same rate (343 vs 337
        # items/s on bench_text.py's texts) but compiled one program per padded shape, 13 s
        # before the first 1,000 texts came out; it slowed bfloat16.
        self._forward = tf.function(self.embed_tokens, input_signature=[ids_spec, ids_spec])
        self._tokenize_fn = tf.function(self._tokenize_graph,
                                        input_signature=[tf.TensorSpec([None], tf.string)])

    def _tokenize_graph(self, strings):
        """(batch,) tf.string -> RaggedTensor (batch, None) int32 with [CLS] ... [SEP]."""
        ids = self.tokenizer(strings)
        if not isinstance(ids, tf.RaggedTensor):  # a fixed-length tokenizer config
            ids = tf.RaggedTensor.from_tensor(ids, padding=self.pad_id)
        ids = tf.cast(ids[:, : self.max_length - 2], tf.int32)
        cls, sep = (tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], token))
                    for token in (self.cls_id, self.sep_id))
        return tf.concat([cls, ids, sep], axis=1)

    def embed_tokens(self, token_ids, padding_mask):
        """(batch, length) int32 ids and mask -> (batch, dim) float32, unit L2 norm: the graph
        of :meth:`encode`, the string SavedModel and :mod:`recsys_utils.token_encoder`."""
        out = self.backbone({"token_ids": token_ids, "padding_mask": padding_mask,
                             "segment_ids": tf.zeros_like(token_ids)}, training=False)
        return sentence_vectors(out["sequence_output"], padding_mask, self.pooling)

    def strings_to_vectors(self, strings):
        """(batch,) tf.string -> (batch, dim) float32, padded to the batch's longest text."""
        ids = self._tokenize_graph(strings)
        token_ids = ids.to_tensor(default_value=self.pad_id)
        padding_mask = tf.sequence_mask(ids.row_lengths(), tf.shape(token_ids)[1])
        return self.embed_tokens(token_ids, tf.cast(padding_mask, tf.int32))

    def tokenize(self, texts: Sequence[str], chunk: int = 4096) -> list[np.ndarray]:
        """Token ids per text, ``[CLS] ... [SEP]``, truncated to ``max_length``; int32 arrays."""
        if self._fast_tokenizer is not None:
            return [np.asarray(e.ids, np.int32)
                    for e in self._fast_tokenizer.encode_batch(list(texts))]
        out: list[np.ndarray] = []
        for start in range(0, len(texts), chunk):
            ragged = self._tokenize_fn(tf.constant(list(texts[start:start + chunk]), tf.string))
            flat = ragged.flat_values.numpy()
            out.extend(flat[a:b] for a, b in pairwise(ragged.row_splits.numpy()))
        return out

    def _encode_batch(self, token_ids: np.ndarray, padding_mask: np.ndarray) -> np.ndarray:
        """One forward pass: (b, L) int32, (b, L) int32 -> (b, dim) float32."""
        return self._forward(token_ids, padding_mask).numpy()

    def batches(self, texts: Sequence[str], *, batch_size: int | None = None,
                bucketing: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The padded model inputs of ``texts``, batch by batch, as :meth:`encode` runs them.

        Bucketed: texts sorted longest first (so a progress bar's rate is honest early),
        each batch padded to its longest text rounded up to ``pad_multiple``. Else:
        texts in the given order, padded to ``max_length``. Repeats are not merged.

        Yields ``(rows, token_ids, padding_mask)``: ``rows`` ``(b,)`` int64 positions in
        ``texts``; ids and mask ``(b, L)`` int32, ``L <= max_length``, pad id where mask is 0.
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
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = self.max_length
            if bucketing:  # the batch's longest text, rounded up to the multiple
                m = self.pad_multiple
                width = min(-(-int(lengths[rows].max()) // m) * m, width)
            ids = np.full((len(rows), width), self.pad_id, np.int32)
            mask = np.zeros((len(rows), width), np.int32)
            for j, i in enumerate(rows):
                ids[j, :lengths[i]] = tokens[i]
                mask[j, :lengths[i]] = 1
            yield rows, ids, mask

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None,
               bucketing: bool = True, cache_dir: str | Path | None = None,
               progress: bool = True, chunk_size: int = 2048, in_flight: int = 2) -> np.ndarray:
        """Embed texts; shape ``(len(texts), dim)`` float32, rows L2-normalised, in input order.

        The distinct texts not in the cache at ``cache_dir`` (``None``: no cache) run as
        :meth:`batches` of ``batch_size`` (default: the encoder's), ``in_flight`` forward
        passes at once (:meth:`forward_in_order`; the vectors do not depend on it).
        ``chunk_size``: texts per cache shard (whole batches), at most the work an
        interruption loses.
        """
        if in_flight < 1:
            raise DataError(f"in_flight must be >= 1, got {in_flight}")
        texts = as_string_list(texts, source="texts")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts))  # first-seen order
        cache = EmbeddingCache(cache_dir, self.cache_key) if cache_dir is not None else None
        vectors: dict[str, np.ndarray] = cache.lookup(unique) if cache is not None else {}
        todo = [k for k in unique if k not in vectors]
        if todo:
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
                batches = self.batches([unique[k] for k in todo], batch_size=batch_size,
                                       bucketing=bucketing)
                for rows, batch_vectors in self.forward_in_order(batches, in_flight):
                    pending.append(batch_vectors)
                    pending_keys.extend(todo[i] for i in rows)
                    bar.update(len(rows))
                    if len(pending_keys) >= chunk_size:
                        store()
                if pending:
                    store()
        return np.array([vectors[k] for k in keys], dtype=np.float32)

    def forward_in_order(self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                         in_flight: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(rows, vectors)`` for each of :meth:`batches`, in their order, with up to
        ``in_flight`` forward passes running at once in threads (TensorFlow computes without
        the GIL). Two passes side by side keep two cores busy through the small ops between
        the matrix multiplies: ``bench_text.py``'s texts on a 2-core CPU, about 20% more
        texts/s in bfloat16 and 10% in float32, the same vectors to the bit."""
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            running: collections.deque = collections.deque()
            for rows, ids, mask in batches:
                running.append((rows, pool.submit(self._encode_batch, ids, mask)))
                if len(running) >= in_flight:  # wait for the oldest pass, the others run on
                    oldest_rows, future = running.popleft()
                    yield oldest_rows, future.result()
            for oldest_rows, future in running:
                yield oldest_rows, future.result()

    @property
    def cache_key(self) -> dict[str, Any]:
        """Everything that changes a vector for a given text."""
        return {"format": CACHE_FORMAT, "forward": FORWARD_VERSION, "model_id": self.model_id,
                "max_length": self.max_length, "pooling": self.pooling,
                "precision": self.precision}

    def __repr__(self) -> str:
        return (f"TextEncoder(model_id={self.model_id!r}, dim={self.dim}, "
                f"max_length={self.max_length}, pooling={self.pooling!r}, "
                f"precision={self.precision!r})")


def flatten_feedforward(backbone: Any) -> None:
    """Call each transformer layer's feed-forward ``Dense`` layers on 2-D rows, in place.

    Keras runs a ``Dense`` on ``(batch, tokens, d)`` as a tensordot (reshape, matmul,
    reshape) and then adds the bias and applies GELU, which hides the matmul + bias + GELU
    pattern from grappler's oneDNN remapper: in bfloat16 the GELU's seven element-wise ops
    took more time than the matmuls. On ``(batch * tokens, d)`` rows the same weights and
    formula become one fused kernel (``bench_text.py``'s texts: 512 vs 405 items/s with
    Keras' ``mixed_bfloat16`` policy, cosine 0.99992 to float32). XLA, which fuses too,
    made bfloat16 slower.
    """
    def flat_call(self: Any, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
        rows = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), self.kernel)
        if self.bias is not None:
            rows = tf.nn.bias_add(rows, self.bias)
        rows = self.activation(rows)  # keras' "linear" when there is none
        return tf.reshape(rows, tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))

    for layer in backbone.transformer_layers:
        for dense in (layer._feedforward_intermediate_dense, layer._feedforward_output_dense):
            dense.call = types.MethodType(flat_call, dense)


def load_text_encoder(checkpoint: str | Path | None = None, **kwargs: Any) -> TextEncoder:
    """Build a :class:`TextEncoder`; ``kwargs`` are its options (e.g. ``**profile.text``)."""
    return TextEncoder(checkpoint, **kwargs)


def _fast_tokenizer(source: str, max_length: int) -> Any:
    """``source``'s ``tokenizer.json`` as a ``tokenizers.Tokenizer`` adding [CLS]/[SEP] and
    truncating to ``max_length`` ids, or ``None`` (a preset name, no file)."""
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
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        return "bfloat16" if capability and capability >= (8, 0) else "float32"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


# CheckpointError and DEFAULT_CHECKPOINT are part of the encoder's interface.
__all__ = ["DEFAULT_CHECKPOINT", "POOLINGS", "PRECISIONS", "CheckpointError", "TextEncoder",
           "flatten_feedforward", "load_text_encoder"]
