"""Tables as Markdown text, the one form every loader gives a table in.

A table is a header line, a separator line and one line per row:

    | 型号 | 功率 (W) |
    | --- | --- |
    | KB-200 | 450 |

The first row is the header. Cells are one line each (line breaks become spaces, ``|`` is
escaped as ``\\|``); rows with no text and columns empty in every row are dropped; an empty
header cell is named after its column (``column 3``). The splitter (`ingest.split_tables`)
finds these blocks in a page's text, keeps a table whole when it fits in a chunk, and
otherwise cuts it between rows with the header repeated in every chunk, so that a row's
values keep their column names.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence

MAX_CELL_CHARS = 2_000  # a longer cell is cut (a table cell holding a whole document)


def cell_text(value: object) -> str:
    """One cell as a single line of Markdown-safe text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes" if value.second == 0 else "seconds").removesuffix(" 00:00")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    text = " ".join(str(value).split())
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS] + " …"
    return text.replace("|", "\\|")


def markdown_table(rows: Iterable[Sequence[object]]) -> str:
    """The rows (the first is the header) as a Markdown table; "" when no cell has text."""
    cells = [[cell_text(v) for v in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    used = [i for i in range(width) if any(i < len(row) and row[i] for row in cells)]
    cells = [[row[i] if i < len(row) else "" for i in used] for row in cells]
    header = [name or f"column {n}" for n, name in enumerate(cells[0], start=1)]
    lines = [_line(header), _line(["---"] * len(header))]
    lines += [_line(row) for row in cells[1:]]
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# Bounds on a sheet or a CSV file, so that a huge one cannot fill memory or the index. Past
# them a table is cut (its first rows are kept) and the file's summary line says where.
MAX_ROWS = 20_000  # rows with text kept per sheet or CSV file
MAX_COLUMNS = 256  # columns read per row (the rest ignored)
MAX_CELLS = 1_000_000  # cells with text kept per file, all sheets together


def take_rows(rows: Iterable[Sequence[object]], max_cells: int = MAX_CELLS) -> tuple[list[list[object]], int, bool]:
    """(rows with text, each cut at MAX_COLUMNS; cells with text kept; whether the table was cut),
    stopping after MAX_ROWS rows or `max_cells` cells. Rows without text are skipped, not counted."""
    kept: list[list[object]] = []
    cells = 0
    for row in rows:
        row = list(row[:MAX_COLUMNS])
        filled = sum(1 for v in row if v is not None and str(v).strip())
        if not filled:
            continue
        if len(kept) >= MAX_ROWS or cells + filled > max_cells:
            return kept, cells, True
        kept.append(row)
        cells += filled
    return kept, cells, False


def cut_note(where: str, rows: int) -> str:
    """The summary's note for a table cut by `take_rows`."""
    return f"{where} cut after {rows:,} rows (limits: {MAX_ROWS:,} rows per sheet, {MAX_CELLS:,} cells per file; ingest.loaders.table.MAX_ROWS / MAX_CELLS)"
