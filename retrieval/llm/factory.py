"""Pick an LLM backend from settings. Heavy imports stay inside each backend module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
import logging

if TYPE_CHECKING:
    from kbqa.retrieval.protocols import LLM

log = logging.getLogger(__name__)


def _pick_backend(settings: Any) -> str:
    """``auto``: llama.cpp for the packaged GGUF model when llama_cpp imports and no adapter
    is asked for (llama.cpp runs no peft adapters), else transformers."""
    if settings.backend != "auto":
        return settings.backend
    from kbqa.retrieval.llm.llama_cpp import llama_cpp_available
    from kbqa.retrieval.packaged import PACKAGED_LLM

    no_adapter = settings.adapter in (None, "base") and not getattr(settings, "adapters", None)
    if settings.model == PACKAGED_LLM and no_adapter and llama_cpp_available():
        return "llama_cpp"
    return "transformers"


def make_llm(settings: Any, cache_dir: Path) -> "LLM":
    """`settings` is an `LLMSettings` (duck-typed so that retrieval/ does not import app/)."""
    from kbqa.retrieval.packaged import resolve_adapter

    backend = _pick_backend(settings)
    adapter = resolve_adapter(settings.adapter, settings.model, backend)
    common = dict(
        adapters=getattr(settings, "adapters", None) or {},
        stop=tuple(getattr(settings, "stop", None) or ()),
        max_context_tokens=getattr(settings, "max_context_tokens", None),
    )
    if backend == "llama_cpp":
        if adapter or common["adapters"]:
            log.warning("llm.backend = 'llama_cpp' runs no peft LoRA adapters (they are not GGUF); using the transformers backend for adapter %r", adapter)
            backend = "transformers"
        else:
            from kbqa.retrieval.llm.llama_cpp import LlamaCppLLM

            return LlamaCppLLM(settings.model, stop=common["stop"], max_context_tokens=common["max_context_tokens"])
    if backend == "transformers":
        from kbqa.retrieval.llm.transformers import TransformersLLM

        return TransformersLLM(
            settings.model,
            device=settings.device,
            adapter=adapter,
            cache_dir=cache_dir,
            trust_remote_code=getattr(settings, "trust_remote_code", False),
            precision=getattr(settings, "precision", "auto"),
            **common,
        )
    if backend == "openai":
        from kbqa.retrieval.llm.openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(
            settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            timeout_s=settings.timeout_s,
            max_retries=getattr(settings, "max_retries", 2),
            stop=common["stop"],
            max_context_tokens=common["max_context_tokens"],
            adapter=adapter,
        )
    if backend == "vllm":
        from kbqa.retrieval.llm.vllm import VLLMLLM

        return VLLMLLM(
            settings.model,
            adapter=adapter,
            cache_dir=cache_dir,
            trust_remote_code=getattr(settings, "trust_remote_code", False),
            **common,
        )
    raise ValueError(f"llm.backend: unknown backend {backend!r} (choose auto, transformers, llama_cpp, openai or vllm)")
