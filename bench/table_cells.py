"""Table-cell retrieval and the cost of table detection, for bench/documents.py.

Tables written for this benchmark (names, codes and figures generated from a fixed seed) go
into five files, one per format: a DOCX staff list (Chinese), an HTML price list (English), a
PDF with a ruled flight timetable (English), an XLSX city sheet (Chinese) and a CSV of
chemical elements (English). Each table is long enough to span several chunks. For every
table, questions name one row by its key cell and ask for another column, in the phrasing a
user would type. A question is answered when a top-3 chunk holds the row's key and the asked
value on one line, and *with header* when that chunk also holds the asked column's name.

Baseline in the same run: the same files split as prose (`ingest.split.split_text`), which is
how a table was cut before the table splitter: a row may be cut in two, and only the first
chunk of a table has its header.

The cost of table detection is the text-layer load time of each shared PDF with and without
it (`ingest.loaders.pdf_tables.with_tables`), best of three.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉建文斌宇浩凯健俊帆帅旭宁龙林欣悦"
DEPARTMENTS = ["财务部", "人事部", "研发部", "市场部", "客服部", "采购部", "法务部", "质检部"]
PRODUCTS = [
    "desk lamp",
    "office chair",
    "standing desk",
    "monitor arm",
    "keyboard tray",
    "filing cabinet",
    "whiteboard",
    "bookshelf",
    "footrest",
    "laptop stand",
    "cable tray",
    "coat rack",
    "drawer unit",
    "paper shredder",
    "label printer",
]
COLOURS = ["black", "white", "oak", "walnut", "grey", "blue", "red", "green"]
CITIES = [
    "East Harbor",
    "Millbrook",
    "Kingsport",
    "Ashford",
    "Redcliff",
    "Lakeview",
    "Stonebridge",
    "Fairhaven",
    "Northgate",
    "Westmoor",
    "Brightwater",
    "Oakridge",
]
CN_CITIES = [
    "临江",
    "青山",
    "白河",
    "云岭",
    "东湖",
    "南屏",
    "西林",
    "北塘",
    "金沙",
    "玉泉",
    "石门",
    "长桥",
    "柳溪",
    "松原",
    "梅岭",
    "桃源",
    "凤城",
    "龙港",
    "安平",
    "永宁",
    "新河",
    "清水",
    "望海",
    "丰台",
    "瑞安",
    "嘉禾",
    "华阳",
    "宁远",
    "兴隆",
    "泰和",
    "吉安",
    "平湖",
    "海宁",
    "崇阳",
    "宜川",
    "广德",
    "和顺",
    "寿光",
    "乐平",
    "德兴",
]
PROVINCES = ["江南省", "岭北省", "河西省", "山东道", "云中省", "海滨省"]


def _staff(rng: random.Random, n: int = 80) -> list[list[str]]:
    names: set[str] = set()
    rows = [["姓名", "部门", "工号", "分机号"]]
    while len(rows) <= n:
        name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2))
        if name in names:
            continue
        names.add(name)
        rows.append([name, rng.choice(DEPARTMENTS), f"E{rng.randint(10000, 99999)}", str(rng.randint(2000, 8999))])
    return rows


def _prices(rng: random.Random, n: int = 80) -> list[list[str]]:
    rows = [["Product", "SKU", "Price (USD)", "In stock"]]
    names = rng.sample([f"{colour} {product}" for colour in COLOURS for product in PRODUCTS], n)  # each product once
    skus = rng.sample(range(1000, 10000), n)
    for name, sku in zip(names, skus):
        rows.append(
            [
                name,
                f"{rng.choice('ABCDEFGH')}{rng.choice('KLMNPRST')}-{sku}",
                f"{rng.randint(15, 900)}.{rng.choice(['00', '50', '99'])}",
                str(rng.randint(0, 400)),
            ]
        )
    return rows


def _flights(rng: random.Random, n: int = 45) -> list[list[str]]:
    rows = [["Flight", "From", "To", "Departs", "Gate"]]
    numbers: set[str] = set()
    while len(rows) <= n:
        flight = f"{rng.choice(['QK', 'TR', 'ZB', 'MV'])}{rng.randint(100, 999)}"
        if flight in numbers:
            continue
        numbers.add(flight)
        a, b = rng.sample(CITIES, 2)
        rows.append([flight, a, b, f"{rng.randint(5, 22):02d}:{rng.choice(['00', '15', '30', '45'])}", f"{rng.choice('ABCD')}{rng.randint(1, 30)}"])
    return rows


def _cities(rng: random.Random) -> list[list[str]]:
    rows = [["城市", "省份", "人口（万）", "面积（平方公里）"]]
    for city in CN_CITIES:
        rows.append([city + "市", rng.choice(PROVINCES), str(rng.randint(20, 900)), str(rng.randint(800, 20000))])
    return rows


ELEMENTS = [
    ("Hydrogen", "H", 1, 1.008),
    ("Helium", "He", 2, 4.0026),
    ("Lithium", "Li", 3, 6.94),
    ("Beryllium", "Be", 4, 9.0122),
    ("Boron", "B", 5, 10.81),
    ("Carbon", "C", 6, 12.011),
    ("Nitrogen", "N", 7, 14.007),
    ("Oxygen", "O", 8, 15.999),
    ("Fluorine", "F", 9, 18.998),
    ("Neon", "Ne", 10, 20.180),
    ("Sodium", "Na", 11, 22.990),
    ("Magnesium", "Mg", 12, 24.305),
    ("Aluminium", "Al", 13, 26.982),
    ("Silicon", "Si", 14, 28.085),
    ("Phosphorus", "P", 15, 30.974),
    ("Sulfur", "S", 16, 32.06),
    ("Chlorine", "Cl", 17, 35.45),
    ("Argon", "Ar", 18, 39.948),
    ("Potassium", "K", 19, 39.098),
    ("Calcium", "Ca", 20, 40.078),
    ("Scandium", "Sc", 21, 44.956),
    ("Titanium", "Ti", 22, 47.867),
    ("Vanadium", "V", 23, 50.942),
    ("Chromium", "Cr", 24, 51.996),
    ("Manganese", "Mn", 25, 54.938),
    ("Iron", "Fe", 26, 55.845),
    ("Cobalt", "Co", 27, 58.933),
    ("Nickel", "Ni", 28, 58.693),
    ("Copper", "Cu", 29, 63.546),
    ("Zinc", "Zn", 30, 65.38),
    ("Gallium", "Ga", 31, 69.723),
    ("Germanium", "Ge", 32, 72.630),
    ("Arsenic", "As", 33, 74.922),
    ("Selenium", "Se", 34, 78.971),
    ("Bromine", "Br", 35, 79.904),
    ("Krypton", "Kr", 36, 83.798),
]


def _elements() -> list[list[str]]:
    return [["Element", "Symbol", "Atomic number", "Atomic mass"]] + [[e, s, str(z), str(m)] for e, s, z, m in ELEMENTS]


# (column asked, templates); {k} is the row's key cell
QUESTION_TEMPLATES = {
    "staff": [(3, ["{k}的分机号是多少？", "怎么打电话给{k}？分机多少"]), (2, ["{k}的工号是什么？"]), (1, ["{k}在哪个部门工作？"])],
    "prices": [
        (2, ["How much does the {k} cost?", "What is the price of the {k}?"]),
        (3, ["How many units of the {k} are in stock?"]),
        (1, ["What is the SKU of the {k}?"]),
    ],
    "flights": [
        (3, ["When does flight {k} depart?", "What time is flight {k}?"]),
        (4, ["Which gate does {k} leave from?"]),
        (2, ["Where does flight {k} go?"]),
    ],
    "cities": [(2, ["{k}的人口是多少？", "{k}有多少人口"]), (3, ["{k}的面积有多大？"]), (1, ["{k}属于哪个省？"])],
    "elements": [(3, ["What is the atomic mass of {k}?"]), (2, ["What is the atomic number of {k}?"]), (1, ["What is the chemical symbol for {k}?"])],
}


def write_files(docs: Path, seed: int = 7) -> dict[str, list[list[str]]]:
    """The five files under `docs`; returns each table's rows (header first) by name."""
    rng = random.Random(seed)
    tables = {"staff": _staff(rng), "prices": _prices(rng), "flights": _flights(rng), "cities": _cities(rng), "elements": _elements()}
    _docx(docs / "staff.docx", tables["staff"])
    _html(docs / "prices.html", tables["prices"])
    _pdf(docs / "flights.pdf", tables["flights"])
    _xlsx(docs / "cities.xlsx", tables["cities"])
    (docs / "elements.csv").write_text("\n".join(",".join(row) for row in tables["elements"]) + "\n", encoding="utf-8")
    return tables


