"""Decode text files whose encoding is unknown: a BOM, a declared charset, UTF-8, UTF-8 mixed
line by line with a legacy codec, then the codec charset-normalizer finds (`ingest.charset`)."""

from __future__ import annotations

from kbqa.ingest.charset import codec_for_label, decode_as, detect

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


class NotTextError(ValueError):
    """The bytes are not text in any encoding tried; ``str()`` is the reason."""


def binary_reason(data: bytes) -> str | None:
    """Why the first 8 KiB look like binary data (NUL bytes, many control characters), or None."""
    sample = data[:8192]
    if not sample:
        return None
    if b"\x00" in sample:
        return "NUL bytes in the first 8 KiB"
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    if control / len(sample) > 0.05:
        return f"{control / len(sample):.0%} control characters in the first 8 KiB"
    return None


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Return (text, encoding name) for the bytes of a text file.

    In order: a byte-order mark; the `declared` charset (an HTML ``<meta charset>``) when the
    bytes decode with it; UTF-8; UTF-8 lines mixed with lines in one legacy codec; the codec
    charset-normalizer finds (`ingest.charset.detect`). Raise NotTextError with the reason for
    binary data, a broken UTF-16/32 file, or bytes that no encoding fits."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(name), name
            except UnicodeDecodeError as exc:
                if name != "utf-8-sig":
                    raise NotTextError(f"starts with a {name.upper()} byte-order mark but is not valid {name.upper()} (byte {exc.start})") from exc
                data = data[len(bom) :]  # a UTF-8 BOM, then lines in another encoding: go on
            break
    reason = binary_reason(data)
    if reason:
        raise NotTextError(f"binary data, not text ({reason})")
    if declared and (codec := codec_for_label(declared)):
        found = decode_as(data, codec)
        if found is not None:
            return found
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    found = _decode_lines(data) or detect(data)
    if found is None:
        wrong = f"; the declared charset {declared!r} does not fit either" if declared else ""
        raise NotTextError(f"undecodable bytes: not UTF-8, and no other text encoding fits{wrong}")
    return found


def _decode_lines(data: bytes) -> tuple[str, str] | None:
    """A file mixing encodings line by line (UTF-8 lines and lines in one legacy codec, most often
    GB18030/GBK, as when texts are pasted together): each line in the encoding that fits it. The
    legacy lines' codec is detected on those lines alone. None when the file is not that."""
    lines = data.split(b"\n")
    utf8: dict[int, str] = {}
    for number, line in enumerate(lines):
        try:
            utf8[number] = line.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if len(utf8) == len(lines) or all(lines[number].isascii() for number in utf8):
        return None  # no legacy line, or no UTF-8 line that is more than ASCII
    found = detect(b"\n".join(line for number, line in enumerate(lines) if number not in utf8))
    if found is None:
        return None
    codec = found[1]
    out = []
    for number, line in enumerate(lines):
        if number in utf8:
            out.append(utf8[number])
            continue
        try:
            out.append(line.decode(codec))
        except UnicodeDecodeError:
            return None
    return "\n".join(out), f"utf-8+{codec}"
