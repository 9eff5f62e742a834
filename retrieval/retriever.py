"""The retriever: dense (vector store), BM25 (keyword index) or hybrid, with a relevance floor.

Scores users see are calibrated, in [0, 1]: the cosine similarity (dense), the normalised
BM25 score (share of the query's idf matched; see `retrieval.bm25`), or their per-query
weighted sum (hybrid; see `retrieval.fusion`).

The relevance floor (below it the knowledge base says "not found" instead of handing the
model unrelated text), on the same calibrated scores:

* dense: best cosine >= `min_score`;
* bm25: best normalised BM25 >= `min_keyword_score` (`min_keyword_score_zh` for Chinese
  questions, whose scores run lower: character bigrams enlarge the query's idf sum);
* hybrid: best fused score >= w * min_score + (1 - w) * keyword floor, w being the query's
  dense weight (the floor fused like the scores); when the embedder does not cover the
  question's language its cosine is noise, and the keyword floor alone decides.

With `language_centering` (off by default) a knowledge base in two languages is searched with
language-neutral dense scores, and a match in the other language has a floor of its own
(`cross_language_min_score`); see `retrieval.centering`.

With `rerank` (off by default) a second stage re-scores the first stage's top
`rerank_candidates` and keeps the best k (`retrieval.rerankers`); the hits carry the
reranker's scores, while "found" is still decided by the floors above on the first stage's
scores, so a reranker never changes what is answered and what is not.

On the sample knowledge base (MiniLM) these floors find all 40 sample questions and none
of 20 off-topic ones in English and Chinese (tests/test_retrieval_abstention.py).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from kbqa.retrieval.config import RetrievalSettings
from kbqa.retrieval.centering import Candidates, LanguageCentering, cross_language_found, language_aware
from kbqa.retrieval.fusion import dense_weight, mmr, rrf_fuse, weighted_fuse
from kbqa.retrieval.lang import detect_language
from kbqa.retrieval.protocols import Embedder, Reranker, VectorStore
from kbqa.retrieval.rerankers import make_reranker
from kbqa.retrieval.types import Chunk, Hit

__all__ = ["KeywordSearch", "Retrieval", "Retriever", "RetrieverConfig", "rrf_fuse", "embedder_languages"]

# languages the multilingual USE v3 covers (ISO 639-1)
USE_LANGUAGES = frozenset("ar zh nl en fr de it ja ko pl pt es th tr ru".split())


class KeywordSearch(Protocol):
    def search(self, query: str, k: int, *, normalized: bool = False) -> list[tuple[str, float]]:
        """(chunk id, score) best first; normalized scores lie in [0, 1]."""
        ...


@dataclass
class Retrieval:
    hits: list[Hit]
    found: bool  # False when nothing reaches the relevance floor


class RetrieverConfig(RetrievalSettings):
    """The retriever's settings: `RetrievalSettings` (same fields, same defaults, declared once
    in `retrieval.config`), frozen, plus the RRF constant. Fields the retriever does not read
    (`k`, `context_neighbors`, `rewrite`) are its callers'."""

    model_config = ConfigDict(frozen=True)

    rrf_k: int = Field(60, ge=1, description="rrf fusion: the k in 1 / (k + rank)")

    @classmethod
    def from_mapping(cls, values: Mapping) -> "RetrieverConfig":
        """From the retrieval settings (or any mapping): the fields it has, the rest ignored."""
        if isinstance(values, BaseModel):
            values = values.model_dump()
        return cls(**{k: v for k, v in dict(values).items() if k in cls.model_fields})

    def replace(self, **changes) -> "RetrieverConfig":
        """A copy with `changes`, validated."""
        return type(self)(**{**self.model_dump(), **changes})


def embedder_languages(embedder: Embedder) -> frozenset[str] | None:
    """Languages the embedder understands; None means any."""
    declared = getattr(embedder, "languages", None)
    if declared is not None:
        return frozenset(declared)
    name = str(getattr(embedder, "name", "")).lower()
    if name.startswith("use-multilingual"):
        return USE_LANGUAGES
    if any(tag in name for tag in ("multilingual", "-m3", "chinese", "-zh", "text2vec", "m3e", "labse")):
        return None
    return frozenset({"en"})


