"""Readers for evaluation files, with errors that name the file, line and field.

- QA jsonl (evalscope ``general_qa``): one object per line, any of
  ``{"query", "response"}``, ``{"question", "answer"}`` or ``{"messages": [...]}``
  (the reference is ``response``/``answer`` if present, else the last ``assistant`` message;
  the question is the last ``user`` message before it). Optional: ``system``, ``source``
  (gold document, for retrieval-miss analysis), ``key`` (short answer), ``id``.
- SQuAD-style json (SQuAD v1.1, CMRC 2018): ``data[].paragraphs[].{context, qas[]}``
  (a question whose text is the empty string is skipped with a warning).
- MCQ csv (evalscope ``general_mcq``): header ``id,question,A,B,C,D,answer`` (any number of
  option letters).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbqa.retrieval.jsonl import iter_jsonl

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A malformed evaluation file; the message names the file, line and field."""


@dataclass
class QAItem:
    question: str
    references: list[str]
    id: str = ""
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)  # earlier turns
    source: str | None = None  # gold document (file name or path) or paragraph id
    keys: list[str] = field(default_factory=list)  # short answers for `contains`


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field {name!r} must be a non-empty string, got {value!r}"[:300])
    return value


def qa_item_from_record(record: Any, where: str, default_id: str = "") -> QAItem:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    reference = record.get("response", record.get("answer"))
    ref_field = "response" if "response" in record else "answer"
    history: list[dict[str, str]] = []
    system = record.get("system")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"{where}: field 'messages' must be a non-empty list of {{'role', 'content'}} objects")
        for n, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in {"system", "user", "assistant"} or not isinstance(m.get("content"), str):
                raise DatasetError(f"{where}: field 'messages[{n}]' must be {{'role': system|user|assistant, 'content': str}}, got {m!r}"[:300])
        turns = list(messages)
        if reference is None and turns[-1]["role"] == "assistant":
            reference, ref_field = turns.pop()["content"], f"messages[{len(messages) - 1}].content"
        if not turns or turns[-1]["role"] != "user":
            raise DatasetError(f"{where}: field 'messages' must end with a 'user' turn (optionally followed by the reference 'assistant' turn)")
        question = _text(turns[-1]["content"], where, f"messages[{len(turns) - 1}].content")
        for m in turns[:-1]:
            if m["role"] == "system":
                system = m["content"]
            else:
                history.append({"role": m["role"], "content": m["content"]})
    else:
        if "query" in record:
            question = _text(record["query"], where, "query")
        elif "question" in record:
            question = _text(record["question"], where, "question")
        else:
            raise DatasetError(f"{where}: missing field 'query' (or 'question', or 'messages')")
    if reference is None:
        raise DatasetError(f"{where}: missing field 'response' (or 'answer', or a final 'assistant' message)")
    _text(reference, where, ref_field)
    key = record.get("key")
    keys = [key] if isinstance(key, str) and key.strip() else []
    source = record.get("source")
    return QAItem(
        question=question,
        references=[reference],
        id=str(record.get("id", default_id)),
        system=system if isinstance(system, str) else None,
        history=history,
        source=str(source) if source else None,
        keys=keys,
    )


def read_qa_jsonl(path: str | Path) -> list[QAItem]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    items = [qa_item_from_record(record, where, default_id=str(lineno)) for lineno, where, record in iter_jsonl(path, DatasetError)]
    if not items:
        raise DatasetError(f"{path}: no QA lines")
    return items


@dataclass
class SquadParagraph:
    id: str
    title: str
    context: str


def read_squad(path: str | Path, *, every_question: bool = False) -> tuple[list[SquadParagraph], list[QAItem]]:
    """Paragraphs and questions of a SQuAD-style file; each question's `source` is its
    paragraph id and `references` its answer texts (duplicates removed, order kept).

    A paragraph's id is its own ``id`` field (CMRC 2018: ``TRIAL_800``), else
    ``a<article>-p<paragraph>`` (``a003-p012``); a question's is its ``id``, else
    ``<paragraph id>-q<n>``. Knowledge bases, citations and results use these ids: keep them.
    The one reader of the format: `kbqa eval squad` and `kbqa eval retrieval --squad` both
    read through it. A question with empty text is skipped with a warning, one without
    answer text is a `DatasetError`; ``every_question=True`` (a retrieval benchmark, which
    needs only each question's paragraph) keeps both, with empty `references`, and the
    question text exactly as written (not stripped)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: expected a SQuAD-style object with a 'data' list")
    paragraphs: list[SquadParagraph] = []
    items: list[QAItem] = []
    skipped: list[str] = []
    for a, article in enumerate(data["data"]):
        title = str(article.get("title", "")) if isinstance(article, dict) else ""
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DatasetError(f"{path}: data[{a}]: missing field 'paragraphs'")
        for p, para in enumerate(article["paragraphs"]):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _text(para.get("context") if isinstance(para, dict) else None, where, "context")
            pid = str(para.get("id") or f"a{a:03d}-p{p:03d}")
            paragraphs.append(SquadParagraph(pid, title, context))
            for q, qa in enumerate(para.get("qas", [])):
                qwhere = f"{where}.qas[{q}]"
                text = qa.get("question") if isinstance(qa, dict) else None
                if text == "" and not every_question:
                    skipped.append(qwhere)  # CMRC 2018 trial has two questions with empty text
                    continue
                question = text if text == "" else _text(text, qwhere, "question")
                answers = [ans.get("text") for ans in qa.get("answers", []) if isinstance(ans, dict)]
                refs = list(dict.fromkeys(t.strip() for t in answers if isinstance(t, str) and t.strip()))
                if not refs and not every_question:
                    raise DatasetError(f"{qwhere}: field 'answers' has no answer text")
                items.append(
                    QAItem(
                        question=question if every_question else question.strip(), references=refs, id=str(qa.get("id", f"{pid}-q{q}")), source=pid, keys=refs
                    )
                )
    if skipped:
        log.warning("%s: skipped %d question(s) with empty text: %s", path, len(skipped), ", ".join(s.split(": ", 1)[1] for s in skipped[:5]))
    return paragraphs, items


@dataclass
class MCQItem:
    id: str
    question: str
    options: dict[str, str]  # letter -> text
    answer: str  # letter


def read_mcq_csv(path: str | Path) -> list[MCQItem]:
    path = Path(path)
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        letters = [h for h in header if len(h) == 1 and h.isalpha() and h.isupper()]
        missing = [h for h in ("question", "answer") if h not in header]
        if missing or len(letters) < 2:
            raise DatasetError(f"{path}: header must be id,question,A,B,...,answer; got {','.join(header)}")
        items = []
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            question = _text(row.get("question"), where, "question")
            options = {k: (row.get(k) or "").strip() for k in letters if (row.get(k) or "").strip()}
            answer = (row.get("answer") or "").strip().upper()
            if answer not in options:
                raise DatasetError(f"{where}: field 'answer' must be one of {','.join(options)}, got {row.get('answer')!r}")
            items.append(MCQItem(str(row.get("id") or lineno - 1), question, options, answer))
    if not items:
        raise DatasetError(f"{path}: no questions")
    return items
