"""One loader interface for every format: ``load(path) -> list[Page]``.

Each format lives in its own module; `load_document` picks one by extension.
"""

from kbqa.ingest.loaders.base import IMAGE_EXTENSIONS, Page, load_document, supported_extensions

__all__ = ["IMAGE_EXTENSIONS", "Page", "load_document", "supported_extensions"]
