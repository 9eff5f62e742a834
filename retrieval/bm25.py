"""A BM25 index kept beside the vector store, persisted in the knowledge base.

Tokens per chunk are stored (``tokens.json``); the bm25s index is rebuilt lazily after
changes, which costs well under a second for tens of thousands of chunks.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from retrieval.kbdir import atomic_write_text
from retrieval.tokenize import bm25_tokens
from retrieval.types import Chunk


class BM25Index:
    def __init__(self, directory: Path, k1: float = 1.2, b: float = 0.75):
        self.directory = Path(directory)
        self.k1, self.b = k1, b
        self._tokens: dict[str, list[str]] | None = None
        self._index = None
        self._order: list[str] = []
        self._dirty = False
        self._lock = threading.Lock()

    @property
    def tokens(self) -> dict[str, list[str]]:
        if self._tokens is None:
            path = self.directory / "tokens.json"
            self._tokens = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return self._tokens

    def ids(self) -> set[str]:
        return set(self.tokens)

    def add(self, chunks: Sequence[Chunk]) -> None:
        with self._lock:
            for chunk in chunks:
                self.tokens[chunk.id] = bm25_tokens(chunk.text)
            self._index, self._dirty = None, True

    def remove(self, ids: Sequence[str]) -> None:
        with self._lock:
            for id_ in ids:
                self.tokens.pop(id_, None)
            self._index, self._dirty = None, True

    def save(self) -> None:
        with self._lock:
            if self._dirty or not (self.directory / "tokens.json").exists():
                atomic_write_text(self.directory / "tokens.json", json.dumps(self.tokens, ensure_ascii=False))
                self._dirty = False

    def _built(self):
        with self._lock:
            if self._index is None and self.tokens:
                import bm25s

                self._order = list(self.tokens)
                index = bm25s.BM25(k1=self.k1, b=self.b)
                corpus = [self.tokens[i] or ["\x00"] for i in self._order]
                index.index(corpus, show_progress=False)
                self._index = index
            return self._index

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        index = self._built()
        terms = bm25_tokens(query)
        if index is None or not terms:
            return []
        k = min(k, len(self._order))
        docs, scores = index.retrieve([terms], k=k, show_progress=False, n_threads=1)
        return [(self._order[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]
