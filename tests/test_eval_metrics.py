"""Metrics pinned to the reference implementations (rouge-chinese, rouge-score, NLTK, sacrebleu)
on fixed inputs, and to values worked out by hand."""

from __future__ import annotations

import math

import pytest

from kbqa.eval.bleu import bleu4_llamafactory, bleu_per_order_evalscope, english_word_tokens, evalscope_bleu_tokens, sentence_bleu
from kbqa.eval.scoring import ALL_KEYS, aggregate, score_answer
from kbqa.eval.squad_metrics import contains_reference, exact_match, normalize_answer, squad_scores, token_f1
from kbqa.eval.text_metrics import evalscope_rouge_text, jieba_cut, lcs_length, rouge_evalscope, rouge_from_tokens, rouge_llamafactory

PAIRS = [
    ("It opened to the public on 14 June 1911.", "The railway opened to the public on 14 June 1911, after years of work."),
    ("The line is narrow gauge, 800 mm.", "The track gauge is 800 mm."),
    ("the cat sat on the mat the cat", "the cat is on the mat"),
    ("是木星", "太阳系中最大的行星是木星"),
    ("兰山铁路于1911年6月14日正式通车。", "铁路在1911年6月14日通车，全长四十二公里。"),
    ("Sorry, I do not know.", "It opened in 1911."),
    ("蒸汽机车 No. 7 每天运行两次。", "七号蒸汽机车每天运行。"),
]


# ---- ROUGE -------------------------------------------------------------------------------
@pytest.mark.parametrize("pred,ref", PAIRS)
def test_rouge_evalscope_matches_rouge_chinese(pred, ref):
    from rouge_chinese import Rouge

    expected = Rouge().get_scores(evalscope_rouge_text(pred), evalscope_rouge_text(ref))[0]
    got = rouge_evalscope(pred, ref)
    for n in ("1", "2", "l"):
        for s in ("p", "r", "f"):
            assert got[f"rouge-{n}-{s}"] == pytest.approx(expected[f"rouge-{n}"][s], abs=1e-12), (n, s)


@pytest.mark.parametrize("pred,ref", PAIRS)
def test_rouge_llamafactory_matches_rouge_chinese_on_jieba_tokens(pred, ref):
    from rouge_chinese import Rouge

    expected = Rouge().get_scores(" ".join(jieba_cut(pred)), " ".join(jieba_cut(ref)))[0]
    got = rouge_llamafactory(pred, ref)
    for n in ("1", "2", "l"):
        assert got[f"rouge-{n}"] == pytest.approx(expected[f"rouge-{n}"]["f"], abs=1e-12)


def test_rouge_l_matches_rouge_score_lcs():
    """ROUGE-L (one sentence) is the same LCS statistic rouge-score computes; ROUGE-1 differs only in
    that rouge-chinese counts distinct unigrams, so compare on a text without repeats."""
    from rouge_score import rouge_scorer

    class Split:
        def tokenize(self, text):
            return text.split()

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], tokenizer=Split())
    pred, ref = "a b c d e", "a x c e f g"
    expected = scorer.score(ref, pred)  # rouge-score takes (target, prediction)
    got = rouge_from_tokens(pred.split(), ref.split())
    assert got["rouge-l-p"] == pytest.approx(expected["rougeL"].precision)
    assert got["rouge-l-r"] == pytest.approx(expected["rougeL"].recall)
    assert got["rouge-1-p"] == pytest.approx(expected["rouge1"].precision)
    assert got["rouge-1-r"] == pytest.approx(expected["rouge1"].recall)


def test_rouge_hand_computed():
    # hyp: the cat sat on the mat (distinct unigrams 5), ref: the cat is on the mat (distinct 5)
    got = rouge_from_tokens("the cat sat on the mat".split(), "the cat is on the mat".split())
    assert got["rouge-1-p"] == pytest.approx(4 / 5)  # the cat on mat
    assert got["rouge-1-r"] == pytest.approx(4 / 5)
    # bigrams hyp {the cat, cat sat, sat on, on the, the mat}; ref {the cat, cat is, is on, on the, the mat}
    assert got["rouge-2-p"] == pytest.approx(3 / 5)
    assert got["rouge-l-r"] == pytest.approx(5 / 6)  # LCS: the cat on the mat
    assert lcs_length("abcbdab", "bdcaba") == 4


def test_rouge_empty_scores_zero():
    assert all(v == 0.0 for v in rouge_evalscope("", "something").values())
    assert all(v == 0.0 for v in rouge_evalscope("something", "   ").values())


def test_evalscope_rouge_tokenization():
    # English is split on white space only (case and punctuation kept), Chinese is cut with jieba
    assert evalscope_rouge_text("Opened 1911.") == "Opened 1911."
    assert evalscope_rouge_text("太阳系中最大的行星").split() == [w for w in jieba_cut("太阳系中最大的行星") if w.strip()]


