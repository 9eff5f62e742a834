"""Language-mean centering (retrieval/centering.py, setting retrieval.language_centering): on a small
in-memory knowledge base whose vectors carry a strong direction per language, as multilingual e5's
do, a question finds the chunk of the other language that answers it only with centering; a
knowledge base of one language searches exactly as without it; the cross-language floor."""

from __future__ import annotations

import numpy as np
import pytest

from kbqa.retrieval.centering import Candidates, LanguageCentering, language_aware, language_means
from kbqa.retrieval.retriever import Retriever, RetrieverConfig
from kbqa.retrieval.types import Chunk, Hit

DIM = 8
ZH, EN = 0, 1  # the language axes; topics on axes 2..7: Chinese chunks on 2-4, English ones on 5-7


def _vec(lang_axis: int, topic_axis: int, rng) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[lang_axis], v[topic_axis] = 3.0, 1.0
    v += rng.normal(0, 0.05, DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class MemoryStore:
    """A VectorStore in memory, exact inner-product search, with `vectors` (as chroma and faiss have)."""

    def __init__(self, chunks, vectors):
        self.chunks = {c.id: c for c in chunks}
        self.order = [c.id for c in chunks]
        self.matrix = np.asarray(vectors, np.float32)

    def query_ids(self, embedding, k):
        scores = self.matrix @ np.asarray(embedding, np.float32)
        return [(self.order[j], float(scores[j])) for j in np.argsort(-scores)[:k]]

    def query(self, embedding, k):
        return [Hit(self.chunks[i], s) for i, s in self.query_ids(embedding, k)]

    def get(self, ids):
        return [self.chunks[i] for i in ids if i in self.chunks]

    def vectors(self, ids):
        kept = [i for i in ids if i in self.chunks]
        return kept, self.matrix[[self.order.index(i) for i in kept]].reshape(len(kept), DIM)

    def all_ids(self):
        return list(self.order)

    def count(self):
        return len(self.order)


class TableEmbedder:
    name = "table"
    dim = DIM

    def __init__(self, table):
        self.table = table

    def embed_query(self, text):
        return self.table[text]


def _store(languages=("zh", "en"), per_topic=4):
    rng = np.random.default_rng(0)
    chunks, vectors = [], []
    for lang in languages:
        axis, topics = (ZH, (2, 3, 4)) if lang == "zh" else (EN, (5, 6, 7))
        for topic in topics:
            for n in range(per_topic):
                text = f"第{topic}号铁路规则之{n}：列车安全运行" if lang == "zh" else f"Railway note {topic}.{n} about trains"
                chunks.append(Chunk(f"{lang}-{topic}-{n}", text, f"{lang}.txt", chunk=len(chunks)))
                vectors.append(_vec(axis, topic, rng))
    return MemoryStore(chunks, np.stack(vectors))


QUESTION = "第七号主题的列车什么时候开？"  # Chinese, about topic 7, which only English chunks cover


def _retriever(store, **config):
    query = np.zeros(DIM, np.float32)
    query[ZH], query[7] = 3.0, 1.0
    embedder = TableEmbedder({QUESTION: query / np.linalg.norm(query)})
    defaults = {"mode": "dense", "min_score": 0.95, "dense_weight": 0.7, "adapt": 0.0, "dense_languages": ("zh", "en")}
    return Retriever(embedder, store, config=RetrieverConfig(**{**defaults, **config}))


def test_language_means_skip_languages_with_too_few_chunks():
    means = language_means(_store(), min_chunks=10)
    assert sorted(means) == ["en", "zh"]
    assert means["zh"][ZH] > 0.9 and means["en"][EN] > 0.9  # the language direction dominates each mean
    assert sorted(language_means(_store(), min_chunks=13)) == []  # 12 chunks per language


def test_centering_finds_the_answer_in_the_other_language():
    store = _store()
    plain = _retriever(store).retrieve(QUESTION, 3)
    assert all(h.chunk.id.startswith("zh-") for h in plain.hits)  # every Chinese chunk outranks the answer
    centered = _retriever(store, language_centering=True).retrieve(QUESTION, 3)
    assert [h.chunk.id.split("-")[1] for h in centered.hits] == ["7", "7", "7"]


def test_the_cross_language_floor_decides_a_match_in_the_other_language():
    store = _store()
    assert not _retriever(store, language_centering=True).retrieve(QUESTION, 3).found  # raw cosine 0.1 < min_score 0.95
    assert _retriever(store, language_centering=True, cross_language_min_score=0.05).retrieve(QUESTION, 3).found
    assert not _retriever(store, language_centering=True, cross_language_min_score=0.5).retrieve(QUESTION, 3).found


def test_one_language_searches_as_without_centering():
    store = _store(languages=("zh",))
    assert not LanguageCentering(store).active()
    plain, centered = (_retriever(store, language_centering=on).retrieve(QUESTION, 5) for on in (False, True))
    assert [(h.chunk.id, h.score) for h in centered.hits] == [(h.chunk.id, h.score) for h in plain.hits]
    assert centered.found == plain.found


def test_means_follow_the_store():
    store = _store()
    centering = LanguageCentering(store)
    before = centering.means()["en"].copy()
    extra = Chunk("en-new", "Another English note", "en.txt")
    store.chunks[extra.id], store.order = extra, [*store.order, extra.id]
    store.matrix = np.vstack([store.matrix, np.eye(DIM, dtype=np.float32)[2]])
    assert not np.allclose(centering.means()["en"], before)


def test_keywords_count_only_in_the_question_language():
    candidates = Candidates(scored=[("en1", 0.45), ("zh1", 0.3)], raw={"en1": 0.78, "zh1": 0.86}, language={"en1": "en", "zh1": "zh"})
    fused = [("zh1", 0.7 * 0.3 + 0.3 * 0.6), ("en1", 0.7 * 0.45)]  # BM25 matched the Chinese chunk only
    assert [i for i, _ in language_aware(fused, candidates, "zh")] == ["en1", "zh1"]
    assert dict(language_aware(fused, candidates, "zh"))["en1"] == 0.45


def test_centering_needs_weighted_fusion():
    with pytest.raises(ValueError, match="language_centering"):
        _retriever(_store(), language_centering=True, fusion="rrf")
