"""The manifest: which documents a knowledge base holds, by content hash, and their chunk ids.

SQLite, so that each document's change is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from kbqa.retrieval.sqlite_db import connect_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    key TEXT PRIMARY KEY,          -- absolute path of the file
    source TEXT NOT NULL,          -- the path shown in citations
    doc_hash TEXT NOT NULL,        -- sha256 of the file's bytes
    chunk_ids TEXT NOT NULL,       -- JSON list
    pages INTEGER NOT NULL,
    size INTEGER NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(doc_hash);
"""


@dataclass(frozen=True)
class DocumentRecord:
    key: str
    source: str
    doc_hash: str
    chunk_ids: list[str]
    pages: int
    size: int
    ingested_at: float


class Manifest:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_wal(self.path, synchronous=None)  # synchronous stays at SQLite's default (FULL)
            self._conn.executescript(SCHEMA)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _row(row) -> DocumentRecord:
        key, source, doc_hash, chunk_ids, pages, size, ingested_at = row
        return DocumentRecord(key, source, doc_hash, json.loads(chunk_ids), pages, size, ingested_at)

    def get(self, key: str) -> DocumentRecord | None:
        row = self.conn.execute("SELECT * FROM documents WHERE key = ?", (key,)).fetchone()
        return self._row(row) if row else None

    def find_by_source(self, source: str) -> DocumentRecord | None:
        row = self.conn.execute("SELECT * FROM documents WHERE source = ? OR key = ?", (source, source)).fetchone()
        return self._row(row) if row else None

    def find_by_hash(self, doc_hash: str) -> list[DocumentRecord]:
        return [self._row(r) for r in self.conn.execute("SELECT * FROM documents WHERE doc_hash = ?", (doc_hash,))]

    def all(self) -> list[DocumentRecord]:
        return [self._row(r) for r in self.conn.execute("SELECT * FROM documents ORDER BY source")]

    def under(self, prefix: str) -> list[DocumentRecord]:
        like = prefix.rstrip("/") + "/%"
        return [self._row(r) for r in self.conn.execute("SELECT * FROM documents WHERE key LIKE ?", (like,))]

    def put(self, key: str, source: str, doc_hash: str, chunk_ids: list[str], pages: int, size: int) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, source, doc_hash, json.dumps(chunk_ids), pages, size, time.time()),
            )

    def delete(self, key: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM documents WHERE key = ?", (key,))

    def all_chunk_ids(self) -> set[str]:
        ids: set[str] = set()
        for (chunk_ids,) in self.conn.execute("SELECT chunk_ids FROM documents"):
            ids.update(json.loads(chunk_ids))
        return ids
