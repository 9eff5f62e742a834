"""The bad-input table: every hard case from ../shared/data/docs plus generated ones, each
ingested through the real pipeline, with its outcome and message.

    python bench/bad_input.py            # writes bench/results/bad_input.{json,md}

Cases from the shared set are ingested one per knowledge base (so that a duplicate or
an earlier file cannot change the outcome); the password-protected PDF is tried without
and with `--pdf-password`. Generated cases are written to a temporary folder.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

SHARED = ROOT.parent / "shared" / "data" / "docs"
RESULTS = ROOT / "bench" / "results"

SHARED_CASES = [
    ("scanned PDF, no text layer (zh)", "pdf/zh_scanned_book_capital_8p.pdf", None),
    ("CAJ2PDF paper, broken text layer (zh)", "pdf/zh_aero_engine_paper_1994_caj2pdf.pdf", None),
    ("scanned letter, garbage OCR layer", "pdf/odd_scanned_letter_noisy_ocr_layer.pdf", None),
    ("password-protected PDF, no password", "pdf/odd_encrypted_user_pw_openpassword.pdf", None),
    ("password-protected PDF, --pdf-password", "pdf/odd_encrypted_user_pw_openpassword.pdf", "openpassword"),
    ("password-protected PDF, wrong password", "pdf/odd_encrypted_user_pw_openpassword.pdf", "wrong"),
    ("AES copy-protected PDF (no user password)", "pdf/odd_aes_copy_protected_layoutparser.pdf", None),
    ("broken cross-reference table", "pdf/odd_broken_xref.pdf", None),
    ("right-to-left text (Arabic)", "pdf/odd_arabic_rtl.pdf", None),
    ("Korean with tables", "pdf/ko_card_benefits_tables.pdf", None),
    ("two-column LaTeX", "pdf/en_latex_two_column_lorem.pdf", None),
    ("mind-map layout (zh)", "pdf/zh_chemistry_mindmap_xmind.pdf", None),
    ("bilingual datasheet, 22 pages", "pdf/zh_en_svolt_battery_cell_spec.pdf", None),
    ("DOCX with formulas, images, TOC", "docx/zh_en_mineru_docx_feature_test.docx", None),
    ("DOCX standard draft with form fields (zh)", "docx/zh_nuclear_psr_guide_part1_draft.docx", None),
    ("HTML SEC filing", "html/en_sec_10k_1p.html", None),
]


def _generated(folder: Path) -> list[tuple[str, Path]]:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 10, "The summit post office sells stamps printed with the rack locomotive.")
    good_pdf = bytes(pdf.output())
    import docx

    d = docx.Document()
    d.add_paragraph("Bicycles travel free on the first upward train.")
    buf = io.BytesIO()
    d.save(buf)
    good_docx = buf.getvalue()
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("word/document.xml", "<<< not xml")
    files = {
        "zero-byte file": ("zero.txt", b""),
        "truncated PDF": ("truncated.pdf", good_pdf[: len(good_pdf) // 3]),
        "corrupted PDF (random body)": ("corrupted.pdf", b"%PDF-1.7\n" + os.urandom(4000)),
        "HTML renamed .pdf": ("fake.pdf", b"<html>not a pdf</html>"),
        "truncated DOCX": ("truncated.docx", good_docx[: len(good_docx) // 2]),
        "corrupted DOCX (zip, bad XML)": ("corrupted.docx", broken.getvalue()),
        "binary data with .txt extension": ("binary.txt", os.urandom(8000)),
        "huge single line (2 MB)": ("one_line.txt", ("the rack railway climbs slowly " * 70000).encode()),
        "deeply nested HTML (20,000 divs)": ("deep.html", ("<div>" * 20000 + "Deep text: opened in 1931." + "</div>" * 20000).encode()),
        "mixed encodings (UTF-8 + GBK lines)": ("mixed.txt", "Stations.\n蓝山站：海拔 800 米。\n".encode() + "镜湖站海拔一千五百米。\n".encode("gbk")),
        "UTF-16 text with BOM": ("utf16.txt", "蓝山铁路全长23.7公里。".encode("utf-16")),
    }
    out = []
    for case, (name, data) in files.items():
        (folder / name).write_bytes(data)
        out.append((case, folder / name))
    fifo = folder / "pipe.txt"
    os.mkfifo(fifo)
    out.append(("named pipe with .txt extension", fifo))
    (folder / "loop_a.md").symlink_to(folder / "loop_b.md")
    (folder / "loop_b.md").symlink_to(folder / "loop_a.md")
    out.append(("file symlink loop", folder / "loop_a.md"))
    return out + _hostile(folder)


def _hostile(folder: Path) -> list[tuple[str, Path]]:
    """Issue #22's hostile inputs (generators in tests/hostile_inputs.py), written into `folder`."""
    from tests import hostile_inputs as H

    secret = folder / "outside_secret.txt.off"  # an extension discovery ignores: only the entity points at it
    secret.write_text("kbqa-secret-must-not-be-indexed\n", encoding="utf-8")
    files = {
        "DOCX zip bomb (3.5 GiB member in 3.6 MB)": ("zip_bomb.docx", H.docx_zip_bomb),
        "DOCX billion laughs (10^10 entity expansion)": ("laughs.docx", H.docx_billion_laughs),
        "DOCX external entity (file:// a local file)": ("xxe.docx", lambda: H.docx_external_entity(str(secret))),
        "PDF self-referencing page tree": ("self_pages.pdf", H.pdf_self_referencing),
        "PDF with 100,000 empty pages": ("many_pages.pdf", H.pdf_many_pages),
        "PDF 100,000 pages, /Count says 1": ("lying_count.pdf", lambda: H.pdf_many_pages(declared=1)),
        "PNG bomb 10,000 x 10,000 (100 KB)": ("bomb.png", H.png_bomb),
        "PNG header declaring 100,000 x 100,000": ("declared_huge.png", lambda: H.png_bomb(100_000, 100_000, real=False)),
    }
    out = []
    for case, (name, make) in files.items():
        (folder / name).write_bytes(make())
        out.append((case, folder / name))
    with open(folder / "huge.txt", "wb") as f:
        f.truncate(1 << 30)  # sparse
    out.append(("1 GiB text file (sparse)", folder / "huge.txt"))
    return out


