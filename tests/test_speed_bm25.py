"""BM25 score matrix built with numpy (`retrieval.bm25_matrix`) against bm25s's, and the exact
top k by MaxScore against scoring every document with bm25s."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from kbqa.retrieval.bm25 import BM25Index
from kbqa.retrieval.bm25_matrix import build_matrix, max_contributions, top_k


def _zipf_corpus(n_docs: int, vocab: int = 2000, length: int = 40, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    ids = rng.choice(vocab, size=(n_docs, length), p=p)
    lengths = rng.integers(1, length + 1, n_docs)  # documents of different lengths
    return [[f"w{w}" for w in row[:m]] for row, m in zip(ids, lengths)]


@pytest.fixture(scope="module")
def corpus():
    import bm25s

    docs = _zipf_corpus(3000)
    reference = bm25s.BM25(k1=1.2, b=0.75)  # Lucene variant, bm25s's default
    reference.index(docs, show_progress=False)
    return docs, reference, build_matrix(docs, k1=1.2, b=0.75)


def test_matrix_equals_bm25s(corpus):
    docs, ref, ours = corpus
    r = ref.scores
    assert ours.num_docs == r["num_docs"] == len(docs)
    assert set(ours.vocab) == {t for t in ref.vocab_dict if t}  # bm25s adds an empty token
    for term, t in ours.vocab.items():
        u = ref.vocab_dict[term]
        ref_docs = r["indices"][r["indptr"][u] : r["indptr"][u + 1]]
        got_docs = ours.indices[ours.indptr[t] : ours.indptr[t + 1]]
        assert got_docs.tolist() == sorted(ref_docs.tolist()), term
        ref_data = dict(zip(ref_docs.tolist(), r["data"][r["indptr"][u] : r["indptr"][u + 1]].tolist()))
        np.testing.assert_allclose(ours.data[ours.indptr[t] : ours.indptr[t + 1]], [ref_data[d] for d in got_docs.tolist()], rtol=1e-5)
    df = Counter(t for doc in docs for t in set(doc))
    assert all(ours.df(term) == df[term] for term in ("w0", "w5", "w1999")) and ours.df("unseen") == 0


def _queries(matrix, rng, n=150):
    sizes = np.diff(matrix.indptr)
    words = {t: w for w, t in matrix.vocab.items()}
    common = [words[int(t)] for t in np.argsort(-sizes)[:8]]
    rare = [words[int(t)] for t in np.flatnonzero((sizes > 0) & (sizes <= 3))[:8]]
    out = [common[:1], common[:4], rare[:1], rare[:3], rare[:2] + common[:3], ["w5", "w1500", "unseen"]]
    for _ in range(n):
        out.append(sorted({f"w{w}" for w in rng.integers(0, 2000, rng.integers(1, 9))}))
    return out


@pytest.mark.parametrize("k", [1, 10, 50, 5000])
def test_top_k_equals_scoring_every_document(corpus, k):
    _, ref, ours = corpus
    for terms in _queries(ours, np.random.default_rng(k)):
        known = [t for t in terms if t in ref.vocab_dict]
        full = ref.get_scores(known) if known else np.zeros(ours.num_docs)  # bm25s scores every document
        matching = np.flatnonzero(full > 0)
        expected = matching[np.lexsort((matching, -full[matching]))][:k]
        docs, scores = ours.top_k(terms, k)
        assert len(docs) == len(expected), terms
        np.testing.assert_allclose(scores, full[expected], rtol=1e-5)  # the same k best scores, in order
        np.testing.assert_allclose(full[docs], scores, rtol=1e-5)  # each returned document really has its score
        assert len(set(docs.tolist())) == len(docs)


def test_ties_go_to_the_lower_document_number():
    data = np.ones(6, dtype=np.float32)
    indices = np.array([2, 4, 7, 1, 3, 9], dtype=np.int32)  # one term: 2, 4, 7; another: 1, 3, 9
    indptr = np.array([0, 3, 6])
    docs, scores = top_k(data, indices, indptr, max_contributions(data, indptr), [0, 1], 4, 10)
    assert docs.tolist() == [1, 2, 3, 4] and scores.tolist() == [1.0] * 4


def test_no_terms_or_no_k_gives_nothing():
    data, indices, indptr = np.ones(2, np.float32), np.array([0, 1], np.int32), np.array([0, 2, 2])
    best = max_contributions(data, indptr)
    assert best.tolist() == [1.0, 0.0]
    assert len(top_k(data, indices, indptr, best, [], 5, 2)[0]) == 0
    assert len(top_k(data, indices, indptr, best, [1], 5, 2)[0]) == 0  # a term with no postings
    assert len(top_k(data, indices, indptr, best, [0], 0, 2)[0]) == 0
    assert build_matrix([[], []]).top_k(["a"], 3)[0].tolist() == []


def test_index_search_matches_bm25s_retrieve(tmp_path, corpus):
    docs, ref, _ = corpus
    keyword = BM25Index(tmp_path / "bm25")
    keyword._tokens = {f"d{i}": doc for i, doc in enumerate(docs)}
    keyword._dirty = True
    df = Counter(t for doc in docs for t in set(doc))
    n = len(docs)
    for term in ("w0", "w7", "w1999", "never-seen"):
        assert keyword.idf(term) == pytest.approx(math.log(1 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5)))
    rng = np.random.default_rng(3)
    for _ in range(60):
        words = [f"w{w}" for w in rng.integers(0, 2000, rng.integers(1, 6))]
        terms = list(dict.fromkeys(words))
        known = [t for t in terms if t in ref.vocab_dict]
        ceiling = sum(keyword.idf(t) for t in terms)
        got = keyword.search(" ".join(words), 20, normalized=True)
        if not known:
            assert got == []
            continue
        _, raw = ref.retrieve([known], k=20, show_progress=False, n_threads=1)
        np.testing.assert_allclose([s for _, s in got], [s / ceiling for s in raw[0] if s > 0], rtol=1e-5)
        full = ref.get_scores(known)
        for id_, s in got:  # each chunk's score is its own
            assert full[int(id_[1:])] / ceiling == pytest.approx(s, rel=1e-5)
