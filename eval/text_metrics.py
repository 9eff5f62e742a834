"""ROUGE-1/2/L (precision, recall, F), computed the way evalscope and LLaMA-Factory compute them.

Both tools call ``rouge_chinese.Rouge().get_scores(hypothesis, reference)`` on space-joined
tokens; this module re-implements that computation as pure functions (the tests pin it to
``rouge-chinese`` and ``rouge-score``):

- ROUGE-N counts *distinct* n-grams (sets, not multisets) over all the text's tokens;
  P = overlap / distinct hypothesis n-grams, R = overlap / distinct reference n-grams.
- ROUGE-L is the longest common subsequence of the two token lists;
  P = LCS / hypothesis tokens, R = LCS / reference tokens.
- F = 2PR / (P + R + 1e-8), as rouge-chinese.

Tokenization:

- evalscope ``general_qa`` (:func:`rouge_evalscope`): a text that contains a Chinese
  character (U+4E00..U+9FA5) is cut with jieba; any other text is split on whitespace
  as it is (case and punctuation kept: "1911." is one token).
- LLaMA-Factory (:func:`rouge_llamafactory`): every text is cut with jieba (English words and
  punctuation become separate tokens, case kept); only F is reported there.

An empty hypothesis or reference scores 0 (rouge-chinese raises; evalscope then drops the item,
LLaMA-Factory scores 0).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache

ROUGE_KEYS = tuple(f"rouge-{n}-{s}" for n in ("1", "2", "l") for s in ("p", "r", "f"))


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def contains_chinese(text: str) -> bool:
    """evalscope's test: any character in U+4E00..U+9FA5."""
    return any("\u4e00" <= ch <= "\u9fa5" for ch in text)


def jieba_cut(text: str) -> list[str]:
    """``list(jieba.cut(text))`` (default mode, HMM on); whitespace pieces are kept."""
    return list(_jieba().cut(text))


def _cut_sentences(text: str) -> list[str]:
    """rouge-chinese's sentence cutter (its tokens are then split on whitespace per sentence)."""
    text = re.sub(r"([。！？\?])([^”’])", r"\1\n\2", text)
    text = re.sub(r"(\.{6})([^”’])", r"\1\n\2", text)
    text = re.sub(r"(\…{2})([^”’])", r"\1\n\2", text)
    text = re.sub(r"([。！？\?][”’])([^，。！？\?])", r"\1\n\2", text)
    return text.rstrip().split("\n")


def rouge_tokens(spaced_text: str) -> list[str]:
    """The tokens rouge-chinese scores for a space-joined text."""
    return [w for sentence in _cut_sentences(spaced_text) for w in sentence.split()]


def evalscope_rouge_text(text: str) -> str:
    """What evalscope passes to rouge-chinese: jieba-cut and space-joined if Chinese, else as is."""
    return " ".join(jieba_cut(text)) if contains_chinese(text) else text


def llamafactory_rouge_text(text: str) -> str:
    return " ".join(jieba_cut(text))


def _ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _prf(overlap: int, hyp_count: int, ref_count: int) -> tuple[float, float, float]:
    p = overlap / hyp_count if hyp_count else 0.0
    r = overlap / ref_count if ref_count else 0.0
    f = 2.0 * ((p * r) / (p + r + 1e-8))
    return p, r, f


def rouge_from_tokens(hyp: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L P/R/F of hypothesis tokens against reference tokens (rouge-chinese rules)."""
    out: dict[str, float] = {}
    if not hyp or not ref:
        return {k: 0.0 for k in ROUGE_KEYS}
    for n in (1, 2):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        p_, r_, f_ = _prf(len(h & r), len(h), len(r))
        out.update({f"rouge-{n}-p": p_, f"rouge-{n}-r": r_, f"rouge-{n}-f": f_})
    p_, r_, f_ = _prf(lcs_length(ref, hyp), len(hyp), len(ref))
    out.update({"rouge-l-p": p_, "rouge-l-r": r_, "rouge-l-f": f_})
    return out


def rouge_evalscope(prediction: str, reference: str) -> dict[str, float]:
    """evalscope ``general_qa`` ROUGE: keys ``rouge-{1,2,l}-{p,r,f}`` in [0, 1]."""
    return rouge_from_tokens(rouge_tokens(evalscope_rouge_text(prediction)), rouge_tokens(evalscope_rouge_text(reference)))


def rouge_llamafactory(prediction: str, reference: str) -> dict[str, float]:
    """LLaMA-Factory ``ComputeSimilarity`` ROUGE F: keys ``rouge-{1,2,l}`` in [0, 1]
    (LLaMA-Factory prints these times 100)."""
    scores = rouge_from_tokens(rouge_tokens(llamafactory_rouge_text(prediction)), rouge_tokens(llamafactory_rouge_text(reference)))
    return {f"rouge-{n}": scores[f"rouge-{n}-f"] for n in ("1", "2", "l")}
