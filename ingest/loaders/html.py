"""HTML through lxml: scripts, styles and navigation stripped; the declared charset honoured."""
from __future__ import annotations

import re
from pathlib import Path

from kbqa.ingest.encoding import NotTextError, decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page

_DROP = ("script", "style", "noscript", "template", "svg", "head", "nav", "iframe")
# <meta charset="x"> and <meta http-equiv="Content-Type" content="text/html; charset=x">
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([a-z0-9._:+-]+)""", re.IGNORECASE)
_PRESCAN_BYTES = 8192  # browsers look in the first 1024 bytes; long <head>s put it later

_BLOCKS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "section", "article", "pre", "blockquote", "dt", "dd")


class _TextTarget:
    """lxml parser target: collects text as the parser streams through the document, no tree
    built, so time grows with the document's size and any nesting depth keeps its text."""

    def __init__(self):
        self.out: list[str] = []
        self.dropping = 0  # depth inside <script>, <style>, ...

    def start(self, tag, attrib):
        name = tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""
        if self.dropping or name in _DROP:
            self.dropping += 1
        elif name in _BLOCKS:
            self.out.append("\n")

    def end(self, tag):
        name = tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""
        if self.dropping:
            self.dropping -= 1
            return
        if name in ("td", "th"):
            self.out.append(" | ")
        if name in _BLOCKS:
            self.out.append("\n")

    def data(self, text):
        if not self.dropping:
            self.out.append(text)

    def comment(self, text):
        pass

    def pi(self, target, data=None):
        pass

    def close(self):
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
