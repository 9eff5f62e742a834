"""Pick a vector store backend. Heavy imports stay inside each backend module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kbqa.retrieval.protocols import VectorStore


def make_store(
    backend: str,
    directory: Path,
    dim: int,
    *,
    url: str | None = None,
    collection: str = "kbqa",
    faiss_options: Mapping[str, Any] | None = None,
    chroma_ef_search: int | None = None,
) -> "VectorStore":
    """`faiss_options`: FaissStore's index arguments (index, flat_max, nlist, nprobe, ...);
    `chroma_ef_search`: Chroma's HNSW search breadth (None: the store's default)."""
    if backend == "chroma":
        from kbqa.retrieval.stores.chroma import ChromaStore

        extra = {} if chroma_ef_search is None else {"ef_search": chroma_ef_search}
        return ChromaStore(directory / "chroma", dim=dim, url=url, collection=collection, **extra)
    if backend == "faiss":
        from kbqa.retrieval.stores.faiss import FaissStore

        return FaissStore(directory / "faiss", dim=dim, **dict(faiss_options or {}))
    raise ValueError(f"store.backend: unknown backend {backend!r} (choose chroma or faiss)")
