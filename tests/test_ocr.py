"""OCR of scans and images, damaged text layers caught and repaired (ingest/ocr.py,
ingest/page_ocr.py, ingest/textlayer.py). Fixtures are made here: text rendered to images,
image-only PDFs, and a scan under a garbage text layer."""

from __future__ import annotations

import io
import random

import pytest

from kbqa.ingest.ocr import Box, lines_from_boxes
from kbqa.ingest.page_ocr import agreement, choose, ocr_reason
from kbqa.ingest.textlayer import DAMAGED_BELOW, SUSPECT_BELOW, damage, plausibility, repair

ENGLISH = [
    "Refunds are paid to the original card within ten working days.",
    "The night train to Harbin leaves from platform seven at nine.",
    "Members may bring two guests to the library on Saturdays.",
]
PAGE_TWO = [
    "Lost luggage is kept at the north gate office for thirty days.",
    "Bring the claim ticket and a photo identity card to collect it.",
]


def _garbage(n_words: int, seed: int = 0) -> str:
    """Text like an old OCR layer gone wrong: letters, digits and symbols in random tokens."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789«»*^/&%$#"
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 8))) for _ in range(n_words))


def _text_image(lines: list[str], width: int = 1240, size: int = 34):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new("RGB", (width, 140 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((80, 80 + 70 * n), line, fill="black", font=font)
    return image


def _image_pdf(pages: list[list[str]]) -> bytes:
    """An image-only PDF (a scan): each page a picture of its lines, no text layer."""
    images = [_text_image(lines) for lines in pages]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return buf.getvalue()


def _scan_under_garbage_layer(lines: list[str]) -> bytes:
    """A page that shows `lines` as an image, with an invisible text layer of noise."""
    from fpdf import FPDF
    from fpdf.enums import TextMode

    image = _text_image(lines)
    pdf = FPDF(unit="pt", format=(image.width * 72 / 150, image.height * 72 / 150))
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=pdf.w, h=pdf.h)
    pdf.set_font("helvetica", size=10)
    pdf.text_mode = TextMode.INVISIBLE
    pdf.set_xy(20, 20)
    pdf.multi_cell(pdf.w - 40, 12, _garbage(120))
    return bytes(pdf.output())


# ---- pure logic ------------------------------------------------------------------------
def test_boxes_become_lines_in_reading_order():
    boxes = [
        Box("world", 300, 10, 40),
        Box("hello", 10, 12, 42),
        Box("第二行", 10, 60, 90),
        Box("中文", 200, 62, 92),
        Box("noise", 10, 100, 120, score=0.1),
    ]
    assert lines_from_boxes(boxes) == ["hello world", "第二行中文"]


def test_plausibility_separates_language_from_noise(tmp_path):
    from tests.conftest import SAMPLE

    english = (SAMPLE / "history.md").read_text(encoding="utf-8")
    chinese = (SAMPLE / "faq_zh.md").read_text(encoding="utf-8")
    assert plausibility(english) >= SUSPECT_BELOW
    assert plausibility(chinese) >= SUSPECT_BELOW
    assert plausibility(_garbage(200)) < DAMAGED_BELOW
    assert damage(_garbage(200)) and "damaged text layer" in damage(_garbage(200))
    assert damage(english) is None
    private_use = "".join(chr(0xE000 + i % 500) for i in range(300))
    assert plausibility(private_use + " " + english[:200]) < DAMAGED_BELOW
    assert plausibility("too short") == 1.0  # nothing to judge


def test_repair_joins_spaced_letters_and_drops_stray_digits():
    assert repair("Journa l of Aerospace Power V o l 9 N o 4") == "Journal of Aerospace Power Vol 9 No 4"
    assert repair("the S u m m a r y of it") == "the Summary of it"
    assert repair("see section b of part c") == "see section b of part c"  # words are split nowhere else: left alone
    assert repair("北京航空航天大学 张 津执笔3 3\n下一行") == "北京航空航天大学 张 津执笔\n下一行"
    assert repair("燃油流量 F F、油门角度 PL A 3 3 3 3 33\n").split() == "燃油流量 F F、油门角度 PL A".split()
    kept = "共 13 架大型客机的 40 台发动机, 1994 年 10 月, 比分 3 2 获胜"
    assert repair(kept) == kept  # real numbers stay


def test_a_repaired_layer_is_said_in_the_summary(tmp_path):
    from fpdf import FPDF

    from kbqa.ingest.loaders import load_document
    from kbqa.ingest.summary import page_notes

    pdf = FPDF()
    for text in ("Journa l of Aerospace Power V o l 9 N o 4. " + " ".join(ENGLISH), " ".join(ENGLISH * 2)):
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    pages = load_document(tmp_path / "caj.pdf", bytes(pdf.output()), ocr="never")
    assert pages[0].text.startswith("Journal of Aerospace Power Vol 9 No 4.") and pages[0].repaired
    assert not pages[1].repaired
    assert "text layer repaired on 1 of 2 pages" in " ".join(page_notes(pages))


def test_which_pages_are_read_with_ocr():
    prose = " ".join(ENGLISH * 4)
    assert ocr_reason("", 0.0, "auto") == "no text layer"
    assert ocr_reason("p. 3", 0.9, "auto") == "no text layer"
    assert ocr_reason(prose[:150], 0.95, "auto") == "text layer too small for the page's images"
    assert ocr_reason(_garbage(200), 0.9, "auto") == "implausible text layer"
    assert ocr_reason(prose, 0.0, "auto") is None
    assert ocr_reason(prose, 0.0, "always") == "ocr = always"
    assert ocr_reason("", 1.0, "never") is None


def test_an_implausible_layer_is_kept_only_when_ocr_agrees_with_it():
    lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor " * 5
    assert choose(lorem, lorem.replace("amet", "arnet"), "implausible text layer") == (lorem, False)
    ocr_text = " ".join(ENGLISH * 3)
    assert choose(_garbage(150), ocr_text, "implausible text layer") == (ocr_text, True)
    assert choose("layer text", "", "no text layer") == ("layer text", False)
    arabic = "حَبيبي habibi حَبيبي"  # a short layer in a script the OCR models do not read
    assert choose(arabic, "habibi *", "no text layer") == (arabic, False)
    assert choose("p. 3", "The night train leaves at nine.", "no text layer") == ("The night train leaves at nine.", True)
    assert agreement("ab cd", "AB CD") == 1.0 and agreement("abc", "xyz") == 0.0


# ---- the real engine on made scans ----------------------------------------------------
def test_text_is_detected_on_the_page_scaled_down_to_det_side():
    """1.4.4 reads det_limit_side_len only to scale up: the engine's detector is set to scale a
    large page down to DET_SIDE on its longer side, and to leave a small one as it is."""
    import numpy as np

    from kbqa.ingest.ocr import DET_SIDE, engine

    det = engine().text_det
    big = det.get_preprocess(2000).resize(np.zeros((2000, 1362, 3), np.uint8))
    assert max(big.shape[:2]) <= DET_SIDE + 16 and max(big.shape[:2]) >= DET_SIDE - 16
    assert abs(big.shape[0] / big.shape[1] - 2000 / 1362) < 0.05  # the page's shape kept
    small = det.get_preprocess(500).resize(np.zeros((500, 300, 3), np.uint8))
    assert small.shape[:2] == (512, 288)  # only rounded to multiples of 32, as before


@pytest.fixture(scope="module")
def scan_pdf() -> bytes:
    return _image_pdf([ENGLISH, PAGE_TWO])


def _words(text: str) -> set[str]:
    return {w.strip(".,").lower() for w in text.split()}


def test_image_only_pdf_is_read_with_ocr_and_keeps_page_numbers(tmp_path, scan_pdf):
    from kbqa.ingest.loaders import load_document

    path = tmp_path / "scan.pdf"
    pages = load_document(path, scan_pdf, ocr="auto")
    assert [(p.page, p.ocr) for p in pages] == [(1, True), (2, True)]
    for page, lines in zip(pages, (ENGLISH, PAGE_TWO)):
        expected = _words(" ".join(lines))
        assert len(expected & _words(page.text)) >= 0.85 * len(expected), page.text
    with pytest.raises(Exception, match="no text layer|no extractable text|OCR"):
        from kbqa.ingest.chunking import chunk_pages

        never = load_document(path, scan_pdf, ocr="never")
        chunk_pages(
            path, never, key="k", source=str(path), doc_hash="h", count_tokens=lambda ts: [len(t.split()) for t in ts], chunk_tokens=100, overlap_tokens=0
        )


def test_garbage_layer_is_replaced_by_ocr_or_the_page_fails(tmp_path):
    from kbqa.ingest.loaders import load_document

    data = _scan_under_garbage_layer(ENGLISH)
    path = tmp_path / "letter.pdf"
    (auto,) = load_document(path, data, ocr="auto")
    assert auto.ocr and "night train" in auto.text.lower(), auto.text
    (never,) = load_document(path, data, ocr="never")
    assert never.text == "" and "damaged text layer" in never.problem


def test_ingest_reports_ocr_pages_and_retrieves_scanned_text(tmp_path, settings, scan_pdf):
    from kbqa.app.kb import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(scan_pdf)
    _text_image(ENGLISH[:2]).save(docs / "notice.png")
    (docs / "letter.pdf").write_bytes(_scan_under_garbage_layer(PAGE_TWO))
    kb = KnowledgeBase(tmp_path / "kb", settings)
    summary = kb.ingest([docs], progress=False)
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in summary.files}
    assert summary.ok, summary.render()
    assert by_name["scan.pdf"].ocr_pages == 2 and "2 of 2 pages OCR'd" in by_name["scan.pdf"].reason
    assert by_name["notice.png"].ocr_pages == 1
    assert by_name["letter.pdf"].ocr_pages == 1
    assert "pages OCR'd" in summary.render()
    hits = kb.search("Where is lost luggage kept, and for how long?").hits
    assert hits and hits[0].chunk.source.endswith(("scan.pdf", "letter.pdf")) and hits[0].chunk.page == (2 if hits[0].chunk.source.endswith("scan.pdf") else 1)


def test_images_need_ocr_on(tmp_path):
    from kbqa.ingest.errors import LoadError
    from kbqa.ingest.loaders import load_document

    buf = io.BytesIO()
    _text_image(ENGLISH[:1]).save(buf, "PNG")
    with pytest.raises(LoadError, match="only with OCR"):
        load_document(tmp_path / "a.png", buf.getvalue(), ocr="never")
    with pytest.raises(LoadError, match="not an image"):
        load_document(tmp_path / "b.png", b"not really a png", ocr="auto")


def test_images_can_be_uploaded_and_are_checked_by_signature():
    from kbqa.app.uploads import UploadRejected, check_upload

    buf = io.BytesIO()
    _text_image(ENGLISH[:1]).save(buf, "PNG")
    assert check_upload("notice.png", buf.getvalue(), "image/png") == "notice.png"
    with pytest.raises(UploadRejected, match="wrong signature"):
        check_upload("fake.png", b"GIF89a not a png", "image/png")
    with pytest.raises(UploadRejected, match="not a document type"):
        check_upload("photo.md", b"# hi", "image/png")


def test_a_short_layer_in_a_script_ocr_cannot_read_is_kept(tmp_path):
    from fpdf import FPDF

    from kbqa.ingest.loaders import load_document

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=14)
    pdf.text(20, 30, "p. 7")  # a few characters only: OCR is tried and reads no more than this
    (page,) = load_document(tmp_path / "short.pdf", bytes(pdf.output()), ocr="auto")
    assert page.problem is None and "7" in page.text
