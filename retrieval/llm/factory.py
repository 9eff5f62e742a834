"""Pick an LLM backend from settings. Heavy imports stay inside each backend module."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrieval.protocols import LLM


def make_llm(settings: Any, cache_dir: Path) -> "LLM":
    """`settings` is an `LLMSettings` (duck-typed so that retrieval/ does not import app/)."""
    backend = settings.backend
    if backend == "transformers":
        from retrieval.llm.transformers import TransformersLLM

        return TransformersLLM(settings.model, device=settings.device, adapter=settings.adapter, cache_dir=cache_dir)
    if backend == "openai":
        from retrieval.llm.openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(settings.model, base_url=settings.base_url, api_key=settings.api_key, timeout_s=settings.timeout_s)
    if backend == "vllm":
        from retrieval.llm.vllm import VLLMLLM

        return VLLMLLM(settings.model, adapter=settings.adapter)
    raise ValueError(f"llm.backend: unknown backend {backend!r} (choose transformers, openai or vllm)")
