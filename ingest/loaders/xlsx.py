"""XLSX through openpyxl: one page per sheet, each sheet a Markdown table under its name.

The first row with text is the header. A sheet becomes ``Sheet: <name>`` and a Markdown
table (`ingest.loaders.table`); the splitter cuts a long table between rows and repeats the
sheet's name and header in every chunk, so a retrieved row still says what its numbers mean.
Cells are read as values: a formula gives the value Excel last saved with it (none, when no
spreadsheet program ever calculated the file).

Bounds: the archive is checked first (`ingest.loaders.zipguard`: zip bombs, XML with a
DOCTYPE); the workbook is opened read-only, so rows stream from the XML one at a time and a
declared dimension of a million rows costs nothing; the shared strings, which openpyxl holds
in memory, are limited to `MAX_SHARED_STRINGS_BYTES`; at most `table.MAX_COLUMNS` columns are
read, and a sheet past `table.MAX_ROWS` rows, or a workbook past `table.MAX_CELLS` cells, is
cut with a note in the file's summary line.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.loaders.table import MAX_CELLS, MAX_COLUMNS, cut_note, markdown_table, take_rows
from kbqa.ingest.loaders.zipguard import check_archive

# openpyxl holds every shared string in memory (a sheet's rows stream, its strings do not)
MAX_SHARED_STRINGS_BYTES = 64 * 2**20
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted XLSX, or a legacy .xls, is an OLE2 file


def load_xlsx(path: Path, data: bytes) -> list[Page]:
    """One page per worksheet, numbered from 1 in the workbook's order."""
    import openpyxl

    if data.startswith(_OLE):
        raise LoadError(path, "XLSX is password-protected or is a legacy .xls file (an OLE2 container)", "save it unencrypted as .xlsx")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise LoadError(path, "corrupt or truncated XLSX (not a zip archive)")
    with check_archive(path, data, "XLSX") as archive:
        strings = next((i for i in archive.infolist() if i.filename.lower().endswith("sharedstrings.xml")), None)
    if strings is not None and strings.file_size > MAX_SHARED_STRINGS_BYTES:
        raise LoadError(
            path,
            f"XLSX shared strings expand to {strings.file_size / 2**20:,.0f} MiB (limit "
            f"{MAX_SHARED_STRINGS_BYTES // 2**20} MiB, ingest.loaders.xlsx.MAX_SHARED_STRINGS_BYTES)",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions it skips
        try:
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except (KeyError, zipfile.BadZipFile, ValueError, OSError) as exc:
            raise LoadError(path, f"corrupt XLSX: {type(exc).__name__}: {exc}") from exc
        try:
            return _sheets(workbook)
        finally:
            workbook.close()


def _sheets(workbook) -> list[Page]:
    pages = []
    budget = MAX_CELLS
    for number, sheet in enumerate(workbook.worksheets, start=1):
        if budget <= 0:
            pages.append(Page("", number, problem="not read: the workbook's earlier sheets used up its cell limit (ingest.loaders.table.MAX_CELLS)"))
            continue
        rows, cells, cut = take_rows(sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True), budget)
        budget -= cells
        table = markdown_table(rows)
        if not table:
            pages.append(Page("", number, problem="empty sheet"))
            continue
        note = cut_note(f"sheet {sheet.title!r} (page {number})", len(rows)) if cut else None
        pages.append(Page(f"Sheet: {sheet.title}\n{table}", number, note=note))
    if not pages:
        pages.append(Page("", 1, problem="the workbook has no worksheets"))
    return pages
