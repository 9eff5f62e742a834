"""Retrieval metrics as small pure functions.

A *ranking* is a list of document ids, best first (chunks already deduplicated to their
document). *Relevant* is a mapping ``doc id -> graded relevance`` (BEIR qrels; a grade of
0 or less counts as not relevant) or a plain set/sequence of relevant ids (grade 1).

Per-query functions return a float; `evaluate_rankings` returns a flat dict of means plus
per-item scores, the form every kbqa metric takes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Relevant = Mapping[str, float] | Iterable[str]


def _grades(relevant: Relevant) -> dict[str, float]:
    if isinstance(relevant, Mapping):
        return {str(k): float(v) for k, v in relevant.items() if float(v) > 0}
    if isinstance(relevant, str):
        return {relevant: 1.0}
    return {str(k): 1.0 for k in relevant}


def dedupe(ranking: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each id (chunks of one document -> the document's best rank)."""
    seen: set[str] = set()
    out: list[str] = []
    for id_ in ranking:
        if id_ not in seen:
            seen.add(id_)
            out.append(id_)
    return out


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain with linear gains (as in BEIR/pytrec_eval): sum g_i / log2(i + 2)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))


def ndcg_at_k(ranking: Sequence[str], relevant: Relevant, k: int = 10) -> float:
    grades = _grades(relevant)
    if not grades:
        return 0.0
    gains = [grades.get(id_, 0.0) for id_ in ranking[:k]]
    ideal = dcg_at_k(sorted(grades.values(), reverse=True), k)
    return dcg_at_k(gains, k) / ideal if ideal > 0 else 0.0


def recall_at_k(ranking: Sequence[str], relevant: Relevant, k: int = 10) -> float:
    grades = _grades(relevant)
    if not grades:
        return 0.0
    return len(set(ranking[:k]) & set(grades)) / len(grades)


def mrr_at_k(ranking: Sequence[str], relevant: Relevant, k: int = 10) -> float:
    grades = _grades(relevant)
    for i, id_ in enumerate(ranking[:k]):
        if id_ in grades:
            return 1.0 / (i + 1)
    return 0.0


def hit_at_k(ranking: Sequence[str], relevant: Relevant, k: int = 1) -> float:
    grades = _grades(relevant)
    return 1.0 if any(id_ in grades for id_ in ranking[:k]) else 0.0


METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k, "hit": hit_at_k}


def evaluate_rankings(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Relevant],
    metrics: Sequence[str] = ("ndcg@10", "recall@10", "recall@100", "mrr@10"),
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean of each metric over the queries in `qrels`, and the per-query scores.

    A query in `qrels` with no ranking counts as an empty ranking (scores 0), never skipped.
    Metric names are ``<ndcg|recall|mrr|hit>@<k>``.
    """
    parsed = []
    for name in metrics:
        base, _, k = name.partition("@")
        if base not in METRICS or not k.isdigit():
            raise ValueError(f"unknown metric {name!r}: use one of {sorted(METRICS)} followed by @k, e.g. ndcg@10")
        parsed.append((name, METRICS[base], int(k)))
    per_item: dict[str, dict[str, float]] = {}
    for qid, relevant in qrels.items():
        ranking = dedupe(rankings.get(qid, []))
        per_item[qid] = {name: fn(ranking, relevant, k) for name, fn, k in parsed}
    n = len(per_item)
    means = {name: (sum(s[name] for s in per_item.values()) / n if n else 0.0) for name, _, _ in parsed}
    return means, per_item


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
