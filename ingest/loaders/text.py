"""Plain text with encoding detection (UTF-8, BOMs, GB18030/GBK, best guess)."""
from __future__ import annotations

from pathlib import Path

from ingest.encoding import NotTextError, decode_text
from ingest.errors import LoadError
from ingest.loaders.base import Page


def load_text(path: Path, data: bytes) -> list[Page]:
    try:
        text, _ = decode_text(data)
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    return [Page(text)]
