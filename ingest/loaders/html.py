"""HTML through BeautifulSoup (lxml): scripts, styles and navigation stripped."""
from __future__ import annotations

from pathlib import Path

from ingest.encoding import NotTextError, decode_text
from ingest.errors import LoadError
from ingest.loaders.base import Page

_DROP = ("script", "style", "noscript", "template", "svg", "head", "nav", "iframe")
_BLOCKS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "section", "article", "pre", "blockquote", "dt", "dd")


def html_to_text(markup: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    for tag in soup(_DROP):
        tag.decompose()
    for cell in soup.find_all(["td", "th"]):
        cell.append(" | ")
    for block in soup.find_all(_BLOCKS):
        block.insert_before("\n")
        block.append("\n")
    return soup.get_text()


def load_html(path: Path, data: bytes) -> list[Page]:
    try:
        markup, _ = decode_text(data)
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    return [Page(html_to_text(markup))]
