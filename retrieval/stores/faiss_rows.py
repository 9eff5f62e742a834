"""The FAISS store's source of truth: ``store.sqlite``, one row per chunk.

Columns: an ever-increasing integer ``row`` (the search index's label), the chunk ``id``,
its ``text``, its metadata as JSON and its unit vector as float32 bytes. Every upsert or
delete is one SQLite transaction, so a crash never leaves a chunk half-written. Table
``info`` holds the vectors' dimension, checked when the file is opened.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from kbqa.retrieval.sqlite_db import connect_wal, execute_in, select_in
from kbqa.retrieval.types import Chunk, Hit

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    vec BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
FILE_NAME = "store.sqlite"


class RowStore:
    """The rows of one store folder. Not locked: its owner (`FaissStore`) serialises calls."""

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)  # the store's folder
        self.dim = int(dim)
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect_wal(self.path / FILE_NAME)
            conn.executescript(SCHEMA)
            row = conn.execute("SELECT value FROM info WHERE key = 'dim'").fetchone()
            if row is None:
                with conn:
                    conn.execute("INSERT INTO info VALUES ('dim', ?)", (str(self.dim),))
            elif int(row[0]) != self.dim:
                conn.close()
                raise ValueError(
                    f"faiss store {self.path} holds vectors of dimension {row[0]}, not {self.dim}; use the embedder it was built with, or a new knowledge base"
                )
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- writes: one transaction each ------------------------------------------------
    def write(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> tuple[int, np.ndarray]:
        """Replace or add `chunks` (distinct ids) with their unit `vectors`; returns how many
        old rows were replaced, and the new rows in the order of `chunks`."""
        conn = self.conn
        with conn:
            replaced = execute_in(conn, "DELETE FROM chunks WHERE id IN", [c.id for c in chunks])
            conn.executemany(
                "INSERT INTO chunks (id, text, meta, vec) VALUES (?, ?, ?, ?)",
                ((c.id, c.text, json.dumps(c.metadata(), ensure_ascii=False), vectors[j].tobytes()) for j, c in enumerate(chunks)),
            )
            rows = [r for (r,) in conn.execute("SELECT row FROM chunks ORDER BY row DESC LIMIT ?", (len(chunks),))][::-1]
        return replaced, np.asarray(rows, dtype=np.int64)

    def delete(self, ids: list[str]) -> int:
        """Delete the chunks of these ids; returns how many rows went."""
        with self.conn:
            return execute_in(self.conn, "DELETE FROM chunks WHERE id IN", ids)

    # ---- reads -----------------------------------------------------------------------
    def get(self, ids: list[str]) -> list[Chunk]:
        found = {
            id_: Chunk.from_metadata(id_, text, json.loads(meta))
            for id_, text, meta in select_in(self.conn, "SELECT id, text, meta FROM chunks WHERE id IN", ids)
        }
        return [found[i] for i in ids if i in found]

    def vectors(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        """The stored unit vectors of `ids` (those present, in the given order)."""
        found = dict(select_in(self.conn, "SELECT id, vec FROM chunks WHERE id IN", ids))
        kept = [i for i in ids if i in found]
        return kept, np.frombuffer(b"".join(found[i] for i in kept), dtype=np.float32).reshape(len(kept), self.dim)

    def all_ids(self) -> list[str]:
        return [id_ for (id_,) in self.conn.execute("SELECT id FROM chunks ORDER BY row")]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def resolve(self, rows: Sequence[int], scores: Sequence[float], texts: bool, rescore: np.ndarray | None = None) -> list:
        """Hits (texts) or (id, score) pairs for the rows still alive, in the given order, or
        with `rescore` (the unit query) scored exactly from the stored vectors and re-ordered."""
        if not len(rows):
            return []
        rows = [int(r) for r in rows]
        columns = "row, id" + (", text, meta" if texts else "") + (", vec" if rescore is not None else "")
        found: dict[int, tuple] = {}
        for record in select_in(self.conn, f"SELECT {columns} FROM chunks WHERE row IN", rows):
            found[record[0]] = record[1:]
        alive = [(row, float(score)) for row, score in zip(rows, scores) if row in found]  # others: dead labels
        if rescore is not None and alive:
            vectors = np.frombuffer(b"".join(found[r][-1] for r, _ in alive), dtype=np.float32).reshape(len(alive), self.dim)
            alive = sorted(zip((r for r, _ in alive), (vectors @ rescore).tolist()), key=lambda pair: -pair[1])  # stable
        if not texts:
            return [(found[row][0], score) for row, score in alive]
        return [Hit(Chunk.from_metadata(found[row][0], found[row][1], json.loads(found[row][2])), score) for row, score in alive]

    def iter_vectors(self, after: int = 0, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, vectors) in row order, for rows > after."""
        cursor = self.conn.execute("SELECT row, vec FROM chunks WHERE row > ? ORDER BY row", (after,))
        while True:
            part = cursor.fetchmany(batch)
            if not part:
                return
            rows = np.fromiter((r for r, _ in part), dtype=np.int64, count=len(part))
            vectors = np.frombuffer(b"".join(v for _, v in part), dtype=np.float32).reshape(len(part), self.dim)
            yield rows, vectors

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (row, vector), in row order."""
        parts = list(self.iter_vectors())
        rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
        vectors = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, self.dim), np.float32)
        return rows, vectors

    def sample_vectors(self, m: int, total: int) -> np.ndarray:
        """About m stored vectors, a deterministic pseudo-random choice of rows (all when m >= total)."""
        if m >= total:
            parts = [v for _, v in self.iter_vectors()]
        else:
            cut = int(2**32 * m / total) + 1  # rows whose multiplicative hash falls below: uniform, no aliasing
            cursor = self.conn.execute("SELECT vec FROM chunks WHERE ((row * 2654435761) % 4294967296) < ?", (cut,))
            blobs = [v for (v,) in cursor]
            parts = [np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), self.dim)]
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        return np.ascontiguousarray(vectors, dtype=np.float32)