def _docx(path: Path, rows: list[list[str]]) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("公司通讯录（二〇二六年十月更新）")
    table = document.add_table(rows=0, cols=len(rows[0]))
    for row in rows:
        for cell, value in zip(table.add_row().cells, row):
            cell.text = value
    document.save(path)


def _html(path: Path, rows: list[list[str]]) -> None:
    head = "".join(f"<th>{v}</th>" for v in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows[1:])
    path.write_text(
        f"<html><body><h1>Office furniture price list</h1><table><caption>Prices valid from 1 November</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>",
        encoding="utf-8",
    )


def _pdf(path: Path, rows: list[list[str]]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=10)
    pdf.multi_cell(0, 6, "Winter timetable of the regional airline, valid until March.")
    with pdf.table() as table:
        for row in rows:
            line = table.row()
            for value in row:
                line.cell(value)
    pdf.output(str(path))


def _xlsx(path: Path, rows: list[list[str]]) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "城市概况"
    for row in rows:
        sheet.append([int(v) if v.isdigit() else v for v in row])
    workbook.save(path)


def questions(tables: dict[str, list[list[str]]], per_table: int = 12, seed: int = 11) -> list[dict]:
    """Questions naming a row by its key cell and asking for another column."""
    rng = random.Random(seed)
    out = []
    for name, rows in tables.items():
        for row in rng.sample(rows[1:], per_table):
            column, templates = rng.choice(QUESTION_TEMPLATES[name])
            out.append({"table": name, "question": rng.choice(templates).format(k=row[0]), "key": row[0], "value": row[column], "column": rows[0][column]})
    return out