def main() -> int:
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    settings = Settings.load(env={}, overrides={"ingest.file_timeout_s": 120})
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gen = tmp / "generated"
        gen.mkdir()
        cases = [(c, SHARED / p, pw, "shared") for c, p, pw in SHARED_CASES]
        cases += [(c, p, None, "generated") for c, p in _generated(gen)]
        # duplicates under different names, in one run
        dup = tmp / "dup"
        dup.mkdir()
        (dup / "a_original.md").write_bytes((SHARED / "md/zh_spring_festival_notice.md").read_bytes())
        (dup / "b_copy.md").write_bytes((SHARED / "md/zh_spring_festival_notice.md").read_bytes())
        for n, (case, path, password, origin) in enumerate(cases):
            kb = KnowledgeBase(tmp / f"kb{n}", settings)
            t0 = time.perf_counter()
            summary = kb.ingest([path], password=password)
            seconds = time.perf_counter() - t0
            result = summary.files[0]
            rows.append(
                {
                    "case": case,
                    "origin": origin,
                    "file": path.name,
                    "outcome": result.status,
                    "chunks": result.chunks,
                    "message": result.reason or "",
                    "seconds": round(seconds, 2),
                }
            )
            print(f"{case:45s} {result.status:8s} {result.reason or ''}", flush=True)
        kb = KnowledgeBase(tmp / "kbdup", settings)
        summary = kb.ingest([dup])
        for f in summary.files:
            rows.append(
                {
                    "case": "duplicate file under another name",
                    "origin": "shared copy",
                    "file": Path(f.path).name,
                    "outcome": f.status,
                    "chunks": f.chunks,
                    "message": f.reason or "",
                    "seconds": round(summary.seconds, 2),
                }
            )
    meta = {
        "command": "python bench/bad_input.py",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg": os.getloadavg(),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bad_input.json").write_text(json.dumps({"meta": meta, "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8")
    lines = [
        "# Bad input: per-file outcome",
        "",
        f"`{meta['command']}` on {meta['machine']}, {meta['date']}, load average {', '.join(f'{x:.1f}' for x in meta['loadavg'])} "
        "(a shared machine: seconds are under contention). Each case is ingested into its own knowledge base "
        "(the duplicate pair together); seconds include parsing, embedding and storing.",
        "",
        "| case | file | outcome | chunks | message | s |",
        "|---|---|---|---:|---|---:|",
    ]
    for r in rows:
        msg = r["message"].replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['file']} | {r['outcome']} | {r['chunks']} | {msg} | {r['seconds']} |")
    (RESULTS / "bad_input.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / 'bad_input.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
