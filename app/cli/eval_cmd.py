"""`kbqa eval ...`: each evaluation lives in its own module with register(subparsers)."""

from __future__ import annotations

import argparse
import importlib

EVAL_MODULES: list[str] = [
    "kbqa.app.cli.eval_retrieval_cmd",  # (issue 3)  kbqa eval retrieval
    "kbqa.app.cli.eval_qa_cmd",  # (issue 4)  kbqa eval qa | squad | mcq | perplexity | compare
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate retrieval and answers")
    inner = p.add_subparsers(dest="eval_command", required=True)
    for name in EVAL_MODULES:
        importlib.import_module(name).register(inner)
