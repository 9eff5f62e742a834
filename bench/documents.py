"""Documents that need OCR: character error rate on synthetic scans, the hard cases of
../shared/data/docs, retrieval of questions about scanned pages, and of questions about one
cell of a table (`bench/table_cells.py`), with the cost of table detection.

    python bench/documents.py            # -> bench/results/documents.{json,md}

Synthetic scans: text written for this benchmark, drawn on A4 pages at 150 and 300 dpi with
noise, blur and a slight rotation, saved as image-only PDFs and read back through the loader.
Chinese pages need a CJK font (Debian: apt-get install fonts-wqy-zenhei); without one they are
left out and the table says so. The baseline in the same run is the loader without OCR
(``ingest.ocr = never``), which is what kbqa did before.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "docs" / "pdf"
OUT = ROOT / "bench" / "results"

ENGLISH = """The harbour office opens at seven in the morning and closes at six in the evening.
Boats longer than twelve metres must report to the pilot station before they enter.
Fuel is sold at the east quay; payment by card is accepted on weekdays only.
A berth for one night costs forty dollars, and a week costs two hundred dollars.
Visitors who arrive after dark should call the night guard on channel sixteen.
Fishing from the breakwater is not allowed between April and the end of June.
Lost property is kept at the harbour office for sixty days and then given away.
Drinking water is free at every pontoon, but washing boats with it is forbidden.
The crane can lift boats of up to eighteen tonnes; book it two days in advance.
Children under ten must wear a life jacket on the pontoons at all times.
Waste oil goes into the green tank behind the workshop, never into the bins.
The annual fee for a permanent mooring is due on the first of March.""".splitlines()

CHINESE = """本馆每周二至周日开放，上午九点开门，下午五点停止入馆。
每周一闭馆，法定节假日照常开放，闭馆日另行通知。
参观者须凭有效身份证件领取门票，每人每天限领一张。
六岁以下儿童和七十岁以上老人可免费入馆，但须由家人陪同。
馆内禁止使用闪光灯拍照，禁止触摸展品和玻璃展柜。
大件行李须寄存在一楼服务台，寄存时间不超过当天闭馆。
团体参观须提前三天预约，每个团体不得超过三十人。
讲解服务每天上午十点和下午两点各一次，每次约四十分钟。
馆内餐厅位于三楼，供应简餐和饮料，营业到下午四点半。
如遇火警，请按绿色指示牌从最近的安全出口离开。
遗失物品可到二楼办公室登记，保管期限为三十天。
本规定自二零二六年一月一日起施行，解释权归本馆所有。""".splitlines()

# questions about pages of the shared hard cases, written for this benchmark: (question, file, page)
QUESTIONS = [
    ("Which sugar companies accepted membership and sent their checks?", "odd_scanned_letter_noisy_ocr_layer.pdf", 1),
    ("Who sent the letter about the progress of the Sugar Research Foundation?", "odd_scanned_letter_noisy_ocr_layer.pdf", 1),
    ("一夸特小麦和多少公斤铁相等的等式说明了什么？", "zh_scanned_book_capital_8p.pdf", 2),
    ("物的有用性使物成为什么？", "zh_scanned_book_capital_8p.pdf", None),
    ("使用价值只是在什么中得到实现？", "zh_scanned_book_capital_8p.pdf", None),
    ("民用航空发动机状态监视和故障诊断系统在哪些机型上试用？", "zh_aero_engine_paper_1994_caj2pdf.pdf", 1),
    ("Journal of Aerospace Power 1994 engine condition monitoring", "zh_aero_engine_paper_1994_caj2pdf.pdf", 1),
    ("典型系统的发动机测量参数有哪些？", "zh_aero_engine_paper_1994_caj2pdf.pdf", 2),
]


def cjk_font() -> str | None:
    for path in (
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ):
        if Path(path).is_file():
            return path
    return None


def scan_pdf(lines: list[str], dpi: int, font_path: str | None, seed: int) -> bytes:
    """An A4 image-only PDF of `lines` at `dpi`, 11 pt text, with noise, blur and a 0.6 degree turn."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    w, h = int(8.27 * dpi), int(11.69 * dpi)
    size = int(11 / 72 * dpi)
    font = ImageFont.truetype(font_path, size) if font_path else ImageFont.load_default(size=size)
    page = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(page)
    for n, line in enumerate(lines):
        draw.text((int(0.9 * dpi), int(1.0 * dpi) + int(n * size * 1.8)), line, fill=0, font=font)
    page = page.rotate(0.6, resample=Image.BICUBIC, fillcolor=255).filter(ImageFilter.GaussianBlur(dpi / 300 * 0.8))
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.asarray(page, dtype=np.float32) + rng.normal(0, 18, (h, w)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).convert("RGB").save(buf, "PDF", resolution=dpi)
    return buf.getvalue()


