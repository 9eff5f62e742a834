"""Citation markers in answers: ``[1]``, ``[1][2]``, ``[1, 2]``, ``【1】``.

`strip_citations` removes them (scoring compares the answer's words, not its markers);
`cited_numbers` reads which blocks a piece of text cites.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"\s*(?:\[\s*\d+(?:\s*[,，、]\s*\d+)*\s*\]|【\s*\d+(?:\s*[,，、]\s*\d+)*\s*】)")


def strip_citations(text: str) -> str:
    """The text without its citation markers, white space tidied (``"eight [1]."`` -> ``"eight."``)."""
    out = MARKER.sub("", text)
    out = re.sub(r"[ \t]+([.,;:!?。，；：！？])", r"\1", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def cited_numbers(text: str) -> list[int]:
    """Every block number the text cites, in order of first appearance."""
    out: list[int] = []
    for m in MARKER.finditer(text):
        for n in re.findall(r"\d+", m.group()):
            if int(n) not in out:
                out.append(int(n))
    return out
