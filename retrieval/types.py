"""Plain data types shared by every layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chunk:
    """One piece of a document as stored in the knowledge base."""

    id: str
    text: str
    source: str  # path of the document, as given to ingest (relative where possible)
    page: int | None = None  # 1-based page for paged formats (PDF), else None
    chunk: int = 0  # index of the chunk within its document
    doc_hash: str = ""  # sha256 of the document's bytes
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Flat metadata for a vector store (no None values: Chroma refuses them)."""
        meta: dict[str, Any] = {
            "source": self.source,
            "chunk": self.chunk,
            "doc_hash": self.doc_hash,
            "page": self.page if self.page is not None else 0,
        }
        for key, value in self.extra.items():
            if isinstance(value, (str, int, float, bool)):
                meta[key] = value
        return meta

    @classmethod
    def from_metadata(cls, id: str, text: str, meta: dict[str, Any]) -> "Chunk":
        page = int(meta.get("page") or 0) or None
        extra = {k: v for k, v in meta.items() if k not in {"source", "chunk", "doc_hash", "page"}}
        return cls(
            id=id,
            text=text,
            source=str(meta.get("source", "")),
            page=page,
            chunk=int(meta.get("chunk", 0)),
            doc_hash=str(meta.get("doc_hash", "")),
            extra=extra,
        )


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its score (higher is better)."""

    chunk: Chunk
    score: float

    def as_source(self) -> dict[str, Any]:
        """The public citation form: {source, page, chunk, score, text}."""
        return {
            "source": self.chunk.source,
            "page": self.chunk.page,
            "chunk": self.chunk.chunk,
            "score": round(float(self.score), 4),
            "text": self.chunk.text,
        }


@dataclass
class Answer:
    """What `KnowledgeBase.ask` returns."""

    answer: str
    sources: list[Hit]
    timings: dict[str, float]
    found: bool = True
    mode: str = "generative"  # extractive | generative (retrieval/answering.py)
    grounded: bool = True  # False: a generated answer failed its check and was replaced
    unsupported: list[str] = field(default_factory=list)  # what the check found unsupported
    evidence: str | None = None  # extractive: the sentence that holds the quoted span

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "found": self.found,
            "answer_mode": self.mode,
            "grounded": self.grounded,
            "unsupported": list(self.unsupported),
            "evidence": self.evidence,
            "sources": [h.as_source() for h in self.sources],
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
        }


def to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj
