"""`kbqa eval qa | squad | mcq | perplexity | compare`: answer quality, the evalscope way.

kbqa eval qa data/sample_qa.jsonl --kb kb-demo --out runs/sample
kbqa eval qa data/sample_qa.jsonl --predictions runs/sample/predictions.jsonl   # no model
kbqa eval squad ../shared/data/squad/squad_v1.1_dev_articles_00-23.json --limit 200
kbqa eval mcq questions.csv --kb kb-demo
kbqa eval perplexity data.jsonl --adapter runs/lora
kbqa eval compare runs/before runs/after
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from kbqa.app.cli.common import add_settings_flags, fail, print_json, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qa", help="score answers to an evalscope general_qa jsonl (ROUGE, BLEU, EM/F1, error analysis)")
    p.add_argument("file", help="jsonl: {query, response} | {question, answer} | {messages: [...]}; optional source, key")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--kb", help="knowledge base: ask every question through the full RAG path")
    src.add_argument("--predictions", help="jsonl of existing answers ({question|id, answer, sources?}): score them, no model")
    src.add_argument("--closed-book", action="store_true", help="ask the model alone, without retrieval (as evalscope does)")
    _common(p)
    p.set_defaults(func=cmd_qa)

    p = sub.add_parser("squad", help="SQuAD / CMRC 2018 json: KB from the paragraphs, EM, F1, ROUGE-L, BLEU-4, gold-paragraph hit@k")
    p.add_argument("file", help="SQuAD-format json (SQuAD v1.1, CMRC 2018); its paragraphs become the knowledge base")
    p.add_argument("--predictions", help="jsonl of existing answers ({id|question, answer, sources?}): score them, no model")
    _common(p)
    p.set_defaults(func=cmd_squad)

    p = sub.add_parser("mcq", help="multiple choice (evalscope general_mcq csv: id,question,A,B,C,D,answer): accuracy")
    p.add_argument("file", help="csv with columns id,question,A,B,C,D,answer")
    p.add_argument("--kb", help="give the model retrieved context from this knowledge base (default: the model alone)")
    _common(p)
    p.set_defaults(func=cmd_mcq)

    p = sub.add_parser("perplexity", help="perplexity of the model (optionally with --adapter) on a .txt or .jsonl file")
    p.add_argument("file", help=".txt (texts separated by a blank line) or .jsonl (text, messages, or query/question with response/answer)")
    p.add_argument("--limit", type=int, help="score only the first N texts")
    p.add_argument("--max-length", type=int, default=1024, help="tokens per text (longer texts are truncated)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_settings_flags(p, retrieval=False)
    p.set_defaults(func=cmd_perplexity)

    p = sub.add_parser("compare", help="metric deltas between two run folders and the items that changed most")
    p.add_argument("run_a", help="run folder A (written by eval qa or squad --out)")
    p.add_argument("run_b", help="run folder B, compared with A")
    p.add_argument("--top", type=int, default=10, help="how many of the most changed items to list (default 10)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(func=cmd_compare)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder for metrics.json, predictions.jsonl, report.md, metrics.png")
    p.add_argument("--limit", type=int, help="only N questions (qa, mcq: the first N; squad: N spread evenly over the file)")
    p.add_argument("--batch-size", type=int, default=8, dest="batch_size", help="answers generated together")
    p.add_argument("--json", action="store_true", help="print metrics as JSON instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings_flags(p)


def _meta(args, dataset: str, subset: str, model: str, num: int, mode: str, **extra) -> dict:
    return {
        "dataset": dataset,
        "subset": subset,
        "model": model,
        "mode": mode,
        "num": num,
        "data": str(args.file),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["kbqa", *sys.argv[1:]]) if Path(sys.argv[0]).name == "kbqa" else "",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        **{k: v for k, v in extra.items() if v is not None},
    }


def _model_name(settings) -> str:
    s = settings.llm
    return s.model + (f"+{Path(s.adapter).name}" if s.adapter and s.adapter not in ("auto", "base") else "")


def _default_out(kind: str, subset: str) -> Path:
    return Path("eval-runs") / f"{kind}-{subset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _finish(args, meta: dict, records: list, metrics: dict, primary: str) -> int:
    from kbqa.eval.report import render_table, table_rows
    from kbqa.eval.run import write_run

    out = Path(args.out) if args.out else _default_out(meta["dataset"], meta["subset"])
    write_run(out, meta, metrics, records, primary)
    shown = {k: v for k, v in metrics.items() if not k.startswith("latency")}
    if args.json:
        print_json({"meta": meta, "metrics": metrics, "out": str(out)})
    else:
        counts_per_metric = {k: sum(1 for r in records if k in r["scores"]) for k in shown}
        print(render_table(table_rows(meta["model"], meta["dataset"], meta["subset"], counts_per_metric, shown)))
        counts = {}
        for r in records:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        print(f"wrote {out}/ (metrics.json, predictions.jsonl, report.md, metrics.png)")
    return 0


def _open_kb(path: str, settings):
    from kbqa.app.kb import KnowledgeBase

    if not (Path(path) / "kb.json").is_file():
        fail(f"{path}: not a knowledge base (no kb.json); build it with: ingest PATH --kb {path}")
    return KnowledgeBase(path, settings)


def cmd_qa(args) -> int:
    from kbqa.eval.datasets import DatasetError, read_qa_jsonl
    from kbqa.eval.run import read_predictions, score_records, summarize

    settings = settings_from_args(args)
    try:
        items = read_qa_jsonl(args.file)
    except DatasetError as exc:
        fail(str(exc))
    if args.limit:
        items = items[: args.limit]
    subset = Path(args.file).stem
    progress = not args.quiet
    if args.predictions:
        try:
            answers = read_predictions(args.predictions, items)
        except DatasetError as exc:
            fail(str(exc))
        model, mode = f"predictions:{Path(args.predictions).name}", "predictions"
    elif args.closed_book:
        from kbqa.app.evaluation import answer_closed_book
        from kbqa.retrieval.llm import make_llm

        answers = answer_closed_book(make_llm(settings.llm, settings.cache_dir), items, settings, batch_size=args.batch_size, progress=progress)
        model, mode = _model_name(settings), "closed book (model alone)"
    else:
        from kbqa.app.evaluation import answer_with_kb

        kb = _open_kb(args.kb, settings)
        answers = answer_with_kb(kb, items, batch_size=args.batch_size, progress=progress)
        model, mode = _model_name(kb.settings), f"RAG ({kb.settings.retrieval.mode}, k={kb.settings.retrieval.k}, answers {kb.settings.answer.mode})"
    k = settings.retrieval.k
    records = score_records(items, answers, k=k)
    metrics = summarize(records)
    meta = _meta(args, "general_qa", subset, model, len(records), mode, kb=args.kb)
    return _finish(args, meta, records, metrics, primary="rouge-l-r")


def cmd_squad(args) -> int:
    from kbqa.app.evaluation import answer_with_kb, sample_evenly, squad_kb
    from kbqa.eval.datasets import DatasetError, read_squad
    from kbqa.eval.run import score_records, summarize

    settings = settings_from_args(args)
    try:
        paragraphs, items = read_squad(args.file)
    except DatasetError as exc:
        fail(str(exc))
    items = sample_evenly(items, args.limit)
    progress = not args.quiet
    if args.predictions:
        from kbqa.eval.run import read_predictions

        try:
            answers = read_predictions(args.predictions, items, by_id=True)
        except DatasetError as exc:
            fail(str(exc))
        model, mode, kb_path, k = f"predictions:{Path(args.predictions).name}", "predictions", None, settings.retrieval.k
    else:
        try:
            kb = squad_kb(args.file, paragraphs, settings, progress=progress)
        except DatasetError as exc:
            fail(str(exc))
        answers = answer_with_kb(kb, items, batch_size=args.batch_size, progress=progress)
        k = kb.settings.retrieval.k
        model, mode, kb_path = (
            _model_name(kb.settings),
            f"RAG ({kb.settings.retrieval.mode}, k={k}, answers {kb.settings.answer.mode}) over {len(paragraphs)} paragraphs",
            str(kb.path),
        )
    records = score_records(items, answers, k=k)
    metrics = summarize(records)
    keep = (
        "em",
        "f1",
        "contains",
        "not_found",
        "wrong",
        "rouge-l-f",
        "rouge-l-r",
        "bleu-4",
        "lf-bleu-4",
        "lf-rouge-l",
        "hit@1",
        f"hit@{k}",
        f"mrr@{k}",
        f"ndcg@{k}",
        "latency_ms_mean",
    )
    headline = {key: metrics[key] for key in keep if key in metrics}
    headline.update({key: v for key, v in metrics.items() if key not in headline})
    subset = Path(args.file).stem
    dataset = "cmrc2018" if "cmrc" in subset.lower() else "squad"
    meta = _meta(args, dataset, subset, model, len(records), mode, kb=kb_path)
    return _finish(args, meta, records, headline, primary="f1")


def cmd_mcq(args) -> int:
    import json

    from kbqa.app.evaluation import run_mcq
    from kbqa.eval.datasets import DatasetError, read_mcq_csv
    from kbqa.eval.mcq import accuracy
    from kbqa.eval.report import render_table, table_rows
    from kbqa.retrieval.llm import make_llm

    settings = settings_from_args(args)
    try:
        items = read_mcq_csv(args.file)
    except DatasetError as exc:
        fail(str(exc))
    if args.limit:
        items = items[: args.limit]
    kb = _open_kb(args.kb, settings) if args.kb else None
    llm = kb.llm if kb is not None else make_llm(settings.llm, settings.cache_dir)
    records = run_mcq(llm, items, settings, kb=kb, batch_size=args.batch_size, progress=not args.quiet)
    metrics = accuracy(records)
    subset = Path(args.file).stem
    meta = _meta(args, "general_mcq", subset, _model_name(settings), len(records), "RAG" if kb else "model alone", kb=args.kb)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"meta": meta, "metrics": metrics}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if args.json:
        print_json({"meta": meta, "metrics": metrics})
    else:
        print(render_table(table_rows(meta["model"], meta["dataset"], subset, len(records), metrics)))
    return 0


def cmd_perplexity(args) -> int:
    from kbqa.app.evaluation import run_perplexity
    from kbqa.eval.datasets import DatasetError
    from kbqa.eval.perplexity import read_texts
    from kbqa.retrieval.llm import make_llm

    settings = settings_from_args(args)
    try:
        texts = read_texts(args.file)
    except DatasetError as exc:
        fail(str(exc))
    if args.limit:
        texts = texts[: args.limit]
    try:
        result = run_perplexity(make_llm(settings.llm, settings.cache_dir), texts, max_length=args.max_length)
    except (TypeError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    result = {"model": _model_name(settings), "file": str(args.file), **result}
    if args.json:
        print_json(result)
    else:
        print(
            f"{result['model']} on {args.file}: perplexity {result['perplexity']:.3f} "
            f"({int(result['tokens'])} tokens in {int(result['texts'])} texts, NLL {result['nll_per_token']:.4f}/token)"
        )
    return 0


def cmd_compare(args) -> int:
    from kbqa.eval.datasets import DatasetError
    from kbqa.eval.report import render_table
    from kbqa.eval.run import compare_runs

    try:
        result = compare_runs(args.run_a, args.run_b, top=args.top)
    except DatasetError as exc:
        fail(str(exc))
    if args.json:
        print_json(result)
        return 0
    rows = [(k, f"{v['a']:.4f}", f"{v['b']:.4f}", f"{v['delta']:+.4f}") for k, v in result["metrics"].items()]
    print(f"A = {args.run_a}\nB = {args.run_b}  ({result['matched']} questions in both)")
    print(render_table(rows, ("Metric", "A", "B", "B - A")))
    oa, ob = result["outcomes"]["a"], result["outcomes"]["b"]
    if oa or ob:
        print("outcomes: " + ", ".join(f"{k} {oa.get(k, 0)} -> {ob.get(k, 0)}" for k in dict.fromkeys([*oa, *ob])))
    if result["changed"]:
        print(f"\nItems that changed most ({result['primary']}):")
        for c in result["changed"]:
            print(f"  {c['delta']:+.3f}  {c['question'][:90]}")
            print(f"         A: {c['answer_a'][:100]!r}\n         B: {c['answer_b'][:100]!r}")
    return 0
