"""Text cleaning: HTML remnants out, NFKC (full-width to half-width), whitespace normalised."""

from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_SPACES = re.compile(r"[ \t\u00a0\u3000\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# NFKC turns Chinese full-width punctuation into ASCII; keep these as they are, since
# they mark Chinese sentence ends for the splitter and read naturally in answers.
_KEEP = {"，": "\x01", "：": "\x02", "；": "\x03", "！": "\x04", "？": "\x05", "（": "\x06", "）": "\x07"}
_RESTORE = {v: k for k, v in _KEEP.items()}


def clean_text(text: str) -> str:
    if "<" in text and ">" in text:
        text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(_KEEP.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKC", text)
    text = "".join(_RESTORE.get(ch, ch) for ch in text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
