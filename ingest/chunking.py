"""One document's bytes -> clean, de-duplicated chunks with stable ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from kbqa.ingest.clean import clean_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders import Page, load_document
from kbqa.ingest.split_tables import split_page
from kbqa.retrieval.types import Chunk


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_id(key: str, doc_hash: str, index: int) -> str:
    """Deterministic: re-running an interrupted ingest upserts the same ids, never duplicates."""
    return hashlib.sha256(f"{key}\x00{doc_hash}\x00{index}".encode()).hexdigest()[:32]


def chunk_document(
    path: Path,
    data: bytes,
    *,
    key: str,
    source: str,
    count_tokens: Callable[[Sequence[str]], list[int]],
    chunk_tokens: int,
    overlap_tokens: int,
    password: str | None = None,
) -> tuple[list[Chunk], int]:
    """Return (chunks, number of pages). Raises LoadError naming the file and reason."""
    pages = load_document(path, data, password=password)
    chunks = chunk_pages(
        path,
        pages,
        key=key,
        source=source,
        doc_hash=content_hash(data),
        count_tokens=count_tokens,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
    )
    return chunks, len(pages)


def chunk_pages(
    path: Path,
    pages: Sequence[Page],
    *,
    key: str,
    source: str,
    doc_hash: str,
    count_tokens: Callable[[Sequence[str]], list[int]],
    chunk_tokens: int,
    overlap_tokens: int,
    clean: bool = True,
) -> list[Chunk]:
    """Already-extracted pages -> chunks (``clean=False``: their text is already cleaned).
    Raises LoadError when no text is left."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for page in pages:
        text = clean_text(page.text) if clean else page.text
        for piece in split_page(text, count_tokens, chunk_tokens, overlap_tokens):
            digest = hashlib.sha256(piece.encode()).hexdigest()
            if digest in seen:  # exact duplicate chunk within the document
                continue
            seen.add(digest)
            index = len(chunks)
            chunks.append(Chunk(chunk_id(key, doc_hash, index), piece, source, page.page, index, doc_hash))
    if not chunks:
        problems = sorted({p.problem for p in pages if p.problem})
        if problems:
            raise LoadError(path, "no usable text: " + "; ".join(problems))
        raise LoadError(path, "no extractable text", "a scanned document is read with OCR when setting ingest.ocr is auto or always")
    return chunks
