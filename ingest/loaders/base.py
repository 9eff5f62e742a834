"""The loader interface and the extension-to-loader table."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from kbqa.ingest.config import IngestSettings
from kbqa.ingest.errors import LoadError

_DEFAULTS = IngestSettings()  # the settings' defaults (ingest/config.py), declared there only


@dataclass(frozen=True)
class Page:
    text: str
    page: int | None = None  # 1-based page number for paged formats
    ocr: bool = False  # the text was read from the page's image
    repaired: bool = False  # the text layer was repaired (`ingest.textlayer.repair`: spaced letters, stray digits)
    problem: str | None = None  # why this page has no text (it is left out; the file's summary says so)
    note: str | None = None  # what was cut from a page that has text (a sheet over its row limit); the summary says so


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # read through OCR

# extension -> "module:function"; modules are imported on first use
_LOADERS = {
    ".pdf": "kbqa.ingest.loaders.pdf:load_pdf",
    ".docx": "kbqa.ingest.loaders.docx:load_docx",
    ".html": "kbqa.ingest.loaders.html:load_html",
    ".htm": "kbqa.ingest.loaders.html:load_html",
    ".md": "kbqa.ingest.loaders.markdown:load_markdown",
    ".markdown": "kbqa.ingest.loaders.markdown:load_markdown",
    ".txt": "kbqa.ingest.loaders.text:load_text",
    ".pptx": "kbqa.ingest.loaders.pptx:load_pptx",
    ".xlsx": "kbqa.ingest.loaders.xlsx:load_xlsx",
    ".xlsm": "kbqa.ingest.loaders.xlsx:load_xlsx",
    ".csv": "kbqa.ingest.loaders.csv:load_csv",
    ".tsv": "kbqa.ingest.loaders.csv:load_csv",
    **{ext: "kbqa.ingest.loaders.image:load_image" for ext in IMAGE_EXTENSIONS},
    ".text": "kbqa.ingest.loaders.text:load_text",
}


def supported_extensions() -> list[str]:
    return sorted(_LOADERS)


def load_document(path: Path, data: bytes, password: str | None = None, ocr: str = _DEFAULTS.ocr, ocr_dpi: int = _DEFAULTS.ocr_dpi) -> list[Page]:
    """Turn a file's bytes into pages of raw text. Raises LoadError naming the file and reason.
    `ocr` (auto | always | never) and `ocr_dpi` apply to PDFs and images (`ingest.page_ocr`)."""
    ext = path.suffix.lower()
    target = _LOADERS.get(ext)
    if target is None:
        raise LoadError(path, f"unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(supported_extensions())}")
    if not data:
        raise LoadError(path, "empty file (0 bytes)")
    module_name, func_name = target.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    try:
        if ext == ".pdf":
            return loader(path, data, password=password, ocr=ocr, dpi=ocr_dpi)
        if ext in IMAGE_EXTENSIONS:
            return loader(path, data, ocr=ocr)
        return loader(path, data)
    except LoadError:
        raise
    except Exception as exc:  # a parser's own error: name the file and what went wrong
        raise LoadError(path, f"cannot parse {ext[1:].upper()}: {type(exc).__name__}: {exc}") from exc
