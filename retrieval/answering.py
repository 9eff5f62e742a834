"""Grounded answers: a quote picked by the reader, a generated answer that passed the
check against its cited blocks, or "not found".

- `choose_mode`: ``answer.mode = auto`` means extractive for the packaged small model and
  for questions in a language the configured model does not serve well, else generative.
- `extractive_answer`: the reader's best span over the blocks, cited to its block, or
  "not found" below the reader's threshold. It cannot state what no block says.
- `checked_answer`: a generated answer verified by `retrieval.verify`; one that fails is
  replaced by the reader's quote, or "not found".
- `CheckedStream`: the same for a stream of text; the verdict is known when it ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from kbqa.retrieval.packaged import PACKAGED_LLM
from kbqa.retrieval.prompts import NOT_FOUND
from kbqa.retrieval.types import Hit
from kbqa.retrieval.verify import verify_answer

MODES = ("auto", "extractive", "generative")
_SENTENCE_END = re.compile(r"[。！？\n]|[.!?](?=\s|$)")


@dataclass
class Grounded:
    """An answer's text and how it was made: `mode`, `grounded`, the `unsupported` parts of a
    rejected generation, the `evidence` sentence of a quote, `found` False for "not found"."""

    text: str
    mode: str
    found: bool = True
    grounded: bool = True
    unsupported: list[str] = field(default_factory=list)
    evidence: str | None = None
    replaced: bool = False  # a generated answer failed its check and was replaced


def model_languages(configured: Sequence[str] | None, model: str) -> list[str] | None:
    """Languages the LLM answers well in; None = all. The packaged SmolLM2-135M: English only."""
    if configured is not None:
        return list(configured)
    return ["en"] if model == PACKAGED_LLM else None


def choose_mode(mode: str, model: str, languages: Sequence[str] | None, lang: str) -> str:
    if mode not in MODES:
        raise ValueError(f"answer.mode: unknown mode {mode!r} (choose {', '.join(MODES)})")
    if mode != "auto":
        return mode
    if model == PACKAGED_LLM:
        return "extractive"
    return "generative" if languages is None or lang in languages else "extractive"


def not_found(lang: str, mode: str) -> Grounded:
    return Grounded(NOT_FOUND[lang], mode, found=False)


def evidence_sentence(text: str, start: int, end: int) -> str:
    """The sentence of `text` that holds characters [start, end)."""
    left = max((m.end() for m in _SENTENCE_END.finditer(text, 0, start)), default=0)
    stop = _SENTENCE_END.search(text, end)
    right = stop.end() if stop else len(text)
    return text[left:right].strip()


def extractive_answer(reader, question: str, hits: Sequence[Hit], lang: str, *, threshold: float, style: str = "phrase") -> Grounded:
    """The reader's best span over the blocks, as ``"span [n]"``; "not found" below `threshold`."""
    passages = [h.chunk.text for h in hits]
    spans = reader.read(question, passages) if passages else []
    if not spans or reader.confidence(question, passages, spans, lang) < threshold:
        return not_found(lang, "extractive")
    best = spans[0]
    evidence = evidence_sentence(passages[best.passage], best.start, best.end)
    body = evidence if style == "sentence" else best.text
    return Grounded(f"{body} [{best.passage + 1}]", "extractive", evidence=evidence)


def checked_answer(text: str, hits: Sequence[Hit], lang: str, fallback: Callable[[], Grounded] | None) -> Grounded:
    """Verify a generated answer against its blocks; replace one that fails by `fallback()`
    (the reader's quote) or "not found"."""
    stripped = text.strip()
    if stripped in NOT_FOUND.values():
        return Grounded(stripped, "generative", found=False)
    verdict = verify_answer(stripped, [h.chunk.text for h in hits])
    if verdict.grounded:
        return Grounded(stripped, "generative")
    replacement = fallback() if fallback is not None else not_found(lang, "generative")
    return Grounded(
        replacement.text, "generative", found=replacement.found, grounded=False, unsupported=verdict.unsupported, evidence=replacement.evidence, replaced=True
    )


def text_pieces(text: str) -> list[str]:
    """A finished answer as a stream: words with their trailing space (CJK text: short runs)."""
    return re.findall(r"[^\s\u3000-\u9fff]+\s*|[\u3000-\u9fff]{1,4}\s*|\s+", text) or [text]


class CheckedStream:
    """An answer's text as a generator of strings; `result` (a `Grounded`) is set when it ends.

    Built from a token stream and a function that checks the whole text, or from a finished
    answer (an extractive quote, a cached answer, "not found")."""

    def __init__(self, tokens: Iterator[str] | None = None, check: Callable[[str], Grounded] | None = None, *, done: Grounded | None = None):
        self._tokens = iter(tokens if tokens is not None else text_pieces(done.text if done else ""))
        self._check = check
        self._parts: list[str] = []
        self.result: Grounded | None = done
        self.prompt: list[str] = []  # the texts the answer is made from (for token counts)

    def __iter__(self) -> "CheckedStream":
        return self

    def __next__(self) -> str:
        try:
            piece = next(self._tokens)
        except StopIteration:
            if self.result is None and self._check is not None:
                self.result = self._check("".join(self._parts))
            raise
        self._parts.append(piece)
        return piece

    def finish(self, text: str) -> Grounded | None:
        """Check `text`, what was sent of an answer whose reader stopped early (at a stop
        sequence or a token limit), when the stream did not end by itself."""
        if self.result is None and self._check is not None:
            self.result = self._check(text)
        return self.result

    def close(self) -> None:
        close = getattr(self._tokens, "close", None)
        if close is not None:
            close()
