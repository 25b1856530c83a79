"""BM25, the lexical baseline of product search (notebook 07), and the tokenizer it reads with.

Okapi BM25 over the same item text the encoder reads
(:func:`recsys_utils.item_text.item_text`), in numpy/scipy sparse matrices, behind
the :class:`recsys_utils.searcher.Searcher` interface::

    bm25 = BM25().fit(item_texts)               # one text per item, items-table order
    indices, scores = bm25.search(queries, k=100)   # (n_queries, 100) each
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import scipy.sparse

from . import metrics
from .schema import DataError
from .searcher import check_k, check_queries, pad_results

__all__ = ["BM25", "tokenize"]

_WORD = re.compile(r"\w+")


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
    """Lower-cased Unicode word tokens (NFKC), plural-stemmed by default.

    ``"Women's Navy-Blue Shirts"`` -> ``["women", "s", "navy", "blue", "shirt"]``.
    """
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return [_s_stem(w) for w in words] if stem else words


class BM25:
    """Okapi BM25 over a fixed catalogue, with sparse matrices.

    For a query ``q`` and a document ``d`` of length ``|d|`` (tokens),
    ``score(q, d) = Σ_{t in q} idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · (1 - b + b · |d| / avgdl))``
    with ``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))`` (the Lucene
    form, always positive), ``N`` documents and ``avgdl`` their mean length.
    A term repeated in the query counts once per repetition. Only items sharing
    at least one term with the query are returned; the rest of a result row is
    ``-1`` padding.

    Args:
        k1: term-frequency saturation (1.2-2.0 usual).
        b: length normalisation (0 = none, 1 = full).
        stem: plural stemming in :func:`tokenize`.
    """

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, *, stem: bool = True) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise DataError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.stem = float(k1), float(b), stem
        self.vocabulary: dict[str, int] = {}
        self.weights: scipy.sparse.csr_matrix | None = None  # (n_items, n_terms)
        self.idf = np.zeros(0)  # (n_terms,)
        self.n_items = 0

    def _counts(self, texts: Sequence[str], grow: bool) -> scipy.sparse.csr_matrix:
        """``(len(texts), n_terms)`` term counts; ``grow`` adds unseen terms to the vocabulary."""
        rows, cols = [], []
        for r, doc in enumerate(texts):
            for token in tokenize(doc, stem=self.stem):
                col = self.vocabulary.get(token)
                if col is None:
                    if not grow:
                        continue  # a query word no item has: contributes nothing
                    col = self.vocabulary[token] = len(self.vocabulary)
                rows.append(r)
                cols.append(col)
        shape = (len(texts), len(self.vocabulary))
        data = np.ones(len(rows), np.float64)
        matrix = scipy.sparse.csr_matrix((data, (rows, cols)), shape=shape)
        matrix.sum_duplicates()
        return matrix

    def fit(self, items_text: Sequence[str]) -> BM25:
        """Index the catalogue: one text per item, in items-table order."""
        items_text = check_queries(items_text)
        if not items_text:
            raise DataError("BM25.fit needs at least one item text")
        self.vocabulary = {}
        tf_ = self._counts(items_text, grow=True)
        n = tf_.shape[0]
        lengths = np.asarray(tf_.sum(axis=1)).ravel()
        avgdl = max(lengths.mean(), 1e-9)
        df = np.bincount(tf_.indices, minlength=tf_.shape[1])
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))
        # Per stored (item, term) entry: its row's length normaliser and its term's idf, so a
        # query's scores are one sparse product with the query's term counts.
        norm = self.k1 * (1 - self.b + self.b * lengths / avgdl)
        row_of = np.repeat(np.arange(n), np.diff(tf_.indptr))
        tf_vals = tf_.data
        values = self.idf[tf_.indices] * tf_vals * (self.k1 + 1) / (tf_vals + norm[row_of])
        self.weights = scipy.sparse.csr_matrix((values, tf_.indices, tf_.indptr), shape=tf_.shape)
        self.n_items = n
        return self

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense ``(n_queries, n_items)`` BM25 scores (for small catalogues and tests)."""
        self._require_fit()
        q = self._counts(check_queries(queries), grow=False)
        return np.asarray((q @ self.weights.T).todense(), dtype=np.float64)

    def _require_fit(self) -> None:
        if self.weights is None:
            raise DataError("BM25 is not fitted: call fit(items_text) first")

    def search(self, queries: Sequence[str], k: int, *, batch_size: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` matching items per query: ``(indices (n, k) int64, scores (n, k) float32)``."""
        self._require_fit()
        k = check_k(k)
        queries = check_queries(queries)
        q = self._counts(queries, grow=False)
        kk = min(k, self.n_items)
        out_i = np.full((len(queries), kk), -1, np.int64)
        out_s = np.full((len(queries), kk), -np.inf, np.float32)
        weights_t = self.weights.T.tocsc()
        # In batches: a dense (batch, n_items) score block at a time bounds the memory.
        for start in range(0, len(queries), batch_size):
            block = np.asarray((q[start:start + batch_size] @ weights_t).todense(), np.float32)
            if not len(block):
                continue
            idx = metrics.top_k(block, kk)
            val = np.take_along_axis(block, idx, axis=1)
            matched = val > 0  # idf > 0, so a shared term always gives a positive score
            out_i[start:start + len(block)] = np.where(matched, idx, -1)
            out_s[start:start + len(block)] = np.where(matched, val, -np.inf)
        return pad_results(out_i, out_s, k)
