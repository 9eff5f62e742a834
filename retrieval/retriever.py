"""The retriever: dense (vector store), BM25 (keyword index) or hybrid, with a relevance floor."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from retrieval.protocols import Embedder, VectorStore
from retrieval.types import Chunk, Hit


class KeywordSearch(Protocol):
    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """(chunk id, score) best first."""
        ...


def rrf_fuse(rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of several rankings of ids."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, id_ in enumerate(ranking):
            scores[id_] = scores.get(id_, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass
class Retrieval:
    hits: list[Hit]
    found: bool  # False when nothing reaches the relevance floor


class Retriever:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        keyword: KeywordSearch | None = None,
        *,
        mode: str = "hybrid",
        min_score: float = 0.0,
    ):
        self.embedder = embedder
        self.store = store
        self.keyword = keyword
        self.mode = mode
        self.min_score = min_score

    def retrieve(self, query: str, k: int, mode: str | None = None) -> "Retrieval":
        mode = mode or self.mode
        if mode == "bm25" and self.keyword is None:
            raise ValueError("retrieval.mode=bm25 needs a keyword index; this knowledge base has none")
        if mode == "dense" or (mode == "hybrid" and self.keyword is None):
            hits = self.store.query(self.embedder.embed_query(query), k)
            return Retrieval(hits, self._found(hits[0].score if hits else None))
        if mode == "bm25":
            scored = self.keyword.search(query, k)
            return Retrieval(self._hits(scored), bool(scored) and scored[0][1] > 0)
        dense = self.store.query(self.embedder.embed_query(query), max(k * 4, 20))
        sparse = self.keyword.search(query, max(k * 4, 20))
        fused = rrf_fuse([[h.chunk.id for h in dense], [i for i, _ in sparse]])[:k]
        hits = self._hits(fused, known={h.chunk.id: h.chunk for h in dense})
        return Retrieval(hits, self._found(dense[0].score if dense else None))

    def _found(self, best_dense: float | None) -> bool:
        """The relevance floor: the best dense similarity must reach `min_score`."""
        return best_dense is not None and best_dense >= self.min_score

    def _hits(self, scored: Sequence[tuple[str, float]], known: dict[str, Chunk] | None = None) -> list[Hit]:
        known = dict(known or {})
        missing = [i for i, _ in scored if i not in known]
        for chunk in self.store.get(missing):
            known[chunk.id] = chunk
        return [Hit(known[i], s) for i, s in scored if i in known]
