"""`kbqa finetune reader-data | reader | reader-calibrate`: the extractive reader, trained on the CPU.

    kbqa finetune reader-data SQUAD.json --articles 0-15 --lang en --out data/en.jsonl
    kbqa finetune reader-data CMRC.json --split train --lang zh --out data/zh.jsonl
    kbqa finetune reader --train data/en.jsonl --train data/zh.jsonl --repeat 1 2 \\
        --calibrate SQUAD.json@16-17 --calibrate CMRC.json@validation --out runs/reader
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kbqa.app.cli.common import fail, print_json

# `finetune reader` flags that fill ReaderConfig fields of the same meaning (finetune/reader_train.py)
TRAIN_FLAGS = (
    ("--lr", float, "peak learning rate (default 8e-4)"),
    ("--epochs", float, "passes over the training windows (default 1; fractions allowed)"),
    ("--max-steps", int, "optimizer steps to train; overrides --epochs"),
    ("--batch-size", int, "windows per step (default 16)"),
    ("--rank", int, "LoRA rank (default 16; with --init-from, that reader's)"),
    ("--max-tokens", int, "window length in tokens, question and passage together (128-512, default 320)"),
    ("--seed", int, "random seed (default 0)"),
)


def register_reader(fsub: argparse._SubParsersAction) -> None:
    d = fsub.add_parser("reader-data", help="span-labelled examples for the extractive reader from a SQuAD-format file")
    d.add_argument("file", help="SQuAD-format JSON (SQuAD v1.1, CMRC 2018)")
    d.add_argument("--out", required=True, help="JSONL of span examples to write")
    d.add_argument("--lang", choices=["en", "zh"], required=True, help="language of the file's questions and passages")
    pick = d.add_mutually_exclusive_group()
    pick.add_argument("--articles", help="article indices, e.g. 0-15 (SQuAD)")
    pick.add_argument("--split", choices=["train", "validation", "test"], help="a paragraph-hash split (70/10/20)")
    d.add_argument("--negatives", type=float, default=0.5, help="share of questions that also get a 'no answer' example on a hard distractor")
    d.add_argument("--seed", type=int, default=0, help="random seed for picking the 'no answer' examples (default 0)")
    d.set_defaults(func=cmd_reader_data)

    t = fsub.add_parser("reader", help="train the extractive reader (span head + LoRA on multilingual-e5-small), then calibrate it")
    t.add_argument("--train", action="append", required=True, help="span-example JSONL (repeat the flag for several)")
    t.add_argument("--repeat", type=int, nargs="+", help="times each --train file is used per epoch")
    t.add_argument("--out", required=True, help="folder for reader.safetensors, reader_config.json, loss.json")
    t.add_argument(
        "--calibrate",
        action="append",
        default=[],
        metavar="FILE[@ARTICLES|@SPLIT]",
        help="SQuAD-format validation data for the no-answer threshold, e.g. squad.json@16-17 or cmrc.json@validation",
    )
    for flag, kind, text in TRAIN_FLAGS:
        t.add_argument(flag, type=kind, help=text)
    t.add_argument("--init-from", metavar="FOLDER", help="a trained reader folder to go on training from")
    t.add_argument("--warmup", type=float, help="share of the steps spent warming up the learning rate")
    t.add_argument("--json", action="store_true", help="print the training record (and calibration) as one JSON object")
    _add_correct_flag(t)
    t.set_defaults(func=cmd_reader)

    c = fsub.add_parser("reader-calibrate", help="choose a trained reader's no-answer threshold on validation data")
    c.add_argument("folder", help="trained reader folder (written by finetune reader)")
    c.add_argument(
        "--calibrate",
        action="append",
        default=[],
        metavar="FILE[@ARTICLES|@SPLIT]",
        help="validation data to score; without it, the thresholds are chosen again from the folder's calibration_scores.json",
    )
    c.add_argument("--json", action="store_true", help="print the thresholds and their scores as one JSON object")
    c.add_argument(
        "--no-answerability",
        dest="answerability",
        action="store_false",
        help="threshold the best span's score alone (default: fit the answerability model, retrieval/readers/answerability.py)",
    )
    _add_correct_flag(c)
    c.set_defaults(func=cmd_reader_calibrate)


CORRECT_RULES = ("benchmark", "overlap")


def _add_correct_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--correct",
        choices=CORRECT_RULES,
        default="overlap",
        help="when a validation answer counts as right: overlap (it and a reference contain one another; the default, the "
        "shipped reader's rule) or benchmark (the rule kbqa eval reports: it contains a reference, or F1 >= 0.5; measured "
        "in bench/results/answer_modes_candidate_bench_rule.md)",
    )


def _judge(rule: str):
    from kbqa.eval.error_analysis import answer_is_correct
    from kbqa.finetune.reader_calibrate import overlaps

    return answer_is_correct if rule == "benchmark" else overlaps


def cmd_reader_data(args) -> int:
    from kbqa.finetune.reader_data import paragraphs, span_examples, write_jsonl

    try:
        paras = paragraphs(args.file, articles=args.articles, split=args.split)
    except ValueError as exc:
        fail(str(exc))
    n = write_jsonl(span_examples(paras, args.lang, negatives=args.negatives, seed=args.seed), args.out)
    print(f"{args.out}: {n} examples from {len(paras)} paragraphs")
    return 0


def _calibration_items(specs: list[str]):
    from kbqa.finetune.reader_data import calibration_items, paragraphs

    items = []
    for spec in specs:
        path, _, pick = spec.partition("@")
        if not Path(path).is_file():
            fail(f"--calibrate {spec}: {path}: no such file")
        split = pick if pick in ("train", "validation", "test") else None
        try:
            paras = paragraphs(path, articles=None if split or not pick else pick, split=split)
        except ValueError as exc:
            fail(f"--calibrate {spec}: {exc}")
        items += calibration_items(paras)
    return items


def cmd_reader(args) -> int:
    from kbqa.finetune.reader_calibrate import calibrate
    from kbqa.finetune.reader_train import ReaderConfig, train_reader

    flags = {
        "learning_rate": args.lr,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lora_rank": args.rank,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "init_from": args.init_from,
        "warmup_ratio": args.warmup,
    }
    try:
        cfg = ReaderConfig(train=args.train, output_dir=args.out, repeat=args.repeat, **{k: v for k, v in flags.items() if v is not None})
    except (ValueError, TypeError) as exc:
        fail(str(exc))
    items = _calibration_items(args.calibrate)
    record = train_reader(cfg)
    if items:
        record["calibration"] = calibrate(args.out, items, judge=_judge(args.correct))
    if args.json:
        print_json(record)
    else:
        print(f"trained {record['steps']} steps on {record['windows']} windows in {record['train_seconds'] / 60:.1f} min -> {args.out}")
        if items:
            v = record["calibration"]
            print(
                f"threshold {v['threshold']:.3f}: correct {v['correct']:.3f}, not found {v['not_found']:.3f}, "
                f"wrong {v['wrong']:.3f}, rejection {v['rejection']:.3f} on {len(items)} validation items"
            )
    return 0


def cmd_reader_calibrate(args) -> int:
    from kbqa.finetune.reader_calibrate import SCORES, calibrate, choose_thresholds

    if not (Path(args.folder) / "reader_config.json").is_file():
        fail(f"{args.folder}: not a reader folder (no reader_config.json)")
    if args.calibrate:
        result = calibrate(args.folder, _calibration_items(args.calibrate), answerability=args.answerability, judge=_judge(args.correct))
    elif (Path(args.folder) / SCORES).is_file():
        try:
            result = choose_thresholds(args.folder, args.answerability, _judge(args.correct))
        except ValueError as exc:
            fail(f"{args.folder}: {exc}")
    else:
        fail(f"{args.folder}: no {SCORES}; give validation data with --calibrate FILE@SPLIT")
    print(
        json.dumps(result, indent=2)
        if args.json
        else f"threshold {result['threshold']:.3f}: correct {result['correct']:.3f}, not found {result['not_found']:.3f}, "
        f"wrong {result['wrong']:.3f}, rejection {result['rejection']:.3f}"
    )
    if not args.json:
        for lang, r in result["by_language"].items():
            print(
                f"  {lang}: threshold {r['threshold']:.3f}: correct {r['correct']:.3f}, not found {r['not_found']:.3f}, "
                f"wrong {r['wrong']:.3f}, rejection {r['rejection']:.3f} ({r['items']} items)"
            )
    return 0
