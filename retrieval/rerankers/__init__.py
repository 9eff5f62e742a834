"""Rerankers (`retrieval.rerank`): a second stage that re-scores the fused candidates.

`make_reranker("none")` is None (the default: no rerank); anything else is the path of a local
sentence-transformers `CrossEncoder` folder (`retrieval/rerankers/cross_encoder.py`). No reranker
weights ship with kbqa; see the README's Retrieval section for plugging one in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kbqa.retrieval.protocols import Reranker

OFF = ("", "none", "off")


def make_reranker(spec: str | None, device: str = "auto", batch_size: int = 32) -> "Reranker | None":
    if spec is None or str(spec).strip().lower() in OFF:
        return None
    from kbqa.retrieval.rerankers.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(spec), device=device, batch_size=batch_size)
