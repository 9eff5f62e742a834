"""Fusing a dense and a keyword ranking: pure functions, no models.

Two fusions:

* `rrf_fuse`: reciprocal rank fusion, the baseline. Rank-only, so it cannot tell a strong
  retriever from a weak one, and its scores (about 1/60) mean nothing to a reader.
* `weighted_fuse`: a convex combination of *calibrated* scores, both in [0, 1]: the dense
  cosine similarity and the normalised BM25 score (idf share of the query matched). The
  fused score keeps that meaning (a weighted share of evidence), so it is shown to users
  and used for the relevance floor.

`dense_weight` picks the dense retriever's weight per query: the base weight when the
embedder understands the query's language, a small one when it does not (an English-only
embedder on a Chinese query ranks almost at random), and it shifts weight towards the
retriever whose score distribution shows a clear winner (see `peakedness`).
"""

from __future__ import annotations

from collections.abc import Sequence

Scored = Sequence[tuple[str, float]]


def rrf_fuse(rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of several rankings of ids."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, id_ in enumerate(ranking):
            scores[id_] = scores.get(id_, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def weighted_fuse(dense: Scored, sparse: Scored, dense_weight: float) -> list[tuple[str, float]]:
    """w * dense + (1 - w) * sparse over the union of both candidate lists, best first.

    A candidate missing from one list gets that list's lowest score (it ranked below all of
    them), or 0 when the list is empty. Scores are clipped to [0, 1].
    """
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight must lie in [0, 1], got {dense_weight}")
    d = {i: min(1.0, max(0.0, s)) for i, s in dense}
    s_ = {i: min(1.0, max(0.0, s)) for i, s in sparse}
    d_floor = min(d.values()) if d else 0.0
    s_floor = min(s_.values()) if s_ else 0.0
    rows = []
    for id_ in list(d) + [i for i in s_ if i not in d]:
        dv, sv = d.get(id_, d_floor), s_.get(id_, s_floor)
        rows.append((id_, dense_weight * dv + (1.0 - dense_weight) * sv, dv, sv))
    # ties (a weight of 0 or 1, equal BM25 scores) are broken by the other retriever's score
    rows.sort(key=lambda r: (-r[1], -r[2], -r[3]))
    return [(id_, score) for id_, score, _, _ in rows]


def peakedness(scores: Sequence[float], depth: int = 10) -> float:
    """How clearly the best candidate stands out: (top - mean of the next `depth`) / top, in [0, 1].

    Flat score lists (every candidate about as good) say the retriever has no idea.
    """
    if not scores or scores[0] <= 0:
        return 0.0
    rest = list(scores[1 : depth + 1])
    if not rest:
        return 1.0
    return max(0.0, min(1.0, (scores[0] - sum(rest) / len(rest)) / scores[0]))


def dense_weight(
    base: float,
    *,
    language_supported: bool,
    weak_language_weight: float,
    dense_scores: Sequence[float] = (),
    sparse_scores: Sequence[float] = (),
    adapt: float = 0.0,
) -> float:
    """The dense retriever's weight for one query.

    `base` when the embedder covers the query's language, `weak_language_weight` when not;
    with no keyword match at all, dense alone (1.0); with no dense candidates, 0.0.
    `adapt` > 0 moves the weight (in a covered language) towards the retriever with the more
    peaked score list: w += adapt * (peak_dense - peak_sparse), clipped to [0, 1].
    """
    if not sparse_scores:
        return 1.0 if dense_scores else 0.0
    if not dense_scores:
        return 0.0
    if not language_supported:
        return weak_language_weight  # its score distribution says nothing either
    w = base
    if adapt:
        w += adapt * (peakedness(dense_scores) - peakedness(sparse_scores))
    return max(0.0, min(1.0, w))


def mmr(
    candidates: Sequence[tuple[str, float]],
    similarity,
    k: int,
    lambda_: float = 0.7,
) -> list[tuple[str, float]]:
    """Maximal marginal relevance: pick k of `candidates` (id, relevance) trading relevance
    against `similarity(id_a, id_b)` to those already picked. Scores returned unchanged."""
    pool = list(candidates)
    picked: list[tuple[str, float]] = []
    while pool and len(picked) < k:
        best = max(
            range(len(pool)),
            key=lambda j: lambda_ * pool[j][1] - (1 - lambda_) * max((similarity(pool[j][0], p[0]) for p in picked), default=0.0),
        )
        picked.append(pool.pop(best))
    return picked
