"""CLI conventions (issue #21): every command and option has a --help text, `--version`,
`ask --json` says whether the answer was found and how it was made, errors go to stderr
with the file and the reason, and progress bars stay off a pipe."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.conftest import ROOT

TINY_DOC = (
    "The Lanshan Mountain Railway opened in 1923.\n\nIts track gauge is 800 mm, and the journey from Lanshan Foot to Cloud Peak Summit takes 95 minutes.\n"
)


def _parsers():
    """(name, parser) for each CLI parser and, recursively, every subcommand's parser; built as the CLIs build them."""
    from kbqa.app.cli import ingest_main, kbqa_main

    todo = [("ingest", ingest_main.build_parser()), ("kbqa", kbqa_main.build_parser())]
    while todo:
        name, parser = todo.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {command}", sub) for command, sub in action.choices.items()]


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if (choice.help or "").strip()}
            missing += [f"command {command!r}" for command in action.choices if command not in helped]
        elif not (action.help or "").strip():
            missing.append("/".join(action.option_strings) or f"positional {action.dest!r}")
    return missing


def test_every_command_option_and_positional_has_help():
    parsers = dict(_parsers())
    assert {"kbqa ask", "kbqa eval qa", "kbqa finetune reader", "ingest"} <= set(parsers)
    missing = {name: gaps for name, parser in parsers.items() if (gaps := _undocumented(parser))}
    assert not missing, f"arguments without --help text: {missing}"
    for parser in parsers.values():
        parser.format_help()  # every help text formats (no stray % placeholders)


def _console_script(name: str) -> str:
    script = shutil.which(name, path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip(f"the {name} console script is not installed (pip install -e .)")
    return script


@pytest.mark.parametrize("command", ["kbqa", "ingest"])
def test_version_comes_from_the_package_metadata(command):
    out = subprocess.run([_console_script(command), "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"kbqa {version('kbqa')}"


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch):
    from kbqa.app import version as app_version

    def not_installed(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(app_version, "version", not_installed)
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert app_version.kbqa_version() == expected
    assert app_version.pyproject_version(ROOT / "no-such-pyproject.toml") == "unknown"


@pytest.fixture(scope="module")
def tiny_ingest(tmp_path_factory):
    """`ingest` run as a user runs it (no --json, no --no-progress) with stderr a pipe: one
    document that lands and one that does not exist."""
    root = tmp_path_factory.mktemp("tiny")
    doc = root / "railway.txt"
    doc.write_text(TINY_DOC, encoding="utf-8")
    kb = root / "kb"
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.ingest_main", str(doc), str(root / "missing.txt"), "--kb", str(kb)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    return kb, out


def test_ingest_reports_failures_on_stderr_and_draws_no_bars_on_a_pipe(tiny_ingest):
    _, out = tiny_ingest
    assert out.returncode == 1, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "missing.txt: " in errors[0] and errors[0].split("missing.txt: ", 1)[1].strip()
    assert "missing.txt" not in out.stdout and "files: 1 added, 1 failed" in out.stdout
    assert "%|" not in out.stderr and "\r" not in out.stderr, out.stderr  # no tqdm bar


@pytest.mark.parametrize(("question", "found"), [("What is the track gauge of the railway?", True), ("What is the capital of Peru?", False)])
def test_ask_json_says_whether_found_and_the_answer_mode(tiny_ingest, question, found):
    kb, _ = tiny_ingest
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "ask", question, "--kb", str(kb), "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["found"] is found
    assert data["answer_mode"] == "extractive"  # answer.mode auto with the packaged model
    if found:
        assert "800" in data["answer"] and data["sources"]
