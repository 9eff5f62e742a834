"""Retrieval settings that depend on the embedder, set by measurement for each one.

Cosine similarities live on different scales: MiniLM's unrelated passages score near 0.1,
e5's near 0.75 (its vectors share a large common direction). A relevance floor chosen for one
embedder means nothing for another, so `retrieval.min_score` defaults to the embedder's own
floor from this table (bench/results/retrieval_fusion_sweep_e5.md shows how each was chosen:
the cosine that best separates a set's own questions from other sets' off-topic ones).
An embedder missing from the table gets MiniLM's values; set `retrieval.min_score` to override.
"""
from __future__ import annotations

DEFAULT_FLOOR = 0.25  # all-MiniLM-L6-v2 (bench/results/retrieval_quality.md)
DENSE_FLOORS = {
    "all-MiniLM-L6-v2": DEFAULT_FLOOR,
    "use-multilingual-v3": DEFAULT_FLOOR,
}


def dense_floor(embedder_name: str) -> float:
    """The relevance floor for the top dense cosine of `embedder_name`'s vectors."""
    return DENSE_FLOORS.get(embedder_name, DEFAULT_FLOOR)
