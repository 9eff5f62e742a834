"""`kbqa eval retrieval`: rank documents for benchmark queries and score the rankings.

    kbqa eval retrieval --beir DIR  [--split train|test] [--mode dense|bm25|hybrid] [--json]
    kbqa eval retrieval --squad FILE [--mode dense|bm25|hybrid] [--json]

The benchmark is read by `eval.benchmarks` (BEIR folders; SQuAD-style files through the one
SQuAD reader, `eval.datasets.read_squad`); the run is `app.evaluation.run_retrieval`. The
knowledge base is built from the corpus through the normal ingest path (each document one
text file) and cached under ``<cache_dir>/eval-kb/<key>``, the key hashing the corpus and the
settings that shape the index (embedder, chunking, store); a later run reuses it. Chunks are
deduplicated to their document before scoring.
"""

from __future__ import annotations

import argparse

from kbqa.app.cli.common import add_settings_flags, fail, print_json, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieval", help="retrieval quality on a BEIR folder or a SQuAD-style json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--beir", metavar="DIR", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    src.add_argument("--squad", metavar="FILE", help="SQuAD-style json (SQuAD, CMRC 2018)")
    p.add_argument("--split", default="test", help="qrels split for --beir (default test)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--limit", type=int, help="only the first N queries")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached knowledge base")
    add_settings_flags(p, llm=False, ingest=True)
    p.set_defaults(func=cmd_eval_retrieval)


def cmd_eval_retrieval(args) -> int:
    from kbqa.app.evaluation import run_retrieval
    from kbqa.eval.benchmarks import load_beir, load_squad
    from kbqa.eval.datasets import DatasetError

    settings = settings_from_args(args)
    try:
        bench = load_beir(args.beir, args.split) if args.beir else load_squad(args.squad)
        result = run_retrieval(bench, settings, mode=args.mode, limit=args.limit, rebuild=args.rebuild, progress=True)
    except DatasetError as exc:
        fail(str(exc))
    metrics = result["metrics"]
    if args.json:
        print_json(metrics)
    else:
        print(f"{bench.name}  mode={result['mode']}  embedder={result['embedder']}")
        for key, value in metrics.items():
            print(f"  {key:<11} {value}")
    return 0
