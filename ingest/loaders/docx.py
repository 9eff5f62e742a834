"""DOCX through python-docx: paragraphs and tables, in document order.

The archive is checked first (`ingest.loaders.zipguard`): zip bombs and XML parts with a
DOCTYPE (entity expansion, external entities) are refused before python-docx opens them."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
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
            table = Table(block, document)
            for row in table.rows:
                cells = []
                for cell in row.cells:
                    text = cell.text.strip()
                    if not cells or cells[-1] != text:  # merged cells repeat
                        cells.append(text)
                lines.append(" | ".join(cells))
            lines.append("")
    return [Page("\n".join(lines))]
