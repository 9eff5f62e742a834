"""Per-item scores for one answer and their means over a run.

`score_answer` returns one flat dict per item; `aggregate` averages each key over the items.
Key names: evalscope ``general_qa`` (``rouge-{1,2,l}-{p,r,f}``, ``bleu-1``..``bleu-4``),
LLaMA-Factory (``lf-rouge-{1,2,l}``, ``lf-bleu-4``), SQuAD (``em``, ``f1``) and ``contains``
(the short answer ``key`` when the QA line has one, else the reference, found inside the answer).
All in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kbqa.eval.bleu import bleu4_llamafactory, bleu_per_order_evalscope
from kbqa.eval.squad_metrics import best_over_references, contains_reference, exact_match, token_f1
from kbqa.eval.text_metrics import rouge_evalscope, rouge_llamafactory
from kbqa.retrieval.citations import strip_citations

EVALSCOPE_KEYS = ("bleu-1", "bleu-2", "bleu-3", "bleu-4") + tuple(f"rouge-{n}-{s}" for n in ("1", "2", "l") for s in ("r", "p", "f"))
LLAMAFACTORY_KEYS = ("lf-rouge-1", "lf-rouge-2", "lf-rouge-l", "lf-bleu-4")
QA_KEYS = ("em", "f1", "contains")
ALL_KEYS = QA_KEYS + EVALSCOPE_KEYS + LLAMAFACTORY_KEYS


def score_answer(prediction: str, references: Sequence[str], keys: Sequence[str] | None = None) -> dict[str, float]:
    """All metrics of one answer. ROUGE/BLEU use the first reference (as evalscope and
    LLaMA-Factory do); EM/F1 take the best over all references; ``contains`` checks `keys`
    (short answers) when given, else the references. Citation markers (``[1]``, ``[1][2]``,
    ``【1】``) are removed from the prediction first: ``"eight [1]"`` is an exact match for ``"eight"``."""
    if not references:
        raise ValueError("no reference answer to score against")
    prediction = strip_citations(prediction)
    ref = references[0]
    out: dict[str, float] = {
        "em": best_over_references(exact_match, prediction, references),
        "f1": best_over_references(token_f1, prediction, references),
        "contains": best_over_references(contains_reference, prediction, list(keys) if keys else references),
    }
    out.update(bleu_per_order_evalscope(prediction, ref))
    out.update(rouge_evalscope(prediction, ref))
    out.update({f"lf-{k}": v for k, v in rouge_llamafactory(prediction, ref).items()})
    out["lf-bleu-4"] = bleu4_llamafactory(prediction, ref)
    return {k: out[k] for k in ALL_KEYS}


def aggregate(per_item: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each key over the items (keys missing from an item are skipped for it)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for scores in per_item:
        for k, v in scores.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
