"""The chat's source viewer and conversation store, without a browser: passages found and
marked in text and on PDF pages (English and Chinese), conversations saved, listed, capped."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbqa.app.server import conversations as convs
from kbqa.app.server.chat_format import render_turns
from kbqa.app.server.source_view import document_html, find_spans, highlight_html, mark_pdf_passage, source_label

CJK_FONTS = [
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
]


def test_find_spans_ignores_line_breaks_spacing_and_case():
    text = "Intro line.\nThe railway opened to the\npublic on 14 June 1911, after   six years.\nEnd."
    (span,) = find_spans(text, "the railway opened to the public on 14 June 1911")
    assert text[span[0] : span[1]].replace("\n", " ") == "The railway opened to the public on 14 June 1911"
    assert find_spans(text, "nothing like this at all") == []
    assert find_spans("", "x") == [] and find_spans("abc", "") == []


def test_find_spans_chinese_with_spaces_and_full_width_forms():
    text = "第一条 总则。\n身高不足1.2米的儿童必须由成年人全程陪同。\n第二条"
    (span,) = find_spans(text, "身高不足 1.2 米的儿童必须由成年人全程陪同")  # pdf text layers space out CJK
    assert text[span[0] : span[1]] == "身高不足1.2米的儿童必须由成年人全程陪同"
    assert find_spans("票价ＣＮＹ２６８元", "CNY268") == [(2, 8)]  # NFKC: full-width letters and digits


def test_find_spans_falls_back_to_lines_of_a_changed_passage():
    text = "Alpha beta gamma delta.\nEpsilon zeta eta theta.\nIota kappa lambda."
    spans = find_spans(text, "Alpha beta gamma delta.\n[REDACTED] zeta\nIota kappa lambda.")
    assert [text[a:b] for a, b in spans] == ["Alpha beta gamma delta.", "Iota kappa lambda."]


def test_highlight_html_marks_and_escapes():
    text = "<b>before</b> & then\nthe <passage> 14 June 1911\nafter"
    out = highlight_html(text, "the <passage> 14 June 1911")
    assert "<mark>the &lt;passage&gt; 14 June 1911</mark>" in out
    assert "&lt;b&gt;before&lt;/b&gt; &amp; then" in out and "<b>" not in out
    assert highlight_html("a <x> b", "zzz zzz zzz") == "a &lt;x&gt; b"  # no match: the text, unmarked


def test_highlight_html_cuts_long_text_around_the_passage():
    text = "word " * 2000 + "THE CITED PASSAGE HERE" + " more" * 2000
    out = highlight_html(text, "the cited passage here", context_chars=200)
    assert "<mark>THE CITED PASSAGE HERE</mark>" in out
    assert out.startswith("… ") and out.endswith(" …") and len(out) < 600


def test_highlight_html_chinese():
    text = "退票规则：\n发车前24小时以内、2小时以上退票，收取票面价格20%的手续费。\n其他"
    assert "<mark>发车前24小时以内、2小时以上退票，收取票面价格20%的手续费。</mark>" in highlight_html(
        text, "发车前24小时以内、2小时以上退票，收取票面价格20%的手续费。"
    )


def test_document_html_joins_neighbours_and_falls_back_to_the_stored_chunk():
    chunks = ["First chunk of the text, ending with an overlap", "ending with an overlap and the second chunk.", "Third chunk."]
    body, found = document_html(chunks, "the second chunk")
    assert found and body.count("ending with an overlap") == 1 and "<mark>the second chunk</mark>" in body
    body, found = document_html(chunks, "a passage that changed since", fallback="Third chunk.")
    assert found and "<mark>Third chunk.</mark>" in body
    assert document_html(chunks, "not there", fallback="also not there")[1] is False


def _pdf(pages: list[list[str]], font: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    if font:
        pdf.add_font("cjk", fname=font)
        pdf.set_font("cjk", size=12)
    else:
        pdf.set_font("helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _yellow(image, box) -> int:
    """How many pixels inside `box` are the highlight's yellow."""
    import numpy as np

    px = np.asarray(image.crop(box).convert("RGB")).reshape(-1, 3).astype(int)
    return int(((px[:, 0] > 200) & (px[:, 1] > 180) & (px[:, 2] < 150)).sum())


