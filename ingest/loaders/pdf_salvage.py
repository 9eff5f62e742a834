"""The last resort for a PDF whose page tree neither pypdf nor pdfium can read (a broken
cross-reference table with the /Pages object missing): the file is scanned for page objects
(``N G obj << ... /Type /Page ... >>``), and each is read through pypdf as a page of its own, in
the order they lie in the file. Fonts and resources are resolved as usual, so a page whose
font is intact reads normally; a page whose text comes out as garbage is caught by the
text-layer check (`ingest.textlayer`) like any other."""

from __future__ import annotations

import io
import re

_OBJECT = re.compile(rb"(?<!\d)(\d{1,10})\s+(\d{1,5})\s+obj\b")
_PAGE_TYPE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
MAX_OBJECT_HEAD = 64 * 1024  # bytes of an object searched for its /Type (a page dict is small)


def page_objects(data: bytes, limit: int) -> list[tuple[int, int]]:
    """(object number, generation) of each page object in the file, in file order, at most `limit`."""
    found: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for match in _OBJECT.finditer(data):
        end = data.find(b"endobj", match.end(), match.end() + MAX_OBJECT_HEAD)
        head = data[match.end() : end if end >= 0 else match.end() + MAX_OBJECT_HEAD]
        stream = head.find(b"stream")
        if _PAGE_TYPE.search(head[:stream] if stream >= 0 else head):
            key = (int(match[1]), int(match[2]))
            if key not in seen:
                seen.add(key)
                found.append(key)
                if len(found) >= limit:
                    break
    return found


def salvaged_texts(data: bytes, limit: int) -> list[str]:
    """The text of each page object found by `page_objects`; [] when there is none."""
    from pypdf import PageObject, PdfReader
    from pypdf.generic import IndirectObject

    keys = page_objects(data, limit)
    if not keys:
        return []
    reader = PdfReader(io.BytesIO(data), strict=False)
    texts = []
    for number, generation in keys:
        ref = IndirectObject(number, generation, reader)
        try:
            page = PageObject(reader, ref)
            page.update(reader.get_object(ref))
            texts.append(page.extract_text() or "")
        except Exception:  # noqa: BLE001 - a page that cannot be read is a page with no text
            texts.append("")
    return texts
