"""The charter's layering (issue #24, docs/ARCHITECTURE.md), checked on the source itself.

1. Import arrows. Every .py file under app/, ingest/, retrieval/, finetune/ and eval/ is
   parsed with `ast` and every import in it is checked, wherever it stands: module level,
   inside functions and methods, under ``if TYPE_CHECKING:``, in ``try`` blocks. Forms:
   ``import x.y``, ``from x import y``, relative imports (``from . import y``,
   ``from ..z import y``), and dynamic imports whose target is written in the source:
   ``importlib.import_module("x.y")`` / ``__import__("x")`` with a literal name, and the
   ``"package.module:function"`` strings that lazy tables (ingest/loaders/base.py) and
   uvicorn factories use.

       app                      -> ingest, finetune, eval, retrieval
       ingest, finetune, eval   -> retrieval
       retrieval                -> nothing of ours

   No product part imports bench/ or tests/ (they may import anything). Inside app/, only
   app/server/ and app/cli/ import kbqa.app.server or kbqa.app.cli (the front ends sit on
   top of the service). bench/ uses public names only: it imports no ``_private`` name or
   module of ours and reads no ``x._private`` attribute (x other than ``self``, ``cls`` or
   ``super()``), so a backend's internals can change without breaking a benchmark.

2. Cheap imports. Importing each part, and the modules that the CLIs and the server load
   first, loads none of torch, transformers, chromadb, gradio: each import runs in a
   fresh interpreter, and a failure names the import chain that pulled the library in.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# part -> the parts it may import (besides itself)
ALLOWED: dict[str, frozenset[str]] = {
    "retrieval": frozenset(),
    "ingest": frozenset({"retrieval"}),
    "finetune": frozenset({"retrieval"}),
    "eval": frozenset({"retrieval"}),
    "app": frozenset({"ingest", "finetune", "eval", "retrieval"}),
}
PARTS = tuple(ALLOWED)
# top-level names that are ours: the product parts, and the two that may import anything
OURS = frozenset(PARTS) | {"bench", "tests"}

_ENTRY_POINT = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")  # "kbqa.ingest.loaders.pdf:load_pdf"
_IMPORT_FUNCS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    file: Path  # relative to ROOT
    line: int
    target: str  # absolute dotted module name ("" when it cannot be resolved)
    how: str  # the statement, for the report
    names: tuple[str, ...] = ()  # what ``from target import a, b`` takes from the module

    @property
    def where(self) -> str:
        return f"{self.file.as_posix()}:{self.line}"


def _source_files() -> list[Path]:
    files = []
    for part in PARTS:
        files += sorted((ROOT / part).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _package_of(path: Path) -> list[str]:
    """The package a module's relative imports are resolved against: ``ingest/loaders/base.py``
    -> ["ingest", "loaders"]; ``ingest/loaders/__init__.py`` -> ["ingest", "loaders"]."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1]


