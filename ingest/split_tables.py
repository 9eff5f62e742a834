"""A page's text into chunks, with Markdown tables cut between rows and their header repeated.

Loaders give tables as Markdown (`ingest.loaders.table`). Here a page's text is read as prose
and table blocks: prose is split as always (`ingest.split.split_text`); a table becomes
chunks of its own. A table that fits in ``chunk_tokens`` is one chunk; a longer one is cut
between rows, and every chunk starts with the table's caption (the short line just above it,
such as a sheet name, when there is one) and its header and separator lines, so a retrieved
chunk still says what each value means. A row too long for a chunk even alone is split as
prose, each piece under the header. Table chunks carry no overlap: the header is their context.
A table whose header alone takes more than half a chunk is split as prose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kbqa.ingest.split import CountTokens, split_text

_ROW = re.compile(r"^\|.*\|$")
_SEPARATOR = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")
MAX_CAPTION_CHARS = 120


def _blocks(text: str) -> Iterator[tuple[str, str | list[str]]]:
    """("prose", text) and ("table", [caption or "", header, separator, row, ...]) in order."""
    lines = text.split("\n")
    prose: list[str] = []
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and _ROW.match(lines[i]) and _SEPARATOR.match(lines[i + 1]):
            caption = ""
            if prose and prose[-1].strip() and len(prose[-1]) <= MAX_CAPTION_CHARS and not _ROW.match(prose[-1]):
                caption = prose.pop().strip()
            if prose:
                yield "prose", "\n".join(prose)
                prose = []
            j = i + 2
            while j < len(lines) and _ROW.match(lines[j]):
                j += 1
            yield "table", [caption, *lines[i:j]]
            i = j
            continue
        prose.append(lines[i])
        i += 1
    if prose:
        yield "prose", "\n".join(prose)


def _table_chunks(block: list[str], count: CountTokens, chunk_tokens: int) -> list[str]:
    caption, head, rows = block[0], block[1:3], block[3:]
    top = ([caption] if caption else []) + head
    top_tokens = sum(count(top)) + len(top)
    if top_tokens > chunk_tokens // 2:
        return split_text("\n".join(block), count, chunk_tokens, 0)
    room = chunk_tokens - top_tokens
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for row, n in zip(rows, count(rows) if rows else []):
        n += 1  # the line break
        if n > room:  # one row longer than a chunk: its pieces, each under the header
            if current:
                chunks.append(current)
                current, size = [], 0
            chunks.extend([piece] for piece in split_text(row, count, room, 0))
            continue
        if current and size + n > room:
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += n
    if current or not chunks:
        chunks.append(current)
    return ["\n".join(top + rows_of) for rows_of in chunks]


def split_page(text: str, count: CountTokens, chunk_tokens: int = 200, overlap_tokens: int = 32) -> list[str]:
    """Chunks of a page's (cleaned) text; tables as described above, the rest by `split_text`."""
    if "|" not in text:
        return split_text(text, count, chunk_tokens, overlap_tokens)
    out: list[str] = []
    for kind, block in _blocks(text):
        if kind == "prose":
            out.extend(split_text(block, count, chunk_tokens, overlap_tokens))
        else:
            out.extend(_table_chunks(block, count, chunk_tokens))
    return out
