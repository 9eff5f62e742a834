"""Context assembly: from retrieved chunks to the passages the model reads.

1. Deduplicate: the same chunk twice, or the same text in two documents (copies), once.
2. Merge: hits that are adjacent (or the same) chunks of one document and page become one
   passage, their overlap removed.
3. Small-to-big: while the token budget allows, each passage grows by its neighbouring
   chunks (same document, same page, so a citation's page stays true), best passage first.
4. Trim to the budget: passages are kept best first; one that does not fit is left out,
   except the best, which is cut to fit.

A passage is a `Hit` whose chunk is the first chunk of its span (source, page and chunk
index for the citation) with the merged text, and whose score is its best hit's score.
Passages come back in rank order. Pure logic: the caller supplies the lookups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from kbqa.retrieval.types import Chunk, Hit

CountTokens = Callable[[Sequence[str]], list[int]]
DocumentChunkIds = Callable[[Chunk], Sequence[str] | None]  # ordered chunk ids of the chunk's document
FetchChunks = Callable[[Sequence[str]], list[Chunk]]


@dataclass
class _Passage:
    doc: str
    chunks: dict[int, Chunk] = field(default_factory=dict)  # chunk index -> chunk
    score: float = 0.0

    @property
    def span(self) -> tuple[int, int]:
        return min(self.chunks), max(self.chunks)

    def text(self) -> str:
        return join_overlapping([self.chunks[i].text for i in sorted(self.chunks)])

    def hit(self, text: str | None = None) -> Hit:
        first = self.chunks[self.span[0]]
        return Hit(replace(first, text=self.text() if text is None else text), self.score)


def join_overlapping(texts: Sequence[str], min_overlap: int = 8) -> str:
    """Join consecutive chunk texts, dropping the longest suffix/prefix overlap between neighbours."""
    if not texts:
        return ""
    out = texts[0]
    for nxt in texts[1:]:
        limit = min(len(out), len(nxt))
        cut = 0
        for n in range(limit, min_overlap - 1, -1):
            if out.endswith(nxt[:n]):
                cut = n
                break
        out = out + nxt[cut:] if cut else out.rstrip() + "\n" + nxt.lstrip()
    return out


def _doc_key(chunk: Chunk) -> str:
    return f"{chunk.source}\x00{chunk.doc_hash}\x00{chunk.page or 0}"


def assemble_context(
    hits: Sequence[Hit],
    *,
    budget_tokens: int,
    count_tokens: CountTokens,
    document_chunk_ids: DocumentChunkIds | None = None,
    fetch: FetchChunks | None = None,
    neighbors: int = 1,
) -> list[Hit]:
    if budget_tokens <= 0:
        raise ValueError(f"context budget must be positive, got {budget_tokens} tokens (llm.max_context_tokens too small?)")
    # 1. dedupe (by id, then by exact text) and 2. merge adjacent hits of one document/page
    seen_ids, seen_text = set(), set()
    passages: list[_Passage] = []
    for hit in sorted(hits, key=lambda h: -h.score):
        c = hit.chunk
        digest = hashlib.sha1(c.text.strip().encode()).hexdigest()
        if c.id in seen_ids or digest in seen_text:
            continue
        seen_ids.add(c.id)
        seen_text.add(digest)
        for p in passages:
            lo, hi = p.span
            if p.doc == _doc_key(c) and lo - 1 <= c.chunk <= hi + 1:
                p.chunks[c.chunk] = c
                break
        else:
            passages.append(_Passage(_doc_key(c), {c.chunk: c}, hit.score))
    passages = _coalesce(passages)

    def cost(ps: Sequence[_Passage]) -> int:
        texts = [p.text() for p in ps]
        return sum(count_tokens(texts)) if texts else 0

    # 4. keep best first while they fit (the best always, cut if need be)
    kept: list[_Passage] = []
    used = 0
    for p in passages:
        n = cost([p])
        if used + n <= budget_tokens:
            kept.append(p)
            used += n
        elif not kept:
            return [p.hit(_cut_to(p.text(), budget_tokens, count_tokens))]
    # 3. small-to-big while the budget allows
    if neighbors > 0 and document_chunk_ids is not None and fetch is not None:
        for p in kept:
            ids = list(document_chunk_ids(p.chunks[p.span[0]]) or [])
            if not ids:
                continue
            for step in range(1, neighbors + 1):
                lo, hi = p.span
                wanted = [ids[i] for i in (lo - step, hi + step) if 0 <= i < len(ids)]
                wanted = [i for i in wanted if i not in seen_ids]
                for extra in fetch(wanted):
                    if _doc_key(extra) != p.doc or extra.chunk in p.chunks:
                        continue
                    before = cost([p])
                    p.chunks[extra.chunk] = extra
                    grown = cost([p]) - before
                    if used + grown <= budget_tokens:
                        used += grown
                        seen_ids.add(extra.id)
                    else:
                        del p.chunks[extra.chunk]
        kept = _coalesce(kept)
    return [p.hit() for p in kept]


def _coalesce(passages: list[_Passage]) -> list[_Passage]:
    """Passages of one document/page whose spans touch become one (the better one's place)."""
    out: list[_Passage] = []
    for p in passages:
        for q in out:
            (a, b), (c, d) = q.span, p.span
            if q.doc == p.doc and c <= b + 1 and a <= d + 1:
                q.chunks.update(p.chunks)
                q.score = max(q.score, p.score)
                break
        else:
            out.append(p)
    return out


def _cut_to(text: str, budget: int, count_tokens: CountTokens) -> str:
    """The longest prefix of `text` (at a word boundary where possible) within `budget` tokens."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens([text[:mid]])[0] <= budget:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    space = cut.rfind(" ")
    return cut[:space] if space > lo * 0.8 else cut


def context_budget(max_context_tokens: int, max_new_tokens: int, reserve: int = 256) -> int:
    """Tokens left for context blocks: the window minus the answer and the prompt's frame (`reserve`)."""
    return max(64, max_context_tokens - max_new_tokens - reserve)
