"""The public API has docstrings (issue #24, item 6), checked on the source with `ast`.

In the modules below, every public class (name not starting with ``_``) and every public
function or method of the module or of a public class, properties included, has a
docstring. Members of private classes and functions nested in functions are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_API = [
    "app/kb.py",
    "app/settings.py",
    "app/answer_service.py",
    "app/service.py",
    "retrieval/protocols.py",
    "retrieval/config.py",
    "ingest/config.py",
]


def undocumented(source: str, file: str) -> list[str]:
    """``file:line:name`` (``Class.member`` for a member) of each public definition without a docstring."""
    missing: list[str] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or child.name.startswith("_"):
                continue
            if ast.get_docstring(child) is None:
                missing.append(f"{file}:{child.lineno}:{prefix}{child.name}")
            if isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(source, filename=file), "")
    return missing


@pytest.mark.parametrize("file", PUBLIC_API)
def test_public_api_has_docstrings(file):
    missing = undocumented((ROOT / file).read_text(encoding="utf-8"), file)
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_the_docstring_checker_catches_what_it_should():
    source = '''
class Documented:
    """Yes."""

    @property
    def size(self) -> int:
        return 1

    def _private(self):
        pass

    def __init__(self):
        pass


class Bare:
    async def run(self):
        """Yes."""


class _Hidden:
    def public_but_hidden(self):
        pass


def top():
    def inner():
        pass
'''
    assert undocumented(source, "m.py") == ["m.py:6:Documented.size", "m.py:16:Bare", "m.py:26:top"]
