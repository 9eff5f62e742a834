"""FAISS: a vector store on local disk, exact for small knowledge bases, IVF for large ones.

Layout of the store's folder:

- ``store.sqlite``: the source of truth, one row per chunk (id, text, metadata as JSON,
  the unit vector as float32 bytes), keyed by an ever-increasing integer ``row``.
  Every upsert or delete is one SQLite transaction, so a crash never leaves a chunk
  half-written. (``retrieval/stores/faiss_rows.py``)
- ``index.faiss`` + ``index.json``: the search index (faiss ``IndexIDMap2`` whose labels
  are the rows) and what it covers (kind, dimension, highest row). It is an accelerator
  derived from the SQLite file, written atomically (temporary file + rename). On open it
  is caught up with rows added since it was saved; deleted or replaced rows stay in the
  index as dead labels and are filtered out at query time until a rebuild drops them.
  (``retrieval/stores/faiss_index.py``: choosing, building, saving, loading, CPU search)

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
installed faiss has GPUs, otherwise a torch fp16 matrix product (``faiss_gpu.py``).
This module holds `FaissStore`, the `VectorStore` that ties the three together under one lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kbqa.retrieval.stores.faiss_gpu import cuda_wanted, gpu_searcher
from kbqa.retrieval.stores.faiss_index import (  # noqa: F401  (the names this module has always had)
    EF_CONSTRUCTION,
    EF_SEARCH,
    FLAT_MAX,
    HNSW_M,
    IVF_CODES,
    KINDS,
    PROBE_VECTORS,
    REGROW,
    TRAIN_PER_LIST,
    IndexSettings,
    SearchIndex,
)
from kbqa.retrieval.stores.faiss_rows import SCHEMA, RowStore  # noqa: F401
from kbqa.retrieval.types import Chunk, Hit


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class FaissStore:
    """The `VectorStore`: rows in SQLite (`RowStore`), searched through `SearchIndex` on the
    CPU or exactly on a CUDA device; one lock around both."""

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        index: str = IndexSettings.kind,
        flat_max: int = FLAT_MAX,
        nlist: int | None = IndexSettings.nlist,
        nprobe: int | None = IndexSettings.nprobe,
        probe_vectors: int = PROBE_VECTORS,
        hnsw_m: int = HNSW_M,
        ef_construction: int = EF_CONSTRUCTION,
        ef_search: int = EF_SEARCH,
        device: str = "auto",
    ):
        """The index arguments' defaults are the settings' (`StoreSettings`, retrieval/config.py)."""
        if index not in KINDS:
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
        self._rows = RowStore(self.path, self.dim)
        settings = IndexSettings(
            kind=index,
            flat_max=self.flat_max,
            nlist=nlist,
            nprobe=nprobe,
            probe_vectors=self.probe_vectors,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            ef_search=ef_search,
        )
        self._ix = SearchIndex(self._rows, settings)
        self._use_cuda: bool | None = None
        self._gpu = None  # (query, k) -> (rows, scores) over the vectors on the device, for CUDA search
        self._lock = threading.RLock()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._rows.conn

    def close(self) -> None:
        with self._lock:
            self._ix.close()
            self._rows.close()

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
            replaced, rows = self._rows.write([chunks[i] for i in order], vectors)
            self._ix.added(rows, vectors, replaced)
            self._gpu = None

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        with self._lock:
            removed = self._rows.delete(ids)
            self._ix.removed(removed)
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
                return self._rows.resolve(rows, scores, texts)[:k]
            return self._ix.search(query, k, lambda rows, scores, rescore: self._rows.resolve(rows, scores, texts, rescore))

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        ids = list(ids)
        if not ids:
            return []
        with self._lock:
            return self._rows.get(ids)

    def vectors(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The stored unit vectors of `ids` (those present, in the given order)."""
        with self._lock:
            return self._rows.vectors(list(ids))

    def all_ids(self) -> list[str]:
        with self._lock:
            return self._rows.all_ids()

    def count(self) -> int:
        with self._lock:
            return self._rows.count()

    # ---- bulk loading (benchmarks, migrations) ------------------------------------
    def flush(self) -> None:
        """Write the search index now (it is otherwise written when worth it, or on close)."""
        with self._lock:
            self._ix.ensure()
            self._ix.save()

    # ---- CUDA ---------------------------------------------------------------------
    def _cuda(self) -> bool:
        if self._use_cuda is None:
            self._use_cuda = cuda_wanted(self.device)
        return self._use_cuda

    def _search_gpu(self, query: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        """Exact top-k on the GPU: faiss-gpu when available, else a torch fp16 matmul."""
        if self._gpu is None:
            rows, vectors = self._rows.all_vectors()
            self._gpu = gpu_searcher(rows, vectors, "cuda" if self.device == "auto" else self.device)
        return self._gpu(query, k)

    # ---- the index's state ----------------------------------------------------------
    def index_info(self) -> dict:
        """The search index as it stands: ``kind`` (flat | ivf | hnsw; None until a search or
        `flush` builds it), ``vectors`` in it, ``dead`` labels (replaced or deleted rows not
        yet dropped), for IVF ``nlist``, ``nprobe`` (lists scanned per query) and ``trained_on``
        (chunks when its centroids were trained); ``gpu_search``: the CUDA searcher's backend
        ("faiss-gpu" or "torch") once a CUDA query has made one, else None."""
        with self._lock:
            ix, index = self._ix, self._ix.index
            info = {"kind": ix.kind, "vectors": 0 if index is None else int(index.ntotal), "dead": ix.dead, "gpu_search": getattr(self._gpu, "backend", None)}
            if ix.kind == "ivf" and index is not None:
                info.update(nlist=int(index.nlist), nprobe=int(ix.nprobe_for(index)), trained_on=ix.trained_on)
            return info

    def wanted_kind(self, n: int) -> str:
        """The index kind this store's settings choose for `n` chunks (auto: flat below `flat_max`, IVF at or above)."""
        return self._ix.wanted_kind(n)
