"""Recursive, Chinese-aware splitting with sizes counted in the embedder's tokens.

Text is cut into sentences (Chinese 。！？； and English . ! ? ; and newlines),
sentences that are still too long into clauses (，、,: and spaces), then into hard pieces.
Sentences are packed greedily up to ``chunk_tokens``; each chunk starts with the
last sentences of the previous one, up to ``overlap_tokens``.

Long lines. Counting costs per character and per piece, so a sentence over the limit
(a minified dump, a text without sentence ends: one 2 MB line) is not counted clause by
clause. Its clauses are grouped into spans of about sqrt(chunk_tokens * tokens per clause)
tokens, the spans are counted in one call, and a span is opened (its clauses counted) only
where a chunk boundary or the overlap falls inside it; a sentence longer than
8 * chunk_tokens characters goes straight to spans, sized by a sample, without being
counted whole first. The tokenizer then sees such a line about 1.2-1.6 times, in a few
pieces per chunk (counting every clause took 2 passes and 40-120 pieces per chunk).
Wherever a span's count is the sum of its clauses' counts -- always for MiniLM's
WordPiece, which splits at the spaces and punctuation where clauses end -- the chunks are
exactly those of counting every clause.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate

CountTokens = Callable[[Sequence[str]], list[int]]

_SENTENCE = re.compile(r".+?(?:[。！？；!?;]+[”’\"'）)\]]*|\.(?=\s)|\n+|$)", re.S)
_CLAUSE = re.compile(r".+?(?:[，、,:：]+|\s+|$)", re.S)

# (text, tokens, clauses): `clauses` is set for a span of an over-long sentence, which
# the packer may open into its clauses; None for a unit that is never cut further.
_Unit = tuple[str, int, "list[str] | None"]


def _pieces(pattern: re.Pattern[str], text: str) -> list[str]:
    return [m.group(0) for m in pattern.finditer(text) if m.group(0)]


def _hard_split(text: str, tokens: int, limit: int, count: CountTokens) -> list[_Unit]:
    """Cut at character positions sized by the text's characters-per-token ratio; a piece
    still over `limit` (uneven text: long runs that are one token beside dense ones) is cut again."""
    per_piece = max(1, int(len(text) * limit / max(tokens, 1) * 0.9))
    pieces = [text[i : i + per_piece] for i in range(0, len(text), per_piece)]
    out: list[_Unit] = []
    for piece, n in zip(pieces, count(pieces)):
        if n > limit and 1 < len(piece) < len(text):
            out.extend(_hard_split(piece, n, limit, count))
        else:
            out.append((piece, n, None))
    return out


def _open(clauses: list[str], count: CountTokens, limit: int) -> list[_Unit]:
    """A span's clauses with their token counts; a clause over `limit` in hard pieces."""
    out: list[_Unit] = []
    for clause, n in zip(clauses, count(clauses)):
        out.extend([(clause, n, None)] if n <= limit else _hard_split(clause, n, limit, count))
    return out


def _spans(clauses: list[str], chars_per_token: float, tokens_per_clause: float, count: CountTokens, limit: int) -> list[_Unit]:
    """An over-long sentence's clauses grouped into spans, each counted (one call).

    A span holds about sqrt(limit * tokens per clause) tokens: few spans per chunk, and
    few clauses to count where a span has to be opened. The sizes only decide the cost:
    the chunks come out the same for any grouping when counts add up over clauses."""
    span_tokens = min(limit / 2, math.sqrt(limit * tokens_per_clause))
    span_chars = max(1, int(span_tokens * chars_per_token))
    ends = list(accumulate(map(len, clauses)))  # character offset after each clause
    groups: list[list[str]] = []
    i = 0
    while i < len(clauses):
        j = max(i + 1, bisect_right(ends, (ends[i - 1] if i else 0) + span_chars, i))
        groups.append(clauses[i:j])
        i = j
    texts = ["".join(g) for g in groups]
    out: list[_Unit] = []
    for group, text, n in zip(groups, texts, count(texts)):
        if len(group) > 1:
            out.append((text, n, group))
        elif n <= limit:
            out.append((text, n, None))
        else:
            out.extend(_hard_split(text, n, limit, count))
    return out


