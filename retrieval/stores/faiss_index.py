"""The FAISS store's search index: which kind to build, building it, keeping it in step
with the rows, saving and loading it, and searching it on the CPU.

``index.faiss`` + ``index.json`` in the store's folder: a faiss ``IndexIDMap2`` (or IVF
index) whose labels are the rows of ``store.sqlite``, and what it covers (kind,
dimension, highest row, vectors held; for IVF also ``nlist``, ``trained_on`` and the
``codes``). It is derived from the rows (`retrieval.stores.faiss_rows.RowStore`), written
atomically (temporary file + rename) and rebuilt from them when missing, unreadable or
made with other settings. See `retrieval.stores.faiss` for the kinds and their numbers.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kbqa.retrieval.config import StoreSettings
from kbqa.retrieval.stores.faiss_rows import RowStore

_DEFAULTS = StoreSettings()  # the settings' defaults (retrieval/config.py), declared there only
FLAT_MAX = _DEFAULTS.faiss_flat_max
PROBE_VECTORS = _DEFAULTS.faiss_probe_vectors
EF_SEARCH = _DEFAULTS.faiss_ef_search
HNSW_M = 32  # HNSW graph degree (not a setting)
EF_CONSTRUCTION = 80  # HNSW build breadth (not a setting)
TRAIN_PER_LIST = 20  # k-means sample; measured as good as faiss's 39 here, at half the time
REGROW = 4  # retrain IVF centroids when the store has grown this many times
IVF_CODES = "SQfp16"  # vectors in the lists as fp16: half the memory read per query, same recall
KINDS = ("auto", "flat", "ivf", "hnsw")


def import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("the faiss store needs faiss: pip install faiss-cpu (or pip install 'kbqa[faiss]')") from exc
    return faiss


@dataclass(frozen=True)
class IndexSettings:
    """What the index is built and searched with; defaults: `StoreSettings()`'s faiss_* fields."""

    kind: str = _DEFAULTS.faiss_index  # auto | flat | ivf | hnsw
    flat_max: int = FLAT_MAX
    nlist: int | None = _DEFAULTS.faiss_nlist
    nprobe: int | None = _DEFAULTS.faiss_nprobe
    probe_vectors: int = PROBE_VECTORS
    hnsw_m: int = HNSW_M
    ef_construction: int = EF_CONSTRUCTION
    ef_search: int = EF_SEARCH


# (rows, scores, the unit query to re-score with exactly or None) -> hits, best first
Resolve = Callable[[list[int], list[float], "np.ndarray | None"], list]


