"""Choose the reader's no-answer threshold on validation data, and score it there.

Each item is a question with a few passages, the gold paragraph among them or not
(`finetune.reader_data.calibration_items`). The reader's best span over the passages is
"correct" when it and a reference contain one another (after lower-casing and dropping
punctuation and white space). The threshold maximises the mean of two rates: answerable
items answered correctly, and unanswerable items rejected; it is chosen per question language.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from finetune.reader_data import CalibrationItem

_DROP = re.compile(r"[\W_]+", re.UNICODE)


def _key(text: str) -> str:
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


def overlaps(prediction: str, answers: Sequence[str]) -> bool:
    p = _key(prediction)
    return bool(p) and any(a and (a in p or p in a) for a in map(_key, answers))


def score_items(reader, items: Sequence[CalibrationItem], progress: bool = True) -> list[tuple[float, bool, bool]]:
    """(best span score, answerable, the best span is correct) per item."""
    out = []
    for item in tqdm(items, desc="calibrating", unit="q", disable=not progress):
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


def choose_threshold(scored: Sequence[tuple[float, bool, bool]]) -> dict[str, float]:
    finite = sorted({s[0] for s in scored if s[0] != float("-inf")})
    candidates = [finite[0] - 1.0, *finite] if finite else [0.0]
    best = max(candidates, key=lambda t: (lambda r: (r["correct"] + r["rejection"]) / 2)(rates(scored, t)))
    return rates(scored, best)


def calibrate(folder: str | Path, items: Sequence[CalibrationItem], progress: bool = True) -> dict:
    """Pick the reader's threshold in `folder`, one per question language (the reader is less sure
    of itself in Chinese than in English), plus one over all items as the fallback for other
    languages, and record them and their validation rates in its config."""
    from retrieval.lang import detect_language
    from retrieval.readers.span import CONFIG, SpanReader

    folder = Path(folder)
    scored = score_items(SpanReader(folder), items, progress)
    result = choose_threshold(scored)
    langs = [detect_language(it.question) for it in items]
    per_lang = {lang: choose_threshold([s for s, l in zip(scored, langs) if l == lang]) | {"items": langs.count(lang)} for lang in sorted(set(langs))}
    config_path = folder / CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["threshold"] = round(result["threshold"], 4)
    config["thresholds"] = {lang: round(r["threshold"], 4) for lang, r in per_lang.items()}
    config["calibration"] = {k: round(v, 4) for k, v in result.items()} | {"items": len(items)}
    config["calibration_by_language"] = {lang: {k: round(v, 4) for k, v in r.items()} for lang, r in per_lang.items()}
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    scores = [{"score": s[0] if s[0] != float("-inf") else None, "answerable": s[1], "correct": s[2], "lang": lang} for s, lang in zip(scored, langs)]
    (folder / "calibration_scores.json").write_text(json.dumps(scores) + "\n", encoding="utf-8")  # to study other thresholds without re-reading
    return {**result, "by_language": per_lang}
