"""FAISS: a vector store on local disk, exact for small knowledge bases, IVF for large ones.

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

Index kind: ``"flat"`` (exact inner product), ``"ivf"`` (inverted lists, inner product),
``"hnsw"`` (HNSW graph, inner product), or ``"auto"``: flat below ``flat_max`` chunks, IVF
at or above it.

IVF, the default for large stores: ``nlist`` lists (default ``4 * sqrt(n)``, n the chunks
when it is built), centroids trained by k-means on a sample of 20 vectors per list, vectors
held in the lists as fp16 (half the memory to read per query; the candidates, twice as many
as asked for, are re-scored exactly from the stored float32 vectors); a query
scans the ``nprobe`` lists nearest to it (default: as many lists as hold about
``probe_vectors`` = 30,000 vectors, so the cost stays flat as the store grows). On the
benchmark's hard synthetic data scanning 20,000 vectors gave recall@10 against exact search
0.950 at 100k chunks and 0.992 at 1M (``bench/results/speed_retrieval_probe20k.md``);
30,000 gave 0.976 and 0.998 (``speed_retrieval_ivfflat.md``, ``speed_retrieval.md``). It builds in 2-3 minutes at a million chunks on the two shared
cores, where HNSW took 4-10 minutes at 100k. When the store has grown four times past the
size the centroids were trained on, the index is rebuilt (``nlist`` then doubles).

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
FLAT_MAX = 50_000
PROBE_VECTORS = 30_000
TRAIN_PER_LIST = 20  # k-means sample; measured as good as faiss's 39 here, at half the time
REGROW = 4  # retrain IVF centroids when the store has grown this many times
IVF_CODES = "SQfp16"  # vectors in the lists as fp16: half the memory read per query, same recall
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
        flat_max: int = FLAT_MAX,
        nlist: int | None = None,
        nprobe: int | None = None,
        probe_vectors: int = PROBE_VECTORS,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,  # recall@10 0.97 on hard synthetic data at 20k (bench/results/speed.md)
        device: str = "auto",
    ):
        if index not in {"auto", "flat", "ivf", "hnsw"}:
            raise ValueError(f"faiss index: unknown kind {index!r} (choose auto, flat, ivf or hnsw)")
        for name, value in (("flat_max", flat_max), ("nlist", nlist), ("nprobe", nprobe), ("probe_vectors", probe_vectors)):
            if value is not None and int(value) < 1:
                raise ValueError(f"faiss {name}: must be at least 1, got {value}")
        self.path = Path(path)
        self.dim = int(dim)
        self.index_kind = index
        self.flat_max = int(flat_max)
        self.nlist, self.nprobe, self.probe_vectors = nlist, nprobe, int(probe_vectors)
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.device = device
        self._conn: sqlite3.Connection | None = None
        self._index = None  # faiss index, labels = rows
        self._index_kind: str | None = None
        self._max_row = 0  # highest row the index holds
        self._dead = 0  # labels in the index whose row is gone
        self._unsaved = 0  # rows added to the index since it was last written
        self._trained_on = 0  # IVF: chunks when its centroids were trained
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
        return self._search(embedding, k, texts=True)

    def query_ids(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) best first, as `query` without reading texts and metadata."""
        return self._search(embedding, k, texts=False)

    def _search(self, embedding: np.ndarray, k: int, *, texts: bool) -> list:
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        self._check_dim(query, "query embedding")
        query = _unit(query)
        with self._lock:
            if k <= 0:
                return []
            if self._cuda():
                total = self.count()
                if total == 0:
                    return []
                rows, scores = self._search_gpu(query, min(k, total))
                return self._resolve(rows, scores, texts)[:k]
            index = self._ensure_index()  # kept in step with every write: no COUNT(*) per query
            alive = index.ntotal - self._dead
            if alive <= 0:
                return []
            k = min(k, alive)
            ivf = self._index_kind == "ivf"
            nprobe = self._nprobe(index) if ivf else None
            want = k
            while True:
                # IVF scores come from fp16 codes: twice the candidates, re-scored exactly
                fetch = min(want + (want if ivf else 0) + min(self._dead, 4 * want), index.ntotal)
                scores, labels = _search_one_thread(index, query, fetch, nprobe)
                pairs = [(int(r), float(s)) for r, s in zip(labels[0], scores[0]) if r >= 0]
                found = self._resolve([r for r, _ in pairs], [s for _, s in pairs], texts, query[0] if ivf else None)
                if len(found) >= k or fetch >= index.ntotal and (nprobe is None or nprobe >= index.nlist):
                    return found[:k]
                if nprobe is not None and len(pairs) < fetch:  # the probed lists ran dry: probe more
                    nprobe = min(index.nlist, 2 * nprobe)
                else:
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

    def _resolve(self, rows: Sequence[int], scores: Sequence[float], texts: bool, rescore: np.ndarray | None = None) -> list:
        """Hits (texts) or (id, score) pairs for the rows still alive, in the given order, or
        with `rescore` (the unit query) scored exactly from the stored vectors and re-ordered."""
        if not len(rows):
            return []
        rows = [int(r) for r in rows]
        columns = "row, id" + (", text, meta" if texts else "") + (", vec" if rescore is not None else "")
        found: dict[int, tuple] = {}
        for start in range(0, len(rows), _SQL_BATCH):
            part = rows[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(part))
            for record in self.conn.execute(f"SELECT {columns} FROM chunks WHERE row IN ({marks})", part):
                found[record[0]] = record[1:]
        alive = [(row, float(score)) for row, score in zip(rows, scores) if row in found]  # others: dead labels
        if rescore is not None and alive:
            vectors = np.frombuffer(b"".join(found[r][-1] for r, _ in alive), dtype=np.float32).reshape(len(alive), self.dim)
            alive = sorted(zip((r for r, _ in alive), (vectors @ rescore).tolist()), key=lambda pair: -pair[1])  # stable
        if not texts:
            return [(found[row][0], score) for row, score in alive]
        return [Hit(Chunk.from_metadata(found[row][0], found[row][1], json.loads(found[row][2])), score) for row, score in alive]

    def _wanted_kind(self, n: int) -> str:
        if self.index_kind == "ivf":
            return "ivf" if n > 0 else "flat"  # IVF centroids need vectors to train on
        if self.index_kind != "auto":
            return self.index_kind
        return "ivf" if n >= self.flat_max else "flat"

    def _nlist_for(self, n: int) -> int:
        """Lists for n vectors: the setting, or 4 * sqrt(n); never more than n / TRAIN_PER_LIST."""
        wanted = self.nlist or max(1, round(4 * n**0.5))
        return int(max(1, min(wanted, n // TRAIN_PER_LIST)))

    def _nprobe(self, index) -> int:
        if self.nprobe:
            return min(self.nprobe, index.nlist)
        per_list = max(1.0, index.ntotal / index.nlist)
        return int(min(index.nlist, max(1, -(-self.probe_vectors // per_list))))

    def _new_ivf(self, total: int):
        """An IVF index (labels = rows) with centroids trained on a sample of the stored vectors."""
        faiss = _import_faiss()
        nlist = self._nlist_for(total)
        index = faiss.index_factory(self.dim, f"IVF{nlist},{IVF_CODES}", faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = 1  # the sample is sized below; no warning
        index.cp.max_points_per_centroid = TRAIN_PER_LIST
        index.train(self._sample_vectors(nlist * TRAIN_PER_LIST, total))
        self._trained_on = total
        return index

    def _sample_vectors(self, m: int, total: int) -> np.ndarray:
        """About m stored vectors, a deterministic pseudo-random choice of rows (all when m >= total)."""
        if m >= total:
            parts = [v for _, v in self._iter_vectors()]
        else:
            cut = int(2**32 * m / total) + 1  # rows whose multiplicative hash falls below: uniform, no aliasing
            cursor = self.conn.execute("SELECT vec FROM chunks WHERE ((row * 2654435761) % 4294967296) < ?", (cut,))
            blobs = [v for (v,) in cursor]
            parts = [np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), self.dim)]
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        return np.ascontiguousarray(vectors, dtype=np.float32)

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
        if loaded is not None and kind == "ivf" and total > REGROW * self._trained_on:
            loaded = None  # trained on far fewer vectors: retrain rather than catch up
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
        self._index = self._new_ivf(self.count()) if kind == "ivf" else self._new_index(kind)
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
        regrown = kind == "ivf" and alive > REGROW * self._trained_on
        if kind != self._index_kind or regrown or (self._dead > 1000 and self._dead > 0.2 * self._index.ntotal):
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
        if kind == "ivf" and self.nlist and meta.get("nlist") != self._nlist_for(int(meta.get("trained_on", 0))):
            return None  # built with another nlist setting
        if kind == "ivf" and meta.get("codes") != IVF_CODES:
            return None  # an index of another encoding
        faiss = _import_faiss()
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError:
            return None  # unreadable: rebuilt from SQLite
        if index.ntotal != meta.get("ntotal"):
            return None
        if kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = self.ef_search
        if kind == "ivf":
            self._trained_on = int(meta.get("trained_on", 0))
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
        if self._index_kind == "ivf":
            meta.update(nlist=int(self._index.nlist), trained_on=self._trained_on, codes=IVF_CODES)
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


def _search_one_thread(index, query: np.ndarray, k: int, nprobe: int | None = None):
    """One query searches fastest on one OpenMP thread: more threads split a single query's
    work for little gain and, on a busy machine, spin-wait (10x slower measured on 2 shared cores)."""
    faiss = _import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        if nprobe is not None:
            return index.search(query, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
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
