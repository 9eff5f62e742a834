"""Ruled tables in a PDF's text layer, as Markdown (`ingest.loaders.table`), through pdfplumber.

A text layer read in reading order gives a table as a run of values with their column names
far above them. Here the pages that may hold a ruled table (drawn with lines or cell
rectangles) are found cheaply first, from the number of path segments pdfium sees on them, so
that a document of prose costs no more than before. Only those pages are opened with
pdfplumber; each table it finds (``lines`` strategy: cells bounded by ruling) becomes a
Markdown table at its place on the page, and the text around it is kept as it reads.
Tables without ruling lines are left as the text layer gives them.
"""
from __future__ import annotations

import io
import logging

MIN_SEGMENTS = 12  # path segments on a page before it may hold a ruled table (a 2x2 grid has 6 lines)
_LOSS = 0.05  # plausibility a re-read page may lose against its layer and still replace it
MAX_CANDIDATE_PAGES = 200  # pages opened with pdfplumber per document (the rest keep their text layer)


def candidate_pages(data: bytes, password: str | None, count: int) -> list[int]:
    """0-based numbers of the pages with enough drawn path segments to hold a ruled table."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    pdf = pdfium.PdfDocument(data, password=password)
    found = []
    try:
        for i in range(min(count, len(pdf))):
            segments = 0
            for obj in pdf[i].get_objects(filter=(raw.FPDF_PAGEOBJ_PATH,), max_depth=4):
                segments += max(1, raw.FPDFPath_CountSegments(obj.raw))
                if segments >= MIN_SEGMENTS:
                    found.append(i)
                    break
            if len(found) >= MAX_CANDIDATE_PAGES:
                break
    finally:
        pdf.close()
    return found


def _inside(obj: dict, box: tuple[float, float, float, float]) -> bool:
    x0, top, x1, bottom = box
    mid_x, mid_y = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
    return x0 <= mid_x <= x1 and top <= mid_y <= bottom


def page_with_tables(page) -> str | None:
    """The text of a pdfplumber page with its ruled tables as Markdown, in page order; None
    when it has no table of at least two rows and two columns."""
    from kbqa.ingest.loaders.table import markdown_table

    tables = []
    for found in page.find_tables({"vertical_strategy": "lines", "horizontal_strategy": "lines"}):
        rows = [row for row in found.extract() if row and sum(1 for cell in row if cell) >= 1]
        if len(rows) >= 2 and max(len(row) for row in rows) >= 2:
            tables.append((found.bbox, markdown_table(rows)))
    tables = [(box, text) for box, text in tables if text]
    if not tables:
        return None
    tables.sort(key=lambda item: item[0][1])
    rest = page.filter(lambda obj: obj.get("object_type") != "char" or not any(_inside(obj, box) for box, _ in tables))
    parts, top = [], 0.0
    for (x0, t_top, x1, t_bottom), text in tables:
        if t_top > top:
            parts.append(rest.crop((0, top, page.width, t_top), strict=False).extract_text() or "")
        parts.append(text)
        top = max(top, t_bottom)
    if top < page.height:
        parts.append(rest.crop((0, top, page.width, page.height), strict=False).extract_text() or "")
    return "\n\n".join(part for part in parts if part.strip())


def with_tables(data: bytes, password: str | None, texts: list[str]) -> list[str]:
    """`texts` (each page's text layer) with the pages that hold ruled tables re-read so their
    tables are Markdown. A page pdfplumber cannot read keeps its text layer, and so does one
    whose re-reading is less language-like than the layer (pdfplumber running words together
    around a figure taken for a table), which would otherwise send the page to OCR."""
    from kbqa.ingest.textlayer import SUSPECT_BELOW, plausibility

    try:
        pages = candidate_pages(data, password, len(texts))
    except Exception:  # noqa: BLE001 - pdfium cannot open what pypdf read: the layers stay
        return texts
    if not pages:
        return texts
    import pdfplumber

    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    out = list(texts)
    with pdfplumber.open(io.BytesIO(data), password=password or "") as pdf:
        for i in pages:
            try:
                text = page_with_tables(pdf.pages[i])
            except Exception:  # noqa: BLE001 - pdfminer's errors on odd pages are many; the layer stays
                continue
            finally:
                pdf.pages[i].close()
            layer = plausibility(texts[i])  # a layer good enough to skip OCR must stay so
            if text is not None and plausibility(text) >= (SUSPECT_BELOW if layer >= SUSPECT_BELOW else layer - _LOSS):
                out[i] = text
    return out
