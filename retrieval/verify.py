"""Check a generated answer against the blocks it cites.

A sentence is supported when every citation in it points at a block that exists, and
every number, date and name in it occurs in the blocks it cites (in any block, when it
cites none). `verify_answer` returns the verdict and the unsupported parts; the caller
replaces a failed answer by a quote or by "not found". Pure functions, no model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from kbqa.retrieval.citations import MARKER, cited_numbers

# a sentence ends at 。！？ or a line break, or at . ! ? before white space (not inside 3.2);
# the citation markers right after its end belong to it
_END = re.compile(r"[。！？\n]+|[.!?]+(?=\s|$)")
_LIST_MARK = re.compile(r"(?m)^\s*(?:\d{1,2}[.)、]|[-*•])\s+")
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of|de|von|van|the|and)?\s*[A-Z][\w'’-]*)*")
_QUOTED = re.compile(r"[《“\"「]([^》”\"」]{1,40})[》”\"」]")
_COMMON_CAPS = {
    "I",
    "A",
    "An",
    "The",
    "It",
    "Its",
    "This",
    "That",
    "These",
    "Those",
    "He",
    "She",
    "They",
    "We",
    "You",
    "In",
    "On",
    "At",
    "By",
    "For",
    "From",
    "To",
    "Of",
    "And",
    "But",
    "Or",
    "If",
    "As",
    "Yes",
    "No",
    "There",
    "According",
    "Context",
    "Answer",
    "Question",
    "Block",
    "Blocks",
    "Source",
    "Sources",
}


@dataclass
class Verdict:
    grounded: bool
    unsupported: list[str] = field(default_factory=list)  # readable: each missing citation and unsupported fact
    facts: list[str] = field(default_factory=list)  # the unsupported facts themselves


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(_norm(text))}


def facts(sentence: str) -> list[str]:
    """The checkable facts of a sentence: its numbers and dates, its capitalised names, its quoted terms."""
    body = MARKER.sub(" ", sentence)
    found = [n for n in _NUMBER.findall(unicodedata.normalize("NFKC", body))]
    for m in _NAME.finditer(body):
        words = [w for w in m.group().split() if w not in _COMMON_CAPS]
        if words and any(w[0].isupper() for w in words):
            found.append(" ".join(words))
    found += [q.strip() for q in _QUOTED.findall(body) if q.strip()]
    return list(dict.fromkeys(found))


def is_number(fact: str) -> bool:
    return _NUMBER.fullmatch(unicodedata.normalize("NFKC", fact)) is not None


def _supported(fact: str, blocks: Sequence[tuple[str, set[str]]]) -> bool:
    """`blocks`: (normalised text, numbers) of each block the fact may come from."""
    if is_number(fact):
        return any(fact.replace(",", "") in numbers for _, numbers in blocks)
    return any(_norm(fact) in text for text, _ in blocks)


def sentences(answer: str) -> list[str]:
    text = _LIST_MARK.sub("", answer)
    out, start = [], 0
    for m in _END.finditer(text):
        end = m.end()
        while (cite := MARKER.match(text, end)) is not None:
            end = cite.end()
        out.append(text[start:end])
        start = end
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def verify_answer(answer: str, blocks: Sequence[str]) -> Verdict:
    """`blocks[n - 1]` is the text of block [n] as the model saw it."""
    unsupported: list[str] = []
    bad_facts: list[str] = []
    normalised = [(_norm(b), _numbers(b)) for b in blocks]  # once per block, not per fact
    for sentence in sentences(answer):
        cited = cited_numbers(sentence)
        missing = [n for n in cited if not 1 <= n <= len(blocks)]
        unsupported += [f"[{n}]: no such block (there are {len(blocks)})" for n in missing]
        sources = [normalised[n - 1] for n in cited if 1 <= n <= len(blocks)] or normalised
        where = "the cited blocks" if cited else "any block"
        failed = [fact for fact in facts(sentence) if not _supported(fact, sources)]
        bad_facts += failed
        unsupported += [f"{fact!r}: not in {where}" for fact in failed]
    return Verdict(not unsupported, unsupported, bad_facts)
