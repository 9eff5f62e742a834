"""LLM backends behind the `LLM` protocol; `make_llm` picks one from settings."""

from kbqa.retrieval.llm.factory import make_llm

__all__ = ["make_llm"]
