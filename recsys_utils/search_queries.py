"""The query sets of product search (notebook 07): the queries, their graded items (generated
for the fashion catalogue, which ships none), their splits and training pairs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .schema import UNKNOWN_VALUES, DataError, require_columns
from .search_eval import RELEVANT_AT

__all__ = ["fashion_queries", "query_gains", "search_queries", "split_queries", "training_pairs"]


def split_queries(queries: pd.DataFrame, seed: int,
                  fractions: Sequence[float] = (0.5, 0.25, 0.25)) -> np.ndarray:
    """Split names (``train`` / ``validation`` / ``test``) aligned with ``queries``: each
    ``kind``'s queries permuted (deterministic in ``seed``) and cut by ``fractions``."""
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise DataError(f"fractions must be three shares summing to 1, got {fractions}")
    kinds = queries["kind"].astype(str).to_numpy() if "kind" in queries else np.full(len(queries), "all")
    rng = np.random.default_rng([int(seed), 808])
    out = np.empty(len(queries), dtype=object)
    for kind in sorted(set(kinds)):
        rows = rng.permutation(np.flatnonzero(kinds == kind))
        cuts = np.cumsum([round(fractions[0] * len(rows)), round(fractions[1] * len(rows))])
        for name, part in zip(("train", "validation", "test"), np.split(rows, cuts)):
            out[part] = name
    return out.astype(str)


def query_gains(queries: pd.DataFrame, judgements: pd.DataFrame, items: pd.DataFrame
                ) -> list[dict[int, float]]:
    """Per query (in ``queries`` order) ``{item row in items: relevance}``; ``{}`` if unjudged."""
    require_columns(judgements, ["query_id", "item_id", "relevance"], source="judgements")
    row = pd.Series(np.arange(len(items)), index=items["item_id"].astype(str))
    known = judgements["item_id"].astype(str).isin(row.index)
    if not known.all():
        raise DataError(f"{int((~known).sum())} judgement(s) name items that are not in the "
                        "items table", source="judgements", column="item_id")
    j = judgements.assign(row=row.loc[judgements["item_id"].astype(str)].to_numpy())
    grouped = {qid: dict(zip(g["row"].tolist(), g["relevance"].astype(float).tolist()))
               for qid, g in j.groupby("query_id", sort=False)}
    return [grouped.get(str(qid), {}) for qid in queries["query_id"]]


def training_pairs(gains: Sequence[Mapping[int, float]], min_relevance: float = RELEVANT_AT
                   ) -> pd.DataFrame:
    """The (query, item) pairs a search model trains on, items judged >= ``min_relevance``:
    a DataFrame of ``query`` (position in ``gains``), ``item`` (items row), ``relevance``."""
    rows = [(q, item, rel) for q, g in enumerate(gains) for item, rel in g.items()
            if rel >= min_relevance]
    return pd.DataFrame(rows, columns=["query", "item", "relevance"]).astype(
        {"query": np.int64, "item": np.int64, "relevance": np.float64})


# Fashion: indirect ways of saying a usage or a gender (vague queries).
_FASHION_USAGE = {
    "casual": ["for everyday wear", "for relaxed weekends"],
    "formal": ["for the office", "for a business meeting"],
    "sports": ["for the gym", "for a morning run"], "party": ["for a night out", "for a party"],
    "ethnic": ["in a traditional style", "for a festival"],
    "smart casual": ["smart but relaxed", "for a dinner date"],
    "travel": ["for a trip", "for travelling"], "home": ["to wear at home", "for lounging"],
}
_FASHION_GENDER = {
    "men": ["for him", "for a man"], "women": ["for her", "for a woman"],
    "boys": ["for a boy", "for my son"], "girls": ["for a girl", "for my daughter"],
    "unisex": ["for anyone", "for everybody"],
}
_FASHION_INDIRECT = {"usage": _FASHION_USAGE, "gender": _FASHION_GENDER}
_FASHION_KIND_SHARES = {"exact": 0.4, "partial": 0.35, "vague": 0.25}


def _known(value: Any) -> bool:
    """True for an attribute value a query may state (a string that is not a placeholder)."""
    return isinstance(value, str) and value.strip().lower() not in UNKNOWN_VALUES


