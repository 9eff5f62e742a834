"""Tables in DOCX, HTML and PDF become Markdown (issue #19, item 3): a header row, a separator,
one line per row, merged cells lined up; long tables split between rows with the header in
every chunk; a question about one cell retrieves its row through a real ingest. Every fixture
is made here (python-docx, fpdf2, HTML text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ingest_written
from kbqa.ingest.chunking import chunk_pages
from kbqa.ingest.loaders import load_document
from kbqa.ingest.loaders.html import html_to_text
from kbqa.ingest.loaders.pdf_tables import candidate_pages

PUMPS = [(f"P-{200 + i}", 40 + 3 * i, f"{1.5 + i / 10:.1f}") for i in range(60)]  # model, flow (m3/h), head (bar)
HEADER = "| 型号 | 流量 (m3/h) | 扬程 (bar) |"


def _load(path: Path, ocr: str = "auto"):
    return load_document(path, path.read_bytes(), ocr=ocr)


def make_docx(path: Path, rows=PUMPS) -> Path:
    import docx

    document = docx.Document()
    document.add_paragraph("水泵选型表如下。")
    table = document.add_table(rows=1, cols=3)
    for cell, name in zip(table.rows[0].cells, ["型号", "流量 (m3/h)", "扬程 (bar)"]):
        cell.text = name
    for row in rows:
        cells = table.add_row().cells
        for cell, value in zip(cells, row):
            cell.text = str(value)
    merged = table.add_row().cells
    merged[0].merge(merged[1]).text = "合计（两列合并）"
    merged[2].text = "—"
    document.add_paragraph("以上数据来自二〇二五年的测试。")
    document.save(path)
    return path


def draw_chart(pdf) -> None:
    """A page with a plot as charting tools draw one: a frame, short ticks on both axes, bezier
    curves, round markers (beziers too) and a slanted polyline; no table."""
    import math

    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 6, "Figure 3: flow against rainfall.")
    pdf.rect(30, 40, 150, 100)
    for i in range(31):
        pdf.line(30 + 5 * i, 140, 30 + 5 * i, 141.2)  # 1.2 mm (3.4 pt) ticks
    for j in range(21):
        pdf.line(28.8, 40 + 5 * j, 30, 40 + 5 * j)
    for k in range(12):
        pdf.bezier([(30, 140 - 5 * k), (70, 60 + k), (120, 130 - 3 * k), (180, 45 + 4 * k)])
    for k in range(40):
        pdf.circle(35 + 3.5 * k, 100 + 20 * math.sin(k / 4), 0.8, style="F")
    pdf.polyline([(30 + 3 * k, 120 - (k % 7) * 4) for k in range(50)])


def make_pdf(path: Path, rows, title: str, chart_first: bool = False, angle: float = 0) -> Path:
    """A ruled table (fpdf2) between two lines of text, turned by `angle` degrees; a chart page
    (`draw_chart`) before it with `chart_first`."""
    from fpdf import FPDF

    pdf = FPDF()
    if chart_first:
        draw_chart(pdf)
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 6, title)
    with pdf.rotation(angle, 105, 148), pdf.table(col_widths=(40, 50, 50) if len(rows[0]) == 3 else None) as table:
        for row in rows:
            line = table.row()
            for value in row:
                line.cell(str(value))
    pdf.multi_cell(0, 6, "Measured at the plant in Leeds, March 2025.")
    pdf.output(str(path))
    return path


MOTORS = [("Model", "Power (kW)", "Speed (rpm)"), ("M-11", "7.5", "1450"), ("M-12", "11", "2900"), ("M-13", "15", "980")]


def test_docx_table_is_markdown_with_merged_cells_lined_up(tmp_path):
    [page] = _load(make_docx(tmp_path / "pumps.docx", PUMPS[:3]))
    lines = page.text.split("\n")
    at = lines.index(HEADER)
    assert lines[at - 2 : at] == ["水泵选型表如下。", ""]
    assert lines[at + 1] == "| --- | --- | --- |"
    assert lines[at + 2] == "| P-200 | 40 | 1.5 |"
    assert lines[at + 5] == "| 合计（两列合并） |  | — |"  # the merged cell once, its columns kept
    assert "以上数据来自二〇二五年的测试。" in lines[at + 6 :]


def test_html_tables_caption_colspan_and_nested():
    html = """<html><body><p>Intro text.</p>
    <table><caption>Motor ratings</caption>
      <thead><tr><th>Model</th><th>Power <b>(kW)</b></th><th>Speed (rpm)</th></tr></thead>
      <tbody><tr><td>M-11</td><td>7.5</td><td>1450</td></tr>
      <tr><td colspan="2">M-12 (both)</td><td>2900</td></tr>
      <tr><td>M-13</td><td><table><tr><td>a</td><td>b</td></tr></table></td><td>980<br>max</td></tr>
      </tbody></table><p>After the table.</p></body></html>"""
    lines = [line for line in html_to_text(html).split("\n") if line.strip()]
    assert lines == [
        "Intro text.",
        "Motor ratings",
        "| Model | Power (kW) | Speed (rpm) |",
        "| --- | --- | --- |",
        "| M-11 | 7.5 | 1450 |",
        "| M-12 (both) |  | 2900 |",
        "| M-13 | a b | 980 max |",  # a table in a cell: its text on one line
        "After the table.",
    ]


def test_unclosed_html_table_keeps_its_rows():
    lines = [line for line in html_to_text("<table><tr><th>k</th><th>v</th><tr><td>x</td><td>1").split("\n") if line.strip()]
    assert lines == ["| k | v |", "| --- | --- |", "| x | 1 |"]


def test_pdf_ruled_table_is_markdown_in_place(tmp_path):
    path = make_pdf(tmp_path / "motors.pdf", MOTORS, "Motor ratings for line 2")
    [page] = _load(path)
    lines = [line for line in page.text.split("\n") if line.strip()]
    assert lines[0] == "Motor ratings for line 2"
    assert lines[1:6] == ["| Model | Power (kW) | Speed (rpm) |", "| --- | --- | --- |", "| M-11 | 7.5 | 1450 |", "| M-12 | 11 | 2900 |", "| M-13 | 15 | 980 |"]
    assert lines[6] == "Measured at the plant in Leeds, March 2025."


def test_pdf_without_ruling_is_not_opened_for_tables(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 6, "Plain prose. " * 80)
    pdf.line(10, 280, 200, 280)  # a footer rule is not a table
    path = tmp_path / "prose.pdf"
    pdf.output(str(path))
    data = path.read_bytes()
    assert candidate_pages(data, None, 1) == []
    assert candidate_pages(make_pdf(tmp_path / "t.pdf", MOTORS, "t").read_bytes(), None, 1) == [0]


def test_a_chart_is_not_opened_for_tables_but_a_ruled_table_is(tmp_path):
    """Curves, markers, ticks and a plot frame are no ruling: only the table page is opened with
    pdfplumber, and its table still becomes Markdown."""
    path = make_pdf(tmp_path / "report.pdf", MOTORS, "Motor ratings", chart_first=True)
    assert candidate_pages(path.read_bytes(), None, 2) == [1]
    chart, table = _load(path, "never")
    assert "Figure 3" in chart.text and "| --- |" not in chart.text
    assert "| M-12 | 11 | 2900 |" in table.text


@pytest.mark.parametrize("angle,candidate", [(90, True), (30, False)])
def test_ruling_is_judged_on_the_page_not_in_the_drawing_space(tmp_path, angle, candidate):
    """A table turned a quarter turn keeps horizontal and vertical lines; turned 30 degrees its
    lines, straight in their own coordinates, are slanted on the page and rule nothing."""
    data = make_pdf(tmp_path / "t.pdf", MOTORS, "t", angle=angle).read_bytes()
    assert candidate_pages(data, None, 1) == ([0] if candidate else [])


def test_long_docx_table_chunks_repeat_the_header(tmp_path, embedder):
    path = make_docx(tmp_path / "pumps.docx")
    chunks = chunk_pages(path, _load(path), key="k", source="pumps.docx", doc_hash="h", count_tokens=embedder.count_tokens, chunk_tokens=100, overlap_tokens=16)
    tables = [c for c in chunks if "| --- |" in c.text]
    assert len(tables) > 3
    rows = []
    for chunk in tables:
        lines = chunk.text.split("\n")
        assert lines[:2] == [HEADER, "| --- | --- | --- |"], chunk.text
        rows += lines[2:]
    assert rows[: len(PUMPS)] == [f"| {m} | {f} | {h} |" for m, f, h in PUMPS]


@pytest.fixture(scope="module")
def table_kb(tmp_path_factory, settings):
    def write(docs):
        make_docx(docs / "pumps.docx")
        make_pdf(docs / "motors.pdf", MOTORS, "Motor ratings for line 2")
        (docs / "rooms.html").write_text(
            "<h1>会议室</h1><table><tr><th>房间</th><th>楼层</th><th>座位</th></tr>"
            + "".join(f"<tr><td>{n}号会议室</td><td>{n % 9 + 1}楼</td><td>{6 + n}</td></tr>" for n in range(1, 40))
            + "</table>",
            encoding="utf-8",
        )

    return ingest_written(tmp_path_factory.mktemp("tables"), settings, write)[0]


@pytest.mark.parametrize(
    "question,row,header",
    [
        ("型号 P-247 的扬程是多少？", "| P-247 | 181 | 6.2 |", HEADER),
        ("What is the speed of motor M-12?", "| M-12 | 11 | 2900 |", "| Model | Power (kW) | Speed (rpm) |"),
        ("27号会议室有多少座位？", "| 27号会议室 | 1楼 | 33 |", "| 房间 | 楼层 | 座位 |"),
    ],
)
def test_a_cells_question_retrieves_its_row(table_kb, question, row, header):
    hits = table_kb.retrieve(question, 3)
    holding = [h for h in hits if row in h.chunk.text]
    assert holding, [h.chunk.text[:80] for h in hits]
    assert header in holding[0].chunk.text


def test_a_table_of_codes_keeps_its_layer_under_ocr_auto(tmp_path):
    """Flight numbers, times and gates are not words: they must not make the page look damaged,
    and the Markdown table read from the layer must not be swapped for OCR's reading of it."""
    rows = [("Flight", "From", "To", "Departs", "Gate")] + [
        (f"ZB{300 + i * 7}", ("Millbrook", "Redcliff", "Ashford")[i % 3], ("Westmoor", "Fairhaven")[i % 2], f"{6 + i % 14:02d}:{15 * (i % 4):02d}", f"C{i + 1}")
        for i in range(30)
    ]
    path = make_pdf(tmp_path / "flights.pdf", rows, "Winter timetable")
    for mode in ("auto", "never"):
        [page] = _load(path, mode)
        assert not page.ocr and page.problem is None, (mode, page.problem)
        assert "| Flight | From | To | Departs | Gate |" in page.text and "| ZB307 | Redcliff | Fairhaven | 07:15 | C2 |" in page.text
