"""`kbqa finetune make-data | train | merge`: from a knowledge base to a LoRA adapter and back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kbqa.app.cli.common import fail, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="build training data from a KB, train a LoRA adapter, merge it")
    fsub = p.add_subparsers(dest="finetune_command", required=True)
    from kbqa.app.cli.reader_cmd import register_reader

    register_reader(fsub)

    m = fsub.add_parser("make-data", help="grounded question/answer pairs in RAG form from a knowledge base")
    m.add_argument("--kb", required=True, help="knowledge base folder (built by `ingest`)")
    m.add_argument("--out", required=True, help="JSONL to write (messages format, with a 'split' field)")
    m.add_argument("--seed", type=int, default=42, help="random seed for the splits and the not-found examples (default 42)")
    m.add_argument("--split", default="0.7,0.15,0.15", help="train,validation,test ratios (whole chunks per split)")
    m.add_argument(
        "--not-found-ratio",
        dest="not_found_ratio",
        type=float,
        default=0.15,
        help="share of pairs that also get a 'not found' example (blocks lacking the answer)",
    )
    m.add_argument("--per-chunk", dest="per_chunk", type=int, default=12, help="at most this many questions per chunk")
    m.add_argument(
        "--share-context",
        dest="share_context",
        action="store_true",
        help="questions on one chunk reuse one retrieval's blocks when they hold the answer (train with --pack)",
    )
    m.add_argument("--config", help="TOML settings file (default: $KBQA_CONFIG)")
    m.add_argument("-k", type=int, dest="k", help="chunks retrieved per question (default: the KB's setting)")
    m.set_defaults(func=cmd_make_data)

    t = fsub.add_parser("train", help="train a LoRA adapter (or the last n layers) on chat data")
    t.add_argument("data", help="JSONL: messages, query/response, sharegpt or alpaca format")
    t.add_argument("--out", required=True, help="output folder for the adapter, config, metrics, loss curve")
    t.add_argument("--val", dest="val_data", help="validation JSONL (default: 'split' field, else --val-fraction)")
    t.add_argument("--model", help="'smollm2' (packaged, default) or a local model folder")
    t.add_argument("--mode", choices=["lora", "freeze"], help="LoRA (default) or train only the last n layers")
    t.add_argument("--freeze-last-layers", dest="freeze_last_layers", type=int, help="--mode freeze: how many last layers are trained (default 2)")
    t.add_argument("--rank", dest="lora_rank", type=int, help="LoRA rank (default 8)")
    t.add_argument("--alpha", dest="lora_alpha", type=int, help="LoRA alpha, the scale of the update (default 32)")
    t.add_argument("--target-modules", dest="target_modules", help="'all-linear' or e.g. q_proj,v_proj")
    t.add_argument(
        "--lora-last-layers", dest="lora_last_layers", type=int, help="LoRA only in the last n decoder layers (faster on a CPU: backward stops there)"
    )
    t.add_argument(
        "--pack", dest="pack_shared_prefix", action="store_true", default=None, help="train questions that share a prompt prefix (same blocks) as one sequence"
    )
    t.add_argument("--lr", dest="learning_rate", type=float, help="peak learning rate (default 1e-4)")
    t.add_argument("--epochs", type=float, help="passes over the training data (default 1; fractions allowed)")
    t.add_argument("--max-steps", dest="max_steps", type=int, help="optimizer steps to train; overrides --epochs")
    t.add_argument("--max-minutes", dest="max_minutes", type=float, help="wall-clock budget: validate, keep the best and stop once spent")
    t.add_argument("--batch-size", dest="batch_size", type=int, help="sequences per micro-batch (default 4)")
    t.add_argument("--grad-accum", dest="grad_accum", type=int, help="micro-batches per optimizer step (default 4)")
    t.add_argument("--max-length", dest="max_length", type=int, help="tokens per training sequence; longer ones are truncated (default 2048)")
    t.add_argument("--eval-every", dest="eval_every", type=int, help="optimizer steps between validation losses (default 50)")
    t.add_argument("--patience", dest="early_stopping_patience", type=int, help="validations without improvement before stopping early (default 3; 0 = never)")
    t.add_argument("--save-total-limit", dest="save_total_limit", type=int, help="checkpoint folders kept (default 2)")
    t.add_argument("--seed", type=int, help="random seed (default 42)")
    t.add_argument("--device", help="auto, cpu or cuda")
    t.add_argument("--resume", nargs="?", const=True, default=None, help="resume from the latest checkpoint in --out, or from the checkpoint folder given")
    t.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    t.add_argument("--config", help="TOML settings file (for cache_dir)")
    t.set_defaults(func=cmd_train)

    g = fsub.add_parser("merge", help="fold an adapter into its base model: a plain model folder")
    g.add_argument("--adapter", required=True, help="adapter folder (written by finetune train)")
    g.add_argument("--out", required=True, help="folder for the merged model")
    g.add_argument("--base", help="base model ('smollm2' or a folder); default: the one it was trained on")
    g.add_argument("--config", help="TOML settings file (for cache_dir)")
    g.set_defaults(func=cmd_merge)


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or abs(sum(parts) - 1.0) > 1e-6 or min(parts) < 0:
        fail(f"--split {text!r}: expected three ratios summing to 1, e.g. 0.7,0.15,0.15")
    return parts  # type: ignore[return-value]


def cmd_make_data(args) -> int:
    from kbqa.app.kb import KnowledgeBase
    from kbqa.finetune.formats import write_examples
    from kbqa.finetune.make_data import build_examples, summarize, template_pairs

    if not (Path(args.kb) / "kb.json").is_file():
        fail(f"--kb {args.kb}: not a knowledge base (no kb.json); build it with: ingest PATH --kb {args.kb}")
    ratios = _ratios(args.split)
    kb = KnowledgeBase(args.kb, settings_from_args(args))
    chunks = kb.store.get(kb.store.all_ids())
    if not chunks:
        fail(f"--kb {args.kb}: the knowledge base holds no chunks")
    pairs = template_pairs(sorted(chunks, key=lambda c: c.id), per_chunk=args.per_chunk)
    if not pairs:
        fail(f"--kb {args.kb}: no sentence with a fact (date, number, name) to ask about")

    # embed every question in batches once: one query at a time is slow on a busy CPU
    questions = sorted({p.question for p in pairs})
    vectors = dict(zip(questions, kb.embedder.embed_documents(questions)))
    embed_query = kb.embedder.embed_query
    kb.embedder.embed_query = lambda text: vectors[text] if text in vectors else embed_query(text)

    def search(question: str):
        result = kb.search(question, args.k)
        return kb.assemble(result.hits) if result.hits else []

    examples = build_examples(
        pairs, search, seed=args.seed, ratios=ratios, not_found_ratio=args.not_found_ratio, share_context=args.share_context, progress=True
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    n = write_examples(args.out, examples)
    print(json.dumps({"out": args.out, "examples": n, "chunks": len(chunks), "splits": summarize(examples)}, ensure_ascii=False))
    return 0


def _cache_dir(args) -> str:
    return str(settings_from_args(args).cache_dir)


def cmd_train(args) -> int:
    from kbqa.finetune.config import ConfigError, TrainConfig
    from kbqa.finetune.formats import FormatError
    from kbqa.finetune.train import train

    fields = (
        "val_data",
        "model",
        "mode",
        "freeze_last_layers",
        "lora_rank",
        "lora_alpha",
        "target_modules",
        "lora_last_layers",
        "pack_shared_prefix",
        "learning_rate",
        "epochs",
        "max_steps",
        "max_minutes",
        "batch_size",
        "grad_accum",
        "max_length",
        "eval_every",
        "early_stopping_patience",
        "save_total_limit",
        "seed",
        "device",
        "progress",
    )
    given = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    try:
        cfg = TrainConfig(data=args.data, output_dir=args.out, cache_dir=_cache_dir(args), **given)
        if args.resume is None and (Path(args.out) / "adapter_config.json").exists():
            fail(f"--out {args.out} already holds an adapter; use --resume or another folder")
        metrics = train(cfg, resume=args.resume)
    except (ConfigError, FormatError) as exc:
        fail(str(exc))
    summary = {k: v for k, v in metrics.items() if k != "history"}
    print(json.dumps(summary, indent=2))
    print(f"adapter: {args.out}   use it: kbqa ask QUESTION --kb KB --adapter {args.out}")
    return 0


def cmd_merge(args) -> int:
    from kbqa.finetune.config import ConfigError
    from kbqa.finetune.train import merge

    try:
        out = merge(args.adapter, args.out, base=args.base, cache_dir=_cache_dir(args))
    except ConfigError as exc:
        fail(str(exc))
    print(f"merged model: {out}   use it: kbqa ask QUESTION --kb KB --llm-model {out}")
    return 0
