"""kbqa's version: the installed package's metadata, else (a checkout that is not installed) pyproject.toml's."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def kbqa_version() -> str:
    try:
        return version("kbqa")
    except PackageNotFoundError:
        return pyproject_version(PYPROJECT)


def pyproject_version(path: Path) -> str:
    """`[project] version` of a pyproject.toml; "unknown" when the file is missing or has none."""
    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return "unknown"
