"""Ruled tables in a PDF's text layer, as Markdown (`ingest.loaders.table`), through pdfplumber.

A text layer read in reading order gives a table as a run of values with their column names
far above them. Here the pages that may hold a ruled table (drawn with lines or cell
rectangles) are found cheaply first, from the straight horizontal and vertical lines pdfium
sees on them (curves, ticks and lone rules do not count), so that pages of prose or figures
are not opened with pdfplumber at all. Only those pages are opened with pdfplumber; each
table it finds (``lines`` strategy: cells bounded by ruling) becomes a Markdown table at its
place on the page, and the text around it is kept as it reads.
Tables without ruling lines are left as the text layer gives them.
"""

from __future__ import annotations

import io
import logging

MIN_RULE = 6.0  # points: shortest straight segment that may border a cell (see _ruling)
MIN_RULES = 3  # rows of horizontal and columns of vertical ruling (a fully ruled 2x2 table has 3 of each)
_AXIS = 0.5  # points a segment may lean off the horizontal or vertical and still be a rule
_SNAP = 3.0  # points: rules closer than pdfplumber's snap_tolerance are one (see _ruling)
_MAX_DEPTH = 4  # Form XObjects nested deeper are not looked into
_LOSS = 0.05  # plausibility a re-read page may lose against its layer and still replace it
MAX_CANDIDATE_PAGES = 200  # pages opened with pdfplumber per document (the rest keep their text layer)
_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def _times(m: tuple, n: tuple) -> tuple:
    """The matrix that applies `m` (a b c d e f, as in PDF) and then `n`."""
    a, b, c, d, e, f = m
    na, nb, nc, nd, ne, nf = n
    return (a * na + b * nc, a * nb + b * nd, c * na + d * nc, c * nb + d * nd, e * na + f * nc + ne, e * nb + f * nd + nf)


def _path_lines(raw, obj, m: tuple):
    """The straight segments of a path object as ((x0, y0), (x1, y1)) in page space: each
    lineto, and the closing line of a closed subpath; bezier curves are left out."""
    import ctypes

    a, b, c, d, e, f = m
    x, y = ctypes.c_float(), ctypes.c_float()
    prev = start = None
    for k in range(raw.FPDFPath_CountSegments(obj)):
        seg = raw.FPDFPath_GetPathSegment(obj, k)
        if not seg or not raw.FPDFPathSegment_GetPoint(seg, x, y):
            return
        point = (a * x.value + c * y.value + e, b * x.value + d * y.value + f)
        kind = raw.FPDFPathSegment_GetType(seg)
        if kind == raw.FPDF_SEGMENT_MOVETO:
            start = point
        elif kind == raw.FPDF_SEGMENT_LINETO and prev is not None:
            yield prev, point
        if raw.FPDFPathSegment_GetClose(seg) and start is not None:
            yield point, start  # `re` rectangles come as moveto, four linetos and a close
            point = start
        prev = point


def _too_small(raw, obj, m: tuple, box: tuple) -> bool:
    """Whether a path object's bounds (in its form's space, `m` the form's matrix) are under
    MIN_RULE both wide and high, as a marker or a tick is: it holds no rule, and its segments
    need not be read (a scatter plot has thousands)."""
    if not raw.FPDFPageObj_GetBounds(obj, *box):
        return False
    left, bottom, right, top = (v.value for v in box)
    a, b, c, d, _, _ = m
    return abs(a) * (right - left) + abs(c) * (top - bottom) < MIN_RULE and abs(b) * (right - left) + abs(d) * (top - bottom) < MIN_RULE


def _ruling(raw, parent, in_form: bool, m: tuple, rows: set, cols: set, depth: int = 0) -> bool:
    """Collect into `rows` / `cols` the positions (in _SNAP bins) of the horizontal and vertical
    straight segments of at least MIN_RULE points under `parent` (a page, or a form object
    with `in_form`), `m` the matrix of the form in page space; True once both reach MIN_RULES.

    What pdfplumber's ``lines`` strategy can use: cells are bounded by horizontal and vertical
    edges, and curves give none. MIN_RULE: a rule beside a cell spans at least one line of its
    text (tables in papers set in 7 to 8 pt come with rows 7.8 pt high), while axis ticks are
    shorter (3.5 pt major and 2 pt minor in matplotlib). Bins are _SNAP wide: rules that
    pdfplumber keeps apart never share one, so the bins are never fewer than its rules."""
    import ctypes

    count, get = (raw.FPDFFormObj_CountObjects, raw.FPDFFormObj_GetObject) if in_form else (raw.FPDFPage_CountObjects, raw.FPDFPage_GetObject)
    matrix, box = raw.FS_MATRIX(), tuple(ctypes.c_float() for _ in range(4))
    for i in range(count(parent)):
        obj = get(parent, i)
        kind = raw.FPDFPageObj_GetType(obj)
        if kind not in (raw.FPDF_PAGEOBJ_PATH, raw.FPDF_PAGEOBJ_FORM) or not raw.FPDFPageObj_GetMatrix(obj, matrix):
            continue
        if kind == raw.FPDF_PAGEOBJ_PATH and _too_small(raw, obj, m, box):
            continue
        inner = _times((matrix.a, matrix.b, matrix.c, matrix.d, matrix.e, matrix.f), m)
        if kind == raw.FPDF_PAGEOBJ_FORM:
            if depth + 1 < _MAX_DEPTH and _ruling(raw, obj, True, inner, rows, cols, depth + 1):
                return True
            continue
        for (x0, y0), (x1, y1) in _path_lines(raw, obj, inner):
            if abs(y1 - y0) <= _AXIS and abs(x1 - x0) >= MIN_RULE:
                rows.add(int((y0 + y1) / 2 // _SNAP))
            elif abs(x1 - x0) <= _AXIS and abs(y1 - y0) >= MIN_RULE:
                cols.add(int((x0 + x1) / 2 // _SNAP))
        if len(rows) >= MIN_RULES and len(cols) >= MIN_RULES:
            return True
    return False


def candidate_pages(data: bytes, password: str | None, count: int) -> list[int]:
    """0-based numbers of the pages whose drawn straight lines may rule a table: at least
    MIN_RULES rows of horizontal and MIN_RULES columns of vertical ruling (`_ruling`)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    pdf = pdfium.PdfDocument(data, password=password)
    found = []
    try:
        for i in range(min(count, len(pdf))):
            page = pdf[i]
            try:
                if _ruling(raw, page.raw, False, _IDENTITY, set(), set()):
                    found.append(i)
            finally:
                page.close()
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