def cer(truth: str, guess: str) -> float:
    """Character error rate: edit distance / length of the truth, white space ignored."""
    a, b = "".join(truth.split()), "".join(guess.split())
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(1, len(a))


def synthetic(font: str | None) -> list[dict]:
    from kbqa.ingest.clean import clean_text
    from kbqa.ingest.loaders import load_document

    from kbqa.ingest.ocr import engine

    engine()  # load the OCR models before timing (about 0.4 s, once per process)
    rows = []
    for lang, lines, font_path in (("en", ENGLISH, None), ("zh", CHINESE, font)):
        if lang == "zh" and font is None:
            rows.append({"lang": lang, "skipped": "no CJK font (apt-get install fonts-wqy-zenhei)"})
            continue
        for dpi in (150, 300):
            data = scan_pdf(lines, dpi, font_path, seed=dpi)
            started = time.perf_counter()
            pages = load_document(Path(f"synthetic_{lang}_{dpi}.pdf"), data, ocr="auto")
            seconds = time.perf_counter() - started
            text = clean_text("\n".join(p.text for p in pages))
            rows.append(
                {
                    "lang": lang,
                    "dpi": dpi,
                    "cer": round(cer("\n".join(lines), text), 4),
                    "seconds_per_page": round(seconds, 2),
                    "pages_ocr": sum(p.ocr for p in pages),
                    "baseline_chars": sum(len(p.text) for p in load_document(Path("x.pdf"), data, ocr="never")),
                }
            )
            print(rows[-1], flush=True)
    return rows


