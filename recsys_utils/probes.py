"""What do embeddings know? Linear probes and nearest-neighbour tables. A linear probe's held-out
accuracy from few labelled examples per class shows what pretraining brings: a sentence encoder
places "crimson" near "red"; TF-IDF must see both."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.stats

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
    ``{"accuracy", "majority_accuracy" (the floor to beat), "n_train", "n_test", "n_classes",
    "held_out", "correct"}``: the held-out rows ``(n_test,)`` and whether each was predicted
    right."""
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
    correct = model.predict(features[test]) == labels[test]
    values, counts = np.unique(labels[train], return_counts=True)
    majority = float((labels[test] == values[np.argmax(counts)]).mean())
    return {"accuracy": float(correct.mean()), "majority_accuracy": majority,
            "n_train": int(len(train)), "n_test": int(len(test)), "n_classes": int(len(values)),
            "held_out": test, "correct": correct}


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


@dataclasses.dataclass
class ProbeComparison:
    """What :func:`compare_probes` measured: ``table``, one row per (label, regime) with each
    feature set's accuracy (few-shot rows: the mean over ``draws`` seeded draws) and the
    majority-class floor; per draw, the held-out rows ``held_out[(label, regime)]`` (the same
    for every feature set) and ``correct[(label, regime, name)]``, whether each was right."""

    table: pd.DataFrame
    held_out: dict[tuple[str, str], list[np.ndarray]]
    correct: dict[tuple[str, str, str], list[np.ndarray]]

    def difference(self, a: str, b: str, regime: str, *, n_boot: int = 2000,
                   seed: int = 0) -> dict[str, Any]:
        """Feature set ``a`` against ``b`` in ``regime`` (a ``train examples`` value): the mean
        over labels of the accuracy difference, with a 95% interval. Several draws (few-shot):
        a t interval over the draws' differences, as most of the noise is which examples were
        drawn; one draw: a percentile bootstrap that resamples the held-out items, each item's
        weight shared by every label it is held out for (the labels' accuracies are correlated).

        Returns :func:`metrics.paired_difference`'s keys, split ``"probe, <regime>"``,
        ``n_queries`` the distinct items held out (in the first draw), and ``draws``."""
        labels = self.table.loc[self.table["train examples"] == regime, "label"].tolist()
        if not labels:
            raise DataError(f"no probe row has train examples {regime!r}")
        per_draw = [np.array([[self.correct[(label, regime, name)][d].mean() for label in labels]
                              for name in (a, b)])
                    for d in range(len(self.correct[(labels[0], regime, a)]))]  # (2, labels)
        value_a, value_b = np.mean([draw.mean(axis=1) for draw in per_draw], axis=0)
        differences = np.array([draw[0].mean() - draw[1].mean() for draw in per_draw])
        if len(differences) > 1:
            half = (scipy.stats.t.ppf(0.975, len(differences) - 1)
                    * differences.std(ddof=1) / np.sqrt(len(differences)))
            low, high = differences.mean() - half, differences.mean() + half
        else:
            low, high = self._item_bootstrap(a, b, regime, labels, n_boot, seed)
        n_items = len(np.unique(np.concatenate([self.held_out[(label, regime)][0]
                                                for label in labels])))
        return {"a": a, "b": b, "split": f"probe, {regime}", "metric": "accuracy",
                "value_a": float(value_a), "value_b": float(value_b),
                "difference": float(differences.mean()), "low": float(low), "high": float(high),
                "n_queries": int(n_items), "draws": len(differences)}

    def _item_bootstrap(self, a: str, b: str, regime: str, labels: list[str], n_boot: int,
                        seed: int) -> tuple[float, float]:
        """95% percentile interval of the mean over ``labels`` of ``a``'s accuracy minus
        ``b``'s, resampling the distinct held-out items of the first draw with replacement."""
        rows = [self.held_out[(label, regime)][0] for label in labels]
        gaps = [self.correct[(label, regime, a)][0].astype(float)
                - self.correct[(label, regime, b)][0] for label in labels]
        items = np.unique(np.concatenate(rows))
        positions = [np.searchsorted(items, r) for r in rows]
        rng = np.random.default_rng(seed)
        replicates, batch = [], max(1, 2**22 // len(items))
        for start in range(0, n_boot, batch):
            size = min(batch, n_boot - start)
            counts = rng.multinomial(len(items), np.full(len(items), 1 / len(items)), size=size)
            per_label = [(counts[:, pos] @ gap) / np.maximum(counts[:, pos].sum(axis=1), 1)
                         for pos, gap in zip(positions, gaps)]
            replicates.append(np.mean(per_label, axis=0))
        low, high = np.percentile(np.concatenate(replicates), [2.5, 97.5])
        return float(low), float(high)


def compare_probes(feature_sets: dict[str, np.ndarray], items: pd.DataFrame,
                   columns: Sequence[str], *, shots: Sequence[int | None] = (5, None),
                   seed: int = 0, draws: int = 1) -> ProbeComparison:
    """Linear-probe accuracy of each feature set (name -> ``(n_items, d)``, rows aligned
    with ``items``) on each label column, one row per (column, ``shots``) with the
    majority-class floor. A few-shot regime is probed ``draws`` times (seeds ``seed``,
    ``seed + 1``, ...: other examples drawn, other items held out) and averaged; ``None``
    (all labels) once. Columns without two classes of two items are skipped."""
    if draws < 1:
        raise DataError(f"draws must be at least 1, got {draws}")
    rows, held_out, correct = [], {}, {}
    for column in columns:
        labels = items[column].astype(str).to_numpy()
        for n_shots in shots:
            shown = "all" if n_shots is None else f"{n_shots} per class"
            row: dict[str, object] = {"label": column, "train examples": shown}
            try:
                for name, features in feature_sets.items():
                    results = [linear_probe(features, labels, shots=n_shots, seed=seed + draw)
                               for draw in range(1 if n_shots is None else draws)]
                    row[name] = round(float(np.mean([r["accuracy"] for r in results])), 3)
                    correct[(column, shown, name)] = [r["correct"] for r in results]
                held_out[(column, shown)] = [r["held_out"] for r in results]
                row["majority class"] = round(float(np.mean(
                    [r["majority_accuracy"] for r in results])), 3)
                row["classes"] = results[0]["n_classes"]
            except DataError:
                continue
            rows.append(row)
    return ProbeComparison(pd.DataFrame(rows), held_out, correct)
