"""Loaders, cleaning and encodings on the project's own fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbqa.ingest.clean import clean_text
from kbqa.ingest.encoding import decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders import load_document
from tests.conftest import SAMPLE


def _load(path: Path):
    return load_document(path, path.read_bytes())


def test_pdf_keeps_page_numbers():
    pages = _load(SAMPLE / "stations_guide.pdf")
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))
    assert len(pages) >= 3
    assert "Mirror Lake" in pages[2].text


def test_docx_reads_paragraphs_and_tables():
    text = _load(SAMPLE / "luggage_and_pets.docx")[0].text
    assert "20 kg" in text
    assert " | " in text  # table rows kept as cells


def test_html_drops_script_and_style():
    raw = (SAMPLE / "timetable_and_fares.html").read_text(encoding="utf-8")
    assert "<script" in raw
    text = _load(SAMPLE / "timetable_and_fares.html")[0].text
    assert "07:40" in text
    assert "function" not in text and "{" not in text


def test_markdown_to_text():
    text = _load(SAMPLE / "history.md")[0].text
    assert "Hollis Wrenfield" in text and "**" not in text and "#" not in text


@pytest.mark.parametrize(
    "encoding,prefix",
    [("utf-8", b""), ("utf-8-sig", b""), ("gbk", b""), ("gb18030", b""), ("utf-16", b"")],
)
def test_text_encodings_detected(tmp_path, encoding, prefix):
    text = "蓝山登山铁路的紧急救援电话是0875-6612-9090。全长23.7公里。"
    path = tmp_path / f"doc-{encoding}.txt"
    path.write_bytes(prefix + text.encode(encoding))
    assert _load(path)[0].text == text


def test_binary_txt_is_rejected(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(LoadError, match=r"image\.txt: binary data"):
        _load(path)


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    with pytest.raises(LoadError, match=r"empty\.md: empty file"):
        _load(path)


def test_truncated_pdf_is_rejected(tmp_path):
    data = (SAMPLE / "stations_guide.pdf").read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(LoadError, match=r"truncated\.pdf: corrupt or truncated PDF"):
        _load(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "sheet.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0 something")
    with pytest.raises(LoadError, match=r"sheet\.xls: unsupported file type '\.xls'"):
        _load(path)


def test_clean_text_nfkc_and_whitespace():
    raw = "<p>Ｆｕｌｌ　ｗｉｄｔｈ １２３</p>\r\n\r\n\r\n\tnext &amp; line  "
    assert clean_text(raw) == "Full width 123\n\nnext & line"


def test_clean_keeps_chinese_punctuation():
    assert clean_text("你好，世界！") == "你好，世界！"


def test_decode_prefers_utf8_then_gbk():
    assert decode_text("héllo".encode())[1] == "utf-8"
    assert decode_text("中文内容，测试编码。".encode("gbk"))[1] == "gb18030"


def test_pdf_without_a_page_tree_is_salvaged_page_by_page(tmp_path):
    """pypdf finds no pages and pdfium refuses the file (the /Pages object is gone, as in a
    broken cross-reference table): the page objects found in the file are read instead."""
    import re

    from fpdf import FPDF

    pdf = FPDF()
    for text in ("First page about wirewound resistors and their power rating.", "Second page: the bushing mounts and rotary switches are described here."):
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 6, text)
    data = bytes(pdf.output())
    tree = re.search(rb"(?m)^1 0 obj.*?endobj", data, re.S)
    assert b"/Type /Pages" in tree.group(0)
    data = data[: tree.start()] + b" " * (tree.end() - tree.start()) + data[tree.end() :]
    pages = load_document(tmp_path / "no_tree.pdf", data)
    assert [(p.page, p.text.split(":")[0][:10]) for p in pages] == [(1, "First page"), (2, "Second pag")]
