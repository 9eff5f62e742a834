"""Span-labelled training data for the extractive reader, from SQuAD-format files.

SQuAD v1.1 (English) and CMRC 2018 (Chinese) share one layout:
``data[].paragraphs[].{context, qas[].{question, answers[].text}}``. Each question gives
one answerable example (its paragraph, the answer located by its text) and, with
probability `negatives`, one "no answer" example: the paragraph of the same split that
shares the most words with the question without holding any of its answers, the hardest
kind of distractor (the RGB "negative rejection" setting).

Splits never cut a paragraph: SQuAD by article (`--articles 0-15`), CMRC by a hash of the
paragraph's text (`split_of`), so no passage is both trained on and tested.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SPLIT_BUCKETS = {"train": range(0, 7), "validation": range(7, 8), "test": range(8, 10)}


@dataclass(frozen=True)
class SpanExample:
    question: str
    passage: str
    answer: str  # "" = the passage does not hold the answer
    answer_start: int  # -1 when answer is ""
    answers: tuple[str, ...]  # every reference (for scoring)
    lang: str
    group: str  # the paragraph (or article) it came from

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def split_of(text: str) -> str:
    """A paragraph's split by a hash of its text: 70% train, 10% validation, 20% test."""
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 10
    return next(name for name, r in SPLIT_BUCKETS.items() if bucket in r)


def parse_ranges(spec: str) -> set[int]:
    """``"0-15,18"`` -> {0, ..., 15, 18}."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def read_squad_format(path: str | Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a SQuAD-format JSON file ({exc})") from exc
    return data


def paragraphs(path: str | Path, *, articles: str | None = None, split: str | None = None) -> list[dict]:
    """The paragraphs of the chosen articles (by index) or hash split, each with its article index."""
    chosen = parse_ranges(articles) if articles else None
    out = []
    for index, article in enumerate(read_squad_format(path)):
        if chosen is not None and index not in chosen:
            continue
        for para in article["paragraphs"]:
            if split is None or split_of(para["context"]) == split:
                out.append({**para, "article": index})
    return out


_WORD = re.compile(r"[A-Za-z0-9]+|[\u4e00-\u9fff]")


def _terms(text: str) -> set[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    return set(words) | {a + b for a, b in zip(words, words[1:])}


def _distractors(question: str, answers: list[str], own: str, pool: list[str], pool_terms: list[set[str]], rng: random.Random) -> list[str]:
    """The pool's paragraphs other than `own` that hold none of `answers`, most words shared with
    the question first (ties broken by a little noise from `rng`)."""
    q = _terms(question)
    eligible = [i for i, text in enumerate(pool) if text != own and not any(a and a in text for a in answers)]
    return [pool[i] for i in sorted(eligible, key=lambda i: -(len(q & pool_terms[i]) + rng.random() * 0.5))]


def span_examples(paras: list[dict], lang: str, *, negatives: float = 0.5, seed: int = 0) -> list[SpanExample]:
    """One answerable example per question whose answer occurs in its paragraph, plus
    'no answer' examples on hard distractor paragraphs for a `negatives` share of them."""
    rng = random.Random(seed)
    pool = [p["context"] for p in paras]
    pool_terms = [_terms(t) for t in pool]
    out = []
    for para in paras:
        context = para["context"]
        for qa in para["qas"]:
            answers = [a["text"].strip() for a in qa.get("answers", []) if a["text"].strip()]
            located = [(a, context.find(a)) for a in answers if context.find(a) >= 0]
            if not located:
                continue
            answer, start = located[0]
            group = f"{para['article']}:{hashlib.sha1(context.encode()).hexdigest()[:12]}"
            out.append(SpanExample(qa["question"], context, answer, start, tuple(answers), lang, group))
            if rng.random() < negatives:
                others = _distractors(qa["question"], answers, context, pool, pool_terms, rng)
                if others:
                    out.append(SpanExample(qa["question"], others[0], "", -1, tuple(answers), lang, group))
    return out


def write_jsonl(examples: Iterable[SpanExample], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(ex.to_json() + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[SpanExample]:
    out = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["answers"] = tuple(row["answers"])
            out.append(SpanExample(**row))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}:{line_no}: not a span example ({exc})") from exc
    return out


@dataclass(frozen=True)
class CalibrationItem:
    question: str
    passages: tuple[str, ...]
    answers: tuple[str, ...]  # empty: no passage holds the answer


def calibration_items(paras: list[dict], *, passages: int = 5, seed: int = 0) -> list[CalibrationItem]:
    """Retrieval-like sets for choosing the reader's threshold: per question, its paragraph plus
    `passages - 1` hard distractors (answerable), and `passages` distractors alone (unanswerable)."""
    rng = random.Random(seed)
    pool = [p["context"] for p in paras]
    pool_terms = [_terms(t) for t in pool]
    out = []
    for para in paras:
        for qa in para["qas"]:
            answers = [a["text"].strip() for a in qa.get("answers", []) if a["text"].strip()]
            if not any(a in para["context"] for a in answers):
                continue
            others = _distractors(qa["question"], answers, para["context"], pool, pool_terms, rng)[:passages]
            if not others:
                continue
            gold = [para["context"], *others[: passages - 1]]
            rng.shuffle(gold)
            out.append(CalibrationItem(qa["question"], tuple(gold), tuple(answers)))
            out.append(CalibrationItem(qa["question"], tuple(others), ()))
    return out
