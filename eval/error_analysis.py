"""Why an answer failed: the gold source was not retrieved (retrieval miss) or was retrieved
and the answer is still wrong (generation miss).

An answer counts as correct when the short answer (or reference) is contained in it, or its
token F1 is at least `F1_CORRECT`. The gold source is known when the QA line names one
(``source``: a document path or file name) or, for SQuAD-style data, the gold paragraph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from kbqa.eval.retrieval_metrics import dedupe, hit_at_k, mrr_at_k, ndcg_at_k

F1_CORRECT = 0.5
OUTCOMES = ("correct", "not found", "retrieval miss", "generation miss", "wrong (gold unknown)")


def same_source(retrieved: str, gold: str) -> bool:
    """A retrieved chunk's source path matches the gold source: equal, equal file name or
    file stem (paragraph ids are stored as ``<id>.txt``), or a path suffix."""
    if not retrieved or not gold:
        return False
    r, g = PurePath(retrieved.replace("\\", "/")), PurePath(gold.replace("\\", "/"))
    return retrieved == gold or r.name == g.name or r.stem == gold or str(r).endswith("/" + str(g))


def document_ranking(sources: Sequence[str]) -> list[str]:
    """Retrieved chunk sources -> documents, best rank first (chunks deduplicated)."""
    return dedupe(sources)


def gold_rank(sources: Sequence[str], gold: str | None) -> int | None:
    """1-based rank of the gold document among the retrieved documents; 0 if absent; None if unknown."""
    if not gold:
        return None
    for i, src in enumerate(document_ranking(sources), start=1):
        if same_source(src, gold):
            return i
    return 0


def retrieval_scores(sources: Sequence[str], gold: str | None, k: int) -> dict[str, float]:
    """hit@1, hit@k, MRR@k and nDCG@k of the gold document (empty dict when the gold is unknown)."""
    if not gold:
        return {}
    docs = document_ranking(sources)
    matched = [d for d in docs if same_source(d, gold)][:1]
    return {
        "hit@1": hit_at_k(docs, matched, 1),
        f"hit@{k}": hit_at_k(docs, matched, k),
        f"mrr@{k}": mrr_at_k(docs, matched, k),
        f"ndcg@{k}": ndcg_at_k(docs, matched, k),
    }


def is_correct(scores: Mapping[str, float]) -> bool:
    return scores.get("contains", 0.0) >= 1.0 or scores.get("f1", 0.0) >= F1_CORRECT


def answer_is_correct(prediction: str, references: Sequence[str]) -> bool:
    """`is_correct` on a bare answer (no citation markers): it contains a reference, or its
    SQuAD F1 (characters for Chinese) with one is at least `F1_CORRECT`."""
    from kbqa.eval.squad_metrics import squad_scores

    return bool(prediction.strip() and references) and is_correct(squad_scores(prediction, references))


def is_not_found(answer: str, found: bool | None = None) -> bool:
    """The answer says the knowledge base lacks it: the service said so (`found` False), or the
    text is one of the "not found" sentences."""
    from kbqa.retrieval.citations import strip_citations
    from kbqa.retrieval.prompts import NOT_FOUND

    return found is False or strip_citations(answer).strip() in NOT_FOUND.values()


def answer_outcome_scores(scores: Mapping[str, float], not_found: bool) -> dict[str, float]:
    """``not_found`` (abstained on an answerable question) and ``wrong`` (neither correct nor "not found"), 0 or 1."""
    return {"not_found": float(not_found), "wrong": float(not not_found and not is_correct(scores))}


def outcome(scores: Mapping[str, float], rank: int | None) -> str:
    if is_correct(scores):
        return "correct"
    if scores.get("not_found"):
        return "not found"
    if rank is None:
        return "wrong (gold unknown)"
    return "retrieval miss" if rank == 0 else "generation miss"


def outcome_counts(outcomes: Sequence[str]) -> dict[str, int]:
    counts = Counter(outcomes)
    return {o: counts.get(o, 0) for o in OUTCOMES}


def worst_items(records: Sequence[Mapping], metric: str, n: int = 10) -> list[Mapping]:
    """The `n` records with the lowest ``scores[metric]`` (ties: original order)."""
    return sorted(records, key=lambda r: r["scores"].get(metric, 0.0))[:n]
