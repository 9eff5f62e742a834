"""SQLite as kbqa's files use it: one WAL connection per file, shared by threads, and
``IN (...)`` statements cut into batches that stay below SQLite's limit of bound parameters.

Used by the FAISS row store (``retrieval/stores/faiss_rows.py``), the manifest
(``ingest/manifest.py``) and the embedding cache (``ingest/embed_cache.py``). Each of them
keeps its own schema; this module only opens the file and runs the batched statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

SQL_BATCH = 900  # parameters per statement: below SQLite's old default limit of 999


def connect_wal(path: str | Path, *, synchronous: str | None = "NORMAL", timeout: float = 30) -> sqlite3.Connection:
    """Open `path` (its folder made when missing) in WAL mode, usable from any thread.

    `synchronous`: the ``PRAGMA synchronous`` level; ``"NORMAL"`` (with WAL a power cut may
    lose the last transactions, never corrupt the file), or None to keep SQLite's default.
    A failure while setting the pragmas closes the connection and raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if synchronous is not None:
            conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


def _parts(values: Sequence, batch: int) -> Iterator[tuple[list, str]]:
    values = list(values)
    for start in range(0, len(values), batch):
        part = values[start : start + batch]
        yield part, ",".join("?" * len(part))


def select_in(conn: sqlite3.Connection, sql: str, values: Sequence, batch: int = SQL_BATCH) -> Iterator[tuple]:
    """The rows of ``f"{sql} (?,?,...)"`` over all `values`, one statement per `batch` of
    them, in order; `sql` ends with ``IN``: ``"SELECT id, text FROM chunks WHERE id IN"``."""
    for part, marks in _parts(values, batch):
        yield from conn.execute(f"{sql} ({marks})", part)


def execute_in(conn: sqlite3.Connection, sql: str, values: Sequence, batch: int = SQL_BATCH) -> int:
    """Run ``f"{sql} (?,?,...)"`` (a DELETE or UPDATE ending with ``IN``) over all `values`
    in batches; returns the rows it changed. The caller holds the transaction."""
    return sum(conn.execute(f"{sql} ({marks})", part).rowcount for part, marks in _parts(values, batch))
