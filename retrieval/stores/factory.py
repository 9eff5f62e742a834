"""Pick a vector store backend. Heavy imports stay inside each backend module."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrieval.protocols import VectorStore


def make_store(backend: str, directory: Path, dim: int, *, url: str | None = None, collection: str = "kbqa") -> "VectorStore":
    if backend == "chroma":
        from retrieval.stores.chroma import ChromaStore

        return ChromaStore(directory / "chroma", dim=dim, url=url, collection=collection)
    if backend == "faiss":
        from retrieval.stores.faiss import FaissStore

        return FaissStore(directory / "faiss", dim=dim)
    raise ValueError(f"store.backend: unknown backend {backend!r} (choose chroma or faiss)")
