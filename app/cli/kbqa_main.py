"""`kbqa`: ask, retrieve and chat over a knowledge base (more commands register here).

Exit code: 0 on success; 1 when `doctor` leaves problems (or on an unexpected error);
2 on usage and input errors ("error: ..." on stderr, from `app.cli.common.fail`).
"""

from __future__ import annotations

import argparse
import importlib

from kbqa.app.env import offline, terminal_only_progress

# each module has register(subparsers) which sets `func` on its parser
COMMAND_MODULES = [
    "kbqa.app.cli.ask_cmd",
    "kbqa.app.cli.eval_cmd",
    "kbqa.app.cli.serve_cmd",
    "kbqa.app.cli.finetune_cmd",
    "kbqa.app.cli.doctor_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    from kbqa.app.cli.common import add_version_flag

    parser = argparse.ArgumentParser(prog="kbqa", description="Question answering over your documents, offline.")
    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    offline()
    terminal_only_progress()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
