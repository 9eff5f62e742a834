"""A BM25 index kept beside the vector store, persisted in the knowledge base.

Tokens per chunk are stored (``tokens.json``); the score matrix (`retrieval.bm25_matrix`,
Lucene BM25 as bm25s computes it, built with numpy) is rebuilt lazily after changes: 32-43 s
for a million 40-token chunks on the shared 2-core machine, where bm25s took 137 s. Search
is exact and skips the long posting lists of common terms that cannot change the top k
(MaxScore): p50 6 ms at a million chunks there, where bm25s's retrieval (every chunk
scored) took 14 ms and more.

Scores come raw (Lucene variant) or normalised to [0, 1]: the raw score divided by
the sum of the idf of the query's distinct terms (a term unseen in the corpus counts with
the highest idf), which bounds it since each term adds at most its idf. The normalised
score reads as "how much of the query's information this chunk matches", comparable
across queries and knowledge bases, which a relevance floor needs.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from kbqa.retrieval.bm25_matrix import ScoreMatrix, build_matrix
from kbqa.retrieval.kbdir import atomic_write_text
from kbqa.retrieval.tokenize import TOKENIZER_VERSION, bm25_tokens
from kbqa.retrieval.types import Chunk


class BM25Index:
    def __init__(self, directory: Path, k1: float = 1.2, b: float = 0.75):
        self.directory = Path(directory)
        self.k1, self.b = k1, b
        self._tokens: dict[str, list[str]] | None = None
        self._index: ScoreMatrix | None = None
        self._order: list[str] = []
        self._dirty = False
        self._lock = threading.RLock()

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
        self.load_tokens({c.id: bm25_tokens(c.text) for c in chunks})
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

    def load_tokens(self, tokens: Mapping[str, list[str]]) -> None:
        """Replace the index's chunks with pre-tokenized ones, ``{chunk id: its bm25_tokens}``,
        without tokenizing their texts again (bulk loads: bench/speed_retrieval.py); `save` writes them."""
        with self._lock:
            self._tokens = dict(tokens)
            self._index, self._dirty = None, True

    def build(self) -> None:
        """Build the score matrix now; otherwise the first search after a change builds it."""
        self._built()

    def save(self) -> None:
        with self._lock:
            if self._dirty or not (self.directory / "tokens.json").exists():
                atomic_write_text(self.directory / "tokens.json", json.dumps(self.tokens, ensure_ascii=False))
                atomic_write_text(self.directory / "meta.json", json.dumps({"tokenizer": TOKENIZER_VERSION}))
                self._dirty = False

    def _built(self) -> ScoreMatrix | None:
        with self._lock:
            if self._index is None and self.tokens:
                self._order = list(self.tokens)
                # an empty chunk counts as one placeholder token (as it did under bm25s)
                self._index = build_matrix([self.tokens[i] or ["\x00"] for i in self._order], self.k1, self.b)
            return self._index

    def idf(self, term: str) -> float:
        matrix = self._built()
        n, df = (matrix.num_docs, matrix.df(term)) if matrix is not None else (0, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, k: int, *, normalized: bool = False) -> list[tuple[str, float]]:
        """(chunk id, score) best first, chunks with no query term left out.

        `normalized`: scores divided by the query's ceiling (see the module docstring), in [0, 1].
        """
        terms = list(dict.fromkeys(bm25_tokens(query)))  # distinct: a repeated word counts once
        with self._lock:
            matrix = self._built()
            order = self._order
        if matrix is None or not terms or k <= 0:
            return []
        docs, scores = matrix.top_k(terms, k)
        if normalized:
            n = matrix.num_docs
            ceiling = sum(math.log(1 + (n - df + 0.5) / (df + 0.5)) for df in map(matrix.df, terms))
        else:
            ceiling = 1.0
        return [(order[int(d)], min(1.0, float(s) / ceiling)) for d, s in zip(docs, scores) if s > 0]