class SearchIndex:
    """The index of one store folder, built on first use. Not locked: its owner serialises calls."""

    def __init__(self, rows: RowStore, settings: IndexSettings):
        self.rows = rows
        self.path = rows.path
        self.dim = rows.dim
        self.settings = settings
        self.index = None  # faiss index, labels = rows
        self.kind: str | None = None
        self.max_row = 0  # highest row the index holds
        self.dead = 0  # labels in the index whose row is gone
        self.unsaved = 0  # rows added to the index since it was last written
        self.trained_on = 0  # IVF: chunks when its centroids were trained

    # ---- choices ---------------------------------------------------------------------
    def wanted_kind(self, n: int) -> str:
        kind = self.settings.kind
        if kind == "ivf":
            return "ivf" if n > 0 else "flat"  # IVF centroids need vectors to train on
        if kind != "auto":
            return kind
        return "ivf" if n >= self.settings.flat_max else "flat"

    def nlist_for(self, n: int) -> int:
        """Lists for n vectors: the setting, or 4 * sqrt(n); never more than n / TRAIN_PER_LIST."""
        wanted = self.settings.nlist or max(1, round(4 * n**0.5))
        return int(max(1, min(wanted, n // TRAIN_PER_LIST)))

    def nprobe_for(self, index) -> int:
        if self.settings.nprobe:
            return min(self.settings.nprobe, index.nlist)
        per_list = max(1.0, index.ntotal / index.nlist)
        return int(min(index.nlist, max(1, -(-self.settings.probe_vectors // per_list))))

    # ---- following the rows -----------------------------------------------------------
    def added(self, rows: np.ndarray, vectors: np.ndarray, replaced: int) -> None:
        """Rows were written (`replaced` old ones deleted by the same write)."""
        if self.index is not None:
            self.dead += replaced
            self._add(rows, vectors)
            self._maybe_rebuild()

    def removed(self, n: int) -> None:
        if self.index is not None and n:
            self.dead += n
            self._maybe_rebuild()

    def close(self) -> None:
        if self.index is not None and self.unsaved:
            self.save()

    # ---- search ----------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, resolve: Resolve) -> list:
        """The k best alive rows for the unit `query` (1 x dim), resolved; k > 0."""
        index = self.ensure()  # kept in step with every write: no COUNT(*) per query
        alive = index.ntotal - self.dead
        if alive <= 0:
            return []
        k = min(k, alive)
        ivf = self.kind == "ivf"
        nprobe = self.nprobe_for(index) if ivf else None
        want = k
        while True:
            # IVF scores come from fp16 codes: twice the candidates, re-scored exactly
            fetch = min(want + (want if ivf else 0) + min(self.dead, 4 * want), index.ntotal)
            scores, labels = search_one_thread(index, query, fetch, nprobe)
            pairs = [(int(r), float(s)) for r, s in zip(labels[0], scores[0]) if r >= 0]
            found = resolve([r for r, _ in pairs], [s for _, s in pairs], query[0] if ivf else None)
            if len(found) >= k or fetch >= index.ntotal and (nprobe is None or nprobe >= index.nlist):
                return found[:k]
            if nprobe is not None and len(pairs) < fetch:  # the probed lists ran dry: probe more
                nprobe = min(index.nlist, 2 * nprobe)
            else:
                want *= 4

    # ---- lifecycle -------------------------------------------------------------------
    def ensure(self):
        """The index: loaded and caught up with the rows, or built from them."""
        if self.index is not None:
            return self.index
        total = self.rows.count()
        kind = self.wanted_kind(total)
        loaded = self._load(kind)
        if loaded is not None and kind == "ivf" and total > REGROW * self.trained_on:
            loaded = None  # trained on far fewer vectors: retrain rather than catch up
        if loaded is None:
            self._build(kind)
        else:
            self.index, self.max_row = loaded
            self.kind = kind
            self.unsaved = 0
            for rows, vectors in self.rows.iter_vectors(after=self.max_row):
                self._add(rows, vectors)
            self.dead = self.index.ntotal - total
            self._maybe_rebuild()
            if self.unsaved > max(1000, total // 10):
                self.save()
        return self.index

    def _new_ivf(self, total: int):
        """An IVF index (labels = rows) with centroids trained on a sample of the stored vectors."""
        faiss = import_faiss()
        nlist = self.nlist_for(total)
        index = faiss.index_factory(self.dim, f"IVF{nlist},{IVF_CODES}", faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = 1  # the sample is sized below; no warning
        index.cp.max_points_per_centroid = TRAIN_PER_LIST
        index.train(self.rows.sample_vectors(nlist * TRAIN_PER_LIST, total))
        self.trained_on = total
        return index

    def _new_index(self, kind: str):
        faiss = import_faiss()
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.settings.ef_construction
            inner.hnsw.efSearch = self.settings.ef_search
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)  # the wrapper keeps a reference to `inner`

    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        if len(rows):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rows)
            self.max_row = max(self.max_row, int(rows.max()))
            self.unsaved += len(rows)

    def _build(self, kind: str) -> None:
        self.index = self._new_ivf(self.rows.count()) if kind == "ivf" else self._new_index(kind)
        self.kind = kind
        self.max_row, self.dead, self.unsaved = 0, 0, 0
        for rows, vectors in self.rows.iter_vectors():
            self._add(rows, vectors)
        self.save()

    def _maybe_rebuild(self) -> None:
        if self.index is None:
            return
        alive = self.index.ntotal - self.dead
        kind = self.wanted_kind(alive)
        regrown = kind == "ivf" and alive > REGROW * self.trained_on
        if kind != self.kind or regrown or (self.dead > 1000 and self.dead > 0.2 * self.index.ntotal):
            self._build(kind)

    # ---- on disk ---------------------------------------------------------------------
    def _load(self, kind: str):
        meta_path, index_path = self.path / "index.json", self.path / "index.faiss"
        if not (meta_path.is_file() and index_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("kind") != kind or meta.get("dim") != self.dim:
            return None
        if kind == "ivf" and self.settings.nlist and meta.get("nlist") != self.nlist_for(int(meta.get("trained_on", 0))):
            return None  # built with another nlist setting
        if kind == "ivf" and meta.get("codes") != IVF_CODES:
            return None  # an index of another encoding
        faiss = import_faiss()
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError:
            return None  # unreadable: rebuilt from SQLite
        if index.ntotal != meta.get("ntotal"):
            return None
        if kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = self.settings.ef_search
        if kind == "ivf":
            self.trained_on = int(meta.get("trained_on", 0))
        return index, int(meta.get("max_row", 0))

    def save(self) -> None:
        faiss = import_faiss()
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".index.faiss.")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            os.replace(tmp, self.path / "index.faiss")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = {"kind": self.kind, "dim": self.dim, "max_row": self.max_row, "ntotal": int(self.index.ntotal)}
        if self.kind == "ivf":
            meta.update(nlist=int(self.index.nlist), trained_on=self.trained_on, codes=IVF_CODES)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".index.json.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(meta, handle)
        os.replace(tmp, self.path / "index.json")
        self.unsaved = 0


def search_one_thread(index, query: np.ndarray, k: int, nprobe: int | None = None):
    """One query searches fastest on one OpenMP thread: more threads split a single query's
    work for little gain and, on a busy machine, spin-wait (10x slower measured on 2 shared cores)."""
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        if nprobe is not None:
            return index.search(query, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        return index.search(query, k)
    finally:
        faiss.omp_set_num_threads(before)
