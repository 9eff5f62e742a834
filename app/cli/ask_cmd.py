"""`kbqa retrieve`, `kbqa ask` and `kbqa chat` (a terminal REPL)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kbqa.app.cli.common import add_settings_flags, fail, print_json, settings_from_args

KB_HELP = "knowledge base directory (built by `ingest`)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieve", help="show the chunks retrieved for a question")
    p.add_argument("question", help="the question to retrieve chunks for")
    p.add_argument("--kb", required=True, help=KB_HELP)
    p.add_argument("--json", action="store_true", help='print the sources as a JSON list of {"source", "page", "chunk", "score", "text"}')
    add_settings_flags(p, llm=False)
    p.set_defaults(func=cmd_retrieve)

    p = sub.add_parser("ask", help="answer a question from the knowledge base, with sources")
    p.add_argument("question", help="the question to answer")
    p.add_argument("--kb", required=True, help=KB_HELP)
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"answer", "found", "answer_mode", "grounded", "unsupported", "evidence", "sources", "timings"}',
    )
    p.add_argument("--history", help='JSON file with earlier turns: [{"role", "content"}, ...]')
    add_settings_flags(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="interactive chat in the terminal")
    p.add_argument("--kb", required=True, help=KB_HELP)
    add_settings_flags(p)
    p.set_defaults(func=cmd_chat)


def _open(args):
    from kbqa.app.kb import KnowledgeBase

    if not (Path(args.kb) / "kb.json").is_file():
        fail(f"{args.kb}: not a knowledge base (no kb.json); build it with: ingest PATH --kb {args.kb}")
    return KnowledgeBase(args.kb, settings_from_args(args))


def cmd_retrieve(args) -> int:
    kb = _open(args)
    hits = kb.retrieve(args.question, args.k)
    if args.json:
        print_json([h.as_source() for h in hits])
    else:
        for n, hit in enumerate(hits, start=1):
            src = hit.as_source()
            page = f" p.{src['page']}" if src["page"] else ""
            print(f"[{n}] {src['score']:.3f} {src['source']}{page} #{src['chunk']}")
            print("    " + hit.chunk.text[:300].replace("\n", " "))
    return 0


def _history(path: str | None):
    if not path:
        return None
    try:
        turns = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"--history {path}: {exc}")
    if not isinstance(turns, list) or not all(isinstance(t, dict) and {"role", "content"} <= set(t) for t in turns):
        fail(f'--history {path}: expected a JSON list of {{"role", "content"}} objects')
    return turns


def _print_sources(answer) -> None:
    for n, hit in enumerate(answer.sources, start=1):
        page = f", p. {hit.chunk.page}" if hit.chunk.page else ""
        print(f"  [{n}] {hit.chunk.source}{page} (score {hit.score:.3f})")


def cmd_ask(args) -> int:
    kb = _open(args)
    history = _history(args.history)
    kb.warm_up()  # load the models first, so that the timings measure retrieval and generation
    answer = kb.ask(args.question, args.k, history=history)
    if args.json:
        print_json(answer.to_dict())
    else:
        print(answer.answer)
        if note := verdict_line(answer.mode, answer.found, answer.grounded, answer.unsupported):
            print(note)
        if answer.sources:
            print("\nSources:")
            _print_sources(answer)
    return 0


def verdict_line(mode: str, found: bool, grounded: bool, unsupported) -> str:
    if not grounded:
        return f"(answer check: the generated answer was replaced; unsupported: {'; '.join(unsupported[:3])})"
    if not found:
        return ""
    return "(extractive: quoted from the sources)" if mode == "extractive" else "(generated; checked against the cited sources)"


def cmd_chat(args) -> int:
    kb = _open(args)
    print(f"Loading models for {args.kb} ...", file=sys.stderr)
    kb.warm_up()
    print("Ask a question (empty line or Ctrl-D to quit).")
    history: list[dict[str, str]] = []
    while True:
        try:
            question = input("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question:
            return 0
        result, stream = kb.stream_with_sources(question, history=history)
        pieces = []
        for piece in stream:
            pieces.append(piece)
            print(piece, end="", flush=True)
        print()
        final = getattr(stream, "result", None)
        if final is not None:
            if final.replaced:
                print(final.text)
            if note := verdict_line(final.mode, final.found, final.grounded, final.unsupported):
                print(note)
            pieces = [final.text]
        if result.found and (final is None or final.found):
            for n, hit in enumerate(result.hits, start=1):
                page = f", p. {hit.chunk.page}" if hit.chunk.page else ""
                print(f"  [{n}] {hit.chunk.source}{page} (score {hit.score:.3f})")
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": "".join(pieces)}]
