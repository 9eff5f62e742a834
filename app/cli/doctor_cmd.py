"""`kbqa doctor --kb DIR [--repair] [--json]`: check (and repair) a knowledge base's consistency.

Exit code: 0 when no problem is left, 1 when problems remain, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys

from kbqa.app.cli.common import fail, print_json, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check that manifest, vector store and BM25 index agree (and --repair them)")
    p.add_argument("--kb", required=True, help="knowledge base directory")
    p.add_argument("--repair", action="store_true", help="fix what can be fixed (takes the knowledge base's lock)")
    p.add_argument("--json", action="store_true", help='print {"documents": n, "chunks": n, "problems": [...]}')
    p.add_argument("--config", help="TOML settings file (default: $KBQA_CONFIG)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    from kbqa.app.doctor import NotAKnowledgeBase, StoreUnreachable, run
    from kbqa.ingest.lock import KBLockedError

    settings = settings_from_args(args)
    try:
        report = run(args.kb, settings, fix=args.repair)
    except (NotAKnowledgeBase, KBLockedError) as exc:
        fail(str(exc))
    except StoreUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.render())
    return 0 if report.ok else 1
