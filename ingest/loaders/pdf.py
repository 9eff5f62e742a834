"""PDF through pypdf, one Page per PDF page, page numbers kept."""
from __future__ import annotations

import io
from pathlib import Path

from ingest.errors import LoadError
from ingest.loaders.base import Page


def load_pdf(path: Path, data: bytes, password: str | None = None) -> list[Page]:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError(path, "not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                result = reader.decrypt(password or "")
            except DependencyError as exc:
                raise LoadError(path, "PDF is AES-encrypted and reading it needs the cryptography package", "pip install cryptography") from exc
            if not result:
                if password:
                    raise LoadError(path, "wrong PDF password", "check the value given with --pdf-password")
                raise LoadError(path, "PDF is password-protected", "supply the password with --pdf-password")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            pages.append(Page(page.extract_text() or "", number))
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(path, "PDF is password-protected", "supply the password with --pdf-password") from exc
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise LoadError(path, f"corrupt or truncated PDF: {exc}") from exc
    if not pages:
        raise LoadError(path, "PDF has no pages")
    return pages
