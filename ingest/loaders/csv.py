"""CSV and TSV: one page, a Markdown table whose header is the file's first row.

The bytes are decoded as any text file is (`ingest.encoding.decode_text`: BOMs, UTF-8,
GB18030 and the other legacy codecs). The delimiter is sniffed from the first lines among
``, ; TAB |`` (a ``.tsv`` file, or a sample the sniffer cannot read, falls back to TAB or comma).
The same bounds as a spreadsheet apply (`ingest.loaders.table.MAX_ROWS`, ``MAX_CELLS``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from kbqa.ingest.encoding import NotTextError, decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.loaders.table import cut_note, markdown_table, take_rows

_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024
MAX_FIELD_CHARS = 1_000_000  # a longer field fails the file (csv's default limit is 131,072)


def sniff_delimiter(text: str, default: str = ",") -> str:
    """The delimiter of a CSV text, from its first lines; `default` when the sniffer cannot tell."""
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS:
        sample = sample.rsplit("\n", 1)[0]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return default


def load_csv(path: Path, data: bytes) -> list[Page]:
    try:
        text, _ = decode_text(data)
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    delimiter = sniff_delimiter(text, "\t" if path.suffix.lower() == ".tsv" else ",")
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows, _, cut = take_rows(reader)
    except csv.Error as exc:
        raise LoadError(path, f"malformed CSV at line {reader.line_num}: {exc}") from exc
    table = markdown_table(rows)
    if not table:
        raise LoadError(path, "CSV has no cells with text")
    return [Page(table, note=cut_note(path.name, len(rows)) if cut else None)]
