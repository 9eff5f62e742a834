"""Pick an embedder backend from settings. Heavy imports stay inside each backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kbqa.retrieval.config import EmbedderSettings

if TYPE_CHECKING:
    from kbqa.retrieval.protocols import Embedder


def model_name(backend: str, model: str) -> str:
    """The model a backend really loads: what a knowledge base records in kb.json. The "use"
    and "e5" backends have one model each, whatever `embedder.model` says."""
    if backend == "use":
        from kbqa.retrieval.embedders.use import NAME

        return NAME
    if backend == "e5":
        from kbqa.retrieval.embedders.e5 import NAME

        return NAME
    return model


_DEFAULTS = EmbedderSettings()  # the settings' defaults (retrieval/config.py)


def make_embedder(
    backend: str, model: str, device: str = _DEFAULTS.device, batch_size: int = _DEFAULTS.batch_size, precision: str = _DEFAULTS.precision
) -> "Embedder":
    if backend == "sentence-transformers":
        from kbqa.retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, precision=precision)
    if backend == "use":
        from kbqa.retrieval.embedders.use import UniversalSentenceEncoder

        return UniversalSentenceEncoder(batch_size=batch_size)
    if backend == "e5":
        from kbqa.retrieval.embedders.e5 import E5Embedder

        return E5Embedder(batch_size=min(batch_size, 32))
    raise ValueError(f"embedder.backend: unknown backend {backend!r} (choose sentence-transformers, use or e5)")
