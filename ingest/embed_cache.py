"""Reuse of embeddings for unchanged chunks: a knowledge base's cache of chunk vectors.

When a file changes, most of its chunk texts are the same as before. The cache maps
``sha256(embedder identity + chunk text)`` to the float32 vector, so that only the
chunks whose text is new go through the embedder. The embedder's ``identity`` names
everything that decides its vectors (model files, precision, device kind); an embedder
without one is never cached.

SQLite, one file in the knowledge base (``embed_cache.sqlite``), two tables:
``vectors`` (key -> dim, vector bytes) and ``refs`` (live chunk id -> key). Rows are
written after the chunks landed in the store and manifest, one transaction per batch;
at the end of a run, refs of chunks no longer in the knowledge base are deleted with
the vectors nobody refers to any more, so the cache stays as large as the knowledge
base. The cache is only an optimisation: a file SQLite cannot read is deleted and
rebuilt with a warning, any other SQLite failure turns the cache off for the run with
a warning; neither ever fails an ingest.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kbqa.retrieval.kbdir import EMBED_CACHE_FILE
from kbqa.retrieval.sqlite_db import connect_wal, select_in

log = logging.getLogger(__name__)

CACHE_FILE = EMBED_CACHE_FILE  # the file name in a knowledge base (retrieval.kbdir.KBLayout)
SCHEMA_VERSION = 1
_BATCH = 500  # SQL parameters per statement (SQLite's limit is 32,766 since 3.32)

SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key BLOB PRIMARY KEY,        -- sha256(embedder identity, NUL, chunk text)
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL         -- float32, little-endian, dim values
);
CREATE TABLE IF NOT EXISTS refs (
    chunk_id TEXT PRIMARY KEY,   -- a chunk the knowledge base holds
    key BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_key ON refs(key);
"""


def embedder_identity(embedder) -> str | None:
    """What decides the embedder's vectors, or None when it does not say (then nothing is cached)."""
    identity = getattr(embedder, "identity", None)
    return str(identity) if identity else None


def text_key(identity: str, text: str) -> bytes:
    return hashlib.sha256(identity.encode("utf-8") + b"\x00" + text.encode("utf-8")).digest()


class EmbedCache:
    """Constructing one is cheap: the file is opened on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self.disabled: str | None = None  # why the cache is off for the rest of this process's use
        self.rebuilt = 0  # times an unreadable file was replaced (for tests and reports)

    # ---- connection -----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect_wal(self.path, synchronous="NORMAL")  # a power cut may lose the last batch, never corrupt
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables and version != SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
                conn.executescript(SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def end_run(self) -> None:
        """Close the file; a cache turned off by a failure is tried again by the next run."""
        self.close()
        self.disabled = None

    def _rebuild(self, exc: Exception) -> None:
        log.warning("embedding cache %s is unreadable (%s); rebuilding it: chunks of changed files are embedded again", self.path, exc)
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.rebuilt += 1

    def _run(self, what: str, op, default):
        """Run `op(conn)`; an unreadable file is rebuilt and `op` tried once more on the
        fresh one; other SQLite failures turn the cache off. Never raises sqlite3 errors."""
        if self.disabled:
            return default
        for attempt in (1, 2):
            try:
                return op(self._open())
            except sqlite3.OperationalError as exc:  # locked, read-only, disk full, cannot open: not the file's fault
                self.disabled = f"{what}: {exc}"
                log.warning("embedding cache %s turned off for this run (%s failed: %s); chunks are embedded as usual", self.path, what, exc)
                self.close()
                return default
            except sqlite3.DatabaseError as exc:  # not a database, malformed, wrong schema
                if attempt == 2:
                    self.disabled = f"{what}: {exc}"
                    log.warning("embedding cache %s turned off for this run (still unreadable after rebuilding: %s)", self.path, exc)
                    self.close()
                    return default
                self._rebuild(exc)
        return default

    # ---- operations -----------------------------------------------------------------
    def lookup(self, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors among `keys`. A row of the wrong size is ignored (it is
        overwritten when the chunk is embedded again)."""
        wanted = list(dict.fromkeys(keys))

        def op(conn: sqlite3.Connection) -> dict[bytes, np.ndarray]:
            found: dict[bytes, np.ndarray] = {}
            bad = 0
            for key, row_dim, blob in select_in(conn, "SELECT key, dim, vector FROM vectors WHERE key IN", wanted, _BATCH):
                if row_dim != dim or len(blob) != 4 * dim:
                    bad += 1
                    continue
                found[bytes(key)] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
            if bad:
                log.warning("embedding cache %s: %d cached vector(s) did not have dimension %d; embedding them again", self.path, bad, dim)
            return found

        return self._run("lookup", op, {})

    def put(self, rows: Iterable[tuple[str, bytes, np.ndarray]]) -> None:
        """Record (chunk id, key, vector) for chunks that landed in the knowledge base. One transaction."""
        rows = list(rows)
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            vectors = {}
            for _, key, vector in rows:
                vec = np.ascontiguousarray(vector, dtype="<f4")
                vectors[key] = (key, int(vec.shape[0]), vec.tobytes())
            with conn:
                conn.executemany("INSERT OR REPLACE INTO vectors (key, dim, vector) VALUES (?, ?, ?)", list(vectors.values()))
                conn.executemany("INSERT OR REPLACE INTO refs (chunk_id, key) VALUES (?, ?)", [(cid, key) for cid, key, _ in rows])

        self._run("write", op, None)

    def prune(self, live_ids: set[str]) -> int:
        """Keep only what chunks in `live_ids` refer to; returns how many refs were deleted."""

        def op(conn: sqlite3.Connection) -> int:
            stale = [(cid,) for (cid,) in conn.execute("SELECT chunk_id FROM refs") if cid not in live_ids]
            if not stale:
                return 0
            with conn:
                conn.executemany("DELETE FROM refs WHERE chunk_id = ?", stale)
                conn.execute("DELETE FROM vectors WHERE NOT EXISTS (SELECT 1 FROM refs WHERE refs.key = vectors.key)")
            return len(stale)

        return self._run("prune", op, 0)

    def counts(self) -> tuple[int, int]:
        """(refs, vectors) held; for tests and `kbqa doctor`-style reports."""
        return self._run(
            "count",
            lambda conn: (conn.execute("SELECT count(*) FROM refs").fetchone()[0], conn.execute("SELECT count(*) FROM vectors").fetchone()[0]),
            (0, 0),
        )