# ---- BLEU --------------------------------------------------------------------------------
@pytest.mark.parametrize("pred,ref", PAIRS)
def test_bleu_evalscope_matches_nltk_per_order(pred, ref):
    from nltk.translate.bleu_score import sentence_bleu as nltk_bleu

    hyp, refs = evalscope_bleu_tokens(pred), [evalscope_bleu_tokens(ref)]
    got = bleu_per_order_evalscope(pred, ref)
    with _quiet():
        for n in range(1, 5):
            weights = tuple(1.0 if i == n - 1 else 0.0 for i in range(4))
            assert got[f"bleu-{n}"] == pytest.approx(nltk_bleu(refs, hyp, weights=weights), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("pred,ref", PAIRS)
def test_bleu4_llamafactory_matches_nltk_method3_on_characters(pred, ref):
    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import sentence_bleu as nltk_bleu

    expected = nltk_bleu([list(ref)], list(pred), smoothing_function=SmoothingFunction().method3)
    assert bleu4_llamafactory(pred, ref) == pytest.approx(expected, rel=1e-9)


def test_bleu_matches_sacrebleu_without_smoothing():
    """Cumulative BLEU-4 on pre-tokenized text equals sacrebleu's (tokenize='none', no smoothing)."""
    import sacrebleu

    ref = "the quick brown fox jumps over the lazy dog near the river bank"
    hyp = "the quick brown fox jumped over the lazy dog near the bank"
    expected = sacrebleu.sentence_bleu(hyp, [ref], tokenize="none", smooth_method="none").score / 100
    assert sentence_bleu(ref.split(), hyp.split(), (0.25,) * 4) == pytest.approx(expected, rel=1e-9)


def test_bleu_hand_computed():
    # hyp "a b c d", ref "a b c e": p1 = 3/4, p2 = 2/3, same length so BP = 1
    assert sentence_bleu("a b c e".split(), "a b c d".split(), (1, 0, 0, 0)) == pytest.approx(0.75)
    assert sentence_bleu("a b c e".split(), "a b c d".split(), (0, 1, 0, 0)) == pytest.approx(2 / 3)
    # clipped counts: "the the the" vs "the cat": p1 = 1/3; hyp longer -> BP 1
    assert sentence_bleu(["the", "cat"], ["the"] * 3, (1, 0, 0, 0)) == pytest.approx(1 / 3)
    # brevity penalty: hyp "a" vs ref "a b": p1 = 1, BP = exp(1 - 2/1)
    assert sentence_bleu(["a", "b"], ["a"], (1, 0, 0, 0)) == pytest.approx(math.exp(-1))
    # no unigram match -> 0
    assert sentence_bleu(["x"], ["y"], (0.25,) * 4) == 0.0
    # method3: hyp "abcd" ref "abce" chars: p1 3/4, p2 2/3, p3 1/2, p4 0 -> 1/(2*1)
    expected = math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(1 / 2)) / 4)
    assert bleu4_llamafactory("abcd", "abce") == pytest.approx(expected)


def test_english_word_tokens_like_word_tokenize():
    assert english_word_tokens("It opened in 1911. It wasn't late!") == ["It", "opened", "in", "1911", ".", "It", "was", "n't", "late", "!"]


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


# ---- SQuAD EM / F1 -----------------------------------------------------------------------
def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0
    # pred tokens [denver, broncos, won], ref [denver, broncos]: P 2/3, R 1 -> F1 0.8
    assert token_f1("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    assert token_f1("nothing here", "Denver Broncos") == 0.0
    assert contains_reference("It was the Denver Broncos, in 2016.", "Denver Broncos") == 1.0
    assert contains_reference("Denverite", "Denver") == 0.0
    assert squad_scores("Broncos", ["Denver Broncos", "Broncos"]) == {"em": 1.0, "f1": 1.0, "contains": 1.0}


def test_squad_chinese_characters():
    # characters: 1911年 -> [1911, 年]; pred 于1911年通车 -> [于, 1911, 年, 通, 车]
    assert token_f1("于1911年通车", "1911年") == pytest.approx(2 * (2 / 5) * 1 / (2 / 5 + 1))
    assert exact_match("1911年。", "1911年") == 1.0
    assert contains_reference("铁路于1911年通车", "1911年") == 1.0


def test_score_answer_keys_and_aggregate():
    s = score_answer("It opened on 14 June 1911.", ["It opened to the public on 14 June 1911."], ["14 June 1911"])
    assert tuple(s) == ALL_KEYS
    assert s["contains"] == 1.0 and 0 < s["rouge-l-r"] < 1
    means = aggregate([{"a": 1.0, "b": 0.0}, {"a": 0.0}])
    assert means == {"a": 0.5, "b": 0.0}
    with pytest.raises(ValueError):
        score_answer("x", [])
