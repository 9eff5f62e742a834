"""Training data formats, read by one loader, and label masking with the chat template.

Each JSONL line is one conversation in any of these formats (as ms-swift and
LLaMA-Factory users write them); all become a list of ``{"role", "content"}`` messages:

- messages: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``
- query/response: ``{"query", "response", "history"?: [[q, a], ...], "system"?}``
- sharegpt: ``{"conversation": [{"human", "assistant"}, ...], "system"?}`` or
  ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}``
- alpaca: ``{"instruction", "input"?, "output", "system"?, "history"?}``

Other keys (``split``, ``meta``) are kept aside and ignored by training. Loss is taken on
the assistant turns only: `encode` labels every other token -100.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbqa.retrieval.jsonl import iter_jsonl

Message = dict[str, str]
IGNORE = -100
ROLES = ("system", "user", "assistant")


class FormatError(ValueError):
    """Malformed training data; the message names the file, line and field."""


@dataclass
class Example:
    messages: list[Message]
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _history(value: Any, where: str) -> list[Message]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FormatError(f"{where}: expected a list of [query, response] pairs")
    out: list[Message] = []
    for i, pair in enumerate(value):
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            q, a = pair
        elif isinstance(pair, dict) and {"query", "response"} <= set(pair):
            q, a = pair["query"], pair["response"]
        else:
            raise FormatError(f"{where}[{i}]: expected [query, response]")
        out += [{"role": "user", "content": _text(q, f"{where}[{i}][0]")}, {"role": "assistant", "content": _text(a, f"{where}[{i}][1]")}]
    return out


def _system(record: dict, where: str) -> list[Message]:
    if record.get("system") in (None, ""):
        return []
    return [{"role": "system", "content": _text(record["system"], f"{where}: field 'system'")}]


def _from_messages(record: dict, where: str) -> list[Message]:
    msgs = record["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise FormatError(f"{where}: field 'messages': expected a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        f = f"{where}: field 'messages[{i}]'"
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise FormatError(f"{f}: expected an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise FormatError(f"{f}.role: {m['role']!r} is not one of {', '.join(ROLES)}")
        out.append({"role": m["role"], "content": _text(m["content"], f"{f}.content")})
    return out


def _from_query(record: dict, where: str) -> list[Message]:
    if "response" not in record:
        raise FormatError(f"{where}: field 'response' is missing (query/response format)")
    return (
        _system(record, where)
        + _history(record.get("history"), f"{where}: field 'history'")
        + [
            {"role": "user", "content": _text(record["query"], f"{where}: field 'query'")},
            {"role": "assistant", "content": _text(record["response"], f"{where}: field 'response'")},
        ]
    )


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _from_sharegpt(record: dict, where: str) -> list[Message]:
    out = _system(record, where)
    if "conversation" in record:
        turns = record["conversation"]
        if not isinstance(turns, list) or not turns:
            raise FormatError(f"{where}: field 'conversation': expected a non-empty list of {{human, assistant}}")
        for i, t in enumerate(turns):
            f = f"{where}: field 'conversation[{i}]'"
            if not isinstance(t, dict) or "human" not in t or "assistant" not in t:
                raise FormatError(f"{f}: expected an object with 'human' and 'assistant'")
            if t.get("system"):
                out.append({"role": "system", "content": _text(t["system"], f"{f}.system")})
            out += [{"role": "user", "content": _text(t["human"], f"{f}.human")}, {"role": "assistant", "content": _text(t["assistant"], f"{f}.assistant")}]
        return out
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise FormatError(f"{where}: field 'conversations': expected a non-empty list of {{from, value}}")
    for i, t in enumerate(turns):
        f = f"{where}: field 'conversations[{i}]'"
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise FormatError(f"{f}: expected an object with 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(t["from"])
        if role is None:
            raise FormatError(f"{f}.from: {t['from']!r} is not one of {', '.join(_SHAREGPT_ROLES)}")
        out.append({"role": role, "content": _text(t["value"], f"{f}.value")})
    return out


def _from_alpaca(record: dict, where: str) -> list[Message]:
    if "output" not in record:
        raise FormatError(f"{where}: field 'output' is missing (alpaca format)")
    instruction = _text(record["instruction"], f"{where}: field 'instruction'")
    extra = record.get("input") or ""
    prompt = f"{instruction}\n\n{_text(extra, f'{where}: field input')}" if extra else instruction
    return (
        _system(record, where)
        + _history(record.get("history"), f"{where}: field 'history'")
        + [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(record["output"], f"{where}: field 'output'")}]
    )


def _check(messages: list[Message], where: str) -> list[Message]:
    if not any(m["role"] == "assistant" for m in messages):
        raise FormatError(f"{where}: no assistant turn to learn from")
    for i, m in enumerate(messages):
        if m["role"] == "system" and i != 0:
            raise FormatError(f"{where}: a system message must come first (found at turn {i})")
    roles = [m["role"] for m in messages if m["role"] != "system"]
    for i, role in enumerate(roles):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise FormatError(f"{where}: turn {i} is {role!r}, expected {expected!r} (user and assistant must alternate)")
    return messages


def parse_record(record: Any, where: str) -> Example:
    """One decoded JSON object -> an Example; `where` is e.g. 'data.jsonl:12'."""
    if not isinstance(record, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = _from_messages(record, where)
    elif "query" in record:
        messages = _from_query(record, where)
    elif "conversation" in record or "conversations" in record:
        messages = _from_sharegpt(record, where)
    elif "instruction" in record:
        messages = _from_alpaca(record, where)
    else:
        raise FormatError(
            f"{where}: unknown format (keys {sorted(record)}); expected one of the fields "
            "'messages', 'query'+'response', 'conversation(s)', 'instruction'+'output'"
        )
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise FormatError(f"{where}: field 'split': expected a string")
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return Example(_check(messages, where), split, meta)


def load_examples(path: str | Path) -> list[Example]:
    """Read a JSONL file of conversations in any supported format."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: not found")
    examples = [parse_record(record, where) for _, where, record in iter_jsonl(path, FormatError)]
    if not examples:
        raise FormatError(f"{path}: no examples")
    return examples


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for ex in examples:
            record: dict[str, Any] = {"messages": ex.messages}
            if ex.split:
                record["split"] = ex.split
            if ex.meta:
                record["meta"] = ex.meta
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


# ---- tokenization with assistant-only labels ----------------------------------------------


def _render(tokenizer, messages: list[Message], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer, messages: list[Message]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation rendered by the chat template, and the character spans of the
    assistant replies (each including its end-of-turn token)."""
    full = _render(tokenizer, messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = _render(tokenizer, messages[:i], True)
        end_text = _render(tokenizer, messages[: i + 1], False)
        if not full.startswith(start_text) or not full.startswith(end_text):
            raise ValueError("the tokenizer's chat template does not render conversations prefix by prefix; cannot mask labels")
        end = len(end_text.rstrip("\n"))  # train on the reply and its end-of-turn token, not the newline after it
        spans.append((len(start_text), end))
    return full, spans


def encode(tokenizer, messages: list[Message], max_length: int) -> dict[str, list[int]] | None:
    """input_ids and labels (-100 outside assistant replies). None when truncation to
    `max_length` would leave no assistant token to learn from."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; training needs one to mark the assistant turns")
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [IGNORE] * len(ids)
    for n, (s, e) in enumerate(offsets):
        if e > s and any(a <= s < b for a, b in spans):
            labels[n] = ids[n]
    ids, labels = ids[:max_length], labels[:max_length]
    if all(lab == IGNORE for lab in labels):
        return None
    return {"input_ids": ids, "labels": labels}
