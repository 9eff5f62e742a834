"""The reader's answerability model: its features, its fit, the thresholds chosen on it, and
the reader using it (pure logic on small made-up inputs; the shipped reader is in test_reader.py)."""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass

import pytest

from kbqa.retrieval.readers.answerability import FEATURES, NO_SPAN, Answerability, features
from tests.conftest import ROOT

PASSAGES = [
    "The Cloudgate Tunnel is 1,146 m long. It was completed in 1909.",
    "The summit station has a café. Tickets are sold on board.",
    "兰山铁路于1911年6月14日通车，全长48.6公里。",
]


@dataclass
class S:
    passage: int
    start: int
    end: int
    text: str
    score: float


def span(p: int, text: str, score: float) -> S:
    start = PASSAGES[p].index(text)
    return S(p, start, start + len(text), text, score)


def test_features_read_the_question_terms_around_the_answer():
    f = features("How long is the Cloudgate Tunnel?", PASSAGES, [span(0, "1,146 m", 9.0), span(1, "a café", 2.0)])
    assert set(f) == set(FEATURES)
    assert f["span_score"] == 9.0 and f["margin"] == 7.0
    assert f["question_in_sentence"] > 0.5 and f["question_in_passage"] >= f["question_in_sentence"]
    assert f["question_in_answer"] == 0.0 and f["agreement"] == 0.0
    assert f["log_length"] == pytest.approx(math.log1p(7))
    off = features("How long is the Cloudgate Tunnel?", PASSAGES, [span(1, "a café", 2.0)])
    assert off["question_in_sentence"] == 0.0 and off["margin"] == 20.0  # one block: the margin is capped
    zh = features("兰山铁路什么时候通车？", PASSAGES, [span(2, "1911年6月14日", 6.0), span(2, "1911年", 4.0)])
    assert zh["question_in_sentence"] > 0.5 and zh["agreement"] == 1.0  # an overlapping answer close behind


def test_no_span_is_the_least_confident():
    assert features("q", PASSAGES, []) == dict.fromkeys(FEATURES, 0.0) | {"span_score": NO_SPAN}


