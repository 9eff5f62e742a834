"""DOCX through python-docx: paragraphs and tables, in document order; tables as Markdown
(`ingest.loaders.table`), a merged cell's text in its first column only.

The archive is checked first (`ingest.loaders.zipguard`): zip bombs and XML parts with a
DOCTYPE (entity expansion, external entities) are refused before python-docx opens them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.loaders.table import markdown_table
from kbqa.ingest.loaders.zipguard import check_archive


def load_docx(path: Path, data: bytes) -> list[Page]:
    """The text of a DOCX as one page; LoadError for a corrupt, truncated or hostile archive."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise LoadError(path, "corrupt or truncated DOCX (not a zip archive)")
    check_archive(path, data, "DOCX").close()
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise LoadError(path, f"corrupt DOCX: {exc}") from exc
    lines: list[str] = []
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append(Paragraph(block, document).text)
        elif tag == "tbl":
            lines += ["", _table_markdown(Table(block, document)), ""]
    return [Page("\n".join(lines))]


def _table_markdown(table) -> str:
    """A python-docx table as Markdown. A merged cell appears once per grid column it spans in
    ``row.cells``; its text is kept in the first and the others left empty, so columns line up."""
    rows = []
    for row in table.rows:
        cells = row.cells  # kept alive, so the same <w:tc> is the same object
        rows.append(["" if any(c._tc is cell._tc for c in cells[:i]) else cell.text for i, cell in enumerate(cells)])
    return markdown_table(rows)
