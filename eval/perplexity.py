"""Perplexity of a causal language model on texts: exp(total negative log-likelihood / tokens).

Each text is scored on its own (truncated to `max_length` tokens); the first token of a text
has no prediction and is not counted. Texts come from a .txt file (paragraphs separated by a
blank line) or a .jsonl file (``text``, ``query``+``response``, ``question``+``answer`` or
``messages``), read by `read_texts`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from kbqa.eval.datasets import DatasetError


def perplexity_from_nll(total_nll: float, tokens: int) -> float:
    if tokens <= 0:
        raise ValueError("perplexity of no tokens")
    return math.exp(total_nll / tokens)


def read_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    raw = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() != ".jsonl":
        texts = [p.strip() for p in raw.split("\n\n") if p.strip()]
    else:
        texts = []
        for lineno, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object")
            if isinstance(row.get("text"), str):
                texts.append(row["text"])
            elif "messages" in row and isinstance(row["messages"], list):
                texts.append("\n".join(str(m.get("content", "")) for m in row["messages"] if isinstance(m, dict)))
            elif ("query" in row or "question" in row) and ("response" in row or "answer" in row):
                texts.append(f"{row.get('query', row.get('question'))}\n{row.get('response', row.get('answer'))}")
            else:
                raise DatasetError(f"{path}:{lineno}: needs field 'text', 'messages', or 'query'/'question' with 'response'/'answer'")
    if not texts:
        raise DatasetError(f"{path}: no text to score")
    return texts


def perplexity_of_texts(model, tokenizer, texts: Sequence[str], *, max_length: int = 1024, progress: bool = True) -> dict[str, float]:
    """``perplexity``, ``nll_per_token``, ``tokens`` and ``texts`` of a transformers causal LM."""
    import torch
    from tqdm import tqdm

    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    for text in tqdm(texts, desc="perplexity", unit="text", disable=None if progress else True):
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"].to(device)
        if ids.shape[1] < 2:
            continue
        with torch.inference_mode():
            logits = model(input_ids=ids).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
        total_nll += float(nll)
        total_tokens += ids.shape[1] - 1
    if total_tokens == 0:
        raise ValueError("no text was long enough to score (at least 2 tokens)")
    return {
        "perplexity": perplexity_from_nll(total_nll, total_tokens),
        "nll_per_token": total_nll / total_tokens,
        "tokens": float(total_tokens),
        "texts": float(len(texts)),
    }
