"""Flags shared by the commands, and building the one Settings object from them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kbqa.app.settings import Settings, SettingsError

# flag dest -> dotted settings key
SETTING_FLAGS = {
    "k": "retrieval.k",
    "mode": "retrieval.mode",
    "min_score": "retrieval.min_score",
    "embedder": "embedder.model",
    "embedder_backend": "embedder.backend",
    "store": "store.backend",
    "llm_backend": "llm.backend",
    "llm_model": "llm.model",
    "adapter": "llm.adapter",
    "max_new_tokens": "llm.max_new_tokens",
    "device": "llm.device",
    "base_url": "llm.base_url",
    "answer_mode": "answer.mode",
    "ocr": "ingest.ocr",
    "chunk_tokens": "chunking.chunk_tokens",
    "overlap_tokens": "chunking.overlap_tokens",
}


def _default(dotted: str) -> Any:
    """A setting's default, for a flag's help (declared in its part's config module only)."""
    node: Any = Settings()
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def add_settings_flags(parser: argparse.ArgumentParser, *, retrieval: bool = True, llm: bool = True, ingest: bool = False) -> None:
    parser.add_argument("--config", help="TOML settings file (default: $KBQA_CONFIG)")
    if retrieval:
        parser.add_argument("-k", type=int, dest="k", help=f"number of chunks to retrieve (default {_default('retrieval.k')})")
        parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"], help=f"retrieval mode (default {_default('retrieval.mode')})")
        parser.add_argument("--min-score", type=float, dest="min_score", help="relevance floor (dense cosine)")
    if llm:
        parser.add_argument(
            "--llm-backend",
            dest="llm_backend",
            choices=["auto", "transformers", "llama_cpp", "openai", "vllm"],
            help="how the LLM runs: in this process (transformers, vllm) or behind an OpenAI-compatible server (openai)",
        )
        parser.add_argument("--llm-model", dest="llm_model", help="'smollm2' (packaged), a model folder, or a served model name")
        parser.add_argument("--adapter", help="LoRA adapter folder")
        parser.add_argument(
            "--max-new-tokens", dest="max_new_tokens", type=int, help=f"most tokens the LLM generates per answer (default {_default('llm.max_new_tokens')})"
        )
        parser.add_argument("--device", help="auto, cpu or cuda")
        parser.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server URL (llm backend openai)")
        parser.add_argument(
            "--answer-mode",
            dest="answer_mode",
            choices=["auto", "extractive", "generative"],
            help=f"extractive: quote the answering span of a source; generative: the LLM writes it, then it is checked (default {_default('answer.mode')})",
        )
    if ingest:
        parser.add_argument("--embedder", help="'all-MiniLM-L6-v2' (packaged) or a sentence-transformers folder")
        parser.add_argument(
            "--embedder-backend",
            dest="embedder_backend",
            choices=["sentence-transformers", "use", "e5", "auto"],
            help=f"embedder family for a new knowledge base (default {_default('embedder.backend')})",
        )
        parser.add_argument("--store", choices=["chroma", "faiss"], help="vector store for a new knowledge base")
        parser.add_argument(
            "--ocr", choices=["auto", "always", "never"], help="read scans, images and damaged text layers with OCR: auto (when a page needs it), always, never"
        )
        parser.add_argument(
            "--chunk-tokens", dest="chunk_tokens", type=int, help=f"chunk size in the embedder's tokens (default {_default('chunking.chunk_tokens')})"
        )
        parser.add_argument(
            "--overlap-tokens", dest="overlap_tokens", type=int, help=f"tokens shared by consecutive chunks (default {_default('chunking.overlap_tokens')})"
        )


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    from kbqa.app.version import kbqa_version

    parser.add_argument("--version", action="version", version=f"kbqa {kbqa_version()}", help="print the version and exit")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for dest, dotted in SETTING_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[dotted] = value
    try:
        return Settings.load(getattr(args, "config", None), overrides=overrides)
    except SettingsError as exc:
        fail(str(exc))
        raise  # unreachable


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))
