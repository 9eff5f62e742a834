"""Bad input, systematically: every file gets a status and a clear reason; the rest lands.

Fixtures are generated here (fpdf2, python-docx, raw bytes), nothing from ../shared.
"""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from kbqa.app.kb import KnowledgeBase
from kbqa.ingest.pipeline import Ingestor

GOOD = "The Lanshan night train leaves Cloud Peak Summit at 23:15 every Saturday.\n"


def _pdf(text: str | None = None, password: str | None = None) -> bytes:
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    pdf = FPDF()
    pdf.add_page()
    if text:
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 10, text)
    if password:
        pdf.set_encryption(owner_password="owner-" + password, user_password=password, encryption_method=EncryptionMethod.RC4)
    return bytes(pdf.output())


def _docx(text: str) -> bytes:
    import docx

    document = docx.Document()
    for line in text.splitlines():
        document.add_paragraph(line)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def _by_name(summary):
    return {f.path.rsplit("/", 1)[-1]: f for f in summary.files}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, settings):
    root = tmp_path_factory.mktemp("bad")
    docs = root / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Night train\n\n" + GOOD, encoding="utf-8")
    (docs / "good_copy.md").write_text("# Night train\n\n" + GOOD, encoding="utf-8")  # same bytes, other name
    (docs / "zero.txt").write_bytes(b"")
    good_pdf = _pdf("The summit post office sells stamps printed with the rack locomotive No. 3.")
    (docs / "ok.pdf").write_bytes(good_pdf)
    (docs / "truncated.pdf").write_bytes(good_pdf[: len(good_pdf) // 3])
    (docs / "corrupted.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(4000))
    (docs / "not_really.pdf").write_bytes(b"<html>this is not a pdf</html>")
    (docs / "blank_scan.pdf").write_bytes(_pdf(None))  # a page with no text layer
    (docs / "locked.pdf").write_bytes(_pdf("The vault code is kept by the station master.", password="s3cret"))
    good_docx = _docx("Bicycles travel free on the first upward train.\nFolding bikes always travel free.")
    (docs / "truncated.docx").write_bytes(good_docx[: len(good_docx) // 2])
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<<< not xml at all")
    (docs / "corrupted.docx").write_bytes(broken.getvalue())
    (docs / "binary.txt").write_bytes(os.urandom(5000) + b"\x00" * 100)
    (docs / "one_line.txt").write_text("the rack railway climbs slowly " * 70000, encoding="utf-8")  # ~2 MB, no newline
    (docs / "deep.html").write_text("<html><body>" + "<div>" * 20000 + "Deeply nested: the funicular opened in 1931." + "</div>" * 20000, encoding="utf-8")
    (docs / "mixed.txt").write_bytes("Station list.\n蓝山站：海拔 800 米。\n".encode("utf-8") + "镜湖站的海拔是一千五百米。\n".encode("gbk"))
    os.mkfifo(docs / "pipe.txt")  # reading a FIFO would block forever
    loop_dir = docs / "loop"
    loop_dir.mkdir()
    (loop_dir / "back").symlink_to(docs, target_is_directory=True)  # a directory symlink loop
    (docs / "self_a.md").symlink_to(docs / "self_b.md")
    (docs / "self_b.md").symlink_to(docs / "self_a.md")  # a file symlink loop
    kb = KnowledgeBase(root / "kb", settings)
    plain = kb.ingest([docs])
    with_password = kb.ingest([docs / "locked.pdf"], password="s3cret")
    return kb, plain, with_password


def test_every_bad_file_gets_a_status_and_reason(bad_run):
    kb, summary, _ = bad_run
    f = _by_name(summary)
    expect_failed = {
        "zero.txt": "empty file",
        "truncated.pdf": "PDF",
        "corrupted.pdf": "PDF",
        "not_really.pdf": "not a PDF",
        "blank_scan.pdf": "OCR read no text",
        "locked.pdf": "--pdf-password",
        "truncated.docx": "DOCX",
        "corrupted.docx": "DOCX",
        "binary.txt": "binary",
        "pipe.txt": "not a regular file",
        "self_a.md": "symlink loop",
    }
    for name, needle in expect_failed.items():
        assert f[name].status == "failed", (name, f[name])
        assert needle in f[name].reason, (name, f[name].reason)
    assert "no usable text" in f["blank_scan.pdf"].reason
    assert "password-protected" in f["locked.pdf"].reason
    for name in ("good.md", "ok.pdf", "one_line.txt", "deep.html", "mixed.txt"):
        assert f[name].status == "added" and f[name].chunks > 0, (name, f[name])
    assert f["good_copy.md"].status == "skipped" and "duplicate of" in f["good_copy.md"].reason
    assert "good.md" in f["good_copy.md"].reason
    dir_loops = [r for r in summary.files if "directory already visited (symlink loop)" in (r.reason or "")]
    assert dir_loops and all(r.status == "skipped" for r in dir_loops)
    assert f["self_b.md"].status == "failed" and "symlink loop" in f["self_b.md"].reason
    assert not summary.ok  # failures make the exit code 1
    # every file discovered was accounted for exactly once
    names = [r.path.rsplit("/", 1)[-1] for r in summary.files if r.path.rsplit("/", 1)[-1] != "back"]
    assert len(names) == len(set(names))


def test_bad_files_leave_nothing_behind_and_good_text_is_found(bad_run):
    kb, summary, with_password = bad_run
    manifest_ids = {i for r in kb.manifest.all() for i in r.chunk_ids}
    assert manifest_ids == set(kb.store.all_ids()) == kb.keyword_index.ids()
    sources = {r.source.rsplit("/", 1)[-1] for r in kb.manifest.all()}
    assert "good_copy.md" not in sources and "zero.txt" not in sources
    texts = " ".join(c.text for c in kb.store.get(sorted(manifest_ids)))
    assert "镜湖站的海拔是一千五百米" in texts  # the GBK line of the mixed file, decoded
    assert "蓝山站" in texts  # and its UTF-8 line
    assert "funicular opened in 1931" in texts
    assert with_password.count("added") == 1 and with_password.ok
    assert any("vault code" in h.chunk.text for h in kb.retrieve("who keeps the vault code", 3))


def test_a_hanging_parser_is_stopped_and_the_batch_goes_on(tmp_path, settings, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(GOOD, encoding="utf-8")
    (docs / "stuck.md").write_text("This parser will never return.\n", encoding="utf-8")
    (docs / "z.txt").write_text("The ferry to Mirror Lake runs hourly.\n", encoding="utf-8")
    monkeypatch.setenv("KBQATEST_PARSE_HANG", "stuck.md")  # test hook in ingest/workers.py
    quick = settings.with_overrides({"ingest.file_timeout_s": 3, "ingest.workers": 1})
    summary = KnowledgeBase(tmp_path / "kb", quick).ingest([docs])
    f = _by_name(summary)
    assert f["stuck.md"].status == "failed" and "timed out" in f["stuck.md"].reason and "ingest.file_timeout_s" in f["stuck.md"].reason
    assert f["a.md"].status == "added" and f["z.txt"].status == "added"


def test_files_that_vanish_or_change_during_ingestion(tmp_path, settings, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "stays.md").write_text(GOOD, encoding="utf-8")
    (docs / "vanishes.md").write_text("This file is deleted after discovery.\n", encoding="utf-8")
    (docs / "changes.md").write_text("First version: the depot is painted red.\n", encoding="utf-8")
    real_plan = Ingestor._plan

    def plan_then_disturb(self, files, summary):
        planned = real_plan(self, files, summary)
        (docs / "vanishes.md").unlink()
        (docs / "changes.md").write_text("Second version: the depot is painted ultramarine.\n", encoding="utf-8")
        return planned

    monkeypatch.setattr(Ingestor, "_plan", plan_then_disturb)
    kb = KnowledgeBase(tmp_path / "kb", settings)
    summary = kb.ingest([docs])
    f = _by_name(summary)
    assert f["vanishes.md"].status == "failed" and "vanished" in f["vanishes.md"].reason
    assert f["stays.md"].status == "added" and f["changes.md"].status == "added"
    texts = [c.text for c in kb.store.get(kb.store.all_ids())]
    assert any("ultramarine" in t for t in texts) and not any("painted red" in t for t in texts)
    monkeypatch.setattr(Ingestor, "_plan", real_plan)
    again = kb.ingest([docs])  # the manifest recorded the hash of what was indexed
    assert _by_name(again)["changes.md"].status == "unchanged"


def test_size_limit_and_unreadable_file(tmp_path, settings):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "big.txt").write_text("word " * 300_000, encoding="utf-8")  # 1.5 MB
    (docs / "small.txt").write_text(GOOD, encoding="utf-8")
    secret = docs / "secret.txt"
    secret.write_text("Only the owner may read this.\n", encoding="utf-8")
    secret.chmod(0)
    try:
        summary = KnowledgeBase(tmp_path / "kb", settings.with_overrides({"ingest.max_file_mb": 1})).ingest([docs])
    finally:
        secret.chmod(0o644)
    f = _by_name(summary)
    assert f["big.txt"].status == "failed" and "too large" in f["big.txt"].reason and "ingest.max_file_mb" in f["big.txt"].reason
    assert f["small.txt"].status == "added"
    if os.geteuid() == 0:  # root reads mode-000 files: the permission case cannot be staged
        assert f["secret.txt"].status == "added"
    else:
        assert f["secret.txt"].status == "failed" and "ermission denied" in f["secret.txt"].reason
