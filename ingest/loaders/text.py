"""Plain text with encoding detection (BOMs, UTF-8, mixed UTF-8/GBK lines, charset-normalizer)."""

from __future__ import annotations

from pathlib import Path

from kbqa.ingest.encoding import NotTextError, decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page


def load_text(path: Path, data: bytes) -> list[Page]:
    """Text bytes to one page; LoadError naming the file for binary or undecodable bytes."""
    try:
        text, _ = decode_text(data)
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    return [Page(text)]