def test_fit_separates_right_from_wrong_and_out_of_fold_keeps_groups_apart():
    from kbqa.finetune.answerability_fit import fit, out_of_fold

    rng = random.Random(0)
    rows, labels, groups = [], [], []
    for q in range(120):
        for answerable in (True, False):
            right = answerable and rng.random() < 0.8
            base = dict.fromkeys(FEATURES, 0.0)
            base["span_score"] = rng.gauss(6 if right else 0, 3)
            base["question_in_sentence"] = min(1.0, max(0.0, rng.gauss(0.6 if right else 0.2, 0.2)))
            rows.append(base)
            labels.append(right)
            groups.append(f"q{q}")
    model = fit(rows, labels)
    logits = [model.logit(r) for r in rows]
    pos = [v for v, y in zip(logits, labels) if y]
    neg = [v for v, y in zip(logits, labels) if not y]
    auc = sum((p > n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc > 0.9
    assert model.weights[FEATURES.index("span_score")] > 0 and model.weights[FEATURES.index("question_in_sentence")] > 0
    oof = out_of_fold(rows, labels, groups)
    assert len(oof) == len(rows) and oof != logits  # each from a model that did not see its question
    assert sum((p > n) for p in [v for v, y in zip(oof, labels) if y] for n in [v for v, y in zip(oof, labels) if not y]) / (len(pos) * len(neg)) > 0.85
    again = Answerability.from_config(json.loads(json.dumps(model.to_config())))
    assert again.logit(rows[0]) == pytest.approx(model.logit(rows[0]))


def test_answerability_config_errors_name_the_part():
    with pytest.raises(ValueError, match="answerability: needs features"):
        Answerability.from_config({"features": ["span_score"]})
    bad = {"features": ["shoe_size"], "mean": [0], "scale": [1], "weights": [1], "bias": 0}
    with pytest.raises(ValueError, match="unknown features"):
        Answerability.from_config(bad)


def test_thresholds_are_chosen_on_the_model_and_the_reader_uses_it(tmp_path):
    """choose_thresholds with features saved: the config gets per-language models and thresholds on
    their log-odds; SpanReader.confidence then scores with them (no model is loaded for this)."""
    from kbqa.finetune.reader_calibrate import SCORES, choose_thresholds
    from kbqa.retrieval.readers.span import SpanReader

    folder = tmp_path / "reader"
    shutil.copytree(ROOT / "data" / "readers" / "e5-span-kbqa", folder, ignore=shutil.ignore_patterns("*.safetensors", SCORES))
    rng = random.Random(1)
    saved = []
    for q in range(60):
        for lang in ("en", "zh"):
            for answerable in (True, False):
                score = rng.gauss(8 if answerable else 1, 3)
                f = dict.fromkeys(FEATURES, 0.0) | {"span_score": score, "question_in_sentence": 0.7 if answerable else 0.1 * rng.random()}
                saved.append(
                    {"score": score, "answerable": answerable, "correct": answerable and score > 3, "lang": lang, "question": f"{lang}{q}", "features": f}
                )
    (folder / SCORES).write_text(json.dumps(saved), encoding="utf-8")
    plain = choose_thresholds(folder, answerability=False)
    config = json.loads((folder / "reader_config.json").read_text(encoding="utf-8"))
    assert "answerability" not in config and config["threshold_scale"] == "span score"
    modelled = choose_thresholds(folder)
    config = json.loads((folder / "reader_config.json").read_text(encoding="utf-8"))
    assert set(config["answerability"]) == {"all", "en", "zh"} and config["threshold_scale"].startswith("answerability")
    assert modelled["by_language"]["en"]["rejection"] >= 0.85 and modelled["correct"] >= plain["correct"] - 0.02
    reader = SpanReader(folder)
    sure = reader.confidence("How long is the Cloudgate Tunnel?", PASSAGES, [span(0, "1,146 m", 12.0)], "en")
    unsure = reader.confidence("How long is the Cloudgate Tunnel?", PASSAGES, [span(1, "a café", -2.0)], "en")
    assert sure > reader.threshold_for("en") > unsure
    assert reader.answerability_for("ko") == Answerability.from_config(config["answerability"]["all"])


def test_the_benchmark_rule_relabels_saved_predictions_and_is_recorded(tmp_path):
    """A short Chinese answer inside a long reference counts as right by mutual containment and
    wrong by the benchmark's rule (F1 < 0.5); relabelling from the saved predictions changes
    the labels without re-reading, the config names the rule, and scores saved without
    predictions are refused with a reason."""
    from kbqa.eval.error_analysis import answer_is_correct
    from kbqa.finetune.reader_calibrate import SCORES, choose_thresholds, overlaps, relabel

    long_ref = ["成立时最初的注册资本为30亿越南盾"]
    assert overlaps("30亿越南盾", long_ref) and not answer_is_correct("30亿越南盾", long_ref)
    assert answer_is_correct("注册资本为30亿越南盾", long_ref) and answer_is_correct("the Eiffel Tower in Paris", ["Eiffel Tower"])
    assert not answer_is_correct("", ["x"]) and not answer_is_correct("Paris", [])
    saved = [{"answerable": True, "prediction": "30亿越南盾", "answers": long_ref, "correct": True}]
    assert relabel(saved, answer_is_correct)[0]["correct"] is False and relabel(saved, overlaps)[0]["correct"] is True

    folder = tmp_path / "reader"
    shutil.copytree(ROOT / "data" / "readers" / "e5-span-kbqa", folder, ignore=shutil.ignore_patterns("*.safetensors", SCORES))
    rng = random.Random(2)
    rows = []
    for q in range(40):
        for answerable in (True, False):
            score = rng.gauss(8 if answerable else 1, 3)
            pred = ("30亿越南盾" if q % 2 else "注册资本为30亿越南盾") if answerable else "河内"
            rows.append(
                {
                    "score": score,
                    "answerable": answerable,
                    "correct": answerable,
                    "lang": "zh",
                    "question": f"q{q}",
                    "prediction": pred,
                    "answers": long_ref if answerable else [],
                }
            )
    (folder / SCORES).write_text(json.dumps(rows), encoding="utf-8")
    loose = choose_thresholds(folder, answerability=False)
    strict = choose_thresholds(folder, answerability=False, judge=answer_is_correct)
    assert loose["correct"] == 1.0 - loose["not_found"] and strict["correct"] <= 0.5 < loose["correct"]
    config = json.loads((folder / "reader_config.json").read_text(encoding="utf-8"))
    assert config["correct_rule"] == "kbqa.eval.error_analysis.answer_is_correct"
    kept = json.loads((folder / SCORES).read_text(encoding="utf-8"))  # the file's labels follow the recorded rule
    assert [r["correct"] for r in kept if r["answerable"]] == [not q % 2 for q in range(40)]
    for r in rows:
        del r["prediction"]
    (folder / SCORES).write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(ValueError, match="no predictions"):
        choose_thresholds(folder, judge=answer_is_correct)
