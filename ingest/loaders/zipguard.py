"""Checks on a zip-based document (DOCX, PPTX, XLSX) before a parser opens it: zip bombs and XML entities.

These formats are zip archives of XML parts. python-docx and python-pptx read every part into
memory and parse the XML ones with lxml, openpyxl streams a sheet's XML, so a hostile archive is
refused here first, with a reason naming the limit:

- too many members (the central directory alone would fill memory): `MAX_MEMBERS`;
- a member, or all members together, expanding past `MAX_MEMBER_BYTES` / `MAX_TOTAL_BYTES`
  (the sizes the archive declares; Python's zipfile never inflates a member past its declared
  size, it fails with a CRC error instead, so the declared sizes bound what is read);
- a member compressed more than `MAX_RATIO` times (deflate bombs run at ~1000:1; real XML at
  5-30:1), for members over `RATIO_MIN_BYTES`;
- an XML part with a DOCTYPE (internal entities for "billion laughs", external entities that
  read local files or the network). None of these formats needs one; python-docx's parser also has
  ``resolve_entities=False``, but nothing with a DTD gets as far as lxml.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from kbqa.ingest.errors import LoadError

MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 512 * 2**20
MAX_RATIO = 100
RATIO_MIN_BYTES = 2**20  # small members are not ratio-checked (a tiny XML part can compress 100:1)
_EOCD = b"PK\x05\x06"
_DTD_MARKS = tuple(m.encode(enc) for m in ("<!DOCTYPE", "<!ENTITY") for enc in ("utf-8", "utf-16-le", "utf-16-be"))
_SCAN_CHUNK = 2**20


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def declared_members(data: bytes) -> int | None:
    """The member count in the end-of-central-directory record, read without building the
    directory; None when there is no such record. 0xFFFF means a ZIP64 archive (more entries)."""
    at = data.rfind(_EOCD, max(0, len(data) - 65_557))
    if at < 0 or at + 22 > len(data):
        return None
    return struct.unpack_from("<H", data, at + 10)[0]


def check_archive(path: Path, data: bytes, kind: str = "DOCX") -> zipfile.ZipFile:
    """Open `data` as a zip archive and refuse it (LoadError) if it breaks a limit above.
    Returns the open archive; the caller hands `data` to its parser only after this."""
    count = declared_members(data)
    if count is not None and count >= min(MAX_MEMBERS, 0xFFFF):
        raise LoadError(path, f"{kind} archive declares {count:,} members (limit {MAX_MEMBERS:,}; a zip bomb or not a real {kind})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise LoadError(path, f"corrupt {kind}: {exc}") from exc
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise LoadError(path, f"{kind} archive has {len(infos):,} members (limit {MAX_MEMBERS:,})")
    total = 0
    for info in infos:
        _check_member(path, info, kind)
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise LoadError(path, f"{kind} expands to more than {_mib(MAX_TOTAL_BYTES)} uncompressed (zip bomb?; limit zipguard.MAX_TOTAL_BYTES)")
    for info in infos:
        if info.filename.lower().endswith((".xml", ".rels")) and _has_dtd(archive, info):
            raise LoadError(
                path, f"{kind} part {info.filename} has a DOCTYPE/ENTITY declaration; refused (XML entities can expand without bound or read local files)"
            )
    return archive


def _check_member(path: Path, info: zipfile.ZipInfo, kind: str) -> None:
    if info.file_size > MAX_MEMBER_BYTES:
        raise LoadError(
            path, f"{kind} member {info.filename} expands to {_mib(info.file_size)} (limit {_mib(MAX_MEMBER_BYTES)}, zipguard.MAX_MEMBER_BYTES; zip bomb?)"
        )
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(1, info.compress_size):
        ratio = info.file_size / max(1, info.compress_size)
        raise LoadError(path, f"{kind} member {info.filename} is compressed {ratio:,.0f}:1 (limit {MAX_RATIO}:1, zipguard.MAX_RATIO; zip bomb?)")


def _has_dtd(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether an XML member declares a DOCTYPE or ENTITY (UTF-8 or UTF-16), read in bounded chunks."""
    keep = max(len(m) for m in _DTD_MARKS) - 1
    tail = b""
    try:
        with archive.open(info) as member:
            while chunk := member.read(_SCAN_CHUNK):
                window = tail + chunk
                if any(m in window for m in _DTD_MARKS):
                    return True
                tail = window[-keep:]
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        return False  # damaged or unreadable: python-docx reports it as a corrupt DOCX
    return False
