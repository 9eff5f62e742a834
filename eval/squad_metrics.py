"""Exact match and token F1 by the SQuAD v1.1 rules, and answer-contains-reference.

English: lower-case, remove punctuation, remove the articles a/an/the, collapse white space
(the official ``normalize_answer``); tokens are the white-space words. Chinese (a text with a
CJK ideograph): punctuation removed and each CJK character is one token, runs of Latin letters
or digits one token each (as the CMRC 2018 evaluation segments text). EM compares the token
sequences. With several references the best score is taken (SQuAD's max over ground truths).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

from kbqa.retrieval.lang import is_cjk

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_OR_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+", re.UNICODE)


def _has_cjk(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation (English)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    if _has_cjk(text):
        return _CJK_OR_WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return normalize_answer(text).split()


def exact_match(prediction: str, reference: str) -> float:
    return float(answer_tokens(prediction) == answer_tokens(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_reference(prediction: str, reference: str) -> float:
    """1.0 when the normalised reference appears, as whole tokens, inside the normalised answer."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not ref:
        return 0.0
    n = len(ref)
    return float(any(pred[i : i + n] == ref for i in range(len(pred) - n + 1)))


def best_over_references(metric, prediction: str, references: Sequence[str]) -> float:
    if not references:
        raise ValueError("no reference answers to score against")
    return max(metric(prediction, r) for r in references)


def squad_scores(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Flat dict: ``em``, ``f1``, ``contains`` (each the max over references)."""
    return {
        "em": best_over_references(exact_match, prediction, references),
        "f1": best_over_references(token_f1, prediction, references),
        "contains": best_over_references(contains_reference, prediction, references),
    }
