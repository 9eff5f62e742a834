"""Markdown through markdown-it-py, rendered to HTML and then to text."""

from __future__ import annotations

from pathlib import Path

from kbqa.ingest.encoding import NotTextError, decode_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.loaders.html import html_to_text


def load_markdown(path: Path, data: bytes) -> list[Page]:
    from markdown_it import MarkdownIt

    try:
        source, _ = decode_text(data)
    except NotTextError as exc:
        raise LoadError(path, str(exc)) from exc
    rendered = MarkdownIt("commonmark").enable("table").render(source)
    text = html_to_text(rendered)
    if not text.strip() and source.strip():  # markdown-it drops blocks nested past its limit: keep the source
        text = source
    return [Page(text)]
