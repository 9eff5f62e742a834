"""The chat's source viewer: a cited passage shown highlighted within its document.

Pure functions, no Gradio and no knowledge base: `find_spans` locates a passage in a text
whatever its whitespace, letter case or Unicode form (the stored chunk text comes from the
ingest loaders, the page text from pdfium, and the two differ in line breaks and spacing);
`highlight_html` shows a passage marked within its neighbouring text; `mark_pdf_passage`
renders a PDF page with the passage's lines covered by translucent boxes. Chinese works
as English does: matching is by character, spaces ignored.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIN_PIECE = 6  # characters (spaces ignored) a piece of a passage needs to be looked for alone
_PIECE_BREAK = re.compile(r"\n+|(?<=[.!?;:])\s+|(?<=[。！？；])")


def _fold(ch: str) -> str:
    """One character as matching sees it: NFKC, case-folded, without spaces or control characters."""
    if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Zs"):
        return ""
    return "".join(c for c in unicodedata.normalize("NFKC", ch).casefold() if not c.isspace())


def _folded(text: str) -> tuple[str, list[int]]:
    """`text` folded, and for each folded character the index of the character it came from."""
    out, where = [], []
    for i, ch in enumerate(text):
        f = _fold(ch)
        out.append(f)
        where.extend([i] * len(f))
    return "".join(out), where


def _pieces(passage: str) -> list[str]:
    """The passage in lines, long lines in sentences: what is looked for when the whole is not found."""
    return [p for p in _PIECE_BREAK.split(passage) if len(_folded(p)[0]) >= MIN_PIECE]


def find_spans(text: str, passage: str) -> list[tuple[int, int]]:
    """Where `passage` is in `text`: sorted, disjoint (start, end) ranges of `text`.

    The whole passage when it is there (spaces, line breaks, case and full-width forms
    ignored); otherwise each of its lines or sentences that is there, so that a passage
    cut short, redacted or re-flowed still shows. Empty when nothing matches."""
    hay, where = _folded(text)
    whole = _folded(passage)[0]
    if not hay or not whole:
        return []
    found = []
    at = hay.find(whole)
    if at >= 0:
        found.append((at, at + len(whole)))
    else:
        start = 0
        for piece in _pieces(passage):
            needle = _folded(piece)[0]
            at = hay.find(needle, start)
            if at < 0:
                at = hay.find(needle)
            if at >= 0:
                found.append((at, at + len(needle)))
                start = at + len(needle)
    spans: list[tuple[int, int]] = []
    for a, b in sorted(found):
        lo, hi = where[a], where[b - 1] + 1
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    return spans


def _merge_gaps(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Neighbouring spans separated by whitespace only become one."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and not text[out[-1][1] : a].strip():
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def highlight_html(text: str, passage: str, context_chars: int = 1500) -> str:
    """`text` as HTML with `passage` in ``<mark>``, cut to `context_chars` either side of it.

    Everything is escaped; line breaks are kept (the caller shows it in a ``white-space:
    pre-wrap`` block). Without a match the start of `text` is shown, unmarked."""
    spans = _merge_gaps(text, find_spans(text, passage))
    if not spans:
        head = text[: 2 * context_chars]
        return html.escape(head) + (" …" if len(text) > len(head) else "")
    lo = max(0, spans[0][0] - context_chars)
    hi = min(len(text), spans[-1][1] + context_chars)
    if lo > 0:  # start and end at a line or word boundary where one is near
        cut = max(text.rfind("\n", lo, spans[0][0]), text.rfind(" ", lo, lo + 80))
        lo = cut + 1 if cut >= 0 else lo
    if hi < len(text):
        cut = text.find("\n", spans[-1][1], hi)
        hi = cut if cut >= 0 else hi
    parts = ["… " if lo > 0 else ""]
    at = lo
    for a, b in spans:
        parts.append(html.escape(text[at:a]))
        parts.append(f"<mark>{html.escape(text[a:b])}</mark>")
        at = b
    parts.append(html.escape(text[at:hi]))
    parts.append(" …" if hi < len(text) else "")
    return "".join(parts)


def document_html(texts: Sequence[str], passage: str, fallback: str = "", context_chars: int = 1500) -> tuple[str, bool]:
    """Neighbouring chunk texts of a document joined (their overlaps dropped), as HTML with
    `passage` marked, else `fallback` (the cited chunk as stored now); and whether either was found."""
    from kbqa.retrieval.context import join_overlapping

    text = join_overlapping(list(texts))
    for wanted in (passage, fallback):
        if wanted and find_spans(text, wanted):
            return highlight_html(text, wanted, context_chars), True
    return highlight_html(text, "", context_chars), False


@dataclass
class MarkedPage:
    """A rendered PDF page and the boxes (pixels: left, top, right, bottom) drawn over the passage."""

    image: "object"  # PIL.Image.Image
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    pages: int = 0


def _page_text(textpage) -> str:
    """The page's characters, one per pdfium character index (so that indices map to boxes)."""
    import pypdfium2.raw as raw

    chars = []
    for i in range(textpage.count_chars()):
        code = raw.FPDFText_GetUnicode(textpage.raw, i)
        chars.append(chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else " ")
    return "".join(chars)


def passage_rects(textpage, passage: str) -> list[tuple[float, float, float, float]]:
    """PDF-space rectangles (left, bottom, right, top) of the lines `passage` covers on a page."""
    rects = []
    for a, b in find_spans(_page_text(textpage), passage):
        for i in range(textpage.count_rects(a, b - a)):
            rects.append(textpage.get_rect(i))
    return rects


def mark_pdf_passage(pdf_path: str | Path, page: int, passage: str, *, width: int = 1000, password: str | None = None) -> MarkedPage:
    """Page `page` (1-based) of a PDF rendered about `width` pixels wide, the lines holding
    `passage` covered by translucent yellow boxes. Raises ValueError for a page out of range."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    from kbqa.ingest.loaders.pdfium_lock import pdfium_lock

    with pdfium_lock():  # pdfium is not thread-safe: the UI serves several viewers at once
        pdf = pdfium.PdfDocument(str(pdf_path), password=password)
        try:
            if not 1 <= page <= len(pdf):
                raise ValueError(f"{Path(pdf_path).name} has {len(pdf)} pages, not a page {page}")
            pdf_page = pdf[page - 1]
            w, h = pdf_page.get_size()
            scale = max(0.5, min(3.0, width / w))
            textpage = pdf_page.get_textpage()
            rects = passage_rects(textpage, passage) if pdf_page.get_rotation() == 0 else []
            image = pdf_page.render(scale=scale).to_pil().convert("RGBA")
            pages = len(pdf)
            textpage.close()
            pdf_page.close()
        finally:
            pdf.close()
    boxes = []
    for left, bottom, right, top in rects:
        box = (int(left * scale) - 2, int((h - top) * scale) - 2, int(right * scale) + 2, int((h - bottom) * scale) + 2)
        boxes.append(box)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for box in boxes:
        draw.rectangle(box, fill=(255, 214, 0, 96), outline=(230, 150, 0, 200), width=2)
    return MarkedPage(Image.alpha_composite(image, overlay).convert("RGB"), boxes, pages)


def source_label(n: int, source: dict) -> str:
    """The viewer's name for the `n`th source of an answer: ``[n] file, p. X``."""
    page = f", p. {source['page']}" if source.get("page") else ""
    return f"[{n}] {Path(source['source']).name}{page}"
