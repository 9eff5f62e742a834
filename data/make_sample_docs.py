"""Regenerate the binary documents of the bundled sample knowledge base.

The sample knowledge base in ``data/sample/`` describes the fictional
"Lanshan Mountain Railway" (蓝山登山铁路). Its text documents (.md, .txt,
.html) are kept in the repository as they are; the binary ones (.pdf, .docx)
are built by this script from the text held below, so they can be reproduced:

    python data/make_sample_docs.py            # writes into data/sample/
    python data/make_sample_docs.py --out DIR  # writes into DIR

Requires ``fpdf2`` and ``python-docx``. The PDF uses fpdf2's core Helvetica
font, which only covers Latin-1, so the PDF is in English; each PDF page
describes exactly one station so that page-level citations can be checked.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from docx import Document
from fpdf import FPDF
from fpdf.enums import XPos, YPos

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

# A fixed timestamp keeps the generated metadata stable between runs.
FIXED_DATE = _dt.datetime(2024, 4, 1, 9, 0, 0, tzinfo=_dt.timezone.utc)

# ---------------------------------------------------------------------------
# stations_guide.pdf: one station per page
# ---------------------------------------------------------------------------

STATIONS_TITLE = "Lanshan Mountain Railway - Stations Guide"

STATIONS_INTRO = (
    "The Lanshan Mountain Railway has four stations. This guide gives one page "
    "to each station, from the bottom of the line to the top, with its altitude, "
    "its facilities and the things to see nearby."
)

# Each entry: (heading, [paragraphs], [(label, value) fact lines])
STATIONS = [
    (
        "Page 1: Lanshan Foot Station",
        [
            "Lanshan Foot Station is the lower terminus of the line and the place "
            "where almost every journey begins. The station building, with its grey "
            "stone walls and green wooden canopy, stands at the edge of the old "
            "market town, a five-minute walk from the bus station. City bus route 16 "
            "runs from the town centre to the station forecourt every 12 minutes.",
            "The main hall holds the ticket windows, a waiting room with 120 seats "
            "and an information desk. Visitors with time to spare should not miss "
            "the Railway Heritage Room next to the waiting room. It shows the original "
            "survey drawings of the line, the carved name plate of the Cloudgate "
            "Tunnel, staff uniforms from the steam era and a working model of the "
            "rack system. Entry to the Heritage Room is free, and it is open from "
            "08:00 to 17:30.",
            "Drivers can use the station car park, which has 320 spaces, including "
            "12 spaces for disabled drivers and 8 charging points for electric cars. "
            "Parking costs CNY 20 per day. Left-luggage lockers (42 lockers in total) "
            "are found beside the main entrance and cost CNY 10 per day.",
            "The station cafe, the Platform Nine Cafe, serves coffee, noodles and steamed buns. Its speciality is the osmanthus cake, baked every morning.",
        ],
        [
            ("Altitude", "412 m above sea level"),
            ("Car park", "320 spaces, CNY 20 per day"),
            ("Left-luggage lockers", "42 lockers, CNY 10 per day"),
            ("Heritage Room", "free entry, 08:00 to 17:30"),
            ("Bus connection", "city bus route 16"),
        ],
    ),
    (
        "Page 2: Pine Terrace Station",
        [
            "Pine Terrace Station is the first intermediate stop. It sits on a "
            "broad shelf of land surrounded by old pine trees, some of which are "
            "said to be more than 300 years old. The station has a passing loop, "
            "so upward and downward trains often wait here for each other for a "
            "few minutes. Above Pine Terrace the rack section begins and the line "
            "becomes much steeper.",
            "The station is the starting point of the Pine Trail, a signposted loop "
            "walk of 2.4 km through the forest. The walk takes about 50 minutes and "
            "passes the Whispering Stones, a group of granite boulders that make a "
            "humming sound in a strong wind. The trail is gentle and suitable for "
            "families with children.",
            "Next to the platform is the Pine Terrace Teahouse, which has been run "
            "by the same family since 1923. It serves the local Lanshan cloud tea, "
            "grown on the terraces below the station, and sells loose tea in paper "
            "packets. The teahouse seats 46 guests on a wooden veranda with a view "
            "back down the valley.",
            "Facilities at Pine Terrace are simple: public toilets, a covered "
            "shelter, and a free drinking-water refill point. There is no ticket "
            "office here; tickets can be bought from the conductor on the train.",
        ],
        [
            ("Altitude", "986 m above sea level"),
            ("Pine Trail", "loop walk of 2.4 km, about 50 minutes"),
            ("Pine Terrace Teahouse", "family-run since 1923, 46 seats"),
            ("Ticket office", "none; buy tickets from the conductor"),
        ],
    ),
    (
        "Page 3: Mirror Lake Station",
        [
            "Mirror Lake Station stands on the shore of Mirror Lake, a calm "
            "mountain lake of 36 hectares that reflects the summit ridge on still "
            "mornings. The station marks the upper end of the rack section. It is "
            "the busiest intermediate stop, and many visitors break their journey "
            "here for a meal or a walk along the shore.",
            "Rowing boats can be hired at the jetty below the station from April to "
            "October. Boat hire costs CNY 40 per 30 minutes, and each boat takes up "
            "to four people. Life jackets are provided and must be worn.",
            "Mirror Lake is the only station on the line with a full restaurant. "
            "Jinghu Hall has 180 seats and serves set lunches from 11:00 to 14:30, "
            "including lake fish, mountain mushrooms and rice grown in the valley. "
            "Booking is recommended for groups of ten or more.",
            "The station also has the railway's first-aid post, staffed by a nurse "
            "every day during operating hours, and a small shop that sells maps, "
            "rain capes and postcards. A lakeside path of 3.1 km leads around the "
            "whole lake and returns to the station.",
        ],
        [
            ("Altitude", "1,538 m above sea level"),
            ("Mirror Lake", "36 hectares"),
            ("Boat hire", "CNY 40 per 30 minutes, April to October"),
            ("Jinghu Hall restaurant", "180 seats, lunch 11:00 to 14:30"),
            ("Lakeside path", "3.1 km round the lake"),
        ],
    ),
    (
        "Page 4: Cloud Peak Summit Station",
        [
            "Cloud Peak Summit Station is the upper terminus and the highest "
            "station of the railway. The station building is built half into the "
            "rock, with thick walls to shelter passengers from the wind. On a clear "
            "day the view reaches more than 100 km across the plains to the east.",
            "A few steps from the platform is the Sky Balcony, an observation deck "
            "with 12 fixed telescopes that are free to use. Information boards on "
            "the balcony name every peak on the horizon.",
            "The station houses the Yunding Post Office, the highest post office in "
            "the province. Letters and postcards posted here receive a special "
            "postmark showing a train under a cloud. The post office is open from "
            "09:30 to 17:00.",
            "From the station a stone path of 1.1 km climbs to the summit cairn at "
            "2,291 m, the true top of Lanshan. The walk takes about 35 minutes. "
            "The air at the summit is usually about 9 degrees C cooler than at "
            "Lanshan Foot, and the weather can change quickly, so bring a warm layer "
            "even in summer.",
        ],
        [
            ("Altitude", "2,206 m above sea level"),
            ("Sky Balcony", "observation deck with 12 free telescopes"),
            ("Yunding Post Office", "open 09:30 to 17:00"),
            ("Summit cairn", "2,291 m, 1.1 km path, about 35 minutes"),
            ("Temperature", "about 9 degrees C cooler than Lanshan Foot"),
        ],
    ),
]


class _StationsPDF(FPDF):
    def footer(self) -> None:  # called by fpdf2 at the end of every page
        self.set_y(-15)
        self.set_font("Helvetica", "I", 9)
        self.cell(0, 6, f"Stations Guide - page {self.page_no()} of {len(STATIONS)}", align="C")


def build_stations_pdf(path: Path) -> None:
    pdf = _StationsPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(STATIONS_TITLE)
    pdf.set_author("kbqa sample data (fictional)")
    pdf.set_auto_page_break(auto=True, margin=20)
    for index, (heading, paragraphs, facts) in enumerate(STATIONS):
        pdf.add_page()
        if index == 0:
            pdf.set_font("Helvetica", "B", 18)
            pdf.multi_cell(0, 9, STATIONS_TITLE, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font("Helvetica", "I", 10)
            pdf.multi_cell(0, 5, STATIONS_INTRO, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(4)
        pdf.set_font("Helvetica", "B", 15)
        pdf.multi_cell(0, 8, heading, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
        pdf.set_font("Helvetica", "", 11)
        for para in paragraphs:
            pdf.multi_cell(0, 6, para, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, "Key facts", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", "", 11)
        for label, value in facts:
            pdf.multi_cell(0, 6, f"- {label}: {value}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.output(str(path))


# ---------------------------------------------------------------------------
# luggage_and_pets.docx (English)
# ---------------------------------------------------------------------------

LUGGAGE_TITLE = "Luggage, Bicycles and Pets on the Lanshan Mountain Railway"

LUGGAGE_SECTIONS = [
    (
        None,
        [
            "The trains of the Lanshan Mountain Railway are small and the coaches "
            "have limited space for bags. To keep the aisles clear and the trains "
            "safe on the steep rack section, the rules below apply to everything "
            "that passengers bring on board. Staff may refuse items that do not "
            "meet these rules.",
        ],
    ),
    (
        "Hand luggage and bags",
        [
            "Each passenger may bring one main bag free of charge, provided it weighs "
            "no more than 20 kg and measures no more than 70 x 50 x 30 cm. In "
            "addition, one small personal item such as a handbag, camera bag or "
            "laptop bag may be carried free.",
            "Heavier luggage is accepted for a fee of CNY 15 for every additional "
            "5 kg or part of 5 kg. The absolute limit is 40 kg of luggage per "
            "passenger; anything above this cannot be carried on the train and "
            "should be left in the lockers at the lower station.",
            "Large bags must be placed on the luggage racks at the ends of each "
            "coach and not in the aisle. Folding pushchairs and strollers travel "
            "free of charge but must be folded before boarding.",
        ],
    ),
    (
        "Bicycles, skis and sports equipment",
        [
            "Bicycles are carried for CNY 60 per bicycle per single trip. Space is "
            "limited to 6 bicycles per train, and bicycles are only accepted on the "
            "first two upward trains of the day and on any downward train after "
            "15:00. Bicycles must be booked at least one day in advance.",
            "Electric bicycles are accepted only if the battery can be removed and "
            "its capacity does not exceed 500 Wh. The battery must be carried "
            "separately by the passenger.",
            "In the winter season, skis or a snowboard cost CNY 25 per set per "
            "trip. Walking poles and small climbing equipment travel free if they "
            "are packed in a bag.",
        ],
    ),
    (
        "Pets and animals",
        [
            "Small pets such as cats, small dogs and rabbits may travel in a closed "
            "carrier that is kept on the passenger's lap or under the seat. The pet "
            "and carrier together must weigh no more than 8 kg. The fee is CNY 30 "
            "per trip.",
            "Larger dogs are welcome but may only travel in Car D, the rear coach "
            "of the train. They must wear a muzzle and be kept on a leash no longer "
            "than 1.5 m. The fee is CNY 50 per trip, and no more than 3 large dogs "
            "are accepted on any one train.",
            "Each passenger may bring at most 2 pets. Pets are not allowed in the "
            "panorama car. Birds, reptiles and farm animals are not carried. "
            "Assistance dogs travel free of charge in any coach and do not count "
            "towards the limits above.",
        ],
    ),
    (
        "Lost property",
        [
            "Items found on trains or at stations are taken to the lost property "
            "office at Lanshan Foot Station. Unclaimed items are kept for 90 days, "
            "after which they are donated to charity or disposed of. Passengers can "
            "report a lost item at any ticket window or through the online form; "
            "please give the date, the train and a description of the item.",
        ],
    ),
]

LUGGAGE_TABLE_HEADER = ("Item", "Limit", "Fee per trip")
LUGGAGE_TABLE_ROWS = [
    ("Main bag", "20 kg, 70 x 50 x 30 cm", "Free"),
    ("Extra luggage weight", "up to 40 kg in total", "CNY 15 per extra 5 kg"),
    ("Bicycle", "6 per train, booked in advance", "CNY 60"),
    ("Skis or snowboard", "winter season only", "CNY 25 per set"),
    ("Small pet in carrier", "8 kg with carrier", "CNY 30"),
    ("Large dog", "Car D only, 3 per train", "CNY 50"),
    ("Assistance dog", "any coach", "Free"),
]


# ---------------------------------------------------------------------------
# rolling_stock_zh.docx (Chinese)
# ---------------------------------------------------------------------------

ROLLING_TITLE = "蓝山登山铁路 机车车辆介绍"

ROLLING_SECTIONS = [
    (
        None,
        [
            "蓝山登山铁路的列车需要在陡峭的山坡和狭窄的弯道上安全运行，因此全部机车车辆都是为本线专门设计或改造的。"
            "本文介绍目前在线运行的机车、客车以及保存的历史车辆。",
        ],
    ),
    (
        "一、现役主力机车：LS-7型齿轨电力机车",
        [
            "目前承担全部客运任务的是LS-7型齿轨电力机车，共6台，编号为LS7-01至LS7-06，于2009年由滇岭机车厂制造。"
            "该型机车既能在普通黏着区段运行，也能在齿轨区段依靠齿轮啮合爬坡。",
            "LS-7型机车持续功率为1,150千瓦，整备重量28吨。最高时速在黏着区段为35公里/小时，在齿轨区段上行为18公里/小时。"
            "机车配有三套相互独立的制动系统：电阻制动、齿轮带式制动和自动弹簧制动，任何一套均可单独将满载列车停在最大坡道上。",
            "按照登山铁路的惯例，机车始终连挂在列车的下坡一端，上山时推送客车，下山时在前方控制速度，以防客车溜逸。",
        ],
    ),
    (
        "二、备用机车：LS-4型电力机车",
        [
            "LS-4型电力机车共2台，于1987年制造，现作为备用机车。由于没有齿轮驱动装置，它只能在山脚站至松台站之间的黏着区段运行，"
            "最高时速为30公里/小时。旅游高峰期，LS-4型机车偶尔用于开行山脚站至松台站的区间加班车。",
        ],
    ),
    (
        "三、客车与编组",
        [
            "每列客运列车由1台机车和4节客车组成，客车从上坡一端起依次编为A、B、C、D车厢。"
            "每节标准客车设有54个座位，全列共216个座位。客车车体长15.8米、宽2.2米，座椅按山坡倾斜角度安装，使乘客在坡道上也能坐得平稳。",
            "全景观光车“云窗号”于2015年投入使用，设有32个座位，车顶和侧墙上部均为玻璃，便于欣赏沿途风景。"
            "挂运“云窗号”的班次中，它替换A车厢。观光车冬季停止挂运。",
        ],
    ),
    (
        "四、保存车辆与工程车辆",
        [
            "蒸汽机车“蓝山1号”是本线开通时的首批机车之一，于1910年制造，轴式为0-4-2T。它于1965年退役，"
            "经修复后静态展示在山脚站旁的露天展台上，是本线最受欢迎的拍照地点之一。",
            "夜间线路检修使用1台DG-2型柴油工程车，可在接触网停电的情况下牵引检修平板车上山。",
        ],
    ),
    (
        "五、检修",
        [
            "全部机车车辆由位于山脚站北侧的北坪车辆段负责维护。每台机车每行驶12,000公里进行一次架修，"
            "每年1月全线停运检修期间对所有车辆的制动系统进行全面检查和试验。",
        ],
    ),
]

ROLLING_TABLE_HEADER = ("车型", "数量", "投入使用年份", "最高时速", "座位数")
ROLLING_TABLE_ROWS = [
    ("LS-7型齿轨电力机车", "6台", "2009年", "35公里/小时（黏着区段）", "—"),
    ("LS-4型电力机车", "2台", "1987年", "30公里/小时", "—"),
    ("标准客车", "每列4节", "—", "—", "每节54个座位"),
    ("全景观光车“云窗号”", "1节", "2015年", "—", "32个座位"),
    ("蒸汽机车“蓝山1号”", "1台（保存）", "1910年制造", "—", "—"),
]


def _build_docx(path: Path, title: str, sections, header, rows, table_after: int) -> None:
    doc = Document()
    props = doc.core_properties
    props.title = title
    props.author = "kbqa sample data (fictional)"
    props.created = FIXED_DATE
    props.modified = FIXED_DATE
    props.last_modified_by = "make_sample_docs.py"
    doc.add_heading(title, level=0)
    for index, (heading, paragraphs) in enumerate(sections):
        if heading:
            doc.add_heading(heading, level=1)
        for para in paragraphs:
            doc.add_paragraph(para)
        if index == table_after:
            table = doc.add_table(rows=1, cols=len(header))
            table.style = "Table Grid"
            for cell, text in zip(table.rows[0].cells, header):
                cell.text = text
            for row in rows:
                cells = table.add_row().cells
                for cell, text in zip(cells, row):
                    cell.text = text
    doc.save(str(path))


def build_luggage_docx(path: Path) -> None:
    # The summary table goes right after the introduction.
    _build_docx(path, LUGGAGE_TITLE, LUGGAGE_SECTIONS, LUGGAGE_TABLE_HEADER, LUGGAGE_TABLE_ROWS, table_after=0)


def build_rolling_stock_docx(path: Path) -> None:
    # The overview table goes at the end of the document.
    _build_docx(
        path,
        ROLLING_TITLE,
        ROLLING_SECTIONS,
        ROLLING_TABLE_HEADER,
        ROLLING_TABLE_ROWS,
        table_after=len(ROLLING_SECTIONS) - 1,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help="output folder (default: data/sample)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    targets = {
        "stations_guide.pdf": build_stations_pdf,
        "luggage_and_pets.docx": build_luggage_docx,
        "rolling_stock_zh.docx": build_rolling_stock_docx,
    }
    for name, build in targets.items():
        build(out / name)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
