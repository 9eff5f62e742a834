"""HTML through BeautifulSoup (lxml): scripts, styles and navigation stripped."""
from __future__ import annotations

from pathlib import Path

from ingest.encoding import NotTextError, decode_text
from ingest.errors import LoadError
from ingest.loaders.base import Page

_DROP = ("script", "style", "noscript", "template", "svg", "head", "nav", "iframe")
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
    from lxml import etree

    if not markup.strip():
        return ""
    parser = etree.HTMLParser(target=_TextTarget(), huge_tree=True, recover=True)
    try:
        parser.feed(markup)
    except ValueError:  # a str with an encoding declaration
        parser = etree.HTMLParser(target=_TextTarget(), huge_tree=True, recover=True)
        parser.feed(markup.encode("utf-8", "surrogatepass"))
    try:
        return parser.close()
    except etree.XMLSyntaxError:
        return ""


def load_html(path: Path, data: bytes) -> list[Page]:
    try:
        markup, _ = decode_text(data)
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    return [Page(html_to_text(markup))]
