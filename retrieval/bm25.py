"""A BM25 index kept beside the vector store, persisted in the knowledge base.

Tokens per chunk are stored (``tokens.json``); the bm25s index is rebuilt lazily after
changes, which costs well under a second for tens of thousands of chunks.

Scores come raw (bm25s, Lucene variant) or normalised to [0, 1]: the raw score divided by
the sum of the idf of the query's distinct terms (a term unseen in the corpus counts with
the highest idf), which bounds it since each term adds at most its idf. The normalised
score reads as "how much of the query's information this chunk matches", comparable
across queries and knowledge bases, which a relevance floor needs.
"""
from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from retrieval.kbdir import atomic_write_text
from retrieval.tokenize import TOKENIZER_VERSION, bm25_tokens
from retrieval.types import Chunk


class BM25Index:
    def __init__(self, directory: Path, k1: float = 1.2, b: float = 0.75):
        self.directory = Path(directory)
        self.k1, self.b = k1, b
        self._tokens: dict[str, list[str]] | None = None
        self._index = None
        self._order: list[str] = []
        self._df: Counter[str] = Counter()
        self._dirty = False
        self._lock = threading.Lock()

    @property
    def tokens(self) -> dict[str, list[str]]:
        if self._tokens is None:
            path = self.directory / "tokens.json"
            self._tokens = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return self._tokens

    @property
    def stale(self) -> bool:
        """Tokens stored by another version of `bm25_tokens` (see `retokenize`)."""
        if not (self.directory / "tokens.json").is_file():
            return False
        meta = self.directory / "meta.json"
        version = json.loads(meta.read_text(encoding="utf-8")).get("tokenizer") if meta.is_file() else 1
        return version != TOKENIZER_VERSION

    def retokenize(self, fetch) -> int:
        """Re-tokenize every chunk from its text (`fetch(ids) -> chunks`, e.g. the vector store's `get`)."""
        ids = list(self.tokens)
        chunks = fetch(ids)
        if len(chunks) != len(ids):
            raise RuntimeError(f"BM25 index {self.directory}: {len(ids) - len(chunks)} of {len(ids)} chunks missing from the vector store; re-ingest")
        with self._lock:
            self._tokens = {c.id: bm25_tokens(c.text) for c in chunks}
            self._index, self._dirty = None, True
        self.save()
        return len(chunks)

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
                atomic_write_text(self.directory / "meta.json", json.dumps({"tokenizer": TOKENIZER_VERSION}))
                self._dirty = False

    def _built(self):
        with self._lock:
            if self._index is None and self.tokens:
                import bm25s

                self._order = list(self.tokens)
                index = bm25s.BM25(k1=self.k1, b=self.b)
                corpus = [self.tokens[i] or ["\x00"] for i in self._order]
                index.index(corpus, show_progress=False)
                self._df = Counter(t for i in self._order for t in set(self.tokens[i]))
                self._index = index
            return self._index

    def idf(self, term: str) -> float:
        n, df = len(self._order), self._df.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, k: int, *, normalized: bool = False) -> list[tuple[str, float]]:
        """(chunk id, score) best first, chunks with no query term left out.

        `normalized`: scores divided by the query's ceiling (see the module docstring), in [0, 1].
        """
        index = self._built()
        terms = list(dict.fromkeys(bm25_tokens(query)))  # distinct: bm25s counts repeats twice
        if index is None or not terms or k <= 0:
            return []
        k = min(k, len(self._order))
        with self._lock:
            docs, scores = index.retrieve([terms], k=k, show_progress=False, n_threads=1)
            ceiling = sum(self.idf(t) for t in terms) if normalized else 1.0
        return [(self._order[int(d)], min(1.0, float(s) / ceiling)) for d, s in zip(docs[0], scores[0]) if s > 0]
