"""PPTX, XLSX and CSV (issue #19, item 4): slides and sheets as pages, rows kept with their
headers, bounds on huge sheets, broken and hostile files; a cell's question retrieved through a
real ingest. Every fixture is made here with python-pptx, openpyxl or plain bytes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ingest_written
from kbqa.ingest.chunking import chunk_pages
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders import load_document, supported_extensions
from kbqa.ingest.loaders import table as table_mod
from tests import hostile_inputs as H

PRODUCTS = [(f"KB-{1000 + i}", 300 + 7 * i, 1000 + 13 * i) for i in range(120)]  # model, watts, price


def _load(path: Path):
    return load_document(path, path.read_bytes())


def make_xlsx(path: Path) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "价格表"
    sheet.append(["型号", "功率 (W)", "价格 (元)"])
    for model, watts, price in PRODUCTS:
        sheet.append([model, watts, float(price)])
    staff = workbook.create_sheet("Staff rooms")
    staff.append(["Name", None, "Room", "Phone extension"])  # an empty column: dropped
    staff.append(["Ada Lovelace", None, "B12", 4417])
    staff.append([None, None, None, None])  # an empty row: dropped
    staff.append(["Grace Hopper", None, "C07", 4471])
    workbook.create_sheet("empty")
    workbook.save(path)
    return path


def make_pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches, Pt

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "发布计划"
    first.placeholders[1].text = "第一阶段：内部测试\n第二阶段：公开测试"
    first.notes_slide.notes_text_frame.text = "讲者备注：公开测试从三月十八日开始。"
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Hardware budget"
    lower = second.shapes.add_textbox(Inches(1), Inches(6), Inches(6), Inches(1))  # added first, lower on the slide
    lower.text_frame.text = "Approved by the board in May."
    upper = second.shapes.add_textbox(Inches(1), Inches(1.5), Inches(6), Inches(0.5))
    upper.text_frame.text = "Costs for the new cluster."
    upper.text_frame.paragraphs[0].runs[0].font.size = Pt(18)
    grid = second.shapes.add_table(3, 2, Inches(1), Inches(2.5), Inches(6), Inches(2)).table
    for r, row in enumerate([["Item", "Cost (EUR)"], ["GPU node", "41,500"], ["Disk shelf", "7,250"]]):
        for c, value in enumerate(row):
            grid.cell(r, c).text = value
    deck.slides.add_slide(deck.slide_layouts[6])  # a blank slide: no text
    deck.save(path)
    return path


# ---- extraction ------------------------------------------------------------------------
def test_xlsx_one_page_per_sheet_with_headers(tmp_path):
    pages = _load(make_xlsx(tmp_path / "products.xlsx"))
    assert [p.page for p in pages] == [1, 2, 3]
    lines = pages[0].text.split("\n")
    assert lines[:3] == ["Sheet: 价格表", "| 型号 | 功率 (W) | 价格 (元) |", "| --- | --- | --- |"]
    assert "| KB-1000 | 300 | 1000 |" in lines and len(lines) == 3 + len(PRODUCTS)
    assert pages[1].text.split("\n")[1:] == [
        "| Name | Room | Phone extension |",
        "| --- | --- | --- |",
        "| Ada Lovelace | B12 | 4417 |",
        "| Grace Hopper | C07 | 4471 |",
    ]
    assert pages[2].text == "" and pages[2].problem == "empty sheet"


def test_pptx_one_page_per_slide_with_title_order_table_and_notes(tmp_path):
    pages = _load(make_pptx(tmp_path / "deck.pptx"))
    assert [p.page for p in pages] == [1, 2, 3]
    assert pages[0].text.startswith("发布计划\n") and "第二阶段：公开测试" in pages[0].text
    assert pages[0].text.endswith("Speaker notes: 讲者备注：公开测试从三月十八日开始。")
    text = pages[1].text
    assert text.startswith("Hardware budget")
    assert text.index("Costs for the new cluster.") < text.index("| Item | Cost (EUR) |") < text.index("Approved by the board")
    assert "| GPU node | 41,500 |" in text
    assert pages[2].problem == "no text on the slide"


@pytest.mark.parametrize(
    "name,encoding,raw",
    [
        ("cities.csv", "gbk", "城市;人口（万）;面积\n北京;2189;16410\n上海;2487;6340\n"),
        ("cities.tsv", "utf-8-sig", "City\tPopulation\nLyon\t522,250\nNice\t342,669\n"),
        ("quoted.csv", "utf-8", 'Name,Note\n"Smith, J.","said ""hello""\nthen left"\n'),
    ],
)
def test_csv_charset_and_delimiter(tmp_path, name, encoding, raw):
    path = tmp_path / name
    path.write_bytes(raw.encode(encoding))
    [page] = _load(path)
    lines = page.text.split("\n")
    assert lines[1].startswith("| --- |")
    if name == "cities.csv":
        assert lines[0] == "| 城市 | 人口（万） | 面积 |" and lines[3] == "| 上海 | 2487 | 6340 |"
    elif name == "cities.tsv":
        assert lines[0] == "| City | Population |" and lines[2] == "| Lyon | 522,250 |"
    else:
        assert lines[2] == '| Smith, J. | said "hello" then left |'


def test_pipes_in_cells_are_escaped():
    assert table_mod.markdown_table([["a|b", "c"], ["1", "2|3"]]).split("\n")[2] == "| 1 | 2\\|3 |"


# ---- chunks: long sheets split between rows, the header in every chunk --------------------
def test_long_sheet_chunks_repeat_sheet_and_header(tmp_path, embedder):
    path = make_xlsx(tmp_path / "products.xlsx")
    pages = _load(path)
    chunks = chunk_pages(path, pages, key="k", source="products.xlsx", doc_hash="h", count_tokens=embedder.count_tokens, chunk_tokens=120, overlap_tokens=16)
    sheet = [c for c in chunks if c.page == 1]
    assert len(sheet) > 5
    rows_seen = []
    for chunk in sheet:
        lines = chunk.text.split("\n")
        assert lines[:3] == ["Sheet: 价格表", "| 型号 | 功率 (W) | 价格 (元) |", "| --- | --- | --- |"], chunk.text
        assert sum(embedder.count_tokens([chunk.text])) <= 120 + 8
        rows_seen += lines[3:]
    assert rows_seen == [f"| {m} | {w} | {p} |" for m, w, p in PRODUCTS]  # every row once, whole, in order


def test_huge_sheet_is_cut_with_a_note(tmp_path, monkeypatch, settings):
    monkeypatch.setattr(table_mod, "MAX_ROWS", 40)
    path = make_xlsx(tmp_path / "products.xlsx")
    pages = _load(path)
    assert pages[0].text.count("\n") == 2 + 39 and "KB-1038" in pages[0].text and "KB-1039" not in pages[0].text  # header + 39 rows
    assert "sheet '价格表' (page 1) cut after 40 rows" in pages[0].note and "MAX_ROWS" in pages[0].note
    csv_path = tmp_path / "big.csv"
    csv_path.write_text("n,square\n" + "".join(f"{i},{i * i}\n" for i in range(100)), encoding="utf-8")
    [page] = _load(csv_path)
    assert "big.csv cut after 40 rows" in page.note


def test_cell_limit_stops_later_sheets(tmp_path, monkeypatch):
    monkeypatch.setattr(table_mod, "MAX_CELLS", 30)
    import kbqa.ingest.loaders.xlsx as xlsx_mod

    monkeypatch.setattr(xlsx_mod, "MAX_CELLS", 30)
    pages = _load(make_xlsx(tmp_path / "products.xlsx"))
    assert pages[0].note and pages[0].text.count("\n") == 2 + 9  # header (3 cells) + 9 rows of 3
    assert pages[1].problem and "MAX_CELLS" in pages[1].problem


# ---- broken and hostile files ---------------------------------------------------------------
@pytest.mark.parametrize(
    "name,make,needle",
    [
        ("truncated.xlsx", lambda tmp: make_xlsx(tmp / "x.xlsx").read_bytes()[:3000], "corrupt or truncated XLSX"),
        ("truncated.pptx", lambda tmp: make_pptx(tmp / "x.pptx").read_bytes()[:5000], "corrupt or truncated PPTX"),
        ("locked.xlsx", lambda tmp: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "password-protected or is a legacy .xls"),
        ("docx_renamed.xlsx", lambda tmp: H.good_docx(), "XLSX"),
        ("docx_renamed.pptx", lambda tmp: H.good_docx(), "PPTX"),
        ("zip_bomb.xlsx", lambda tmp: H.xlsx_zip_bomb(), "MAX_MEMBER_BYTES"),
        ("laughs.pptx", lambda tmp: H.pptx_billion_laughs(), "DOCTYPE"),
        ("binary.csv", lambda tmp: bytes(range(256)) * 40, "binary data"),
    ],
)
def test_broken_and_hostile_files_fail_naming_the_file(tmp_path, name, make, needle):
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    with pytest.raises(LoadError) as err:
        _load(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value), str(err.value)


def test_shared_strings_limit(tmp_path, monkeypatch):
    import kbqa.ingest.loaders.xlsx as xlsx_mod

    monkeypatch.setattr(xlsx_mod, "MAX_SHARED_STRINGS_BYTES", 100)
    path = tmp_path / "s.xlsx"
    buf = io.BytesIO(H.good_xlsx())
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("xl/sharedStrings.xml", '<sst count="1"><si><t>' + "shared " * 40 + "</t></si></sst>")
    path.write_bytes(buf.getvalue())
    with pytest.raises(LoadError, match="MAX_SHARED_STRINGS_BYTES"):
        _load(path)


def test_uploads_accept_the_new_formats_by_signature():
    from kbqa.app.uploads import UploadRejected, check_upload

    assert {".pptx", ".xlsx", ".csv", ".tsv"} <= set(supported_extensions())
    assert check_upload("报价.xlsx", H.good_xlsx()) == "报价.xlsx"
    assert check_upload("deck.pptx", H.good_pptx()) == "deck.pptx"
    assert check_upload("rows.csv", "a,b\n1,2\n".encode()) == "rows.csv"
    with pytest.raises(UploadRejected, match="signature"):
        check_upload("fake.pptx", b"%PDF-1.4 not a deck")


# ---- a real ingest: a cell's question finds the chunk with its row and header ---------------
@pytest.fixture(scope="module")
def office_kb(tmp_path_factory, settings):
    def write(docs):
        make_xlsx(docs / "products.xlsx")  # chunks of 200 tokens: the price sheet spans several
        make_pptx(docs / "deck.pptx")
        (docs / "cities.csv").write_bytes("城市;人口（万）;面积（平方公里）\n北京;2189;16410\n上海;2487;6340\n广州;1882;7434\n".encode("gbk"))

    return ingest_written(tmp_path_factory.mktemp("office"), settings, write)


def test_ingest_summary_lists_the_empty_sheet_and_slide(office_kb):
    _, summary = office_kb
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in summary.files}
    assert by_name["products.xlsx"].chunks >= 6  # the price sheet spans several chunks
    assert by_name["products.xlsx"].status == "added" and "page 3 left out: empty sheet" in by_name["products.xlsx"].reason
    assert "page 3 left out: no text on the slide" in by_name["deck.pptx"].reason


@pytest.mark.parametrize(
    "question,row",
    [
        ("What is the price of model KB-1057?", "| KB-1057 | 699 | 1741 |"),
        ("型号 KB-1093 的功率是多少？", "| KB-1093 | 951 | 2209 |"),
        ("上海的人口是多少？", "| 上海 | 2487 | 6340 |"),
        ("How much does the GPU node cost?", "| GPU node | 41,500 |"),
    ],
)
def test_a_cells_question_retrieves_its_row_with_the_header(office_kb, question, row):
    kb, _ = office_kb
    hits = kb.retrieve(question, 3)
    holding = [h for h in hits if row in h.chunk.text]
    assert holding, [h.chunk.text[:80] for h in hits]
    text = holding[0].chunk.text
    header = {"KB": "| 型号 | 功率 (W) | 价格 (元) |", "上海": "| 城市 | 人口（万） | 面积（平方公里） |", "GPU": "| Item | Cost (EUR) |"}
    assert next(v for k, v in header.items() if k in row) in text


def test_citations_carry_sheet_and_slide_numbers(office_kb):
    kb, _ = office_kb
    staff = kb.retrieve("Which room is Grace Hopper in?", 3)
    assert any(h.chunk.source.endswith("products.xlsx") and h.chunk.page == 2 and "C07" in h.chunk.text for h in staff)
    notes = kb.retrieve("公开测试什么时候开始？", 3)
    assert any(h.chunk.source.endswith("deck.pptx") and h.chunk.page == 1 and "三月十八日" in h.chunk.text for h in notes)
    city = kb.retrieve("广州的面积", 3)
    assert any(h.chunk.source.endswith("cities.csv") and h.chunk.page is None for h in city)
