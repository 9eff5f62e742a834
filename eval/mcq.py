"""Multiple-choice questions (evalscope ``general_mcq``): the prompt, and reading the model's letter."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from kbqa.eval.datasets import MCQItem
from kbqa.retrieval.lang import detect_language

_INSTRUCTION = {
    "en": "Answer the multiple-choice question. Reply with the letter of the correct option only.",
    "zh": "回答下面的单项选择题。只回答正确选项的字母。",
}


def mcq_messages(item: MCQItem, context: Sequence[str] = ()) -> list[dict[str, str]]:
    lang = detect_language(item.question)
    parts = []
    if context:
        label = "参考资料" if lang == "zh" else "Context"
        parts.append(f"{label}:\n" + "\n\n".join(f"[{n}] {c}" for n, c in enumerate(context, start=1)))
    options = "\n".join(f"{letter}. {text}" for letter, text in item.options.items())
    tail = "答案：" if lang == "zh" else "Answer:"
    parts.append(f"{item.question}\n{options}\n{tail}")
    return [{"role": "system", "content": _INSTRUCTION[lang]}, {"role": "user", "content": "\n\n".join(parts)}]


def extract_choice(output: str, options: Mapping[str, str]) -> str | None:
    """The option the model picked: the first standalone option letter in its output (``B``, ``(B)``,
    ``B.``, ``答案：B``), else the one option whose text the output contains; None if neither."""
    letters = "".join(options)
    m = re.search(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", output)
    if m:
        return m.group(1)
    found = [letter for letter, text in options.items() if text and text.strip().lower() in output.lower()]
    return found[0] if len(found) == 1 else None


def accuracy(records: Sequence[Mapping]) -> dict[str, float]:
    """``accuracy`` and ``answered`` (share of outputs with a readable letter)."""
    n = len(records)
    if n == 0:
        return {"accuracy": 0.0, "answered": 0.0}
    return {
        "accuracy": sum(float(r["correct"]) for r in records) / n,
        "answered": sum(1 for r in records if r.get("choice")) / n,
    }
