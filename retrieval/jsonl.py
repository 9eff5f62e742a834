"""The JSONL line reader shared by finetune/, eval/ and app/: errors name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def iter_jsonl(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, str, Any]]:
    """(line number, "FILE:LINE", parsed value) for each non-blank line of a UTF-8 file (a
    byte-order mark is skipped). A line that is not JSON raises `error` naming FILE:LINE."""
    path = Path(path)
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                value = json.loads(line.rstrip("\r\n"))  # columns counted within the line
            except json.JSONDecodeError as exc:
                raise error(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
            yield lineno, where, value
