"""Recursive, Chinese-aware splitting with sizes counted in the embedder's tokens.

Text is cut into sentences (Chinese 。！？； and English . ! ? ; and newlines),
sentences that are still too long into clauses (，、,:), then into hard pieces.
Sentences are packed greedily up to ``chunk_tokens``; each chunk starts with the
last sentences of the previous one, up to ``overlap_tokens``.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

CountTokens = Callable[[Sequence[str]], list[int]]

_SENTENCE = re.compile(r".+?(?:[。！？；!?;]+[”’\"'）)\]]*|\.(?=\s)|\n+|$)", re.S)
_CLAUSE = re.compile(r".+?(?:[，、,:：]+|\s+|$)", re.S)


def _pieces(pattern: re.Pattern[str], text: str) -> list[str]:
    return [m.group(0) for m in pattern.finditer(text) if m.group(0)]


def _hard_split(text: str, tokens: int, limit: int) -> list[str]:
    """Cut at character positions sized by the text's characters-per-token ratio."""
    per_piece = max(1, int(len(text) * limit / max(tokens, 1) * 0.9))
    return [text[i : i + per_piece] for i in range(0, len(text), per_piece)]


def _units(text: str, count: CountTokens, limit: int) -> list[tuple[str, int]]:
    """Sentences (or smaller pieces) of at most `limit` tokens, with their token counts."""
    sentences = _pieces(_SENTENCE, text)
    out: list[tuple[str, int]] = []
    for sentence, n in zip(sentences, count(sentences)):
        if n <= limit:
            out.append((sentence, n))
            continue
        clauses = _pieces(_CLAUSE, sentence)
        for clause, m in zip(clauses, count(clauses)):
            if m <= limit:
                out.append((clause, m))
            else:
                hard = _hard_split(clause, m, limit)
                out.extend(zip(hard, count(hard)))
    return out


def split_text(text: str, count: CountTokens, chunk_tokens: int = 200, overlap_tokens: int = 32) -> list[str]:
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be positive")
    overlap_tokens = min(overlap_tokens, chunk_tokens // 2)
    text = text.strip()
    if not text:
        return []
    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    size = 0
    for unit, n in _units(text, count, chunk_tokens):
        if current and size + n > chunk_tokens:
            chunks.append("".join(u for u, _ in current).strip())
            # carry the tail of this chunk into the next one as overlap
            carried: list[tuple[str, int]] = []
            carried_size = 0
            for u, m in reversed(current):
                if carried_size + m > overlap_tokens or carried_size + m + n > chunk_tokens:
                    break
                carried.insert(0, (u, m))
                carried_size += m
            current, size = carried, carried_size
        current.append((unit, n))
        size += n
    if current:
        tail = "".join(u for u, _ in current).strip()
        if tail and (not chunks or not chunks[-1].endswith(tail)):
            chunks.append(tail)
    return [c for c in chunks if c]
