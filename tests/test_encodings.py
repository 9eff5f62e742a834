"""Legacy encodings (issue #21): Shift-JIS, EUC-KR, cp1252, Big5, GBK and UTF-16 files decode to
the exact text, short ones included; HTML honours its declared charset and a BOM; bad bytes get
a reason that names the file. The fixtures are written by the tests, from the texts below."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbqa.ingest.charset import codec_for_label
from kbqa.ingest.encoding import decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders import load_document

TEXTS = {
    "shift_jis": [
        "東京駅から新大阪駅まで新幹線で約二時間半です。",
        "切符は駅の窓口か自動券売機で買えます。",
        "指定席は一か月前から予約できます。",
        "お問い合わせは午前九時から午後六時までです。",
    ],
    "euc_kr": [
        "서울역에서 부산역까지 KTX로 약 두 시간 반 걸립니다.",
        "표는 역 창구나 자동 발매기에서 살 수 있습니다.",
        "좌석은 한 달 전부터 예약할 수 있습니다.",
        "문의 사항이 있으시면 고객센터로 연락해 주십시오.",
    ],
    "cp1252": [
        "Le train de nuit part à 22 h 15 de la gare de l'Est.",
        "Un café crème coûte 2,50 € au wagon-restaurant.",
        "Die Fahrkarte für Kinder unter zwölf Jahren kostet die Hälfte.",
        "Grüße aus München: die Straße zum Bahnhof ist gesperrt.",
    ],
    "big5": [
        "臺北車站到高雄車站搭高鐵大約需要一個半小時。",
        "車票可以在售票窗口或自動售票機購買。",
        "對號座位可以提前二十八天預訂。",
        "如有疑問，請撥打客服專線。",
    ],
    "gbk": [
        "蓝山登山铁路的紧急救援电话是0875-6612-9090。",
        "全长23.7公里，沿途共有七个车站。",
        "山顶茶园每年四月三日开始采茶。",
        "本产品保修期为一年，人为损坏不在保修范围内。",
    ],
}
# The codec each is read with: the superset in everyday use (as browsers and editors read them).
READ_AS = {"shift_jis": "cp932", "euc_kr": "cp949", "cp1252": "cp1252", "big5": "big5", "gbk": "gb18030"}


def _load(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return load_document(path, path.read_bytes())[0].text


@pytest.mark.parametrize("lines", [2, 3, 4])
@pytest.mark.parametrize("encoding", sorted(TEXTS))
def test_legacy_text_files_decode_exactly(tmp_path, encoding, lines):
    text = "\n".join(TEXTS[encoding][:lines]) + "\n"
    assert _load(tmp_path / f"{encoding}-{lines}.txt", text.encode(encoding)) == text
    assert decode_text(text.encode(encoding))[1] == READ_AS[encoding]


@pytest.mark.parametrize("encoding", sorted(TEXTS))
def test_utf16_with_bom_in_every_language(tmp_path, encoding):
    text = "\n".join(TEXTS[encoding][:2]) + "\n"
    for codec, bom in (("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")):
        assert _load(tmp_path / f"{encoding}-{codec}.txt", bom + text.encode(codec)) == text


def test_markdown_in_shift_jis(tmp_path):
    source = "# 新幹線\n\n" + "\n".join(TEXTS["shift_jis"][:2]) + "\n"
    text = _load(tmp_path / "guide.md", source.encode("shift_jis"))
    assert "新幹線" in text and TEXTS["shift_jis"][1] in text and "#" not in text


@pytest.mark.parametrize(
    "text,encoding,codec",
    [
        ("中文内容，测试编码。", "gbk", "gb18030"),  # the detector ties it with cp949: Chinese wins
        ("山顶茶园每年四月三日开始采茶。", "gbk", "gb18030"),
        ("Ça coûte 12 € par personne.", "cp1252", "cp1252"),  # ties cp1250 and cp1257: cp1252 wins
        ("Où se trouve la gare, s'il vous plaît ?", "cp1252", "cp1252"),
        ("ありがとうございました。", "shift_jis", "cp932"),
        ("謝謝您的幫忙。", "big5", "big5"),
    ],
)
def test_one_short_line_gets_the_sensible_codec(text, encoding, codec):
    assert decode_text(text.encode(encoding)) == (text, codec)


def test_mixed_utf8_and_legacy_lines_are_decoded_line_by_line():
    gbk = "Station list.\n蓝山站：海拔 800 米。\n".encode("utf-8") + "镜湖站的海拔是一千五百米。\n".encode("gbk")
    assert decode_text(gbk) == ("Station list.\n蓝山站：海拔 800 米。\n镜湖站的海拔是一千五百米。\n", "utf-8+gb18030")
    sjis = "Gares : Genève.\n".encode("utf-8") + (TEXTS["shift_jis"][0] + "\n").encode("shift_jis")
    assert decode_text(sjis) == ("Gares : Genève.\n" + TEXTS["shift_jis"][0] + "\n", "utf-8+cp932")


def _html(charset_tag: str, body: str) -> str:
    return f"<!DOCTYPE html>\n<html><head>{charset_tag}<title>t</title></head>\n<body><p>{body}</p></body></html>\n"


@pytest.mark.parametrize(
    "tag,encoding,body",
    [
        ('<meta charset="Shift_JIS">', "shift_jis", TEXTS["shift_jis"][0]),
        ("<meta charset=gbk>", "gbk", TEXTS["gbk"][0]),
        ('<meta http-equiv="Content-Type" content="text/html; charset=gb2312">', "gbk", TEXTS["gbk"][2]),
        ("<META HTTP-EQUIV='content-type' CONTENT='text/html;charset=euc-kr'>", "euc_kr", "감사합니다."),
        ('<meta charset="big5">', "big5", TEXTS["big5"][3]),
        ('<meta charset="iso-8859-1">', "cp1252", "Le café coûte 2,50 €."),  # read as windows-1252
    ],
)
def test_html_honours_its_meta_charset(tmp_path, tag, encoding, body):
    assert _load(tmp_path / "page.html", _html(tag, body).encode(encoding)).strip() == body


def test_html_declaration_beats_detection():
    # six Korean syllables alone read as well as Chinese: without the declaration GB18030 wins the tie
    body = "감사합니다."
    assert decode_text(body.encode("euc_kr"))[1] == "gb18030"
    html = _html('<meta charset="euc-kr">', body).encode("euc_kr")
    assert body in load_document(Path("thanks.html"), html)[0].text


def test_html_bom_beats_meta_and_a_wrong_meta_falls_back_to_detection():
    body = TEXTS["shift_jis"][1]
    with_bom = b"\xef\xbb\xbf" + _html('<meta charset="gbk">', body).encode("utf-8")
    assert load_document(Path("bom.html"), with_bom)[0].text.strip() == body
    utf16 = b"\xff\xfe" + _html('<meta charset="utf-16">', body).encode("utf-16-le")
    assert load_document(Path("utf16.html"), utf16)[0].text.strip() == body
    wrong = _html('<meta charset="utf-8">', TEXTS["gbk"][1]).encode("gbk")  # declared UTF-8, saved as GBK
    assert load_document(Path("wrong.html"), wrong)[0].text.strip() == TEXTS["gbk"][1]


def test_charset_labels():
    assert codec_for_label("Shift_JIS") == "shift_jis" and codec_for_label("x-sjis") == "cp932"
    assert codec_for_label(" 'GB2312' ") == "gb2312" and codec_for_label("windows-1252") == "cp1252"
    assert codec_for_label("utf-16") == "utf-8"  # a declaration readable as ASCII is not UTF-16
    for label in ("no-such-charset", "base64", "rot13", "unicode_escape", "utf-7", ""):
        assert codec_for_label(label) is None


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("scan.txt", b"PK\x03\x04" + bytes(range(256)) * 8, r"scan\.txt: binary data, not text \(NUL bytes"),
        ("page.html", b"<html>\x01\x02\x03\x04\x05\x06\x07\x08" * 50, r"page\.html: binary data, not text \(\d+% control characters"),
        ("notes.md", bytes(range(0x80, 0x100)) * 4, r"notes\.md: undecodable bytes: not UTF-8, and no other text encoding fits"),
        ("odd.txt", b"\xff\xfe" + "半".encode("utf-16-le") + b"\x41", r"odd\.txt: starts with a UTF-16 byte-order mark but is not valid UTF-16"),
        (
            "bad.html",
            b'<meta charset="shift_jis">' + b"\x80\x81\x8d\x8f\x90\x9d" * 20,
            r"bad\.html: undecodable bytes: .*declared charset 'shift_jis' does not fit either",
        ),
    ],
)
def test_bad_bytes_get_a_reason_naming_the_file(name, data, reason):
    with pytest.raises(LoadError, match=reason):
        load_document(Path(name), data)
