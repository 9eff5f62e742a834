"""Does the reader's best span answer the question? A small logistic model over its evidence.

The span score alone (start and end logits against the window's no-answer logits) sees one
window at a time. Here it is joined by what the reader's other outputs and the question's words
say about the whole set of blocks:

- ``span_score``: the best span's score;
- ``margin``: how far it is ahead of the best span of any other block;
- ``question_in_passage``: the share of the question's terms (BM25 tokens: stemmed English
  words, jieba words and character pairs for Chinese) found in the answer's block;
- ``question_in_sentence``: the same for the sentence that holds the answer, the answer left out;
- ``question_in_answer``: the share found in the answer itself (an answer that repeats the
  question rarely answers it);
- ``agreement``: how many other blocks give an overlapping answer with a score close to it;
- ``log_length``: the answer's length in characters, log(1 + n).

The weights are fitted per question language on the reader's validation items by
``finetune.reader_calibrate`` and stored in the reader's config (``answerability``); the
threshold is then on the model's log-odds. This module only scores.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FEATURES = ("span_score", "margin", "question_in_passage", "question_in_sentence", "question_in_answer", "agreement", "log_length")
NO_SPAN = -30.0  # the span score given to a set of blocks in which the reader found no span
CLOSE = 5.0  # an other block's answer within this much of the best one counts towards agreement
_DROP = re.compile(r"[\W_]+", re.UNICODE)


def answer_key(text: str) -> str:
    """`text` lower-cased (NFKC), without punctuation or white space: for comparing answers."""
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


def features(question: str, passages: Sequence[str], spans: Sequence) -> dict[str, float]:
    """The evidence for the best of `spans` (the reader's best span per passage, best first:
    objects with passage, start, end, text and score)."""
    if not spans:
        return dict.fromkeys(FEATURES, 0.0) | {"span_score": NO_SPAN}
    from kbqa.retrieval.answering import evidence_sentence
    from kbqa.retrieval.tokenize import bm25_tokens

    best = spans[0]
    passage = passages[best.passage]
    terms = set(bm25_tokens(question))
    n = max(1, len(terms))
    answer = set(bm25_tokens(best.text))
    sentence = set(bm25_tokens(evidence_sentence(passage, best.start, best.end)))
    key = answer_key(best.text)
    agree = 0
    for other in spans[1:]:
        k = answer_key(other.text)
        agree += bool(k and key and (k in key or key in k) and other.score > best.score - CLOSE)
    return {
        "span_score": float(best.score),
        "margin": float(best.score - spans[1].score) if len(spans) > 1 else 20.0,
        "question_in_passage": len(terms & set(bm25_tokens(passage))) / n,
        "question_in_sentence": len(terms & (sentence - answer)) / n,
        "question_in_answer": len(terms & answer) / n,
        "agreement": float(agree),
        "log_length": math.log1p(len(best.text)),
    }


@dataclass(frozen=True)
class Answerability:
    """Log-odds that the best span is right: ``bias + sum(weight * (x - mean) / scale)``."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def logit(self, values: Mapping[str, float]) -> float:
        z = sum(w * (values[f] - m) / s for f, m, s, w in zip(self.features, self.mean, self.scale, self.weights))
        return self.bias + z

    def to_config(self) -> dict:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale), "weights": list(self.weights), "bias": self.bias}

    @classmethod
    def from_config(cls, cfg: Mapping, where: str = "answerability") -> Answerability:
        try:
            names = tuple(cfg["features"])
            model = cls(names, tuple(map(float, cfg["mean"])), tuple(map(float, cfg["scale"])), tuple(map(float, cfg["weights"])), float(cfg["bias"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: needs features, mean, scale, weights and bias ({exc})") from exc
        unknown = [f for f in names if f not in FEATURES]
        if unknown or not (len(names) == len(model.mean) == len(model.scale) == len(model.weights)):
            raise ValueError(f"{where}: unknown features {unknown} or lists of different lengths")
        return model
