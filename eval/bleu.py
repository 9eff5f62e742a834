"""Sentence BLEU in the two flavours people compare against.

- :func:`bleu_per_order_evalscope` -- evalscope ``general_qa`` (``bleu_ngram_one_sample``):
  BLEU-n is NLTK ``sentence_bleu`` with weight 1 on order n alone (not the cumulative
  geometric mean) and no smoothing. Tokens: jieba for a text containing a Chinese character,
  else NLTK's Treebank word tokenizer (evalscope calls ``word_tokenize``, whose sentence splitter
  needs downloaded Punkt data; we split sentences at ``. ! ?`` followed by white space instead,
  then use the same ``NLTKWordTokenizer``, which needs no data). Case and punctuation are kept.
- :func:`bleu4_llamafactory` -- LLaMA-Factory ``ComputeSimilarity``: cumulative BLEU-4
  (weights 1/4 each) with NLTK smoothing method 3, over *characters* (``list(text)``, spaces
  included, for every language).

Both are computed here exactly as NLTK 3.x ``sentence_bleu`` computes them (pinned by the tests):
modified n-gram precision with clipped counts, brevity penalty exp(1 - r/c) when c <= r,
0 when no unigram matches, and an order without matches counted as ``sys.float_info.min``
when unsmoothed (so its per-order score is about 1e-308, reported as is).
Scores are in [0, 1].
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from kbqa.eval.text_metrics import contains_chinese, jieba_cut

BLEU_KEYS = ("bleu-1", "bleu-2", "bleu-3", "bleu-4")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1)
def _treebank():
    try:
        from nltk.tokenize import NLTKWordTokenizer
    except ImportError as exc:
        raise ImportError("BLEU needs nltk: pip install 'kbqa[eval]'") from exc
    return NLTKWordTokenizer()


def english_word_tokens(text: str) -> list[str]:
    """NLTK Treebank word tokens, sentence by sentence (no downloaded data needed)."""
    tok = _treebank()
    return [t for sentence in _SENTENCE_END.split(text.strip()) if sentence for t in tok.tokenize(sentence)]


def evalscope_bleu_tokens(text: str) -> list[str]:
    return jieba_cut(text) if contains_chinese(text) else english_word_tokens(text)


def _modified_precision(ref: Sequence[str], hyp: Sequence[str], n: int) -> tuple[int, int]:
    hyp_counts = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
    ref_counts = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
    clipped = sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
    return clipped, max(1, sum(hyp_counts.values()))


def brevity_penalty(ref_len: int, hyp_len: int) -> float:
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


def sentence_bleu(ref: Sequence[str], hyp: Sequence[str], weights: Sequence[float], *, smooth_method3: bool = False) -> float:
    """NLTK-compatible sentence BLEU against one reference."""
    counts = [_modified_precision(ref, hyp, n) for n in range(1, len(weights) + 1)]
    if counts[0][0] == 0:
        return 0.0
    precisions: list[float] = []
    k = 1
    for num, den in counts:
        if num:
            precisions.append(num / den)
        elif smooth_method3:
            precisions.append(1 / (2**k * den))
            k += 1
        else:
            precisions.append(sys.float_info.min)
    s = math.fsum(w * math.log(p) for w, p in zip(weights, precisions) if p > 0)
    return brevity_penalty(len(ref), len(hyp)) * math.exp(s)


def bleu_per_order_evalscope(prediction: str, reference: str) -> dict[str, float]:
    """evalscope's BLEU-1..4: keys ``bleu-1`` .. ``bleu-4``, each order scored alone, unsmoothed."""
    hyp, ref = evalscope_bleu_tokens(prediction), evalscope_bleu_tokens(reference)
    out = {}
    for n in range(1, 5):
        weights = [0.0] * 4
        weights[n - 1] = 1.0
        out[f"bleu-{n}"] = sentence_bleu(ref, hyp, weights)
    return out


def bleu4_llamafactory(prediction: str, reference: str) -> float:
    """LLaMA-Factory's ``bleu-4``: cumulative character BLEU-4, smoothing method 3 (in [0, 1];
    LLaMA-Factory prints it times 100)."""
    return sentence_bleu(list(reference), list(prediction), (0.25, 0.25, 0.25, 0.25), smooth_method3=True)
