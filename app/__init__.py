"""kbqa's application layer: settings, the `KnowledgeBase` front door, CLIs, UI and server."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

__all__ = ["KnowledgeBase", "Settings"]


def __getattr__(name: str):
    # keep `import app` cheap: load the front door on first use
    if name == "KnowledgeBase":
        from kbqa.app.kb import KnowledgeBase

        return KnowledgeBase
    if name == "Settings":
        from kbqa.app.settings import Settings

        return Settings
    raise AttributeError(name)