def _answered(hits, q: dict) -> tuple[bool, bool]:
    row = with_header = False
    for hit in hits:
        lines = hit.chunk.text.split("\n")
        if any(q["key"] in line and q["value"] in line for line in lines):
            row = True
            with_header = with_header or q["column"] in hit.chunk.text
    return row, with_header


def cell_retrieval(tmp: Path) -> dict:
    """Top-3 hit rates for the table-cell questions, with the table splitter and as prose."""
    from contextlib import nullcontext
    from unittest import mock

    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings
    from kbqa.ingest import chunking
    from kbqa.ingest.split import split_text

    docs = tmp / "table_docs"
    docs.mkdir(parents=True, exist_ok=True)
    asked = questions(write_files(docs))
    out: dict = {"questions": len(asked), "files": sorted(p.name for p in docs.iterdir())}
    for label, patch in (("tables split between rows (kbqa)", None), ("split as prose (baseline)", split_text)):
        kb = KnowledgeBase(tmp / f"kb-{len(out)}", Settings.load(None))
        with mock.patch.object(chunking, "split_page", patch) if patch else nullcontext():
            summary = kb.ingest([docs], progress=False)
        scores = [_answered(kb.search(q["question"], 3).hits, q) for q in asked]
        per_table = {
            t: round(sum(s[0] for s, q in zip(scores, asked) if q["table"] == t) / sum(q["table"] == t for q in asked), 3)
            for t in dict.fromkeys(q["table"] for q in asked)
        }
        out[label] = {
            "chunks": sum(f.chunks for f in summary.files),
            "row@3": round(sum(s[0] for s in scores) / len(scores), 3),
            "row_with_header@3": round(sum(s[1] for s in scores) / len(scores), 3),
            "row@3_per_table": per_table,
            "missed": [q["question"] for s, q in zip(scores, asked) if not s[0]],
        }
        print(label, {k: v for k, v in out[label].items() if k != "missed"}, flush=True)
    return out


def detection_cost(shared: Path) -> list[dict]:
    """Seconds to read each shared PDF's text layer with and without table detection (best of 3)."""
    from kbqa.ingest.errors import LoadError
    from kbqa.ingest.loaders.pdf import text_layer
    from kbqa.ingest.loaders.pdf_tables import candidate_pages, with_tables

    rows = []
    for path in sorted(shared.glob("*.pdf")):
        data = path.read_bytes()
        password = "openpassword" if "openpassword" in path.name else None
        try:
            texts = text_layer(path, data, password)
        except LoadError:
            continue
        plain, detected = [], []
        for _ in range(3):
            started = time.perf_counter()
            text_layer(path, data, password)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            with_tables(data, password, text_layer(path, data, password))
            detected.append(time.perf_counter() - started)
        try:
            pages = candidate_pages(data, password, len(texts))
        except Exception:  # noqa: BLE001 - pdfium cannot open it: no detection
            pages = []
        rows.append(
            {
                "file": path.name,
                "pages": len(texts),
                "pages_with_ruling": len(pages),
                "text_layer_s": round(min(plain), 3),
                "with_tables_s": round(min(detected), 3),
            }
        )
        print(rows[-1], flush=True)
    return rows


def markdown_lines(cells: dict, cost: list[dict]) -> list[str]:
    lines = [
        "",
        f"## Table-cell questions ({cells['questions']}, written for this benchmark; files: {', '.join(cells['files'])})",
        "",
        "| chunking | chunks | row in top 3 | row and its column name in top 3 | per table (row in top 3) |",
        "|---|---|---|---|---|",
    ]
    for label in ("tables split between rows (kbqa)", "split as prose (baseline)"):
        r = cells[label]
        per = ", ".join(f"{t} {v:.2f}" for t, v in r["row@3_per_table"].items())
        lines.append(f"| {label} | {r['chunks']} | {r['row@3']:.3f} | {r['row_with_header@3']:.3f} | {per} |")
    total_plain = sum(r["text_layer_s"] for r in cost)
    total_tables = sum(r["with_tables_s"] for r in cost)
    lines += [
        "",
        "## Cost of table detection on ../shared/data/docs/pdf (text layer only, best of 3)",
        "",
        "| file | pages | pages with ruling (opened with pdfplumber) | text layer s | with table detection s |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['file']} | {r['pages']} | {r['pages_with_ruling']} | {r['text_layer_s']} | {r['with_tables_s']} |" for r in cost]
    lines.append(f"| all | {sum(r['pages'] for r in cost)} | {sum(r['pages_with_ruling'] for r in cost)} | {total_plain:.2f} | {total_tables:.2f} |")
    return lines
