"""PDF: the text layer through pypdf (pypdfium2 when pypdf cannot read the file), one Page per
PDF page with its number; ruled tables as Markdown (`ingest.loaders.pdf_tables`); pages without
a usable text layer are read with OCR (`ingest.page_ocr`, setting ``ingest.ocr``).

The page tree is walked first, bounded: a cyclic tree (a /Pages node among its own /Kids) and
a document of more than `MAX_PAGES` pages are refused before any page is read."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from kbqa.ingest.config import IngestSettings
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page

_DEFAULTS = IngestSettings()  # the settings' defaults (ingest/config.py), declared there only
MAX_PAGES = 5_000  # more pages fail at once (the text and OCR of each would take hours)
_MAX_TREE_NODES = 4 * MAX_PAGES  # intermediate /Pages nodes included


def _too_many(path: Path, n: int | str) -> LoadError:
    return LoadError(path, f"PDF has {n} pages (limit {MAX_PAGES:,}, ingest.loaders.pdf.MAX_PAGES)", "split the document")


def check_page_tree(path: Path, reader) -> int:
    """Count the leaf pages of `reader`'s page tree without flattening it; LoadError for a cycle,
    for more than `MAX_PAGES` pages (declared or found) or for a tree of too many nodes.
    A malformed tree raises PdfReadError (the caller then tries pypdfium2)."""
    from pypdf.errors import PdfReadError

    try:
        return _walk_page_tree(path, reader)
    except (AttributeError, TypeError) as exc:
        raise PdfReadError(f"malformed page tree: {exc}") from exc


def _walk_page_tree(path: Path, reader) -> int:
    from pypdf.generic import IndirectObject

    root = reader.trailer["/Root"].get_object()["/Pages"]
    top = root.get_object()
    declared = top.get("/Count", 0)
    if isinstance(declared, int) and declared > MAX_PAGES:
        raise _too_many(path, f"{declared:,} (declared)")
    stack = [(root, ())]
    pages = nodes = 0
    while stack:
        ref, ancestors = stack.pop()
        key = (ref.idnum, ref.generation) if isinstance(ref, IndirectObject) else None
        if key is not None and key in ancestors:
            raise LoadError(path, f"PDF page tree is cyclic (object {key[0]} is among its own /Kids)")
        nodes += 1
        if nodes > _MAX_TREE_NODES:
            raise LoadError(path, f"PDF page tree has more than {_MAX_TREE_NODES:,} nodes (limit from MAX_PAGES {MAX_PAGES:,})")
        node = ref.get_object()
        kids = node.get("/Kids") if hasattr(node, "get") else None
        if kids is None:
            pages += 1
            if pages > MAX_PAGES:
                raise _too_many(path, f"more than {MAX_PAGES:,}")
            continue
        inner = ancestors + ((key,) if key is not None else ())
        stack.extend((kid, inner) for kid in reversed(kids.get_object()))
    return pages


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
    check_page_tree(path, reader)
    return [page.extract_text() or "" for page in reader.pages]


def _pdfium_texts(path: Path, data: bytes, password: str | None) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data, password=password)
    try:
        if len(pdf) > MAX_PAGES:
            raise _too_many(path, f"{len(pdf):,}")
        return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()


def text_layer(path: Path, data: bytes, password: str | None = None) -> list[str]:
    """Each page's text layer; pypdfium2 reads what pypdf cannot (a broken cross-reference table),
    and when neither can, the page objects found by scanning the file (`ingest.loaders.pdf_salvage`)."""
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError(path, "not a PDF file (no %PDF header)")
    try:
        texts = _pypdf_texts(path, data, password)
        if texts:
            return texts
        first: Exception = PdfReadError("the page tree holds no pages")
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(path, "PDF is password-protected", "supply the password with --pdf-password") from exc
    except (PdfReadError, ValueError, KeyError, OSError, RecursionError) as exc:
        first = exc
    return _fallback_texts(path, data, password, first)


def _fallback_texts(path: Path, data: bytes, password: str | None, first: Exception) -> list[str]:
    """pypdf failed with `first`: pdfium's reading, else the salvaged page objects, else LoadError."""
    from kbqa.ingest.loaders.pdf_salvage import salvaged_texts

    try:
        texts = _pdfium_texts(path, data, password)
        if texts:
            return texts
    except LoadError:
        raise
    except Exception:  # noqa: BLE001 - pdfium's error says less than pypdf's
        pass
    try:
        texts = salvaged_texts(data, MAX_PAGES)
    except Exception:  # noqa: BLE001 - the first error is the one worth reporting
        texts = []
    if not any(t.strip() for t in texts):
        raise LoadError(path, f"corrupt or truncated PDF: {first}") from first
    return texts


def load_pdf(path: Path, data: bytes, password: str | None = None, ocr: str = _DEFAULTS.ocr, dpi: int = _DEFAULTS.ocr_dpi) -> list[Page]:
    from kbqa.ingest.loaders.pdf_tables import with_tables
    from kbqa.ingest.loaders.pdfium_lock import pdfium_lock
    from kbqa.ingest.page_ocr import read_pdf_pages

    with pdfium_lock():  # pdfium is not thread-safe (inline parsing beside the viewer)
        texts = text_layer(path, data, password)
        if not texts:
            raise LoadError(path, "PDF has no pages")
        if ocr != "always":
            texts = with_tables(data, password, texts)
        return read_pdf_pages(path, data, password, texts, ocr, dpi)
