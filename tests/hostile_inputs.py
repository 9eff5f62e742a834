"""Hostile input files, generated in memory in well under a second each (issue #22).

Used by tests/test_hostile_inputs.py and bench/bad_input.py: zip bombs and XML entities in
DOCX, XLSX and PPTX, cyclic and oversized PDF page trees, PNG decompression bombs. Nothing here is read
from disk except the good DOCX that python-docx builds.
"""

from __future__ import annotations

import io
import struct
import zlib

GIB = 2**30


def good_docx(text: str = "Bicycles travel free on the first upward train.") -> bytes:
    """A small, valid DOCX made by python-docx."""
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def _members(docx_bytes: bytes) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(docx_bytes)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _zeros_deflate(size: int, chunk: int = 2**20) -> bytes:
    """A raw deflate stream of `size` zero bytes without compressing them all: with a full flush
    every block is independent, so one compressed `chunk` repeats."""
    assert size % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (size // chunk) + b"\x03\x00"  # an empty final fixed-Huffman block


def raw_zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip archive from (name, raw deflate data, crc32, uncompressed size) members
    (sizes under 4 GiB: no ZIP64)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, data, crc, size in members:
        offset = out.tell()
        fname = name.encode()
        out.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(fname), 0) + fname + data)
        central.write(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(fname), 0, 0, 0, 0, 0, offset) + fname)
    cd = central.getvalue()
    start = out.tell()
    out.write(cd + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), start, 0))
    return out.getvalue()


def _deflated(data: bytes) -> tuple[bytes, int, int]:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(), zlib.crc32(data), len(data)


def docx_zip_bomb(member_size: int = 3 * GIB + GIB // 2) -> bytes:
    """A valid DOCX plus one member of `member_size` zero bytes (3.5 GiB by default) in ~3.5 MB.
    Its CRC is left at 0 (computing it means reading gigabytes): a reader that inflates the
    member gets all of it before the CRC check fails."""
    members = [(name, *_deflated(data)) for name, data in _members(good_docx()).items()]
    members.append(("word/media/bomb.xml", _zeros_deflate(member_size), 0, member_size))
    return raw_zip(members)


def good_xlsx() -> bytes:
    """A small, valid XLSX made by openpyxl."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(["Station", "Opens"])
    workbook.active.append(["Cloud Peak Summit", "06:30"])
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()


def good_pptx() -> bytes:
    """A one-slide PPTX made by python-pptx."""
    import pptx

    deck = pptx.Presentation()
    deck.slides.add_slide(deck.slide_layouts[1]).shapes.title.text = "Bicycles travel free on the first upward train."
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def xlsx_zip_bomb(member_size: int = 3 * GIB + GIB // 2) -> bytes:
    """A valid XLSX whose first sheet's XML is replaced by `member_size` zero bytes in ~3.5 MB."""
    members = [(name, *_deflated(data)) for name, data in _members(good_xlsx()).items() if name != "xl/worksheets/sheet1.xml"]
    members.append(("xl/worksheets/sheet1.xml", _zeros_deflate(member_size), 0, member_size))
    return raw_zip(members)


def pptx_billion_laughs(levels: int = 10) -> bytes:
    """A good PPTX whose first slide's XML declares entities lol1..lolN (10^N 'lol's)."""
    parts = _members(good_pptx())
    ents = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    slide = parts["ppt/slides/slide1.xml"].decode("utf-8")
    head, _, body = slide.partition("?>")
    parts["ppt/slides/slide1.xml"] = f"{head}?><!DOCTYPE p:sld [{''.join(ents)}]>{body}".replace("Bicycles", f"&lol{levels - 1};").encode()
    return raw_zip([(name, *_deflated(data)) for name, data in parts.items()])


def docx_with_document_xml(document_xml: str) -> bytes:
    """A good DOCX whose word/document.xml is replaced by `document_xml`."""
    parts = _members(good_docx())
    parts["word/document.xml"] = document_xml.encode("utf-8")
    return raw_zip([(name, *_deflated(data)) for name, data in parts.items()])


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _document(doctype: str, body_text: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n{doctype}\n'
        f'<w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>Entity follows: {body_text}</w:t></w:r></w:p>'
        "<w:p><w:r><w:t>Bicycles travel free.</w:t></w:r></w:p></w:body></w:document>"
    )


def docx_billion_laughs(levels: int = 10) -> bytes:
    """document.xml whose DTD defines lol1..lolN, each ten of the previous (10^N 'lol's)."""
    ents = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return docx_with_document_xml(_document(f"<!DOCTYPE w:document [{''.join(ents)}]>", f"&lol{levels - 1};"))


def docx_external_entity(target: str) -> bytes:
    """document.xml with an external entity reading the local file `target` (an absolute path)."""
    return docx_with_document_xml(_document(f'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file://{target}">]>', "&xxe;"))


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from object bodies numbered 1..n (object 1 is the catalog), with a correct xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"


def pdf_self_referencing() -> bytes:
    """A /Pages node (object 2) whose /Kids contain itself, then a page."""
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>", _PAGE])


def pdf_many_pages(n: int = 100_000, declared: int | None = None) -> bytes:
    """A PDF of `n` empty pages (~10 MB for 100,000); `declared` puts another /Count in the root
    (a lying count, padded so that the xref offsets stay right)."""
    kids = b" ".join(b"%d 0 R" % (i + 3) for i in range(n))
    count = str(n if declared is None else declared).encode().ljust(len(str(n)))
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [" + kids + b"] /Count " + count + b" >>"]
    return raw_pdf(objs + [_PAGE] * n)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 10_000, height: int = 10_000, real: bool = True) -> bytes:
    """An 8-bit grey PNG of width x height. `real`: every row is present (all zeros; 100 M pixels
    in ~100 KB); otherwise only the header declares the size and the data is one empty row."""
    header = struct.pack(">2I5B", width, height, 8, 0, 0, 0, 0)
    if real:
        c = zlib.compressobj(9)
        row = b"\0" * (width + 1)
        body = b"".join(c.compress(row) for _ in range(height)) + c.flush()
    else:
        body = zlib.compress(b"\0" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")