def book_speed(dpi: int = 150, passes: int = 3) -> list[dict]:
    """s/page of OCR on the scanned book at `dpi`: the wheel's detection size (baseline) and
    ingest/ocr.py's (`DET_SIDE`), one engine each, the median of `passes` over its 8 pages."""
    import statistics

    import pypdfium2 as pdfium
    from rapidocr_onnxruntime import RapidOCR

    from kbqa.ingest.ocr import DET_SIDE, limit_detection
    from kbqa.ingest.page_ocr import render

    pdf = pdfium.PdfDocument(SHARED / "zh_scanned_book_capital_8p.pdf")
    images = [render(pdf[i], dpi) for i in range(len(pdf))]
    rows = []
    for name, side in (("wheel's detection (up to 2000 px)", None), (f"detection at {DET_SIDE} px (kbqa)", DET_SIDE)):
        ocr = RapidOCR()
        if side:
            limit_detection(ocr, side)
        ocr(images[0])  # warm up
        times, chars = [], 0
        for _ in range(passes):
            started = time.perf_counter()
            chars = sum(len(t) for im in images for _, t, _ in (ocr(im)[0] or []))
            times.append((time.perf_counter() - started) / len(images))
        rows.append(
            {
                "config": name,
                "dpi": dpi,
                "seconds_per_page": round(statistics.median(times), 2),
                "passes": [round(t, 2) for t in times],
                "characters": chars,
                "load": round(os.getloadavg()[0], 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def shared_docs() -> list[dict]:
    from kbqa.ingest.errors import LoadError
    from kbqa.ingest.loaders import load_document
    from kbqa.ingest.textlayer import plausibility

    rows = []
    for path in sorted(SHARED.glob("*.pdf")):
        data = path.read_bytes()
        password = "openpassword" if "openpassword" in path.name else None
        row: dict = {"file": path.name}
        for mode in ("never", "auto"):
            started = time.perf_counter()
            try:
                pages = load_document(path, data, password=password, ocr=mode)
            except LoadError as exc:
                row[mode] = {"error": exc.reason}
                continue
            row[mode] = {
                "pages": len(pages),
                "with_text": sum(1 for p in pages if p.text.strip()),
                "ocr": sum(p.ocr for p in pages),
                "failed": sum(1 for p in pages if p.problem),
                "lowest_plausibility": round(min((plausibility(p.text) for p in pages if p.text), default=1.0), 2),
                "seconds": round(time.perf_counter() - started, 2),
                "problems": sorted({p.problem for p in pages if p.problem}),
            }
        rows.append(row)
        print(row, flush=True)
    return rows


def retrieval(tmp: Path) -> dict:
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    files = sorted({f for _, f, _ in QUESTIONS})
    docs = tmp / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name in files:
        (docs / name).write_bytes((SHARED / name).read_bytes())
    out = {}
    for mode in ("never", "auto"):
        settings = Settings.load(None, overrides={"ingest.ocr": mode})
        kb = KnowledgeBase(tmp / f"kb-{mode}", settings)
        kb.ingest([docs], progress=False)
        hits3 = []
        for question, name, page in QUESTIONS:
            hits = kb.search(question, 3).hits
            hits3.append(any(Path(h.chunk.source).name == name and (page is None or h.chunk.page == page) for h in hits))
        out[mode] = {"hit@3": round(sum(hits3) / len(hits3), 3), "per_question": hits3}
        print(mode, out[mode], flush=True)
    return out


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [
        "# Documents that need OCR",
        "",
        f"Command: `{m['command']}`  ",
        f"Date: {m['date']}; load average {m['load_start']:.1f} at the start, {m['load_end']:.1f} at the end; 2 CPUs.",
        "",
        "## Synthetic scans (A4, 11 pt, noise, blur, 0.6 degree turn; image-only PDFs)",
        "",
        "| language | scan dpi | CER | s / page | pages OCR'd | characters without OCR (baseline) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["synthetic"]:
        if "skipped" in r:
            lines.append(f"| {r['lang']} | - | skipped: {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['lang']} | {r['dpi']} | {r['cer']:.3f} | {r['seconds_per_page']:.2f} | {r['pages_ocr']} | {r['baseline_chars']} |")
    lines += [
        "",
        "## ../shared/data/docs/pdf: without OCR (before) and with `ingest.ocr = auto`",
        "",
        "| file | pages | before: pages with text | auto: OCR'd | auto: failed | auto: lowest plausibility | auto: s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["shared"]:
        before, auto = r["never"], r["auto"]
        if "error" in before:
            b = before["error"]
        else:
            b = f"{before['with_text']} of {before['pages']}" + (f"; failed: {'; '.join(before['problems'])}" if before["failed"] else "")
        if "error" in auto:
            lines.append(f"| {r['file']} | - | {b} | error: {auto['error']} | | | |")
        else:
            lines.append(f"| {r['file']} | {auto['pages']} | {b} | {auto['ocr']} | {auto['failed']} | {auto['lowest_plausibility']} | {auto['seconds']} |")
    if "book_speed" in result:
        lines += [
            "",
            "## OCR speed: zh_scanned_book_capital_8p.pdf rendered at 150 dpi (8 pages, median of 3 passes)",
            "",
            "| detection | s / page | pages / s | characters read | load average after |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['config']} | {r['seconds_per_page']:.2f} | {1 / r['seconds_per_page']:.2f} | {r['characters']} | {r['load']} |" for r in result["book_speed"]
        ]
    q = result["retrieval"]
    lines += [
        "",
        f"## Questions about the scanned book, the scanned letter and the CAJ2PDF paper ({len(QUESTIONS)}, written for this benchmark)",
        "",
        "| ingest.ocr | right page in the top 3 |",
        "|---|---|",
    ]
    lines += [f"| {mode} | {q[mode]['hit@3']:.3f} |" for mode in ("never", "auto")]
    if "table_cells" in result:
        from bench.table_cells import markdown_lines

        lines += markdown_lines(result["table_cells"], result["table_detection_cost"])
    lines += [
        "",
        "CER: edit distance over the characters of the text written on the page, white space ignored. Pages are rendered for OCR at "
        "`ingest.ocr_dpi` = 200 (longer side at most 2400 px); text is detected on the page scaled to `DET_SIDE` (ingest/ocr.py). *lowest plausibility*: the least language-like page kept (ingest/textlayer.py).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meta = {"command": "python bench/documents.py", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg()[0]}
    random.seed(0)
    result = {"meta": meta, "synthetic": synthetic(cjk_font()), "book_speed": book_speed(), "shared": shared_docs()}
    from bench.table_cells import cell_retrieval, detection_cost

    with tempfile.TemporaryDirectory() as tmp:
        result["retrieval"] = retrieval(Path(tmp))
        result["table_cells"] = cell_retrieval(Path(tmp))
    result["table_detection_cost"] = detection_cost(SHARED)
    meta["load_end"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "documents.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (OUT / "documents.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
