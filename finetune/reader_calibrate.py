"""Choose the reader's no-answer threshold on validation data, and score it there.

Each item is a question with a few passages, the gold paragraph among them or not
(`finetune.reader_data.calibration_items`). Whether the reader's best span over the passages
is "correct" is decided by a `judge(prediction, references)`: by default `overlaps` (it and
a reference contain one another, after lower-casing and dropping punctuation and white
space); `kbqa finetune reader-calibrate` passes the benchmark's own rule
(`eval.error_analysis.answer_is_correct`), so that the thresholds serve the figures the
benchmark reports. Each item's prediction is saved, so another judge needs no re-reading.
The threshold, chosen per question language, is the one that
gives the most right answers less wrong ones among those that still reject `REJECTION_FLOOR`
of the unanswerable items (the product's target for negative rejection is 0.80; the floor
leaves a margin); of equally good ones, the most rejecting. A wrong answer thus costs as much
as a right one gains: the threshold never buys a right answer with a wrong one. Where no
threshold reaches the floor, the one that maximises the mean of "answered correctly" and
"rejected" is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from kbqa.finetune.reader_data import CalibrationItem
from kbqa.retrieval.readers.answerability import answer_key, features

SCORES = "calibration_scores.json"


def overlaps(prediction: str, answers: Sequence[str]) -> bool:
    p = answer_key(prediction)
    return bool(p) and any(a and (a in p or p in a) for a in map(answer_key, answers))


Judge = Callable[[str, Sequence[str]], bool]


def score_items(reader, items: Sequence[CalibrationItem], progress: bool = True) -> list[dict]:
    """Each item read by `reader`: its best span's score (None: no span), answerability
    features and text, unlabelled (`relabel` decides "correct")."""
    from kbqa.retrieval.lang import detect_language

    out = []
    for item in tqdm(items, desc="calibrating", unit="q", disable=None if progress else True):
        passages = list(item.passages)
        spans = reader.read(item.question, passages)
        best = spans[0] if spans else None
        out.append(
            {
                "score": best.score if best else None,
                "answerable": bool(item.answers),
                "lang": detect_language(item.question),
                "question": item.question,
                "features": features(item.question, passages, spans),
                "prediction": best.text if best else "",
                "answers": list(item.answers),
            }
        )
    return out


def rates(scored: Sequence[tuple[float, bool, bool]], threshold: float) -> dict[str, float]:
    answerable = [s for s in scored if s[1]]
    unanswerable = [s for s in scored if not s[1]]
    answered = [s for s in answerable if s[0] >= threshold]
    return {
        "threshold": threshold,
        "correct": sum(1 for s in answered if s[2]) / max(1, len(answerable)),
        "not_found": 1 - len(answered) / max(1, len(answerable)),
        "wrong": sum(1 for s in answered if not s[2]) / max(1, len(answerable)),
        "rejection": sum(1 for s in unanswerable if s[0] < threshold) / max(1, len(unanswerable)),
    }


REJECTION_FLOOR = 0.85


def choose_threshold(scored: Sequence[tuple[float, bool, bool]], floor: float = REJECTION_FLOOR) -> dict[str, float]:
    finite = sorted({s[0] for s in scored if s[0] != float("-inf")})
    candidates = [finite[0] - 1.0, *finite] if finite else [0.0]
    table = [rates(scored, t) for t in candidates]
    enough = [r for r in table if r["rejection"] >= floor]
    if enough:
        return max(enough, key=lambda r: (round(r["correct"] - r["wrong"], 9), r["rejection"]))  # of equally good ones, the most rejecting
    return max(table, key=lambda r: (r["correct"] + r["rejection"]) / 2)


def calibrate(folder: str | Path, items: Sequence[CalibrationItem], progress: bool = True, answerability: bool = True, judge: Judge = overlaps) -> dict:
    """Score `items` with the reader in `folder`, label them with `judge` (kept in
    calibration_scores.json, with each item's prediction and answerability features), then
    choose its thresholds (as `choose_thresholds`)."""
    from kbqa.retrieval.readers.span import SpanReader

    folder = Path(folder)
    saved = relabel(score_items(SpanReader(folder), items, progress), judge)
    (folder / SCORES).write_text(json.dumps(saved) + "\n", encoding="utf-8")  # to study other thresholds without re-reading
    return _choose(folder, saved, answerability, judge)


def relabel(saved: Sequence[dict], judge: Judge) -> list[dict]:
    """The saved items with "correct" decided again by `judge` from their saved predictions."""
    if not all("prediction" in s for s in saved):
        raise ValueError(f"{SCORES} has no predictions (written before they were saved): score the validation data again with --calibrate")
    return [s | {"correct": bool(s["answerable"] and s["prediction"] and judge(s["prediction"], s["answers"]))} for s in saved]


MIN_ITEMS_PER_MODEL = 40  # a language with fewer validation items uses the model fitted on all of them


def confidences(saved: Sequence[dict], use_model: bool = True) -> tuple[list[float], list[float], dict | None]:
    """Each saved item's confidence for the overall threshold and for its language's, and the
    answerability models to store (None: the span score is the confidence). With features saved,
    the confidences are out-of-fold log-odds (`finetune.answerability_fit`), one model per
    language with enough items, plus one over all."""
    from kbqa.finetune.answerability_fit import fit, out_of_fold

    raw = [s["score"] if s["score"] is not None else float("-inf") for s in saved]
    if not use_model or not saved or not all("features" in s for s in saved):
        return raw, raw, None
    rows = [s["features"] for s in saved]
    labels = [bool(s["correct"]) for s in saved]
    groups = [s.get("question", str(i // 2)) for i, s in enumerate(saved)]
    overall = out_of_fold(rows, labels, groups)
    by_lang = list(overall)
    models = {"all": fit(rows, labels).to_config()}
    for lang in sorted({s["lang"] for s in saved}):
        idx = [i for i, s in enumerate(saved) if s["lang"] == lang]
        if len(idx) < MIN_ITEMS_PER_MODEL or len({labels[i] for i in idx}) < 2:
            continue
        pick = lambda values: [values[i] for i in idx]  # noqa: E731
        for i, v in zip(idx, out_of_fold(pick(rows), pick(labels), pick(groups))):
            by_lang[i] = v
        models[lang] = fit(pick(rows), pick(labels)).to_config()
    return overall, by_lang, models


def choose_thresholds(folder: str | Path, answerability: bool = True, judge: Judge | None = None) -> dict:
    """Pick the reader's thresholds from its calibration_scores.json: one per question language
    (the reader is less sure of itself in Chinese than in English), plus one over all items as
    the fallback for other languages; record them and their validation rates in its config.
    With `answerability` (and features saved), fit the answerability models too: the thresholds
    are then on their log-odds. With `judge`, the items are relabelled first (`relabel`)."""
    folder = Path(folder)
    saved = json.loads((folder / SCORES).read_text(encoding="utf-8"))
    if judge is not None:  # the file's labels follow the rule recorded in the config
        saved = relabel(saved, judge)
        (folder / SCORES).write_text(json.dumps(saved) + "\n", encoding="utf-8")
    return _choose(folder, saved, answerability, judge)


def _choose(folder: Path, saved: Sequence[dict], answerability: bool, judge: Judge | None) -> dict:
    """`choose_thresholds` on labelled items: the thresholds, models and rates, written to the config."""
    from kbqa.retrieval.readers.span import CONFIG

    overall, by_lang, models = confidences(saved, answerability)
    langs = [s["lang"] for s in saved]
    flags = [(s["answerable"], s["correct"]) for s in saved]
    result = choose_threshold([(c, *f) for c, f in zip(overall, flags)])
    per_lang = {
        lang: choose_threshold([(c, *f) for c, f, l in zip(by_lang, flags, langs) if l == lang]) | {"items": langs.count(lang)} for lang in sorted(set(langs))
    }
    config_path = folder / CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["threshold"] = round(result["threshold"], 4)
    config["thresholds"] = {lang: round(r["threshold"], 4) for lang, r in per_lang.items()}
    config["threshold_rule"] = f"the most right less wrong answers among thresholds rejecting {REJECTION_FLOOR:.0%} of unanswerable validation items"
    if judge is not None:
        config["correct_rule"] = f"{judge.__module__}.{judge.__qualname__}"
    config["threshold_scale"] = "answerability log-odds (out of fold)" if models else "span score"
    config.pop("answerability", None)
    if models:
        config["answerability"] = models
    config["calibration"] = {k: round(v, 4) for k, v in result.items()} | {"items": len(saved)}
    config["calibration_by_language"] = {lang: {k: round(v, 4) for k, v in r.items()} for lang, r in per_lang.items()}
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return {**result, "by_language": per_lang}