def _resolve_relative(package: list[str], level: int, module: str | None) -> str:
    """Absolute name of ``from <level dots><module> import ...``; "" when it climbs above the top."""
    if level - 1 >= len(package):
        return ""
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def imports_in(path: Path) -> list[Import]:
    """Every import in the file, at any depth of its syntax tree."""
    rel = path.relative_to(ROOT)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
    package = _package_of(path)
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            names = ", ".join(a.name for a in node.names)
            if node.level:
                target = _resolve_relative(package, node.level, node.module)
                how = f"from {'.' * node.level}{node.module or ''} import {names}"
            else:
                target, how = node.module or "", f"from {node.module} import {names}"
            found.append(Import(rel, node.lineno, target, how, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Call) and _call_name(node.func) in _IMPORT_FUNCS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                name = arg.value
                if name.startswith("."):  # import_module(".x", package="...")
                    pkg = next((k.value.value for k in node.keywords if k.arg == "package" and isinstance(k.value, ast.Constant)), None)
                    if pkg is None and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                        pkg = node.args[1].value
                    level = len(name) - len(name.lstrip("."))
                    name = _resolve_relative(str(pkg or ".".join(package)).split("."), level, name.lstrip(".") or None)
                found.append(Import(rel, node.lineno, name, f"{_call_name(node.func)}({arg.value!r})"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _ENTRY_POINT.match(node.value)
            if match and _top(match.group(1)) in OURS:
                found.append(Import(rel, node.lineno, match.group(1), f"dynamic import target {node.value!r}"))
    return found


def _top(name: str) -> str:
    """The part a module name belongs to: ``kbqa.ingest.loaders`` -> ``ingest`` (the parts are
    installed under the ``kbqa`` namespace); a name outside it keeps its first component."""
    parts = name.split(".")
    return parts[1] if parts[0] == "kbqa" and len(parts) > 1 else parts[0]


def violations_of(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    part = rel.parts[0]
    out = []
    for imp in imports_in(path):
        if not imp.target:
            out.append(f"{imp.where}: {imp.how}: relative import climbs above the top-level package {part!r}")
            continue
        top = _top(imp.target)
        if imp.target.split(".")[0] in PARTS and not imp.how.startswith("from ."):
            out.append(f"{imp.where}: {imp.how}: import our parts as kbqa.{imp.target} (a bare {imp.target.split('.')[0]!r} would shadow or be shadowed)")
            continue
        if top not in OURS or top == part:
            continue
        if top not in ALLOWED[part]:
            allowed = ", ".join(sorted(ALLOWED[part])) or "nothing of ours"
            out.append(f"{imp.where}: {imp.how}: {part}/ imports {top}/ ({part}/ may import {allowed})")
    return out


FRONT_ENDS = ("app.server", "app.cli")  # inside app/: imported only from these folders


def _dotted(target: str) -> str:
    """``kbqa.app.server.api`` -> ``app.server.api``: the name inside our tree."""
    return target[len("kbqa.") :] if target.startswith("kbqa.") else target


def front_end_violations(path: Path) -> list[str]:
    """An app/ module below the front ends (service, kb, ...) that imports app/server/ or app/cli/."""
    rel = path.relative_to(ROOT)
    if rel.parts[0] != "app" or (len(rel.parts) > 2 and rel.parts[1] in ("server", "cli")):
        return []
    out = []
    for imp in imports_in(path):
        name = _dotted(imp.target)
        hit = next((f for f in FRONT_ENDS if name == f or name.startswith(f + ".")), None)
        if hit:
            out.append(f"{imp.where}: {imp.how}: {rel.as_posix()} sits below {hit.replace('.', '/')}/ and may not import it")
    return out


def private_import_violations(path: Path) -> list[str]:
    """A ``_private`` name (or module) of ours imported by a bench/ script."""
    out = []
    for imp in imports_in(path):
        for full in [f"{imp.target}.{name}" for name in imp.names] or [imp.target]:
            if _top(full) not in PARTS or not full.startswith("kbqa."):
                continue
            private = [p for p in full.split(".") if p.startswith("_") and not p.startswith("__")]
            if private:
                out.append(f"{imp.where}: imports {full}: {private[0]} is private to its module (make it public there)")
    return out


def _private(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_attribute_violations(path: Path) -> list[str]:
    """``x._name`` (or ``getattr(x, "_name")``) in a bench/ script, x other than ``self``, ``cls``
    or ``super()``: a script's own classes, and the hooks it overrides, keep their private names."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in ("self", "cls")) or (isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super"):
                continue
        elif not (isinstance(node, ast.Call) and ast.unparse(node.func) in ("getattr", "setattr", "hasattr") and len(node.args) > 1):
            continue
        elif not (isinstance(node.args[1], ast.Constant) and _private(node.args[1].value)):
            continue
        out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)} uses a private attribute (give the backend a public method)")
    return out


# ---- 1. import arrows --------------------------------------------------------------------
def test_every_part_is_there():
    files = _source_files()
    for part in PARTS:
        assert (ROOT / part / "__init__.py").is_file(), f"{part}/__init__.py is missing"
        assert any(f.relative_to(ROOT).parts[0] == part for f in files), f"no .py files under {part}/"


def test_import_arrows():
    problems: list[str] = []
    for path in _source_files():
        try:
            problems += violations_of(path)
        except SyntaxError as exc:
            problems.append(f"{path.relative_to(ROOT)}:{exc.lineno}: cannot be parsed ({exc.msg})")
    assert not problems, f"{len(problems)} import(s) break the layering (docs/ARCHITECTURE.md):\n" + "\n".join(problems)


def test_front_ends_sit_on_top_of_app():
    problems = [p for path in _source_files() for p in front_end_violations(path)]
    assert not problems, "\n".join(problems)


def test_bench_uses_public_names_only():
    scripts = sorted((ROOT / "bench").rglob("*.py"))
    assert scripts, "no bench/ scripts found"
    problems = [p for path in scripts for p in private_import_violations(path) + private_attribute_violations(path)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "file, source, bad",
    [
        ("app/service.py", "from kbqa.app.server.uploads import check_upload\n", True),
        ("app/kb.py", "def f():\n    from kbqa.app.cli.common import fail\n", True),
        ("app/service.py", "from .server import api\n", True),
        ("app/service.py", "from kbqa.app.uploads import check_upload\nfrom kbqa.app.serverless import x\n", False),
        ("app/server/api.py", "from kbqa.app.server.auth import KeyRing\nfrom kbqa.app.cli.common import fail\n", False),
        ("app/cli/serve_cmd.py", "from kbqa.app.server import build_app\n", False),
    ],
)
def test_the_front_end_checker_catches_what_it_should(tmp_path, monkeypatch, file, source, bad):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    found = front_end_violations(path)
    assert bool(found) == bad, found


@pytest.mark.parametrize(
    "source, bad",
    [
        ("from kbqa.app.cli.eval_retrieval_cmd import _DONE, build_kb\n", True),
        ("def f():\n    from kbqa.retrieval._internal import x\n", True),
        ("import kbqa.eval._helpers\n", True),
        ("from kbqa.eval.benchmarks import Benchmark, load_squad\nfrom kbqa import __version__\n", False),
        ("from bench.finetune_squad import _write_jsonl_gz\nfrom numpy import _pytesttester\n", False),
        ("tok([llm._render(m)])\n", True),
        ("have = store._collection.count()\n", True),
        ("index._dirty = True\n", True),
        ("def f(make):\n    return make()._x\n", True),
        ("name = getattr(store._ix, 'kind')\nbackend = getattr(store, '_gpu', None)\n", True),
        ("class A(B):\n    def m(self):\n        return self._y, super()._hook(1), A.__name__\n", False),
        ("class A:\n    @classmethod\n    def m(cls):\n        return cls._n, getattr(cls, 'n'), x.__class__, x.name\n", False),
    ],
)
def test_the_private_name_checker_catches_what_it_should(tmp_path, monkeypatch, source, bad):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    path = tmp_path / "bench" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    found = private_import_violations(path) + private_attribute_violations(path)
    assert bool(found) == bad, found


# The checker itself, on small made-up modules: a test that cannot fail proves nothing.
@pytest.mark.parametrize(
    "file, source, bad",
    [
        ("retrieval/x.py", "import kbqa.app.kb\n", True),
        ("retrieval/x.py", "def f():\n    from kbqa.ingest.manifest import Manifest\n", True),
        ("retrieval/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kbqa.eval import run\n", True),
        ("retrieval/x.py", "import bench.run\n", True),
        ("retrieval/stores/x.py", "from ..types import Chunk\nfrom . import factory\n", False),
        ("retrieval/x.py", "from ... import something\n", True),  # climbs out of retrieval/
        ("ingest/x.py", "from kbqa.retrieval.types import Chunk\nimport numpy\n", False),
        ("ingest/x.py", "from retrieval.types import Chunk\n", True),  # bare: not under the kbqa namespace
        ("ingest/x.py", "class A:\n    def m(self):\n        import kbqa.finetune.train\n", True),
        ("ingest/x.py", "import importlib\nimportlib.import_module('kbqa.app.kb')\n", True),
        ("ingest/x.py", "TABLE = {'.pdf': 'kbqa.eval.report:render_report'}\n", True),
        ("ingest/loaders/x.py", "TABLE = {'.pdf': 'kbqa.ingest.loaders.pdf:load_pdf'}\n", False),
        ("eval/x.py", "try:\n    from kbqa.finetune import config\nexcept ImportError:\n    pass\n", True),
        ("finetune/x.py", "import kbqa.eval.scoring as s\n", True),
        ("app/x.py", "import kbqa.ingest, kbqa.finetune, kbqa.eval, kbqa.retrieval\nfrom kbqa.app.kb import KnowledgeBase\n", False),
        ("app/x.py", "import app.kb\n", True),
        ("app/server/x.py", "from ..kb import KnowledgeBase\nfrom .. import settings\n", False),
        ("app/x.py", "from tests.conftest import ROOT\n", True),
    ],
)
def test_the_checker_catches_what_it_should(tmp_path, monkeypatch, file, source, bad):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    found = violations_of(path)
    assert bool(found) == bad, found
    for line in found:
        assert line.startswith(f"{file}:"), line  # file:line


# ---- 2. cheap imports --------------------------------------------------------------------
HEAVY = ("torch", "transformers", "chromadb", "gradio")
CHEAP = [
    "kbqa.retrieval",
    "kbqa.ingest",
    "kbqa.finetune",
    "kbqa.eval",
    "kbqa.app",
    "kbqa.app.kb",
    "kbqa.app.service",
    "kbqa.app.server.api",
    "kbqa.retrieval.retriever",
]
# module -> why it is expected to load a heavy library today (pytest xfail, strict)
KNOWN_HEAVY: dict[str, str] = {}

# Runs in a fresh interpreter: records, for each heavy library, the chain of our modules
# being imported when it was first asked for, then imports the module under test.
_PROBE = r"""
import json, sys
HEAVY = set(sys.argv[2].split(","))
chains = {}

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in chains:
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                mod = frame.f_globals.get("__name__", "")
                line = f"{mod} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})"
                if not mod.startswith(("importlib", "_frozen_importlib")) and mod != "__main__" and (not chain or chain[-1].split(" ")[0] != mod):
                    chain.append(line)
                frame = frame.f_back
            chains[top] = list(reversed(chain)) + [name]
        return None

sys.meta_path.insert(0, Spy())
import importlib
importlib.import_module(sys.argv[1])
loaded = sorted(n for n in HEAVY if n in sys.modules)
print(json.dumps({"loaded": loaded, "chains": {n: chains.get(n, []) for n in loaded}}))
"""


@pytest.mark.parametrize(
    "module",
    [pytest.param(m, marks=pytest.mark.xfail(reason=KNOWN_HEAVY[m], strict=True)) if m in KNOWN_HEAVY else m for m in CHEAP],
)
def test_import_loads_no_heavy_library(module):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module, ",".join(HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    problems = [f"{name}, through:\n    " + "\n    -> ".join(report["chains"][name]) for name in report["loaded"]]
    assert not problems, f"import {module} loads " + "\n".join(problems)
