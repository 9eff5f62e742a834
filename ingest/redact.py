"""Optional PII redaction at ingestion: e-mail addresses, ID numbers and phone numbers,
in Chinese and English formats, replaced by a placeholder before anything is stored.

Off by default; turn on with ``ingest.redact_pii = true`` (``KBQA_INGEST__REDACT_PII=1``)
for deployments such as a medical or customer-service assistant. Pattern-based: it
catches the common written forms, not every possible one, and says how many of each
kind it replaced.
"""

from __future__ import annotations

import re

_D = r"(?<![0-9A-Za-z])"  # no digit/letter just before
_E = r"(?![0-9A-Za-z])"  # ... or just after

# (kind, pattern), applied in this order: longer / more specific forms first
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")),
    # mainland China resident ID: 6-digit area, birth date YYYYMMDD, 3-digit sequence, check digit or X
    ("id", re.compile(_D + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _E)),
    # US social security number
    ("id", re.compile(_D + r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}" + _E)),
    # China mobile: optional +86 / 0086, 11 digits starting 13-19, optional separators 3-4-4
    ("phone", re.compile(_D + r"(?:(?:\+|00)86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}" + _E)),
    # China landline: (0xx)xxxxxxxx, 0xx-xxxxxxxx, optional extension
    ("phone", re.compile(_D + r"(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}-)\s?\d{7,8}(?:-\d{1,4})?" + _E)),
    # international: +CC then 6-14 digits in groups
    ("phone", re.compile(r"(?<![\w+])\+\d{1,3}(?:[-.\s]?\(?\d{1,4}\)?){2,5}" + _E)),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-123-4567
    ("phone", re.compile(_D + r"(?:1[-.\s])?(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}" + _E)),
]

PLACEHOLDERS = {"email": "[EMAIL]", "id": "[ID]", "phone": "[PHONE]"}


def redact(text: str) -> tuple[str, dict[str, int]]:
    """Return the text with PII replaced by placeholders, and how many of each kind."""
    counts: dict[str, int] = {}
    for kind, pattern in PATTERNS:
        text, n = pattern.subn(PLACEHOLDERS[kind], text)
        if n:
            counts[kind] = counts.get(kind, 0) + n
    return text, counts


# ---- instruction-like text (prompt injection) ------------------------------------------
# Document text is already fenced as data in the prompt (retrieval/prompts.py); a small
# model may still echo or obey it. With ``ingest.strip_injections`` such sentences are
# replaced at ingestion, before they can reach a prompt.
INJECTION = re.compile(
    r"[^.!?\n。！？]*(?:"
    r"ignore\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier)\s+(?:instructions|prompts?|rules)"
    r"|disregard\s+(?:all\s+|the\s+)?(?:previous|prior|above)\s+(?:instructions|prompts?)"
    r"|(?:reveal|print|show|repeat)\s+(?:your|the)\s+(?:system\s+prompt|instructions)"
    r"|you\s+are\s+now\s+in\s+\w+\s+mode"
    r"|忽略(?:之前|以上|前面|先前)(?:的)?(?:所有|全部)?(?:指令|指示|提示|规则)"
    r"|(?:泄露|透露|输出)(?:你的)?系统提示"
    r")[^\n]*",  # from the sentence holding the marker to the end of its line: the orders that follow
    re.IGNORECASE,
)
INJECTION_PLACEHOLDER = "[instruction-like text removed]"


def strip_injections(text: str) -> tuple[str, int]:
    """Replace text that addresses the model with instructions (from the sentence holding a
    marker such as "ignore previous instructions" to the end of its line); return (text, how many)."""
    return INJECTION.subn(INJECTION_PLACEHOLDER, text)