def _long_sentence(sentence: str, count: CountTokens, limit: int) -> list[_Unit]:
    """A sentence too long (in characters) to be worth counting whole first: its spans are
    counted straight away, sized by a sample of its text. Only when they add up to about a
    chunk or less is the sentence counted whole, to decide exactly whether it fits in one."""
    clauses = _pieces(_CLAUSE, sentence)
    if len(clauses) == 1:
        n = count([sentence])[0]
        return [(sentence, n, None)] if n <= limit else _hard_split(sentence, n, limit, count)
    third = len(sentence) // 3
    samples = [sentence[i : i + 1024] for i in (0, third, 2 * third)]  # beginning, middle, end
    tokens = max(sum(count(samples)), 1)
    sample_clauses = sum(len(_pieces(_CLAUSE, sample)) for sample in samples)
    spans = _spans(clauses, sum(map(len, samples)) / tokens, tokens / sample_clauses, count, limit)
    if sum(u[1] for u in spans) <= 2 * limit:
        n = count([sentence])[0]
        if n <= limit:
            return [(sentence, n, None)]
    return spans


def _units(text: str, count: CountTokens, limit: int) -> Iterator[_Unit]:
    """Sentences of at most `limit` tokens, and spans of the longer ones, in order.

    Sentences are counted in one call, except those longer than `8 * limit` characters:
    counting a 2 MB line whole only to learn that it is too long would double the work."""
    sentences = _pieces(_SENTENCE, text)
    long_chars = 8 * limit
    short = [s for s in sentences if len(s) <= long_chars]
    counts = iter(count(short) if short else [])
    for sentence in sentences:
        if len(sentence) > long_chars:
            yield from _long_sentence(sentence, count, limit)
            continue
        n = next(counts)
        if n <= limit:
            yield sentence, n, None
            continue
        clauses = _pieces(_CLAUSE, sentence)
        if len(clauses) == 1:
            yield from _hard_split(sentence, n, limit, count)
        else:
            yield from _spans(clauses, len(sentence) / max(n, 1), n / len(clauses), count, limit)


def split_text(text: str, count: CountTokens, chunk_tokens: int = 200, overlap_tokens: int = 32) -> list[str]:
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be positive")
    overlap_tokens = min(overlap_tokens, chunk_tokens // 2)
    text = text.strip()
    if not text:
        return []
    chunks: list[str] = []
    current: list[_Unit] = []
    size = 0
    units = _units(text, count, chunk_tokens)
    opened: list[_Unit] = []  # clauses of an opened span still to place, last one first
    while True:
        unit = opened.pop() if opened else next(units, None)
        if unit is None:
            break
        n, clauses = unit[1], unit[2]
        if clauses is not None and (n > chunk_tokens or (current and size + n > chunk_tokens)):
            opened.extend(reversed(_open(clauses, count, chunk_tokens)))
            continue
        if current and size + n > chunk_tokens:
            chunks.append("".join(u[0] for u in current).strip())
            current = _overlap(current, n, overlap_tokens, chunk_tokens, count)
            size = sum(u[1] for u in current)
        current.append(unit)
        size += n
    if current:
        tail = "".join(u[0] for u in current).strip()
        if tail and (not chunks or not chunks[-1].endswith(tail)):
            chunks.append(tail)
    return [c for c in chunks if c]


def _overlap(current: list[_Unit], n: int, overlap_tokens: int, chunk_tokens: int, count: CountTokens) -> list[_Unit]:
    """The tail of a finished chunk that starts the next one: whole units from the end while
    they fit in `overlap_tokens` and leave room for the next unit (`n` tokens); a span that
    does not fit whole is opened (in `current`), since its last clauses may."""
    carried: list[_Unit] = []
    carried_size = 0
    i = len(current) - 1
    while i >= 0:
        unit = current[i]
        m, clauses = unit[1], unit[2]
        if carried_size + m > overlap_tokens or carried_size + m + n > chunk_tokens:
            if clauses is None:
                break
            parts = _open(clauses, count, chunk_tokens)
            current[i : i + 1] = parts
            i += len(parts) - 1
            continue
        carried.append(unit)
        carried_size += m
        i -= 1
    carried.reverse()
    return carried
