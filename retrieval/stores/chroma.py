"""Chroma: embedded `PersistentClient` on disk by default, or a Chroma server by URL.

We always pass embeddings ourselves (``embedding_function=None``), so Chroma never
loads or downloads a model of its own; telemetry is off.

HNSW search breadth: ``ef_search`` (default 400, Chroma's own is 100). On the synthetic
benchmark data recall@10 against exact search rose from 0.75 to 0.975 at 20k chunks for
the same latency (``bench/results/speed_retrieval.md``). A collection made with a lower value
is raised when opened; Chroma applies it from the next load of the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kbqa.retrieval.config import StoreSettings
from kbqa.retrieval.types import Chunk, Hit

_BATCH = 4000  # below Chroma's maximum batch size
EF_SEARCH = StoreSettings().chroma_ef_search  # declared in retrieval/config.py


class ChromaStore:
    def __init__(self, path: Path, dim: int, url: str | None = None, collection: str = "kbqa", ef_search: int = EF_SEARCH):
        if int(ef_search) < 1:
            raise ValueError(f"chroma ef_search: must be at least 1, got {ef_search}")
        self.path = Path(path)
        self.dim = dim
        self.url = url
        self.ef_search = int(ef_search)
        self.collection_name = collection if len(collection) >= 3 else f"kb-{collection}"
        self._collection = None

    @property
    def collection(self):
        if self._collection is None:
            try:
                import chromadb
                from chromadb.config import Settings as ChromaSettings
            except ImportError as exc:
                raise ImportError("the chroma store needs chromadb: pip install chromadb") from exc
            chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            if self.url:
                from urllib.parse import urlparse

                parsed = urlparse(self.url)
                client = chromadb.HttpClient(
                    host=parsed.hostname or "localhost",
                    port=parsed.port or 8000,
                    ssl=parsed.scheme == "https",
                    settings=chroma_settings,
                )
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                try:
                    client = chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)
                except Exception:
                    _forget_failed_client(str(self.path))
                    raise
            collection = client.get_or_create_collection(
                self.collection_name, embedding_function=None, metadata={"hnsw:space": "cosine", "hnsw:search_ef": self.ef_search}
            )
            hnsw = (collection.configuration or {}).get("hnsw") or {}
            if hnsw.get("ef_search", self.ef_search) < self.ef_search:  # made before this setting, or with less
                collection.modify(configuration={"hnsw": {"ef_search": self.ef_search}})
            self._collection = collection
        return self._collection

    def _check_dim(self, embeddings: np.ndarray) -> None:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings of shape {embeddings.shape} do not match the store's dimension {self.dim}")

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        if not chunks:
            return
        self._check_dim(embeddings)
        for start in range(0, len(chunks), _BATCH):
            part = chunks[start : start + _BATCH]
            self.collection.upsert(
                ids=[c.id for c in part],
                embeddings=embeddings[start : start + _BATCH].astype(np.float32),
                documents=[c.text for c in part],
                metadatas=[c.metadata() for c in part],
            )

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), _BATCH):
            self.collection.delete(ids=ids[start : start + _BATCH])

    # No count() before a query: Chroma (>= 1.0) returns fewer hits when the collection holds
    # fewer than k, none when it is empty, and the count was a second round trip (3.6 ms of a
    # 30 ms SciFact query).
    def query(self, embedding: np.ndarray, k: int) -> list[Hit]:
        if k <= 0:
            return []
        result = self.collection.query(
            query_embeddings=[np.asarray(embedding, dtype=np.float32)],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for id_, text, meta, dist in zip(result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0]):
            hits.append(Hit(Chunk.from_metadata(id_, text or "", meta or {}), 1.0 - float(dist)))
        return hits

    def query_ids(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        if k <= 0:
            return []
        result = self.collection.query(query_embeddings=[np.asarray(embedding, dtype=np.float32)], n_results=k, include=["distances"])
        return [(id_, 1.0 - float(dist)) for id_, dist in zip(result["ids"][0], result["distances"][0])]

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        ids = list(ids)
        if not ids:
            return []
        found: dict[str, Chunk] = {}
        for start in range(0, len(ids), _BATCH):
            result = self.collection.get(ids=ids[start : start + _BATCH], include=["documents", "metadatas"])
            for id_, text, meta in zip(result["ids"], result["documents"], result["metadatas"]):
                found[id_] = Chunk.from_metadata(id_, text or "", meta or {})
        return [found[i] for i in ids if i in found]

    def vectors(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The stored vectors of `ids` (those present, in the given order)."""
        found: dict[str, np.ndarray] = {}
        ids = list(ids)
        for start in range(0, len(ids), _BATCH):
            result = self.collection.get(ids=ids[start : start + _BATCH], include=["embeddings"])
            found.update(zip(result["ids"], (np.asarray(v, dtype=np.float32) for v in result["embeddings"])))
        kept = [i for i in ids if i in found]
        return kept, np.stack([found[i] for i in kept]) if kept else np.zeros((0, self.dim), np.float32)

    def all_ids(self) -> list[str]:
        ids: list[str] = []
        offset = 0
        while True:
            result = self.collection.get(include=[], limit=_BATCH, offset=offset)
            ids.extend(result["ids"])
            if len(result["ids"]) < _BATCH:
                return ids
            offset += _BATCH

    def count(self) -> int:
        return int(self.collection.count())


def _forget_failed_client(path: str) -> None:
    """Chroma caches a client's system per folder before starting it. One that failed to start
    (a damaged chroma.sqlite3) would be handed to every later open of the folder in this process,
    even after `kbqa doctor --repair` has moved the damaged folder aside: drop it."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(path, None)
    except (ImportError, AttributeError):  # another chromadb layout: nothing cached to drop
        pass
