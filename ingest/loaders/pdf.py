"""PDF: the text layer through pypdf (pypdfium2 when pypdf cannot read the file), one Page per
PDF page with its number; pages without a usable text layer are read with OCR
(`ingest.page_ocr`, setting ``ingest.ocr``)."""
from __future__ import annotations

import io
import logging
from pathlib import Path

from ingest.errors import LoadError
from ingest.loaders.base import Page


def _pypdf_texts(path: Path, data: bytes, password: str | None) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
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
    return [page.extract_text() or "" for page in reader.pages]


def _pdfium_texts(data: bytes, password: str | None) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data, password=password)
    try:
        return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()


def text_layer(path: Path, data: bytes, password: str | None = None) -> list[str]:
    """Each page's text layer; pypdfium2 reads what pypdf cannot (a broken cross-reference table)."""
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError(path, "not a PDF file (no %PDF header)")
    try:
        return _pypdf_texts(path, data, password)
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(path, "PDF is password-protected", "supply the password with --pdf-password") from exc
    except (PdfReadError, ValueError, KeyError, OSError, RecursionError) as first:
        try:
            return _pdfium_texts(data, password)
        except Exception:
            raise LoadError(path, f"corrupt or truncated PDF: {first}") from first


def load_pdf(path: Path, data: bytes, password: str | None = None, ocr: str = "auto", dpi: int = 200) -> list[Page]:
    from ingest.page_ocr import read_pdf_pages

    texts = text_layer(path, data, password)
    if not texts:
        raise LoadError(path, "PDF has no pages")
    return read_pdf_pages(path, data, password, texts, ocr, dpi)
