"""The BM25 score matrix: built with numpy, searched exactly for the top k without reading
the long posting lists that cannot change the result.

Layout (as bm25s's, term-major CSC): for term t, ``indices[indptr[t]:indptr[t + 1]]`` are the
documents containing it, in ascending order, and ``data[...]`` the term's contribution to
each, Lucene BM25: ``idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))`` with
``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` (`build_matrix`; equal to bm25s's index, which
builds it document by document in Python: 137 s at a million chunks on the shared 2-core
machine, against 32-43 s here, most of it mapping tokens to numbers).

`top_k`, MaxScore: a document's score is the sum of its contributions over the query's terms.
Summing every posting of a common term touches most of the corpus (at a million chunks one
frequent word's list holds 900,000 entries) although such a term adds little to any score.
Order the query's terms by their largest contribution, best first. The first ``j`` terms are
*essential*: only documents in their lists are candidates, and a document in none of them
scores at most ``rest``, the sum of the other terms' largest contributions. The k-th best
essential-only score ``theta`` bounds the k-th best full score from below, so once
``theta >= rest`` no outside document can enter the top k, and a candidate whose essential
score plus ``rest`` stays below ``theta`` cannot either. The survivors get their exact score
by looking up the non-essential terms one by one (binary search in their sorted lists),
``rest`` shrinking and ``theta`` rising after each, so fewer survive each lookup. The result
equals scoring every document (ties broken by document number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np


@dataclass(frozen=True)
class ScoreMatrix:
    data: np.ndarray  # float32 contributions, term-major
    indices: np.ndarray  # int32 documents, ascending within a term
    indptr: np.ndarray  # int64, one more than the terms
    vocab: dict[str, int]  # token -> term number
    max_score: np.ndarray  # per term, its largest contribution
    num_docs: int

    def df(self, term: str) -> int:
        """Documents containing `term` (0 when unseen)."""
        t = self.vocab.get(term)
        return 0 if t is None else int(self.indptr[t + 1] - self.indptr[t])

    def top_k(self, terms: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = [self.vocab[t] for t in terms if t in self.vocab]
        return top_k(self.data, self.indices, self.indptr, self.max_score, ids, k, self.num_docs)


def build_matrix(corpus: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> ScoreMatrix:
    """The Lucene BM25 matrix of `corpus` (one token list per document)."""
    n = len(corpus)
    # token -> term number in first-seen order; map() and fromiter() keep the loops in C
    vocab = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(corpus)))}
    lengths = np.fromiter(map(len, corpus), dtype=np.int64, count=n)
    total = int(lengths.sum())
    if total == 0:
        empty = np.zeros(0, np.float32)
        return ScoreMatrix(empty, np.zeros(0, np.int32), np.zeros(1, np.int64), vocab, np.zeros(0), n)
    key = np.fromiter(map(vocab.__getitem__, chain.from_iterable(corpus)), dtype=np.int64, count=total)
    occurrences = np.bincount(key, minlength=len(vocab))
    key *= n
    key += np.repeat(np.arange(n, dtype=np.int64), lengths)  # term-major, then document
    key.sort()
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))  # one per (term, document)
    tf = np.diff(np.append(starts, total)).astype(np.float64)
    term = np.repeat(np.arange(len(vocab), dtype=np.int32), occurrences)[starts]  # sorted keys: no division
    doc = key[starts] - term.astype(np.int64) * n
    del key
    df = np.bincount(term, minlength=len(vocab))
    indptr = np.concatenate(([0], np.cumsum(df))).astype(np.int64)
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    data = (idf[term] * tf / (tf + norm[doc])).astype(np.float32)
    return ScoreMatrix(data, doc.astype(np.int32), indptr, vocab, max_contributions(data, indptr), n)


def max_contributions(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The largest contribution of each term (0 for a term with no postings)."""
    sizes = np.diff(indptr)
    out = np.zeros(len(sizes), dtype=np.float64)
    present = sizes > 0
    if present.any():
        out[present] = np.maximum.reduceat(data, indptr[:-1][present])
    return out


def top_k(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    max_score: np.ndarray,
    term_ids: Sequence[int],
    k: int,
    num_docs: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(documents, scores) of the k best documents matching any of `term_ids`, best first.

    Documents that match no term are left out, so fewer than k may come back.
    """
    terms = sorted({int(t) for t in term_ids if indptr[t + 1] > indptr[t]}, key=lambda t: (-max_score[t], int(indptr[t + 1] - indptr[t])))
    if not terms or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    bounds = [float(max_score[t]) for t in terms]
    rest_after = np.concatenate([np.cumsum(bounds[::-1])[::-1], [0.0]])  # rest_after[j] = sum of bounds[j:]
    length = 0
    for j in range(1, len(terms) + 1):
        t = terms[j - 1]
        length += int(indptr[t + 1] - indptr[t])
        rest = float(rest_after[j])
        if j < len(terms) and (length < k or rest_after[0] - rest < rest):
            continue  # fewer candidates than k, or even a perfect candidate cannot reach `rest`
        cand, score = _essential_scores(data, indices, indptr, terms[:j], length, num_docs)
        if j == len(terms):
            return _best(cand, score, k)
        if len(cand) < k:
            continue
        theta = float(np.partition(score, len(score) - k)[len(score) - k])
        if theta < rest:
            continue
        for i in range(j, len(terms)):  # the other terms, best first; fewer survive as `rest` shrinks
            keep = score + rest_after[i] >= theta
            cand, score = cand[keep], score[keep]
            t = terms[i]
            post = indices[indptr[t] : indptr[t + 1]]
            pos = np.searchsorted(post, cand)
            np.minimum(pos, len(post) - 1, out=pos)
            hit = post[pos] == cand
            score[hit] += data[indptr[t] + pos[hit]]
            theta = max(theta, float(np.partition(score, len(score) - k)[len(score) - k]))
        return _best(cand, score, k)
    raise AssertionError("unreachable: the last round scores every term")


def _essential_scores(data, indices, indptr, terms: list[int], length: int, num_docs: int):
    """Candidates (ascending) and their summed contributions over `terms`."""
    if len(terms) == 1:
        t = terms[0]
        return indices[indptr[t] : indptr[t + 1]].astype(np.int64), data[indptr[t] : indptr[t + 1]].astype(np.float64)
    if length * 8 > num_docs:  # long lists: a dense accumulator beats sorting them
        dense = np.zeros(num_docs, dtype=np.float64)
        for t in terms:
            dense[indices[indptr[t] : indptr[t + 1]]] += data[indptr[t] : indptr[t + 1]]  # a document once per list
        cand = np.flatnonzero(dense)
        return cand, dense[cand]
    docs = np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in terms])
    values = np.concatenate([data[indptr[t] : indptr[t + 1]] for t in terms])
    cand, inverse = np.unique(docs, return_inverse=True)
    return cand.astype(np.int64), np.bincount(inverse, weights=values, minlength=len(cand))


def _best(cand: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of `cand` (ascending), ties going to the lower document number."""
    if len(cand) > k:
        kth = np.partition(score, len(score) - k)[len(score) - k]
        above = np.flatnonzero(score > kth)
        ties = np.flatnonzero(score == kth)[: k - len(above)]
        pick = np.concatenate([above, ties])
        cand, score = cand[pick], score[pick]
    order = np.lexsort((cand, -score))
    return cand[order], score[order]
