"""The one error type loaders raise: it names the file and the reason."""

from __future__ import annotations

from pathlib import Path


class LoadError(Exception):
    """A document could not be turned into text. ``str()`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str, hint: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        message = f"{self.path}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
