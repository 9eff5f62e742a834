"""Damaged files of a knowledge base: find which part cannot be read, and put it right from
the others where they hold what it held (`kbqa doctor`, app/doctor.py, calls these).

What can be rebuilt, and from what:

- ``manifest.sqlite``: from the vector store, whose chunks carry their document's source,
  hash, page and position; the damaged file is kept beside it as ``manifest.sqlite.damaged``.
- ``bm25/``: from the vector store's texts (app/doctor.py, through reconciliation).
- ``embed_cache.sqlite``: a disposable optimisation; deleted, refilled by the next ingests.
- the vector store: nothing else holds the chunk texts and vectors. Its folder is moved aside
  (``chroma.damaged``, ``faiss.damaged``), and reconciliation then drops every document from the
  manifest, naming each one to ingest again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

from kbqa.ingest.manifest import Manifest
from kbqa.retrieval.kbdir import KBLayout

DAMAGED = ".damaged"


def sqlite_damage(path: Path, table: str) -> str | None:
    """Why the SQLite file at `path` cannot be used (None when it can, or is absent)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                return f"integrity check failed: {verdict}"
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _aside(path: Path) -> Path:
    target = path.with_name(path.name + DAMAGED)
    if target.exists():
        target = path.with_name(f"{path.name}{DAMAGED}-{int(time.time())}")
    path.rename(target)
    return target


def _sqlite_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def discard_embed_cache(layout: KBLayout) -> str:
    for p in _sqlite_files(layout.embed_cache):
        p.unlink()
    return f"deleted the damaged embedding cache ({layout.embed_cache.name}); the next ingests refill it"


def quarantine_store(layout: KBLayout, backend: str) -> str:
    folder = layout.root / backend
    moved = _aside(folder) if folder.exists() else None
    where = f" (kept as {moved.name})" if moved else ""
    return f"moved the damaged vector store {backend}/ aside{where}; its documents must be ingested again"


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def rebuild_manifest(layout: KBLayout, store) -> list[str]:
    """A new manifest from the chunks in `store`; the damaged file kept beside it. Returns what was done."""
    for p in _sqlite_files(layout.manifest)[1:]:
        p.unlink()
    kept = _aside(layout.manifest) if layout.manifest.exists() else None
    docs: dict[tuple[str, str], list] = defaultdict(list)
    for chunk in store.get(store.all_ids()):
        docs[(chunk.source, chunk.doc_hash)].append(chunk)
    manifest = Manifest(layout.manifest)
    unplaced = []
    try:
        for (source, doc_hash), chunks in sorted(docs.items()):
            chunks.sort(key=lambda c: c.chunk)
            path = Path(source).resolve()
            if _file_hash(path) != doc_hash:
                unplaced.append(source)
            size = path.stat().st_size if path.is_file() else 0
            pages = max((c.page or 0 for c in chunks), default=0) or 1
            manifest.put(str(path), source, doc_hash, [c.id for c in chunks], pages, size)
    finally:
        manifest.close()
    done = [f"rebuilt {layout.manifest.name} from the vector store: {len(docs)} documents" + (f" (the damaged file kept as {kept.name})" if kept else "")]
    if unplaced:
        done.append(
            f"{len(unplaced)} rebuilt documents are no longer at their path with the same content: "
            + ", ".join(unplaced[:5])
            + "; ingest them again from where they now are"
        )
    return done
