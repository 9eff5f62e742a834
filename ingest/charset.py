"""Which legacy codec a byte string is in: charset-normalizer decides, with tie-breaking for the
short texts where it cannot, and names that decode the way browsers and editors do.

Used by `ingest.encoding.decode_text` once BOMs and UTF-8 have been ruled out.
"""

from __future__ import annotations

import codecs

# The detector often scores several codecs the same on short texts (cp1250 = cp1252 = cp1257
# for French; gb18030 = cp949 for a line of Chinese). Within a tie, readings that stay in their
# codec's common characters come first (`in_core`), then this order, then the detector's own.
# Chinese first, as this is a Chinese-first knowledge base; the price: a line or two of Polish
# or Czech in cp1250 that the detector cannot tell from cp1252 is read as cp1252.
PREFERRED = ("gb18030", "cp1252", "big5", "cp932", "cp949", "euc_jp", "cp1251", "cp1250")

# The "core" repertoire of a multi-byte codec: the common characters real text is made of. Bytes
# in another codec, read with this one, land mostly outside it (Shift-JIS read as GB18030 gives
# rare GBK-extension hanzi): such a reading loses a tie even when the detector scores it equal.
_CORE = {"gb18030": "gb2312", "big5": "big5", "cp950": "big5", "big5hkscs": "big5", "cp932": "shift_jis", "cp949": "euc_kr"}
CORE_SHARE = 0.8  # at least this share of the non-ASCII characters in the core repertoire

# How close to the detector's best a candidate must score to count as a tie (its own notion of a
# tie is 0.005 chaos and 0.02 coherence; short texts need more room than that).
TIE_CHAOS = 0.07
TIE_COHERENCE = 0.05

# The codecs to decode with for what was detected or declared: the superset in everyday use
# (the WHATWG Encoding Standard reads iso-8859-1 as windows-1252, gb2312 as GBK, ...).
_DECODE_AS = {
    "ascii": ("cp1252", "latin-1"),
    "iso8859-1": ("cp1252", "latin-1"),  # cp1252 lacks 5 bytes that latin-1 maps to controls
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "shift_jis": ("cp932",),
    "euc_kr": ("cp949",),
    "big5": ("big5", "cp950", "big5hkscs"),
}

# Web labels Python does not know, and a declared UTF-16/32 in a file whose declaration could be
# read as ASCII (it is really UTF-8, as the HTML standard says).
_LABELS = {
    "windows-31j": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "x-gbk": "gb18030",
    "x-euc-kr": "cp949",
    "x-big5": "big5",
    "utf-16": "utf-8",
    "utf-16le": "utf-8",
    "utf-16be": "utf-8",
    "utf-32": "utf-8",
}
# Python codecs that are no character set a document could be written in.
_NOT_CHARSETS = {"idna", "punycode", "unicode_escape", "raw_unicode_escape", "undefined", "utf_7", "charmap", "mbcs", "oem"}


def codec_for_label(label: str) -> str | None:
    """The Python codec for a declared charset label (``Shift_JIS``, ``gb2312``, ``ISO-8859-1``),
    or None when the label names no text encoding."""
    label = label.strip().strip("\"'").lower()
    label = _LABELS.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    name = info.name.replace("-", "_")
    if not getattr(info, "_is_text_encoding", True) or name in _NOT_CHARSETS:
        return None
    return info.name


def decode_as(data: bytes, codec: str) -> tuple[str, str] | None:
    """(text, codec used): decoded strictly with the superset `codec` stands for in everyday use,
    or with `codec` itself; None when none of them fits."""
    canonical = codecs.lookup(codec).name
    for name in _DECODE_AS.get(canonical, (canonical,)):
        try:
            return data.decode(name), codecs.lookup(name).name
        except UnicodeDecodeError:
            continue
    return None


def detect(data: bytes) -> tuple[str, str] | None:
    """(text, codec) for bytes in an unknown legacy encoding, or None when no codec fits.

    charset-normalizer ranks the candidates; among those it scores equal, a reading that stays in
    its codec's common characters wins, then `PREFERRED` order. When the detector finds nothing
    (very short or odd texts), GB18030 is taken only if it reads as Chinese."""
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(data) if not m.encoding.startswith(("utf_16", "utf_32"))]  # never without a BOM
    for codec in _ranked(matches):
        found = decode_as(data, codec)
        if found is not None:
            return found
    return _gb18030_fallback(data)


def _ranked(matches: list) -> list[str]:
    """Codec names, best first: the detector's tie group re-ordered, then the rest as ranked.
    A match stands for every codec that decodes the bytes to the same text; it is named by the
    most preferred of them (cp1252 rather than cp1250 for identical output)."""
    if not matches:
        return []
    best = matches[0]
    tied = [m for m in matches if m.chaos - best.chaos <= TIE_CHAOS and best.coherence - m.coherence <= TIE_COHERENCE]
    rest = [m for m in matches if all(m is not t for t in tied)]
    if len(tied) > 1:
        tied.sort(key=_tie_key)
    return [_name(m) for m in tied] + [_name(m) for m in rest]


def _name(match) -> str:
    return min(match.could_be_from_charset, key=_preference)  # stable: the detector's name on a tie


def _tie_key(match) -> tuple[bool, int]:
    """Readings outside their codec's common characters last, then by `PREFERRED`."""
    name = _name(match)
    outside = codecs.lookup(name).name in _CORE and not in_core(str(match), name)
    return outside, _preference(name)


def _preference(codec: str) -> int:
    try:
        name = codecs.lookup(codec).name
    except LookupError:
        return len(PREFERRED)
    for rank, preferred in enumerate(PREFERRED):
        if name == codecs.lookup(preferred).name:
            return rank
    return len(PREFERRED)


def in_core(text: str, codec: str) -> bool:
    """Whether `text`, read with multi-byte `codec`, is mostly that codec's common characters
    (always true for codecs without a core repertoire listed here). Half-width katakana count
    as outside: rare in real text, they are what other CJK bytes look like read as Shift-JIS."""
    core = _CORE.get(codecs.lookup(codec).name)
    if core is None:
        return True
    wide = [ch for ch in text[:20000] if ord(ch) >= 128]  # a sample is enough to tell
    if not wide:
        return True
    inside = sum(1 for ch in wide if _encodes(ch, core) and not "\uff61" <= ch <= "\uff9f")
    return inside / len(wide) >= CORE_SHARE


def _encodes(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _gb18030_fallback(data: bytes) -> tuple[str, str] | None:
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return None
    if mostly_cjk_or_ascii(text) and in_core(text, "gb18030"):
        return text, "gb18030"
    return None


def mostly_cjk_or_ascii(text: str) -> bool:
    """Over 90% ASCII, CJK (U+3000-U+9FFF) or full-width forms: text as Chinese reads."""
    if not text:
        return True
    ok = sum(1 for ch in text if ord(ch) < 128 or "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return ok / len(text) > 0.9
