"""PPTX through python-pptx: one page per slide, numbered as the slides are.

A slide's page holds its title, then the text of its other shapes in reading order (top to
bottom, then left to right; a group's shapes in their own order inside it), tables as Markdown
(`ingest.loaders.table`), and last the speaker notes under ``Speaker notes:``. Pictures and
charts carry no text here. The archive is checked first (`ingest.loaders.zipguard`).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.loaders.table import markdown_table
from kbqa.ingest.loaders.zipguard import check_archive

MAX_SLIDES = 5_000
_MAX_DEPTH = 16  # groups nested deeper are not read


def load_pptx(path: Path, data: bytes) -> list[Page]:
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise LoadError(path, "corrupt or truncated PPTX (not a zip archive)")
    check_archive(path, data, "PPTX").close()
    try:
        deck = Presentation(io.BytesIO(data))
    except (KeyError, zipfile.BadZipFile, ValueError, PackageNotFoundError) as exc:
        raise LoadError(path, f"corrupt PPTX: {type(exc).__name__}: {exc}") from exc
    slides = list(deck.slides)
    if len(slides) > MAX_SLIDES:
        raise LoadError(path, f"PPTX has {len(slides):,} slides (limit {MAX_SLIDES:,}, ingest.loaders.pptx.MAX_SLIDES)")
    pages = []
    for number, slide in enumerate(slides, start=1):
        text = slide_text(slide)
        pages.append(Page(text, number) if text.strip() else Page("", number, problem="no text on the slide"))
    if not pages:
        raise LoadError(path, "PPTX has no slides")
    return pages


def slide_text(slide) -> str:
    """A slide's title, shapes in reading order, and speaker notes, as lines of text."""
    title = slide.shapes.title
    parts = [_frame_text(title)] if title is not None and title.has_text_frame else []
    parts += _shapes_text([s for s in slide.shapes if title is None or s.shape_id != title.shape_id], 0)
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = frame.text.strip() if frame is not None else ""
        if notes:
            parts.append("Speaker notes: " + notes)
    return "\n\n".join(p for p in parts if p.strip())


def _position(shape) -> tuple[int, int]:
    return (shape.top if shape.top is not None else 0, shape.left if shape.left is not None else 0)


def _shapes_text(shapes, depth: int) -> list[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    out: list[str] = []
    for shape in sorted(shapes, key=_position):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            if depth < _MAX_DEPTH:
                out += _shapes_text(list(shape.shapes), depth + 1)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            out.append(markdown_table(rows))
        elif shape.has_text_frame:
            out.append(_frame_text(shape))
    return out


def _frame_text(shape) -> str:
    return "\n".join(p.text.strip() for p in shape.text_frame.paragraphs if p.text.strip())
