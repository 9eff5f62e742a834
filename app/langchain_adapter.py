"""A LangChain `BaseRetriever` over a KnowledgeBase, so it plugs into LangChain chains.

Each `Document` has the chunk's id as `id` and its citation (source, page, chunk, score)
as metadata; `k` and `mode` (dense, bm25, hybrid; None = the settings') pass through.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class KnowledgeBaseRetriever(BaseRetriever):
    kb: Any
    k: int | None = None  # None: the settings' retrieval.k
    mode: str | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [
            Document(
                id=hit.chunk.id,
                page_content=hit.chunk.text,
                metadata={"source": hit.chunk.source, "page": hit.chunk.page, "chunk": hit.chunk.chunk, "score": hit.score, "id": hit.chunk.id},
            )
            for hit in self.kb.retrieve(query, self.k, self.mode)
        ]
