"""HTML through lxml: scripts, styles and navigation stripped; the declared charset honoured;
tables as Markdown (`ingest.loaders.table`), their ``<caption>`` on the line above."""

from __future__ import annotations

import re
from pathlib import Path

from kbqa.ingest.encoding import NotTextError, decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.loaders.table import markdown_table

_DROP = ("script", "style", "noscript", "template", "svg", "head", "nav", "iframe")
# <meta charset="x"> and <meta http-equiv="Content-Type" content="text/html; charset=x">
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([a-z0-9._:+-]+)""", re.IGNORECASE)
_PRESCAN_BYTES = 8192  # browsers look in the first 1024 bytes; long <head>s put it later

_BLOCKS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "section", "article", "pre", "blockquote", "dt", "dd")


class _Table:
    """A table being read: its rows so far, the open row and cell, its caption."""

    def __init__(self):
        self.rows: list[list[str]] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.caption: list[str] | None = None
        self.caption_text = ""
        self.pad = 0  # empty cells to add after the open cell (its colspan less one)

    def end_cell(self):
        if self.cell is not None:
            if self.row is None:
                self.row = []
            self.row.append("".join(self.cell))
            self.cell = None

    def end_row(self):
        self.end_cell()
        if self.row is not None:
            self.rows.append(self.row)
            self.row = None

    def flat(self) -> str:
        """The table as one line, for a table inside another's cell: cells by spaces, rows by "; "."""
        self.end_row()
        return "; ".join(" ".join(" ".join(c.split()) for c in row if c.strip()) for row in self.rows if any(c.strip() for c in row))

    def markdown(self) -> str:
        self.end_row()
        table = markdown_table(self.rows)
        caption = " ".join(self.caption_text.split())
        return f"{caption}\n{table}" if caption and table else table or caption


class _TextTarget:
    """lxml parser target: collects text as the parser streams through the document, no tree
    built, so time grows with the document's size and any nesting depth keeps its text.
    A table's cells are gathered and the table written as Markdown at its end; a table inside
    a cell becomes that cell's text."""

    def __init__(self):
        self.out: list[str] = []
        self.dropping = 0  # depth inside <script>, <style>, ...
        self.tables: list[_Table] = []

    def _sink(self) -> list[str] | None:
        """Where text goes now: the open cell or caption, the page, or nowhere (between cells)."""
        if not self.tables:
            return self.out
        table = self.tables[-1]
        return table.caption if table.caption is not None else table.cell

    def start(self, tag, attrib):
        name = tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""
        if self.dropping or name in _DROP:
            self.dropping += 1
            return
        if name == "table":
            self.tables.append(_Table())
        elif self.tables and name in ("tr", "td", "th", "caption"):
            self._start_table_part(self.tables[-1], name, attrib)
        elif name in _BLOCKS:
            sink = self._sink()
            if sink is not None:
                sink.append(" " if self.tables else "\n")

    def _start_table_part(self, table: _Table, name: str, attrib) -> None:
        if name == "tr":
            table.end_row()
            table.row = []
        elif name == "caption":
            table.caption = []
        else:
            table.end_cell()
            table.cell = []
            try:
                span = min(int(attrib.get("colspan", 1)), 64)
            except (TypeError, ValueError):
                span = 1
            table.pad = span - 1  # the cell's text, then empty cells so later columns line up

    def end(self, tag):
        name = tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""
        if self.dropping:
            self.dropping -= 1
            return
        if self.tables and name in ("table", "tr", "td", "th", "caption"):
            self._end_table_part(name)
        elif name in _BLOCKS:
            sink = self._sink()
            if sink is not None:
                sink.append(" " if self.tables else "\n")

    def _end_table_part(self, name: str) -> None:
        table = self.tables[-1]
        if name == "table":
            table = self.tables.pop()
            sink = self._sink()
            if sink is self.out:
                sink.append(f"\n{table.markdown()}\n")
            elif sink is not None:
                sink.append(f" {table.flat()} ")
        elif name == "tr":
            table.end_row()
        elif name == "caption":
            table.caption_text, table.caption = "".join(table.caption or []), None
        else:
            pad, table.pad = table.pad, 0
            table.end_cell()
            if pad and table.row is not None:
                table.row.extend([""] * pad)

    def data(self, text):
        if not self.dropping:
            sink = self._sink()
            if sink is not None:
                sink.append(text)

    def comment(self, text):
        pass

    def pi(self, target, data=None):
        pass

    def close(self):
        while self.tables:  # tables never closed (recover mode closes them, but be sure)
            text = self.tables.pop().markdown()
            sink = self._sink() if self.tables else self.out
            if sink is not None:
                sink.append(f"\n{text}\n")
        return "".join(self.out)


def html_to_text(markup: str) -> str:
    """The text of an HTML document (already decoded), one line per block element."""
    from lxml import etree

    if not markup.strip():
        return ""
    parser = etree.HTMLParser(target=_TextTarget(), huge_tree=True, recover=True)
    try:
        parser.feed(markup)
    except ValueError:  # lxml refuses this str (lone surrogates): feed it UTF-8 bytes, said to be UTF-8
        parser = etree.HTMLParser(target=_TextTarget(), huge_tree=True, recover=True, encoding="utf-8")
        parser.feed(markup.encode("utf-8", "surrogatepass"))
    try:
        return parser.close()
    except etree.XMLSyntaxError:
        return ""


def declared_charset(data: bytes) -> str | None:
    """The charset a ``<meta>`` tag near the top of an HTML document declares, or None."""
    found = _META_CHARSET.search(data[:_PRESCAN_BYTES])
    return found.group(1).decode("ascii") if found else None


def load_html(path: Path, data: bytes) -> list[Page]:
    """HTML bytes to one page of text. The encoding: a BOM, else the declared ``<meta>``
    charset when the bytes fit it, else detection as for plain text (`decode_text`)."""
    try:
        markup, _ = decode_text(data, declared=declared_charset(data))
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    return [Page(html_to_text(markup))]