class Retriever:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        keyword: KeywordSearch | None = None,
        *,
        mode: str | None = None,
        min_score: float | None = None,
        config: RetrieverConfig | None = None,
        reranker: Reranker | None = None,
    ):
        config = config or RetrieverConfig()
        overrides = {k: v for k, v in {"mode": mode, "min_score": min_score}.items() if v is not None}
        if overrides:
            config = config.replace(**overrides)
        unset = {k for k in ("min_score", "dense_weight", "adapt", "cross_language_min_score") if getattr(config, k) is None}
        if unset:  # the embedder's own values (retrieval/calibration.py)
            from kbqa.retrieval.calibration import calibration

            own = calibration(str(getattr(embedder, "name", "")))
            config = config.replace(**{k: own[k] for k in unset})
        if config.mode not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"retrieval.mode: unknown mode {config.mode!r} (dense, bm25 or hybrid)")
        if config.fusion not in ("weighted", "rrf"):
            raise ValueError(f"retrieval.fusion: unknown fusion {config.fusion!r} (weighted or rrf)")
        if config.language_centering and config.fusion != "weighted":
            raise ValueError('retrieval.language_centering works with retrieval.fusion = "weighted" only')
        self.embedder = embedder
        self.store = store
        self.keyword = keyword
        self.config = config
        self._languages: frozenset[str] | None | bool = False  # False: not yet worked out
        self._pool: ThreadPoolExecutor | None = None  # BM25 beside the dense search (hybrid)
        self._pool_lock = threading.Lock()
        self._centering = LanguageCentering(store) if config.language_centering else None
        # the model loads on the first question; a missing folder fails here, naming the path
        self.reranker = reranker if reranker is not None else make_reranker(config.rerank)

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def min_score(self) -> float:
        return self.config.min_score

    def dense_understands(self, language: str) -> bool:
        if self._languages is False:
            declared = self.config.dense_languages
            self._languages = frozenset(declared) if declared is not None else embedder_languages(self.embedder)
        return self._languages is None or language in self._languages

    def retrieve(self, query: str, k: int, mode: str | None = None) -> Retrieval:
        if self.reranker is None or k <= 0:
            return self._first_stage(query, k, mode)
        first = self._first_stage(query, max(k, self.config.rerank_candidates), mode)
        return Retrieval(self.reranker.rerank(query, first.hits, k), first.found)

    def _first_stage(self, query: str, k: int, mode: str | None) -> Retrieval:
        c = self.config
        mode = mode or c.mode
        if mode not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"retrieval mode: unknown mode {mode!r} (dense, bm25 or hybrid)")
        if mode == "bm25" and self.keyword is None:
            raise ValueError("retrieval.mode=bm25 needs a keyword index; this knowledge base has none")
        if mode == "dense" or (mode == "hybrid" and self.keyword is None):
            if self._centered():
                return self._centered_dense(query, k)
            hits = self.store.query(self.embedder.embed_query(query), k)
            return Retrieval(hits, bool(hits) and hits[0].score >= c.min_score)
        if mode == "bm25":
            scored = self.keyword.search(query, k, normalized=True)
            return Retrieval(self._hits(scored), bool(scored) and scored[0][1] >= self._keyword_floor(query))
        return self._hybrid(query, k)

    def _centered(self) -> bool:
        return self._centering is not None and self._centering.active()

    def _centered_dense(self, query: str, k: int) -> Retrieval:
        c, language = self.config, detect_language(query)
        found = self._centering.candidates(self.embedder.embed_query(query), language, max(k, c.candidates), self._dense_ids)
        raw = found.raw_ranking(1)
        hit = (bool(raw) and raw[0][1] >= c.min_score) or cross_language_found(found.scored, found, language, c.cross_language_min_score)
        return Retrieval(self._hits(found.scored[:k]), hit)

    def _keyword_floor(self, query: str) -> float:
        return self.config.min_keyword_score_zh if detect_language(query) == "zh" else self.config.min_keyword_score

    def _hybrid(self, query: str, k: int) -> Retrieval:
        c = self.config
        pool = max(k, c.candidates)
        # with `parallel`, BM25 runs in a worker thread while the query is embedded and the vector
        # index searched (numpy, faiss, torch and SQLite release the GIL); texts are read for the
        # fused top k only
        keyword = self._worker().submit(self.keyword.search, query, pool, normalized=True) if c.parallel else None
        language = detect_language(query)
        centered = self._centering.candidates(self.embedder.embed_query(query), language, pool, self._dense_ids) if self._centered() else None
        dense = centered.scored if centered is not None else self._dense_ids(self.embedder.embed_query(query), pool)
        sparse = keyword.result() if keyword is not None else self.keyword.search(query, pool, normalized=True)
        trusted = self.dense_understands(language)
        w = self._weight(trusted, dense, sparse)
        if c.fusion == "rrf":
            fused = rrf_fuse([[i for i, _ in dense], [i for i, _ in sparse]], k=c.rrf_k)
            # show a calibrated score, not 1/(60 + rank): the candidate's better calibrated score
            calibrated = {i: s for i, s in sparse}
            for i, s in dense:
                if trusted:
                    calibrated[i] = max(calibrated.get(i, 0.0), s)
            fused = [(i, calibrated.get(i, 0.0)) for i, _ in fused]
        else:
            fused = weighted_fuse(dense, sparse, w)
            if centered is not None:
                fused = language_aware(fused, centered, language)
        known: dict[str, Chunk] = {}
        if c.mmr_lambda is not None:
            fused = self._mmr(fused[: max(k * 3, k)], known, k, c.mmr_lambda)
        hits = self._hits(fused[:k], known=known)
        keyword_floor = self._keyword_floor(query)
        if centered is not None:
            return Retrieval(hits, self._centered_found(centered, fused, sparse, trusted, language, keyword_floor, pool))
        if trusted and c.fusion == "weighted":
            found = bool(fused) and fused[0][1] >= w * c.min_score + (1 - w) * keyword_floor
        elif trusted:  # rrf: either calibrated score reaching its floor
            found = (bool(dense) and dense[0][1] >= c.min_score) or (bool(sparse) and sparse[0][1] >= keyword_floor)
        else:
            found = bool(sparse) and sparse[0][1] >= keyword_floor
        return Retrieval(hits, found)

    def _weight(self, trusted: bool, dense, sparse) -> float:
        c = self.config
        return dense_weight(
            c.dense_weight,
            language_supported=trusted,
            weak_language_weight=c.weak_language_weight,
            dense_scores=[s for _, s in dense],
            sparse_scores=[s for _, s in sparse],
            adapt=c.adapt,
        )

    def _centered_found(self, centered: Candidates, fused, sparse, trusted: bool, language: str, keyword_floor: float, pool: int) -> bool:
        """The usual weighted-fusion floor on the raw cosines, or a top chunk in another language
        whose raw cosine reaches the cross-language floor."""
        c = self.config
        if not trusted:
            return bool(sparse) and sparse[0][1] >= keyword_floor
        raw = centered.raw_ranking(pool)  # the raw cosines' top `pool`, as the search without centering has them
        w = self._weight(trusted, raw, sparse)
        usual = weighted_fuse(raw, sparse, w)
        if usual and usual[0][1] >= w * c.min_score + (1 - w) * keyword_floor:
            return True
        return cross_language_found(fused, centered, language, c.cross_language_min_score)

    def _dense_ids(self, vector, k: int) -> list[tuple[str, float]]:
        query_ids = getattr(self.store, "query_ids", None)
        if query_ids is None:  # a store without the id-only search
            return [(h.chunk.id, h.score) for h in self.store.query(vector, k)]
        return query_ids(vector, k)

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kbqa-bm25")
        return self._pool

    def _mmr(self, fused, known: dict[str, Chunk], k: int, lambda_: float):
        from kbqa.retrieval.tokenize import bm25_tokens

        missing = [i for i, _ in fused if i not in known]
        for chunk in self.store.get(missing):
            known[chunk.id] = chunk
        bags = {i: set(bm25_tokens(known[i].text)) for i, _ in fused if i in known}

        def jaccard(a: str, b: str) -> float:
            x, y = bags.get(a, set()), bags.get(b, set())
            return len(x & y) / len(x | y) if x and y else 0.0

        return mmr(fused, jaccard, k, lambda_)

    def _hits(self, scored: Sequence[tuple[str, float]], known: dict[str, Chunk] | None = None) -> list[Hit]:
        known = dict(known or {})
        missing = [i for i, _ in scored if i not in known]
        for chunk in self.store.get(missing):
            known[chunk.id] = chunk
        return [Hit(known[i], s) for i, s in scored if i in known]
