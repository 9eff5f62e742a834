"""Ingestion's typed settings: the ``[chunking]`` and ``[ingest]`` sections of the one settings
tree (`kbqa.app.settings.Settings` composes them). Each default is declared here only:
`ingest.pipeline.Ingestor` and the parser workers take theirs from these models. A new ingestion
setting goes into its section here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kbqa.retrieval.config import Section

__all__ = ["ChunkingSettings", "IngestSettings"]


class ChunkingSettings(Section):
    """How documents are cut into chunks (ingest/split.py); kept in kb.json at the first ingest."""

    chunk_tokens: int = Field(200, ge=16, description="chunk size, in the embedder's tokens")
    overlap_tokens: int = Field(32, ge=0)


class IngestSettings(Section):
    """How files are parsed, cleaned, embedded and stored (ingest/pipeline.py, ingest/workers.py)."""

    workers: int = Field(1, ge=0, description="parser processes running ahead of embedding; 0 = parse inline, no time limit")
    file_timeout_s: float = Field(300.0, gt=0, description="a file whose parsing takes longer fails; the batch goes on")
    max_file_mb: float = Field(200.0, gt=0, description="larger files fail with a clear reason")
    lock_timeout_s: float = Field(600.0, ge=0, description="how long a second writer waits for the knowledge base's lock")
    batch_chunks: int = Field(256, ge=1, description="chunks embedded and stored per batch")
    redact_pii: bool = False  # replace e-mail addresses, ID and phone numbers before storing (ingest/redact.py)
    strip_injections: bool = False  # replace instruction-like text ("ignore previous instructions ...") before storing
    # keep chunk vectors in DIR/embed_cache.sqlite so that a changed file embeds only its new chunk texts (ingest/embed_cache.py)
    reuse_embeddings: bool = True
    ocr: Literal["auto", "always", "never"] = Field(
        "auto", description="OCR (ingest/page_ocr.py): auto reads a page with OCR when its text layer is missing, too small or implausible"
    )
    ocr_dpi: int = Field(
        200,
        ge=72,
        le=600,
        description="resolution at which PDF pages are rendered for OCR (at 150 the recogniser drops spaces between English words of small print)",
    )
