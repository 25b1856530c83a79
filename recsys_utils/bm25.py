"""BM25, the lexical baseline of product search (notebook 07), and the tokenizer it reads with:
Okapi BM25 by `bm25s <https://github.com/xhluca/bm25s>`_ over the item text the encoder reads,
tokenised by :func:`tokenize`, as a :class:`recsys_utils.searcher.Searcher`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import scipy.sparse

from . import metrics
from .schema import DataError
from .searcher import check_k, check_queries, empty_results, pad_results

__all__ = ["BM25", "BACKENDS", "tokenize"]

_WORD = re.compile(r"\w+")

#: ``search`` backends: ``"numba"`` is bm25s's compiled retrieval (seconds of JIT once per
#: process, then fast), ``"numpy"`` one sparse product per batch of queries, ``"auto"``
#: numba once it is compiled or when a call is big enough to pay for compiling it.
BACKENDS = ("auto", "numba", "numpy")

#: ``"auto"`` compiles numba for a call of at least this many (query, item) pairs. On 44k
#: titles (2-core CPU) numpy ranks ~6e7 pairs/s, numba ~7x that after a 5-8 s compile; a
#: notebook searches the same queries ~4 times, so compiling pays from ~2e8 pairs a call.
AUTO_NUMBA_PAIRS = 2e8

_NUMBA_READY = False  # numba's retrieval is compiled in this process


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _s_stem(word: str) -> str:
    """Harman's "S" stemmer (1991): plural endings only, e.g. shirts -> shirt, dresses -> dresse."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str, *, stem: bool = True) -> list[str]:
    """Lower-cased NFKC word tokens, plural-stemmed by default: ``"Women's Navy-Blue Shirts"``
    -> ``["women", "s", "navy", "blue", "shirt"]``."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return [_s_stem(w) for w in words] if stem else words


class BM25:
    """Okapi BM25 over a fixed catalogue, indexed and searched by ``bm25s``:
    ``score(q, d) = Σ_{t in q} idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · (1 - b + b ·
    |d| / avgdl))``, ``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))`` (Lucene's, always
    positive): bm25s's ``"lucene"`` scores times ``k1 + 1`` (Robertson's form; no ranking
    changes). A term repeated in the query counts once per repetition. Only items sharing a term
    with the query are returned (the rest of a row is ``-1`` padding); ties go to the lower item
    index, as in :func:`recsys_utils.metrics.top_k`.

    ``k1``: term-frequency saturation (1.2-2.0 usual); ``b``: length normalisation (0 none,
    1 full); ``stem``: as in :func:`tokenize`; ``backend``: how :meth:`search` ranks, one of
    :data:`BACKENDS` (all return the same lists)."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, *, stem: bool = True,
                 backend: str = "auto") -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise DataError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if backend not in BACKENDS:
            raise DataError(f"BM25 backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "numba" and not _numba_available():
            raise DataError("BM25(backend='numba') needs the numba package: pip install numba, "
                            "or use backend='numpy'")
        self.k1, self.b, self.stem, self.backend = float(k1), float(b), stem, backend
        self.vocabulary: dict[str, int] = {}
        self.weights: scipy.sparse.csc_matrix | None = None  # (n_items, n_terms), course scale
        self.n_items = 0
        self._index = None  # the bm25s.BM25 retriever

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids; a word no item has contributes nothing."""
        vocabulary = self.vocabulary
        return [[vocabulary[t] for t in tokenize(text, stem=self.stem) if t in vocabulary]
                for text in texts]

    def fit(self, items_text: Sequence[str]) -> BM25:
        """Index the catalogue: one text per item, in items-table order."""
        import bm25s

        items_text = check_queries(items_text)
        if not items_text:
            raise DataError("BM25.fit needs at least one item text")
        vocabulary: dict[str, int] = {}
        ids = [[vocabulary.setdefault(t, len(vocabulary)) for t in tokenize(text, stem=self.stem)]
               for text in items_text]
        # float64 scores: the course's numbers to ~1e-15; bm25s's default float32 to ~1e-7.
        numba = self.backend != "numpy" and _numba_available()
        index = bm25s.BM25(k1=self.k1, b=self.b, method="lucene", idf_method="lucene",
                           dtype="float64", backend="numba" if numba else "numpy")
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 only when no item has a word
            index.index((ids, vocabulary), create_empty_token=False, show_progress=False)
        self._index, self.vocabulary, self.n_items = index, vocabulary, len(items_text)
        scores = index.scores  # bm25s's (n_items, n_terms) CSC arrays
        self._tie_mask = 1.0 - 1e-9 * np.arange(self.n_items) / self.n_items
        self.weights = scipy.sparse.csc_matrix(
            (scores["data"] * (self.k1 + 1), scores["indices"], scores["indptr"]),
            shape=(self.n_items, len(vocabulary)))
        return self

    def _require_fit(self) -> None:
        if self._index is None:
            raise DataError("BM25 is not fitted: call fit(items_text) first")

    def _counts(self, ids: list[list[int]]) -> scipy.sparse.csr_matrix:
        """``(len(ids), n_terms)`` query term counts."""
        rows = np.repeat(np.arange(len(ids)), [len(q) for q in ids])
        cols = np.fromiter((t for q in ids for t in q), np.int64, count=len(rows))
        return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                       shape=(len(ids), len(self.vocabulary)))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense ``(n_queries, n_items)`` BM25 scores (for small catalogues and tests)."""
        self._require_fit()
        q = self._counts(self._ids(check_queries(queries)))
        return np.asarray((q @ self.weights.T).todense(), dtype=np.float64)

    def _exact_top(self, ids: list[list[int]], k: int, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by sparse products, one dense ``(batch, n_items)`` block at a time (bounded
        memory); ties by lower index."""
        q = self._counts(ids)
        weights_t = self.weights.T.tocsc()
        out_i = np.empty((len(ids), k), np.int64)
        out_s = np.empty((len(ids), k), np.float32)
        for start in range(0, len(ids), batch_size):
            block = np.asarray((q[start:start + batch_size] @ weights_t).todense(), np.float32)
            idx = metrics.top_k(block, k)
            out_i[start:start + len(block)] = idx
            out_s[start:start + len(block)] = np.take_along_axis(block, idx, axis=1)
        return out_i, out_s

    def _numba_top(self, ids: list[list[int]], k: int, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by bm25s's compiled retrieval, ties broken by the lower index.

        bm25s's heap keeps an arbitrary member of a tie, and with duplicate titles ties are the
        rule (~90% of queries on 44k titles tie at rank 100). So it ranks scores times
        ``1 - 1e-9 · i / n_items`` (its ``weight_mask``): ties favour the lower index ``i``, other
        orders are kept, and the unscaled scores are returned."""
        global _NUMBA_READY
        found = self._index.retrieve(ids, k=k, show_progress=False, n_threads=0,
                                     weight_mask=self._tie_mask)
        _NUMBA_READY = True
        idx = np.asarray(found.documents, np.int64)
        val = (np.asarray(found.scores, np.float64) / self._tie_mask[idx] * (self.k1 + 1)
               ).astype(np.float32)
        # float32 like the sparse path, which ranks float32 scores: re-sorted by (score, index).
        order = np.lexsort((idx, -val), axis=1)
        return np.take_along_axis(idx, order, 1), np.take_along_axis(val, order, 1)

    def _use_numba(self, n_queries: int) -> bool:
        if self.backend != "auto":
            return self.backend == "numba"
        return _numba_available() and (_NUMBA_READY or n_queries * self.n_items >= AUTO_NUMBA_PAIRS)

    def search(self, queries: Sequence[str], k: int, *, batch_size: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` matching items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        self._require_fit()
        k = check_k(k)
        ids = self._ids(check_queries(queries))
        kk = min(k, self.n_items)
        out_i, out_s = empty_results(len(ids), kk)
        rows = [r for r, q in enumerate(ids) if q]  # a query with no known word matches nothing
        if rows:
            top = self._numba_top if self._use_numba(len(rows)) else self._exact_top
            idx, val = top([ids[r] for r in rows], kk, batch_size)
            matched = val > 0  # idf > 0, so a shared term always gives a positive score
            out_i[rows] = np.where(matched, idx, -1)
            out_s[rows] = np.where(matched, val, -np.inf)
        return pad_results(out_i, out_s, k)
