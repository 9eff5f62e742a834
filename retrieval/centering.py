"""Language-mean centering: dense scores that compare chunks across languages
(setting `retrieval.language_centering`, off by default).

A multilingual embedder such as multilingual-e5-small places every text near a direction of its
language: on the sample knowledge base any Chinese chunk scores higher for a Chinese question
(cosine 0.82-0.89) than the English chunk that answers it (0.78-0.81), so a question never finds
the documents of the other language. Subtracting each language's mean vector from the vectors of
that language removes most of that direction (Libovicky et al. 2020, "On the language neutrality
of pre-trained multilingual representations"). With centering on, and at least `MIN_CHUNKS`
chunks in each of two languages of the knowledge base (otherwise search is as without it):

* the means: the mean chunk vector of each language (`retrieval.lang.detect_language` of its
  text), worked out from the store and again whenever its number of chunks changes;
* candidates: the store's top `pool` for the query and for the query minus its language's mean
  (which ranks the other language's chunks higher), scored exactly from their stored vectors as
  cos(q - m_q, c - m_c);
* hybrid fusion: BM25 counts for chunks in the question's language only; a chunk in another
  language keeps its dense score (keywords cannot match across languages, so their absence says
  nothing about it). Scores shown are these centered ones (lower than raw cosines);
* the relevance floor: the usual rule on the raw cosines (the embedder's `min_score`), or the top
  chunk is in another language than the question and its raw cosine reaches
  `cross_language_min_score` (e5: 0.78).

Measured (bench/results/crosslingual_study.md, bench/results/crosslingual.md): e5 hybrid hit@5 on
data/crosslingual_qa.jsonl 0.0 -> 0.86 (zh->en) and 0.03 -> 0.71 (en->zh); same-language
questions lose up to 0.1 hit@1 (the sample's Chinese ones) and about nothing at hit@5.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kbqa.retrieval.lang import detect_language

MIN_CHUNKS = 10  # a language with fewer chunks has no mean worth subtracting (it would be their topic)
_BATCH = 2000

DenseSearch = Callable[[np.ndarray, int], list[tuple[str, float]]]


def store_vectors(store, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    fetch = getattr(store, "vectors", None)
    if fetch is None:
        raise ValueError(f"retrieval.language_centering needs a vector store that returns its vectors (chroma or faiss), not {type(store).__name__}")
    return fetch(list(ids))


def language_means(store, min_chunks: int = MIN_CHUNKS) -> dict[str, np.ndarray]:
    """{language: mean chunk vector} over the store, for languages with at least `min_chunks` chunks."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    ids = store.all_ids()
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        language = {c.id: detect_language(c.text) for c in store.get(batch)}
        kept, vectors = store_vectors(store, batch)
        for id_, vector in zip(kept, vectors):
            lang = language.get(id_)
            if lang is not None:
                sums[lang] = sums.get(lang, 0.0) + vector.astype(np.float64)
                counts[lang] = counts.get(lang, 0) + 1
    return {lang: (sums[lang] / n).astype(np.float32) for lang, n in counts.items() if n >= min_chunks}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


@dataclass
class Candidates:
    """Dense candidates of one query: centered scores best first, raw cosines and languages by id."""

    scored: list[tuple[str, float]]
    raw: dict[str, float]
    language: dict[str, str]

    def raw_ranking(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.raw.items(), key=lambda pair: -pair[1])[:k]


class LanguageCentering:
    """The means of one store, kept up to date, and the centered dense search over it."""

    def __init__(self, store, min_chunks: int = MIN_CHUNKS):
        self.store = store
        self.min_chunks = min_chunks
        self._means: dict[str, np.ndarray] = {}
        self._count = -1
        self._lock = threading.Lock()

    def means(self) -> dict[str, np.ndarray]:
        count = self.store.count()
        with self._lock:
            if count != self._count:
                self._means = language_means(self.store, self.min_chunks)
                self._count = count
            return self._means

    def active(self) -> bool:
        """At least two languages with a mean: otherwise centering changes nothing worth having."""
        return len(self.means()) >= 2

    def candidates(self, query: np.ndarray, language: str, pool: int, search: DenseSearch) -> Candidates:
        """`search` (the store's id-only search) for the query and for the query minus its
        language's mean; the union scored as cos(q - m_q, c - m_c). The means are those of the
        last `active` or `means` call (one count of the store per query)."""
        means = self._means if self._count >= 0 else self.means()
        query = np.asarray(query, dtype=np.float32)
        centered_query = _unit(query - means.get(language, 0.0))
        ids = list(dict.fromkeys(i for i, _ in [*search(query, pool), *search(centered_query, pool)]))
        if not ids:
            return Candidates([], {}, {})
        kept, vectors = store_vectors(self.store, ids)
        languages = {c.id: detect_language(c.text) for c in self.store.get(kept)}
        shift = np.stack([means.get(languages.get(i, ""), np.zeros_like(query)) for i in kept])
        centered = _unit(vectors - shift) @ centered_query
        scored = sorted(zip(kept, centered.tolist()), key=lambda pair: -pair[1])
        return Candidates(scored, dict(zip(kept, (vectors @ query).tolist())), languages)


def language_aware(fused: Sequence[tuple[str, float]], candidates: Candidates, language: str) -> list[tuple[str, float]]:
    """Fused scores with every dense candidate in another language than the question's scored by
    its dense score alone, best first."""
    dense = dict(candidates.scored)
    other = {i for i, lang in candidates.language.items() if lang != language}
    rescored = [(i, dense[i] if i in other else s) for i, s in fused]
    return sorted(rescored, key=lambda pair: -pair[1])


def cross_language_found(ranked: Sequence[tuple[str, float]], candidates: Candidates, language: str, floor: float | None) -> bool:
    """The top chunk is in another language than the question and its raw cosine reaches `floor`."""
    if floor is None or not ranked:
        return False
    top = ranked[0][0]
    return candidates.language.get(top, language) != language and candidates.raw.get(top, -1.0) >= floor
