"""A LlamaIndex retriever over a KnowledgeBase (`pip install 'kbqa[llamaindex]'`), so it plugs
into LlamaIndex query engines: each hit is a `NodeWithScore` whose `TextNode` has the chunk's
id, text and citation metadata (source, page, chunk); `k` and `mode` pass through."""

from __future__ import annotations

from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode


class KnowledgeBaseLlamaRetriever(BaseRetriever):
    def __init__(self, kb: Any, k: int | None = None, mode: str | None = None):  # k None: the settings' retrieval.k
        super().__init__()
        self.kb, self.k, self.mode = kb, k, mode

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [
            NodeWithScore(
                node=TextNode(id_=hit.chunk.id, text=hit.chunk.text, metadata={"source": hit.chunk.source, "page": hit.chunk.page, "chunk": hit.chunk.chunk}),
                score=float(hit.score),
            )
            for hit in self.kb.retrieve(query_bundle.query_str, self.k, self.mode)
        ]
