"""`ingest PATH... --kb DIR [--json]` and `ingest --remove PATH... --kb DIR`.

Exit code: 0 when every file landed (or was unchanged), 1 when any failed (each failure on
stderr as "error: PATH: reason"; the rest of the batch still lands), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys

from kbqa.app.env import offline, terminal_only_progress


def build_parser() -> argparse.ArgumentParser:
    from kbqa.app.cli.common import add_settings_flags, add_version_flag

    parser = argparse.ArgumentParser(
        prog="ingest", description="Add documents (PDF, DOCX, HTML, Markdown, TXT; scans and images through OCR) to a knowledge base."
    )
    add_version_flag(parser)
    parser.add_argument("paths", nargs="+", help="files or folders (recursive)")
    parser.add_argument("--kb", required=True, help="knowledge base directory (created if missing)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--remove", action="store_true", help="remove these documents from the knowledge base")
    parser.add_argument("--prune", action="store_true", help="also remove documents under the given folders that no longer exist")
    parser.add_argument("--pdf-password", dest="pdf_password", help="password for encrypted PDFs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (they are shown only on a terminal)")
    add_settings_flags(parser, retrieval=False, llm=False, ingest=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    offline()
    terminal_only_progress()
    args = build_parser().parse_intermixed_args(argv)
    from kbqa.app.cli.common import fail, print_json, settings_from_args
    from kbqa.app.kb import KnowledgeBase
    from kbqa.retrieval.kbdir import EmbedderMismatchError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    settings = settings_from_args(args)
    try:
        kb = KnowledgeBase(args.kb, settings)
        if args.remove:
            summary = kb.remove(args.paths)
        else:
            summary = kb.ingest(args.paths, progress=not args.no_progress, password=args.pdf_password, prune=args.prune)
    except (EmbedderMismatchError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    except (OSError, sqlite3.OperationalError) as exc:  # a full disk, say: each committed document stays whole
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {args.kb}: ingestion stopped: {getattr(exc, 'strerror', None) or exc}{where}", file=sys.stderr)
        return 1
    if args.json:
        print_json(summary.to_dict())
    else:
        print(summary.render(with_failures=False))
    for line in summary.failures():
        print(f"error: {line}", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
