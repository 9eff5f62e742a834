"""The core of kbqa: types, protocols, embedders, stores, BM25, retriever, prompts, LLM backends.

Nothing heavy is imported here; backends import their libraries on first use.
"""

from kbqa.retrieval.types import Chunk, Hit

__all__ = ["Chunk", "Hit"]
