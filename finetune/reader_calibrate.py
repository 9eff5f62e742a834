"""Choose the reader's no-answer threshold on validation data, and score it there.

Each item is a question with a few passages, the gold paragraph among them or not
(`finetune.reader_data.calibration_items`). The reader's best span over the passages is
"correct" when it and a reference contain one another (after lower-casing and dropping
punctuation and white space). The threshold, chosen per question language, is the lowest
that still rejects `REJECTION_FLOOR` of the unanswerable items (of those equally correct, the highest) (the product's target for
negative rejection is 0.80; the floor leaves a margin): below it, every further answer is as
likely wrong as right. Where no threshold reaches the floor, the one that maximises the mean
of "answered correctly" and "rejected" is used.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from kbqa.finetune.reader_data import CalibrationItem

_DROP = re.compile(r"[\W_]+", re.UNICODE)
SCORES = "calibration_scores.json"


def _key(text: str) -> str:
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


def overlaps(prediction: str, answers: Sequence[str]) -> bool:
    p = _key(prediction)
    return bool(p) and any(a and (a in p or p in a) for a in map(_key, answers))


def score_items(reader, items: Sequence[CalibrationItem], progress: bool = True) -> list[tuple[float, bool, bool]]:
    """(best span score, answerable, the best span is correct) per item."""
    out = []
    for item in tqdm(items, desc="calibrating", unit="q", disable=None if progress else True):
        spans = reader.read(item.question, list(item.passages))
        best = spans[0] if spans else None
        score = best.score if best else float("-inf")
        out.append((score, bool(item.answers), bool(best and item.answers and overlaps(best.text, item.answers))))
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
        return max(enough, key=lambda r: (r["correct"], r["rejection"]))  # of equally correct ones, the most rejecting
    return max(table, key=lambda r: (r["correct"] + r["rejection"]) / 2)


def calibrate(folder: str | Path, items: Sequence[CalibrationItem], progress: bool = True) -> dict:
    """Score `items` with the reader in `folder` (kept in calibration_scores.json), then choose
    its thresholds (`choose_thresholds`)."""
    from kbqa.retrieval.lang import detect_language
    from kbqa.retrieval.readers.span import SpanReader

    folder = Path(folder)
    scored = score_items(SpanReader(folder), items, progress)
    langs = [detect_language(it.question) for it in items]
    scores = [{"score": s[0] if s[0] != float("-inf") else None, "answerable": s[1], "correct": s[2], "lang": lang} for s, lang in zip(scored, langs)]
    (folder / SCORES).write_text(json.dumps(scores) + "\n", encoding="utf-8")  # to study other thresholds without re-reading
    return choose_thresholds(folder)


def choose_thresholds(folder: str | Path) -> dict:
    """Pick the reader's thresholds from its calibration_scores.json: one per question language
    (the reader is less sure of itself in Chinese than in English), plus one over all items as
    the fallback for other languages; record them and their validation rates in its config."""
    from kbqa.retrieval.readers.span import CONFIG

    folder = Path(folder)
    saved = json.loads((folder / SCORES).read_text(encoding="utf-8"))
    scored = [(s["score"] if s["score"] is not None else float("-inf"), s["answerable"], s["correct"]) for s in saved]
    langs = [s["lang"] for s in saved]
    result = choose_threshold(scored)
    per_lang = {lang: choose_threshold([s for s, l in zip(scored, langs) if l == lang]) | {"items": langs.count(lang)} for lang in sorted(set(langs))}
    config_path = folder / CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["threshold"] = round(result["threshold"], 4)
    config["thresholds"] = {lang: round(r["threshold"], 4) for lang, r in per_lang.items()}
    config["threshold_rule"] = f"the lowest that rejects {REJECTION_FLOOR:.0%} of unanswerable validation items"
    config["calibration"] = {k: round(v, 4) for k, v in result.items()} | {"items": len(saved)}
    config["calibration_by_language"] = {lang: {k: round(v, 4) for k, v in r.items()} for lang, r in per_lang.items()}
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return {**result, "by_language": per_lang}
