"""What do embeddings know? Linear probes and nearest-neighbour tables. A linear probe's held-out
accuracy from few labelled examples per class shows what pretraining brings: a sentence encoder
places "crimson" near "red"; TF-IDF must see both."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse

from .metrics import brute_force_top_k
from .schema import DataError


def tfidf_features(texts: Sequence[str]) -> scipy.sparse.csr_matrix:
    """TF-IDF of words and bigrams (at most 20,000 terms), L2-normalised rows, the lexical
    baseline: ``(len(texts), n_terms)`` float32 CSR, which :func:`linear_probe` takes."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, max_features=20_000,
                                 sublinear_tf=True, dtype=np.float32)
    return vectorizer.fit_transform(list(texts)).tocsr()


def probe_split(labels: Sequence[str], *, shots: int | None, seed: int,
                test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices: a ``test_fraction`` of each class is held out, the rest
    (or at most ``shots`` per class) trains. Classes of fewer than 2 are left out."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        if len(members) < 2:
            continue
        n_test = max(1, int(round(test_fraction * len(members))))
        test.extend(members[:n_test])
        pool = members[n_test:]
        train.extend(pool if shots is None else pool[:shots])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(test, dtype=int))


def linear_probe(features: np.ndarray, labels: Sequence[str], *, shots: int | None = None,
                 seed: int = 0) -> dict[str, float]:
    """Held-out accuracy of a logistic regression from ``(n, d)`` ``features`` (dense or sparse) to
    ``n`` ``labels``, trained on ``shots`` per class (``None``: all but the held-out 30%):
    ``{"accuracy", "majority_accuracy" (the floor to beat), "n_train", "n_test", "n_classes"}``."""
    from sklearn.linear_model import LogisticRegression

    if not hasattr(features, "tocsr"):  # keep sparse TF-IDF sparse: dense would be slow
        features = np.asarray(features)
    labels = np.asarray(labels).astype(str)
    if features.shape[0] != len(labels):
        raise DataError(f"features have {features.shape[0]} rows but labels {len(labels)}")
    train, test = probe_split(labels, shots=shots, seed=seed)
    if len(np.unique(labels[train])) < 2:
        raise DataError("a probe needs at least two classes with two examples each")
    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(features[train], labels[train])
    accuracy = float((model.predict(features[test]) == labels[test]).mean())
    values, counts = np.unique(labels[train], return_counts=True)
    majority = float((labels[test] == values[np.argmax(counts)]).mean())
    return {"accuracy": accuracy, "majority_accuracy": majority, "n_train": int(len(train)),
            "n_test": int(len(test)), "n_classes": int(len(values))}


def nearest_items(query_vectors: np.ndarray, item_vectors: np.ndarray, items: pd.DataFrame, *,
                  k: int = 5, query_labels: Sequence[str] | None = None,
                  exclude_index: Sequence[int] | None = None,
                  columns: Sequence[str] = ("title",)) -> pd.DataFrame:
    """The ``k`` nearest items (dot product) of each ``(q, d)`` query vector among
    ``(n, d)`` ``item_vectors`` (rows of ``items``), leaving out ``exclude_index[i]`` for
    query ``i`` (e.g. the item itself). One row per (query, rank): ``query`` (its label in
    ``query_labels``, default its position), ``rank``, ``score``, ``item_id``, ``columns``.
    """
    exclude = None
    if exclude_index is not None:
        exclude = np.zeros((len(query_vectors), len(item_vectors)), dtype=bool)
        exclude[np.arange(len(query_vectors)), np.asarray(exclude_index)] = True
    indices, scores = brute_force_top_k(np.asarray(query_vectors, dtype=np.float32),
                                        np.asarray(item_vectors, dtype=np.float32), k,
                                        exclude=exclude)
    labels = list(map(str, range(len(query_vectors))) if query_labels is None else query_labels)
    picked = items.iloc[indices.ravel()]
    return pd.DataFrame({"query": [labels[q] for q in range(len(indices)) for _ in range(k)],
                         "rank": np.tile(np.arange(1, k + 1), len(indices)),
                         "score": [round(float(s), 3) for s in scores.ravel()],
                         **{c: picked[c].to_list() for c in ("item_id", *columns)}})


def probe_columns(prepared_columns: Sequence[str], truth_columns: Sequence[str]) -> list[str]:
    """The category plus the planted truth where there is one (what text must
    *understand*), else plus the structured attributes."""
    return ["category", *(truth_columns or prepared_columns)]


def compare_probes(feature_sets: dict[str, np.ndarray], items: pd.DataFrame,
                   columns: Sequence[str], *, shots: Sequence[int | None] = (5, None),
                   seed: int = 0) -> pd.DataFrame:
    """Linear-probe accuracy of each feature set (name -> ``(n_items, d)``, rows aligned
    with ``items``) on each label column, one row per (column, ``shots``) with the
    majority-class floor. Columns without two classes of two items are skipped."""
    rows = []
    for column in columns:
        labels = items[column].astype(str).to_numpy()
        for n_shots in shots:
            shown = "all" if n_shots is None else f"{n_shots} per class"
            row: dict[str, object] = {"label": column, "train examples": shown}
            try:
                for name, features in feature_sets.items():
                    result = linear_probe(features, labels, shots=n_shots, seed=seed)
                    row[name] = round(result["accuracy"], 3)
                row["majority class"] = round(result["majority_accuracy"], 3)
                row["classes"] = result["n_classes"]
            except DataError:
                continue
            rows.append(row)
    return pd.DataFrame(rows)
