"""Retrieval settings that depend on the embedder, set by measurement for each one.

Cosine similarities live on different scales: MiniLM's unrelated passages score near 0.2,
e5's near 0.8 (its vectors share a large common direction). A relevance floor or a fusion weight
chosen for one embedder means nothing for another, so `retrieval.min_score`, `dense_weight` and
`adapt` (and `cross_language_min_score`, the floor for a match in another language when
`language_centering` is on) default to the embedder's own values from this table
(bench/results/retrieval_fusion_sweep_e5.md, `python bench/retrieval_fusion_sweep.py --runs
squad:e5,cmrc:e5,squad:sentence-transformers,cmrc:sentence-transformers --floors --out
retrieval_fusion_sweep_e5`). An embedder missing from the table gets MiniLM's values; a
setting given explicitly wins.
"""

from __future__ import annotations

# cross_language_min_score None: not measured, no match in another language passes on its own
MINILM = {"min_score": 0.25, "dense_weight": 0.5, "adapt": 0.5, "cross_language_min_score": None}  # bench/results/retrieval_fusion_sweep.md
CALIBRATION = {
    "all-MiniLM-L6-v2": MINILM,
    "use-multilingual-v3": MINILM,
    # e5: floor = the top-1 cosine that best separates a set's own questions from other sets'
    # questions: 0.84 on SQuAD (87% kept, 98% rejected), 0.82 on CMRC (100% / 100%); the higher,
    # since Chinese off-topic questions on the sample KB reach 0.833 with no keyword match.
    # Fusion: w 0.7 without adaptation was best on both (hybrid hit@1 SQuAD 0.819, CMRC 0.986).
    # cross-language floor 0.78 (raw cosine of a top chunk in the other language; centering on): on
    # the sample KB it finds 83% / 53% of data/crosslingual_qa.jsonl (zh->en / en->zh) and lets no
    # more off-topic questions through than the usual floor alone (bench/results/crosslingual_study.md)
    "multilingual-e5-small": {"min_score": 0.84, "dense_weight": 0.7, "adapt": 0.0, "cross_language_min_score": 0.78},
}


def calibration(embedder_name: str) -> dict[str, float | None]:
    """min_score, dense_weight, adapt and cross_language_min_score for `embedder_name`'s vectors."""
    return dict(CALIBRATION.get(embedder_name, MINILM))
