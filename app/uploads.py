"""Checking uploaded files before they touch the disk: name, size, type and content.

Pure functions; each failure is an `UploadRejected` naming the file and the reason.
"""

from __future__ import annotations

import re
import unicodedata

from kbqa.ingest.loaders import supported_extensions

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_NAME_CHARS = 120

# what the first bytes of each format must look like
_ZIP = b"PK\x03\x04"
_IMAGES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
    ".bmp": (b"BM",),
    ".webp": (b"RIFF",),
}  # read through OCR
_BINARY = {".pdf": (b"%PDF-",), ".docx": (_ZIP,), ".pptx": (_ZIP,), ".xlsx": (_ZIP,), ".xlsm": (_ZIP,), **_IMAGES}
# declared content types that can never be one of our documents
_REFUSED_TYPES = ("image/", "audio/", "video/", "font/", "application/x-executable", "application/x-msdownload", "application/zip")
_UNSAFE = re.compile(r"[^\w.\- ()\[\]]+", re.UNICODE)


class UploadRejected(ValueError):
    def __init__(self, name: str, reason: str, status: int = 422):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason, self.status = name, reason, status


def safe_name(raw: str) -> str:
    """The file name to store: the last path component, without separators, control
    characters, leading dots or anything outside letters, digits and ``._-()[] ``."""
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" ._")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip(" ._")
    if not stem:
        raise UploadRejected(raw or "(no name)", "the file name is empty once unsafe characters are removed")
    return f"{stem}.{ext.lower()}" if ext else stem


def check_upload(raw_name: str, data: bytes, content_type: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Return the safe name for this upload, or raise `UploadRejected`."""
    name = safe_name(raw_name)
    ext = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    exts = supported_extensions()
    if ext not in exts:
        raise UploadRejected(name, f"unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(sorted(exts))}", 415)
    if len(data) > max_bytes:
        raise UploadRejected(name, f"file is {len(data):,} bytes; the limit is {max_bytes:,}", 413)
    if not data:
        raise UploadRejected(name, "file is empty")
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared and declared.startswith(_REFUSED_TYPES) and not (ext in _IMAGES and declared.startswith("image/")):
        raise UploadRejected(name, f"content type {declared!r} is not a document type", 415)
    magics = _BINARY.get(ext)
    if magics is not None:
        if not data.startswith(magics):
            raise UploadRejected(name, f"content does not look like a {ext[1:].upper()} file (wrong signature)", 415)
    elif b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UploadRejected(name, f"content is binary, not a {ext[1:]} text file", 415)
    return name
