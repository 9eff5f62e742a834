"""Decode text files whose encoding is unknown: BOMs, UTF-8, GB18030/GBK, then a best guess."""
from __future__ import annotations

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


class NotTextError(ValueError):
    pass


def looks_binary(data: bytes) -> bool:
    """NUL bytes or many control characters in the first 8 KiB mean binary data."""
    sample = data[:8192]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return control / len(sample) > 0.05


def decode_text(data: bytes) -> tuple[str, str]:
    """Return (text, encoding name). Raise NotTextError for binary data."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data.decode(name), name
    if looks_binary(data):
        raise NotTextError("binary data, not text")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    mixed = _decode_lines(data)
    if mixed is not None:
        return mixed, "utf-8+gb18030"
    try:
        text = data.decode("gb18030")
        if _mostly_cjk_or_ascii(text):
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise NotTextError("undecodable bytes: no text encoding fits")
    return str(best), best.encoding


def _decode_lines(data: bytes) -> str | None:
    """A file mixing encodings line by line (UTF-8 lines and GB18030/GBK lines, as when texts
    are pasted together): each line in the encoding that fits it. None when it is not that."""
    lines = data.split(b"\n")
    out, utf8_non_ascii, gb = [], False, False
    for line in lines:
        try:
            text = line.decode("utf-8")
            utf8_non_ascii = utf8_non_ascii or not line.isascii()
        except UnicodeDecodeError:
            try:
                text = line.decode("gb18030")
            except UnicodeDecodeError:
                return None
            if not _mostly_cjk_or_ascii(text):
                return None
            gb = True
        out.append(text)
    return "\n".join(out) if utf8_non_ascii and gb else None


def _mostly_cjk_or_ascii(text: str) -> bool:
    if not text:
        return True
    ok = sum(1 for ch in text if ord(ch) < 128 or "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return ok / len(text) > 0.9