def fashion_queries(items: pd.DataFrame, seed: int, n_queries: int, *,
                    max_judged: int = 1000, n_negatives: int = 20
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(queries, judgements)`` graded from the fashion catalogue's attributes (``items``:
    ``item_id``, ``category``, ``sub_category``, ``gender``, ``colour``, ``usage``).
    Each query states a seed item's attributes: ``exact``, the article type with every known
    gender, colour and usage ("men navy blue casual shirts"); ``partial``, with one or two
    ("navy blue shirts"); ``vague``, the sub-category with usage / gender said indirectly
    and any colour ("topwear for the office for him"). Relevance (ESCI grades) on the head
    (article type; vague: sub-category): 3 = head and every stated attribute agree, 2 = all
    but one, 1 = same head, or (not vague) a sibling article type with every attribute
    agreeing; else 0. Unisex agrees with men's and women's queries. Per query, up to
    ``max_judged - n_negatives`` items graded >= 1 (best first) and ``n_negatives`` 0s.
    Queries hold ``query_id``, ``text``, ``kind``, ``target_<column>`` (missing if unstated)."""
    cols = ["category", "sub_category", "gender", "colour", "usage"]
    require_columns(items, ["item_id", *cols], source="items")
    if n_queries < 1:
        raise DataError(f"n_queries must be >= 1, got {n_queries}")
    rng = np.random.default_rng([int(seed), 8080])
    values = {c: items[c].astype(str).str.strip().str.lower().to_numpy() for c in cols}
    seeds_ok = np.flatnonzero(np.array([_known(v) for v in values["category"]])
                              & np.array([_known(v) for v in values["sub_category"]]))
    if not len(seeds_ok):
        raise DataError("no item has a known category and sub-category to build queries from",
                        source="items", column="category")
    counts = {k: int(share * n_queries) for k, share in _FASHION_KIND_SHARES.items()}
    counts["exact"] += n_queries - sum(counts.values())
    kinds = rng.permutation(np.array([k for k, v in counts.items() for _ in range(v)]))
    seeds = rng.choice(seeds_ok, size=n_queries)
    n_items = len(items)
    item_ids = items["item_id"].astype(str).to_numpy()
    width = max(4, len(str(n_queries)))
    rows, judged = [], []
    for q, (kind, s) in enumerate(zip(kinds, seeds)):
        item = {c: values[c][s] for c in cols}
        stated = [c for c in ("gender", "colour", "usage") if _known(item[c])
                  and not (c == "usage" and item[c] in item["category"])]  # "sports sports shoes"
        if kind == "partial" and stated:
            size = min(len(stated), 1 + int(rng.random() < 0.4))
            chosen = set(rng.choice(np.array(stated), size=size, replace=False))
            stated = [c for c in ("gender", "colour", "usage") if c in chosen]
        if kind == "vague":
            head = "sub_category"
            parts = [item["colour"]] if "colour" in stated else []
            parts.append(item["sub_category"])
            indirect = [c for c in stated if item[c] in _FASHION_INDIRECT.get(c, {})]
            stated = [c for c in stated if c == "colour" or c in indirect]
            for c in indirect:
                options = _FASHION_INDIRECT[c][item[c]]
                parts.append(options[int(rng.integers(len(options)))])
            text = " ".join(parts)
        else:
            head = "category"
            text = " ".join([*(item[c] for c in stated), item["category"]])  # in canonical order
        target = {head: item[head], **{c: item[c] for c in stated}}

        same = values[head] == target[head]
        matches = np.zeros(n_items, np.int64)
        for c in stated:
            agree = values[c] == target[c]
            if c == "gender" and target[c] in ("men", "women"):
                agree |= values[c] == "unisex"
            matches += agree
        n = len(stated)
        rel = np.zeros(n_items, np.int64)
        if head == "category":  # a sibling article type with every attribute right, e.g. a top for a t-shirt query
            rel[(values["sub_category"] == item["sub_category"]) & ~same & (matches == n)] = 1
        rel[same] = 1
        rel[same & (matches >= n - 1)] = 2
        rel[same & (matches == n)] = 3
        keep, budget = [], max_judged - n_negatives
        for grade in (3, 2, 1):
            idx = np.flatnonzero(rel == grade)
            if len(idx) > budget:
                idx = np.sort(rng.choice(idx, size=budget, replace=False))
            keep.append(idx)
            budget -= len(idx)
        zeros = np.flatnonzero(rel == 0)
        keep.append(np.sort(rng.choice(zeros, size=min(n_negatives, len(zeros)), replace=False)))
        idx = np.concatenate(keep)
        qid = f"fq{q + 1:0{width}d}"
        rows.append({"query_id": qid, "text": text, "kind": str(kind),
                     **{f"target_{c}": target.get(c) for c in cols}})
        judged.append(pd.DataFrame({"query_id": qid, "item_id": item_ids[idx], "relevance": rel[idx]}))
    return pd.DataFrame(rows), pd.concat(judged, ignore_index=True).astype({"relevance": "int64"})


def search_queries(prepared: Any, seed: int, n_fashion_queries: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame, str] | None:
    """``(queries, judgements, origin)``: the data set's own queries, :func:`fashion_queries`
    for ``fashion``, else ``None`` (MovieLens has no queries)."""
    if prepared.queries is not None and prepared.judgements is not None and len(prepared.queries):
        return prepared.queries, prepared.judgements, "the data set's own queries"
    if prepared.dataset == "fashion":
        queries, judgements = fashion_queries(prepared.items, seed, n_fashion_queries)
        return queries, judgements, "built from catalogue attributes (search_queries.fashion_queries)"
    return None
