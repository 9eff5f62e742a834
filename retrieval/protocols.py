"""The seams of kbqa: small protocols that every backend implements.

Streaming is a generator of strings. Constructors of implementations are cheap:
models and clients load on first use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from kbqa.retrieval.types import Chunk, Hit


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors for the vector store; loads its model on first use."""

    name: str

    @property
    def dim(self) -> int:
        """Length of each embedding vector."""
        ...

    @property
    def max_tokens(self) -> int:
        """The most tokens of a text the model reads (its own special tokens excluded)."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text by the model's tokenizer (no special tokens, no truncation)."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised float32 array of shape (len(texts), dim)."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Unit-normalised float32 vector of shape (dim,) for a search query."""
        ...


@runtime_checkable
class VectorStore(Protocol):
    """Chunks and their embeddings, searched by cosine similarity; persisted under the KB directory or in a server."""

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        """Insert or replace `chunks` by id; row i of `embeddings` (unit vectors, shape (len(chunks), dim)) is chunk i's."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Remove the chunks with these ids; ids not stored are ignored."""
        ...

    def query(self, embedding: np.ndarray, k: int) -> list[Hit]:
        """Top-k by cosine similarity (score in [-1, 1], higher is better)."""
        ...

    def query_ids(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """As `query`, (chunk id, score) only: no texts or metadata read (hybrid search fetches
        those for the fused top k alone)."""
        ...

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        """The stored chunks with these ids (texts and metadata); ids not stored are skipped."""
        ...

    def all_ids(self) -> list[str]:
        """Every stored chunk id."""
        ...

    def count(self) -> int:
        """Number of stored chunks."""
        ...


Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass(frozen=True)
class Sampling:
    """Per-request generation options beyond `max_tokens` and `temperature` (None: the
    backend's default). `top_p` and `seed` matter only when sampling (temperature > 0);
    `stop` sequences are added to the backend's configured ones, and the text ends before them."""

    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        """True when no option is set (the backend's defaults apply)."""
        return self == DEFAULT_SAMPLING


DEFAULT_SAMPLING = Sampling()


@runtime_checkable
class LLM(Protocol):
    """A chat model. `stream` yields the answer's text in pieces as it is generated."""

    name: str

    def generate(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> str:
        """The reply to `messages`, at most `max_tokens` new tokens; temperature 0 is greedy."""
        ...

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> Iterator[str]:
        """As `generate`, yielding the reply's text in pieces as they are generated."""
        ...

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None
    ) -> list[str]:
        """`generate` for each conversation, replies in the same order."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """A second stage after fusion: re-scores the retriever's candidates against the question.
    `rerank` returns at most `k` of `hits`, best first, each with the reranker's score (higher is
    better); it neither adds chunks nor changes them. Loads its model on first use."""

    name: str

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """At most `k` of `hits`, best first, each scored by the reranker (higher is better)."""
        ...