def test_mark_pdf_passage_boxes_the_lines_of_the_passage(tmp_path):
    path = tmp_path / "guide.pdf"
    path.write_bytes(
        _pdf(
            [
                ["Page one is about something else."],
                ["Pine Terrace Station sits in a forest.", "The Pine Trail is a loop walk of 2.4 km.", "A different closing line."],
            ]
        )
    )
    marked = mark_pdf_passage(path, 2, "Pine Terrace Station sits in a forest. The Pine Trail is a loop walk of 2.4 km.", width=800)
    assert marked.pages == 2 and abs(marked.image.width - 800) <= 2
    assert len(marked.boxes) == 2  # one per line
    first, second = sorted(marked.boxes, key=lambda b: b[1])
    assert first[3] <= second[1] + 4 and first[1] < marked.image.height / 4  # top of the page, line under line
    assert all(_yellow(marked.image, box) > 50 for box in marked.boxes)
    assert mark_pdf_passage(path, 1, "The Pine Trail is a loop walk").boxes == []  # not on that page
    with pytest.raises(ValueError, match="has 2 pages"):
        mark_pdf_passage(path, 3, "x")


def test_mark_pdf_passage_chinese(tmp_path):
    font = next((f for f in CJK_FONTS if Path(f).is_file()), None)
    if font is None:
        pytest.skip("no CJK font (apt-get install fonts-wqy-zenhei)")
    path = tmp_path / "规则.pdf"
    path.write_bytes(_pdf([["安全须知", "身高不足1.2米的儿童必须由成年人全程陪同。", "禁止携带无人机。"]], font))
    marked = mark_pdf_passage(path, 1, "身高不足1.2米的儿童必须由成年人全程陪同。")
    assert len(marked.boxes) == 1 and _yellow(marked.image, marked.boxes[0]) > 50


def test_source_label():
    assert source_label(2, {"source": "data/sample/stations_guide.pdf", "page": 3}) == "[2] stations_guide.pdf, p. 3"
    assert source_label(1, {"source": "data/sample/history.md", "page": None}) == "[1] history.md"


def _turn(q: str, answer: str = "an answer") -> dict:
    return {
        "q": q,
        "a": answer,
        "shown": answer + "\n\n*✓ quoted*",
        "sources": [{"source": "d/history.md", "page": None, "chunk": 2, "score": 0.5, "text": "passage"}],
    }


def test_conversations_save_list_reopen_and_remove():
    store = convs.empty()
    store, first = convs.save(store, "admin", "sample", None, [_turn("When did it open?")], now=1)
    store, first_again = convs.save(store, "admin", "sample", first, [_turn("When did it open?"), _turn("And closed?")], now=2)
    assert first_again == first
    store, second = convs.save(store, "admin", "sample", None, [_turn("多高的儿童需要陪同？")], now=3)
    assert convs.listing(store, "admin", "sample") == [("多高的儿童需要陪同？", second), ("When did it open? (2 questions)", first)]
    assert convs.active(store, "admin", "sample")["id"] == second
    assert convs.listing(store, "reader", "sample") == [] and convs.listing(store, "admin", "scratch") == []  # per user, per KB
    store = convs.activate(store, "admin", "sample", None)
    assert convs.active(store, "admin", "sample") is None and len(convs.listing(store, "admin", "sample")) == 2
    display, history = render_turns(convs.get(store, "admin", "sample", first)["turns"])
    assert [m["role"] for m in display] == ["user", "assistant", "assistant"] * 2
    assert display[2]["metadata"]["title"] == "Sources: history.md" and history[-1] == {"role": "assistant", "content": "an answer"}
    store = convs.remove(store, "admin", "sample", first)
    assert [c for _, c in convs.listing(store, "admin", "sample")] == [second]


def test_conversations_are_capped_and_bad_stores_are_replaced():
    store = convs.empty()
    for n in range(convs.MAX_CONVERSATIONS + 5):
        store, _ = convs.save(store, "u", "kb", None, [_turn(f"question {n}")], now=n)
    titles = [t for t, _ in convs.listing(store, "u", "kb")]
    assert len(titles) == convs.MAX_CONVERSATIONS and titles[0] == f"question {convs.MAX_CONVERSATIONS + 4}"
    big = [_turn("big", "x" * 200_000)]
    for n in range(12):
        store, kept = convs.save(store, "u", "other", None, big, now=1000 + n)
    assert len(__import__("json").dumps(store)) <= convs.MAX_STORE_CHARS
    assert convs.listing(store, "u", "other")[0][1] == kept  # the newest stays; the oldest went
    for bad in (None, "garbage", {"v": 0}, {"v": 1, "users": []}, {"v": 1, "users": {"u": {"kb": {"conversations": [1, {"id": 2}]}}}}):
        assert convs.listing(bad, "u", "kb") == []
        assert convs.save(bad, "u", "kb", None, [_turn("q")])[0]["v"] == convs.VERSION


