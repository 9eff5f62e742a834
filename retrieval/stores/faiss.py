"""FAISS: a vector store on local disk, exact for small knowledge bases, HNSW for large ones.

Layout of the store's folder:

- ``store.sqlite``: the source of truth, one row per chunk (id, text, metadata as JSON,
  the unit vector as float32 bytes), keyed by an ever-increasing integer ``row``.
  Every upsert or delete is one SQLite transaction, so a crash never leaves a chunk
  half-written.
- ``index.faiss`` + ``index.json``: the search index (faiss ``IndexIDMap2`` whose labels
  are the rows) and what it covers (kind, dimension, highest row). It is an accelerator
  derived from the SQLite file, written atomically (temporary file + rename). On open it
  is caught up with rows added since it was saved; deleted or replaced rows stay in the
  index as dead labels and are filtered out at query time until a rebuild drops them.

Index kind: ``"flat"`` (exact inner product), ``"hnsw"`` (HNSW, inner product), or
``"auto"``: flat below ``hnsw_threshold`` chunks, HNSW at or above it.

On a CUDA device the search is exact and on the GPU: faiss-gpu's flat index when the
installed faiss has GPUs, otherwise a torch fp16 matrix product.
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.types import Chunk, Hit

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
HNSW_THRESHOLD = 50_000
_SQL_BATCH = 900  # below SQLite's default limit of bound parameters


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("the faiss store needs faiss: pip install faiss-cpu (or pip install 'kbqa[faiss]')") from exc
    return faiss


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class FaissStore:
    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        index: str = "auto",
        hnsw_threshold: int = HNSW_THRESHOLD,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,  # recall@10 0.97 on hard synthetic data at 20k (bench/results/speed.md)
        device: str = "auto",
    ):
        if index not in {"auto", "flat", "hnsw"}:
            raise ValueError(f"faiss index: unknown kind {index!r} (choose auto, flat or hnsw)")
        self.path = Path(path)
        self.dim = int(dim)
        self.index_kind = index
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.device = device
        self._conn: sqlite3.Connection | None = None
        self._index = None  # faiss index, labels = rows
        self._index_kind: str | None = None
        self._max_row = 0  # highest row the index holds
        self._dead = 0  # labels in the index whose row is gone
        self._unsaved = 0  # rows added to the index since it was last written
        self._use_cuda: bool | None = None
        self._gpu = None  # (rows tensor, vectors tensor) or faiss GPU index, for CUDA search
        self._lock = threading.RLock()

    # ---- storage ------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path / "store.sqlite", timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            row = conn.execute("SELECT value FROM info WHERE key = 'dim'").fetchone()
            if row is None:
                with conn:
                    conn.execute("INSERT INTO info VALUES ('dim', ?)", (str(self.dim),))
            elif int(row[0]) != self.dim:
                conn.close()
                raise ValueError(
                    f"faiss store {self.path} holds vectors of dimension {row[0]}, not {self.dim}; "
                    "use the embedder it was built with, or a new knowledge base"
                )
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._index is not None and self._unsaved:
                self._save_index()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _check_dim(self, vectors: np.ndarray, what: str = "embeddings") -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"{what} of shape {vectors.shape} do not match the store's dimension {self.dim}")

    # ---- protocol -----------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        if not chunks:
            return
        embeddings = np.asarray(embeddings)
        self._check_dim(embeddings)
        if len(chunks) != len(embeddings):
            raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
        # the last copy of an id wins, as in Chroma
        latest = {c.id: i for i, c in enumerate(chunks)}
        order = sorted(latest.values())
        vectors = _unit(embeddings[order])
        with self._lock:
            conn = self.conn
            with conn:
                replaced = self._delete_rows(conn, [chunks[i].id for i in order])
                conn.executemany(
                    "INSERT INTO chunks (id, text, meta, vec) VALUES (?, ?, ?, ?)",
                    (
                        (chunks[i].id, chunks[i].text, json.dumps(chunks[i].metadata(), ensure_ascii=False), vectors[j].tobytes())
                        for j, i in enumerate(order)
                    ),
                )
                rows = [r for (r,) in conn.execute("SELECT row FROM chunks ORDER BY row DESC LIMIT ?", (len(order),))][::-1]
            if self._index is not None:
                self._dead += replaced
                self._add_to_index(np.asarray(rows, dtype=np.int64), vectors)
                self._maybe_rebuild()
            self._gpu = None

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        with self._lock:
            with self.conn:
                removed = self._delete_rows(self.conn, ids)
            if self._index is not None and removed:
                self._dead += removed
                self._maybe_rebuild()
            if removed:
                self._gpu = None

    def query(self, embedding: np.ndarray, k: int) -> list[Hit]:
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        self._check_dim(query, "query embedding")
        query = _unit(query)
        with self._lock:
            total = self.count()
            if total == 0 or k <= 0:
                return []
            k = min(k, total)
            if self._cuda():
                rows, scores = self._search_gpu(query, k)
                return self._hits(rows, scores)[:k]
            index = self._ensure_index()
            want = k
            while True:
                fetch = min(want + min(self._dead, 4 * want), index.ntotal)
                scores, labels = _search_one_thread(index, query, fetch)
                pairs = [(int(r), float(s)) for r, s in zip(labels[0], scores[0]) if r >= 0]
                hits = self._hits([r for r, _ in pairs], [s for _, s in pairs])
                if len(hits) >= k or fetch >= index.ntotal:
                    return hits[:k]
                want *= 4

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        ids = list(ids)
        if not ids:
            return []
        found: dict[str, Chunk] = {}
        with self._lock:
            for start in range(0, len(ids), _SQL_BATCH):
                part = ids[start : start + _SQL_BATCH]
                marks = ",".join("?" * len(part))
                for id_, text, meta in self.conn.execute(f"SELECT id, text, meta FROM chunks WHERE id IN ({marks})", part):
                    found[id_] = Chunk.from_metadata(id_, text, json.loads(meta))
        return [found[i] for i in ids if i in found]

    def all_ids(self) -> list[str]:
        with self._lock:
            return [id_ for (id_,) in self.conn.execute("SELECT id FROM chunks ORDER BY row")]

    def count(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    # ---- bulk loading (benchmarks, migrations) ------------------------------------
    def flush(self) -> None:
        """Write the search index now (it is otherwise written when worth it, or on close)."""
        with self._lock:
            self._ensure_index()
            self._save_index()

    # ---- internals ----------------------------------------------------------------
    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, ids: list[str]) -> int:
        removed = 0
        for start in range(0, len(ids), _SQL_BATCH):
            part = ids[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(part))
            removed += conn.execute(f"DELETE FROM chunks WHERE id IN ({marks})", part).rowcount
        return removed

    def _hits(self, rows: Sequence[int], scores: Sequence[float]) -> list[Hit]:
        if not len(rows):
            return []
        rows = [int(r) for r in rows]
        found: dict[int, tuple] = {}
        for start in range(0, len(rows), _SQL_BATCH):
            part = rows[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(part))
            for row, id_, text, meta in self.conn.execute(f"SELECT row, id, text, meta FROM chunks WHERE row IN ({marks})", part):
                found[row] = (id_, text, meta)
        hits = []
        for row, score in zip(rows, scores):
            if row in found:
                id_, text, meta = found[row]
                hits.append(Hit(Chunk.from_metadata(id_, text, json.loads(meta)), float(score)))
        return hits

    def _wanted_kind(self, n: int) -> str:
        if self.index_kind != "auto":
            return self.index_kind
        return "hnsw" if n >= self.hnsw_threshold else "flat"

    def _new_index(self, kind: str):
        faiss = _import_faiss()
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)  # the wrapper keeps a reference to `inner`

    def _iter_vectors(self, after: int = 0, batch: int = 50_000):
        """(rows, vectors) from SQLite in row order, for rows > after."""
        cursor = self.conn.execute("SELECT row, vec FROM chunks WHERE row > ? ORDER BY row", (after,))
        while True:
            part = cursor.fetchmany(batch)
            if not part:
                return
            rows = np.fromiter((r for r, _ in part), dtype=np.int64, count=len(part))
            vectors = np.frombuffer(b"".join(v for _, v in part), dtype=np.float32).reshape(len(part), self.dim)
            yield rows, vectors

    def _add_to_index(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        if len(rows):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rows)
            self._max_row = max(self._max_row, int(rows.max()))
            self._unsaved += len(rows)

    def _ensure_index(self):
        if self._index is not None:
            return self._index
        total = self.count()
        kind = self._wanted_kind(total)
        loaded = self._load_index(kind)
        if loaded is None:
            self._build(kind)
        else:
            self._index, self._max_row = loaded
            self._index_kind = kind
            self._unsaved = 0
            for rows, vectors in self._iter_vectors(after=self._max_row):
                self._add_to_index(rows, vectors)
            self._dead = self._index.ntotal - total
            self._maybe_rebuild()
            if self._unsaved > max(1000, total // 10):
                self._save_index()
        return self._index

    def _build(self, kind: str) -> None:
        self._index = self._new_index(kind)
        self._index_kind = kind
        self._max_row, self._dead, self._unsaved = 0, 0, 0
        for rows, vectors in self._iter_vectors():
            self._add_to_index(rows, vectors)
        self._save_index()

    def _maybe_rebuild(self) -> None:
        if self._index is None:
            return
        alive = self._index.ntotal - self._dead
        kind = self._wanted_kind(alive)
        if kind != self._index_kind or (self._dead > 1000 and self._dead > 0.2 * self._index.ntotal):
            self._build(kind)

    def _load_index(self, kind: str):
        meta_path, index_path = self.path / "index.json", self.path / "index.faiss"
        if not (meta_path.is_file() and index_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("kind") != kind or meta.get("dim") != self.dim:
            return None
        faiss = _import_faiss()
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError:
            return None  # unreadable: rebuilt from SQLite
        if index.ntotal != meta.get("ntotal"):
            return None
        if kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = self.ef_search
        return index, int(meta.get("max_row", 0))

    def _save_index(self) -> None:
        faiss = _import_faiss()
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".index.faiss.")
        os.close(fd)
        try:
            faiss.write_index(self._index, tmp)
            os.replace(tmp, self.path / "index.faiss")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = {"kind": self._index_kind, "dim": self.dim, "max_row": self._max_row, "ntotal": int(self._index.ntotal)}
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".index.json.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(meta, handle)
        os.replace(tmp, self.path / "index.json")
        self._unsaved = 0

    # ---- CUDA ---------------------------------------------------------------------
    def _cuda(self) -> bool:
        if self._use_cuda is None:
            if self.device == "cpu":
                self._use_cuda = False
            else:
                import torch

                self._use_cuda = torch.cuda.is_available() and (self.device in {"auto", "cuda"} or self.device.startswith("cuda:"))
        return self._use_cuda

    def _search_gpu(self, query: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        """Exact top-k on the GPU: faiss-gpu when available, else a torch fp16 matmul."""
        if self._gpu is None:
            parts = list(self._iter_vectors())
            rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
            vectors = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, self.dim), np.float32)
            self._gpu = _gpu_searcher(rows, vectors, "cuda" if self.device == "auto" else self.device)
        return self._gpu(query, k)


def _search_one_thread(index, query: np.ndarray, k: int):
    """One query searches fastest on one OpenMP thread: more threads split a single query's
    work for little gain and, on a busy machine, spin-wait (10x slower measured on 2 shared cores)."""
    faiss = _import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(query, k)
    finally:
        faiss.omp_set_num_threads(before)


def _gpu_searcher(rows: np.ndarray, vectors: np.ndarray, device: str):
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(resources, vectors.shape[1])
        index.add(vectors)

        def search(query: np.ndarray, k: int):
            scores, labels = index.search(query, k)
            return [int(rows[i]) for i in labels[0] if i >= 0], [float(s) for s, i in zip(scores[0], labels[0]) if i >= 0]

        search.backend = "faiss-gpu"  # type: ignore[attr-defined]
        search.resources = resources  # type: ignore[attr-defined]
        return search
    import torch

    matrix = torch.from_numpy(vectors).to(device=device, dtype=torch.float16)

    def search(query: np.ndarray, k: int):
        q = torch.from_numpy(query).to(device=device, dtype=torch.float16)
        scores, positions = torch.topk((q @ matrix.T).float(), k, dim=1)
        positions = positions[0].cpu().numpy()
        return [int(rows[i]) for i in positions], scores[0].cpu().tolist()

    search.backend = "torch"  # type: ignore[attr-defined]
    return search
