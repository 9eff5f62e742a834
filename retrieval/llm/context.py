"""Fit a conversation into the model's context window, and cut text at stop sequences.

`fit_messages` keeps the system prompt and the last message; it first drops the oldest
turns in between, then shortens the longest message from its middle (for a RAG prompt
that keeps the top-ranked context blocks at the start and the question at the end).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)
Message = dict[str, str]
ELLIPSIS = "\n…\n"
_TAIL_SHARE = 0.25  # share of the kept characters taken from the end of a shortened message


def prompt_budget(max_context_tokens: int | None, max_new_tokens: int, model_limit: int | None = None) -> int | None:
    """Tokens left for the prompt once the answer's tokens are reserved (None = no limit)."""
    limits = [n for n in (max_context_tokens, model_limit) if n]
    if not limits:
        return None
    window = min(limits)
    if max_new_tokens >= window:
        raise ValueError(f"max_tokens={max_new_tokens} does not fit in a context window of {window} tokens (llm.max_context_tokens)")
    return window - max_new_tokens


def fit_messages(messages: Sequence[Message], count: Callable[[list[Message]], int], budget: int | None) -> list[Message]:
    """Return `messages` trimmed so that ``count(messages) <= budget``; raise if impossible."""
    msgs = [dict(m) for m in messages]
    if budget is None or not msgs:
        return msgs
    before = count(msgs)
    if before <= budget:
        return msgs
    # 1. drop the oldest turns, keeping a leading system prompt and the last message
    first = 1 if msgs[0].get("role") == "system" else 0
    while len(msgs) - first > 1 and count(msgs) > budget:
        del msgs[first]
    # 2. shorten the longest message from its middle
    while count(msgs) > budget:
        i = max(range(len(msgs)), key=lambda j: len(msgs[j]["content"]))
        text = msgs[i]["content"]
        if len(text) <= len(ELLIPSIS):
            raise ValueError(f"the prompt does not fit in {budget} tokens even with its messages emptied (llm.max_context_tokens too small)")

        def fits(keep: int) -> bool:
            trial = list(msgs)
            trial[i] = {**msgs[i], "content": _shorten(text, keep)}
            return count(trial) <= budget

        lo, hi = 0, len(text) - 1  # largest `keep` that fits, by bisection
        if not fits(lo):
            msgs[i] = {**msgs[i], "content": ""}
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        msgs[i] = {**msgs[i], "content": _shorten(text, lo)}
    log.warning("prompt trimmed from %d to %d tokens to fit the context window", before, count(msgs))
    return msgs


def _shorten(text: str, keep: int) -> str:
    if keep >= len(text):
        return text
    if keep <= 0:
        return ELLIPSIS.strip()
    tail = int(keep * _TAIL_SHARE)
    head = keep - tail
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def approx_tokens(messages: Sequence[Message]) -> int:
    """A token estimate for servers whose tokenizer we do not have: one token per CJK
    character, one per 4 other characters (English BPE averages about 4), 8 per message
    for the template."""
    total = 0
    for m in messages:
        text = m.get("content", "")
        cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uff00" <= ch <= "\uffef")
        total += cjk + math.ceil((len(text) - cjk) / 4) + 8
    return total


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to (without) the first stop sequence."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def stream_until_stop(pieces: Iterable[str], stops: Sequence[str]) -> Iterator[str]:
    """Pass streamed text through, ending before the first stop sequence. Holds back only
    as many characters as a stop sequence could still be completing."""
    stops = [s for s in stops if s]
    if not stops:
        yield from pieces
        return
    hold = max(len(s) for s in stops) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = cut_at_stop(buffer, stops)
        if len(cut) < len(buffer):
            if cut:
                yield cut
            return
        safe = len(buffer) - hold
        if safe > 0:
            yield buffer[:safe]
            buffer = buffer[safe:]
    if buffer:
        yield buffer