@pytest.fixture(scope="module")
def chat(sample_kb_dir, settings, tmp_path_factory):
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.server.auth import ApiKey, KeyRing
    from kbqa.app.server.chat_ui import ChatCallbacks
    from kbqa.app.service import QAService

    other = tmp_path_factory.mktemp("other-kb") / "kb"
    service = QAService({"sample": KnowledgeBase(sample_kb_dir, settings), "other": KnowledgeBase(other, settings)}, settings)
    keyring = KeyRing([ApiKey("reader", "reader-token-123456", {"sample": "r"}), ApiKey("outsider", "outsider-token-123456", {"other": "r"})])
    return ChatCallbacks(service, keyring)


def _as(name: str):
    from types import SimpleNamespace

    return SimpleNamespace(username=name)


def test_source_document_opens_only_documents_of_the_knowledge_base(chat):
    from kbqa.app.service import UnknownDocument

    history = next(d["source"] for d in chat.service.documents("sample") if d["name"] == "history.md")
    doc = chat.service.source_document("sample", history, 3)
    assert doc["source"] == history and doc["path"].is_file() and [c.chunk for c in doc["chunks"]][:2] == [2, 3]
    for forged in ("/etc/passwd", "../../etc/passwd", str(Path(history).parent / "nope.md")):
        with pytest.raises(UnknownDocument):
            chat.service.source_document("sample", forged, 0)
    with pytest.raises(UnknownDocument):
        chat.service.source_document("other", history, 0)  # an empty knowledge base holds nothing


def test_viewer_checks_the_users_rights_and_the_source(chat):
    import gradio as gr

    history = next(d["source"] for d in chat.service.documents("sample") if d["name"] == "history.md")
    turns = [{"q": "q", "a": "a", "shown": "a", "sources": [{"source": history, "page": None, "chunk": 1, "score": 1.0, "text": "Lanshan"}]}]
    note, body, image = chat.on_view("sample", turns, 0, _as("reader"))
    assert "the passage is highlighted" in note and "<mark>" in body.value and body.visible and not image.visible
    with pytest.raises(gr.Error, match="may not use"):
        chat.on_view("sample", turns, 0, _as("outsider"))
    with pytest.raises(gr.Error, match="log in"):
        chat.on_view("sample", turns, 0, _as("nobody"))
    forged = [{**turns[0], "sources": [{"source": "/etc/passwd", "page": None, "chunk": 0, "text": "root"}]}]
    with pytest.raises(gr.Error, match="not a document of knowledge base"):
        chat.on_view("sample", forged, 0, _as("reader"))


_CONCURRENT = """
import sys, threading
from kbqa.app.server.source_view import mark_pdf_passage
from kbqa.ingest.loaders.pdf import load_pdf
from pathlib import Path
path = Path(sys.argv[1]); data = path.read_bytes(); errors = []
def view():
    try:
        for _ in range(15):
            assert len(mark_pdf_passage(path, 2, "The Pine Trail is a loop walk", width=600).boxes) == 1
    except Exception as exc:
        errors.append(repr(exc))
def parse():
    try:
        for _ in range(15):
            assert "Pine Trail" in load_pdf(path, data, ocr="never")[1].text
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=f) for f in (view, view, view, parse, parse)]
[t.start() for t in threads]; [t.join() for t in threads]
print(errors or "ok")
"""


def test_pdf_pages_are_viewed_and_parsed_from_many_threads_at_once(tmp_path):
    """pdfium is not thread-safe: the viewer (the UI's worker threads) and inline parsing share a
    lock. Run in a child process, so that a crash fails this test rather than the whole run."""
    import subprocess
    import sys

    path = tmp_path / "guide.pdf"
    path.write_bytes(_pdf([["Page one is about something else."], ["Pine Terrace Station sits in a forest.", "The Pine Trail is a loop walk of 2.4 km."]]))
    done = subprocess.run([sys.executable, "-c", _CONCURRENT, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok", done.stdout
