"""The on-disk layout of a knowledge base and its recorded settings (``kb.json``).

A knowledge base is a directory holding its vector store, its BM25 index, its
manifest and ``kb.json``: the embedder it was built with (backend, model, dimension),
its chunking parameters and its store backend. A knowledge base refuses embeddings
from any other embedder.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

KB_FILE = "kb.json"
MANIFEST_FILE = "manifest.sqlite"
BM25_DIR = "bm25"
EMBED_CACHE_FILE = "embed_cache.sqlite"
UPLOADS_DIR = "uploads"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class KBLayout:
    """Every path of a knowledge base directory, and its Chroma collection name, in one place
    (docs/ARCHITECTURE.md, "A knowledge base on disk")."""

    root: Path

    @property
    def record(self) -> Path:
        return self.root / KB_FILE

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def bm25(self) -> Path:
        return self.root / BM25_DIR

    @property
    def embed_cache(self) -> Path:
        return self.root / EMBED_CACHE_FILE

    @property
    def uploads(self) -> Path:
        return self.root / UPLOADS_DIR

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    def collection(self, chroma_url: str | None = None) -> str:
        """Embedded Chroma: one collection per directory ("kbqa"). A Chroma server holds many
        knowledge bases: one collection each, named after the directory, so that every worker
        that opens the same directory (or a copy of it with the same name) shares it."""
        if not chroma_url:
            return "kbqa"
        return "kbqa-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", self.root.resolve().name).strip("-._") or "kb")


class EmbedderMismatchError(ValueError):
    pass


@dataclass(frozen=True)
class KBRecord:
    embedder_backend: str
    embedder_model: str
    dim: int
    chunk_tokens: int
    overlap_tokens: int
    store_backend: str
    version: int = FORMAT_VERSION
    created: int | None = None  # Unix time of the first ingest (None in records written before it was kept)

    def check_embedder(self, backend: str, model: str, kb_path: Path) -> None:
        if (backend, model) != (self.embedder_backend, self.embedder_model):
            raise EmbedderMismatchError(
                f"knowledge base {kb_path} was built with embedder {self.embedder_backend}:{self.embedder_model} "
                f"(dimension {self.dim}); refusing embeddings from {backend}:{model}. "
                "Use the same embedder, or build a new knowledge base."
            )


def read_record(kb_path: Path) -> KBRecord | None:
    path = Path(kb_path) / KB_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return KBRecord(**data)


def created_at(kb_path: Path, record: KBRecord | None) -> int:
    """When the knowledge base was made: its record's `created`, else the time ``kb.json``
    was last written, else 0 (no record yet)."""
    if record is not None and record.created:
        return record.created
    path = Path(kb_path) / KB_FILE
    return int(path.stat().st_mtime) if path.is_file() else 0


def write_record(kb_path: Path, record: KBRecord) -> None:
    atomic_write_text(Path(kb_path) / KB_FILE, json.dumps(asdict(record), indent=2))


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
