"""Base vs LoRA adapter through the RAG path on SQuAD articles the adapter never saw.

Three stages, so that the GPU machine only trains and generates:

  prep   (here, CPU)  build a KB of the 24 SQuAD articles, retrieve for every question with the
                      service's own path (KnowledgeBase.search + assemble + build_messages) and write
                      RAG-form training data (articles 0-15 train, 16-17 validation) and test prompts
                      (articles 18-23: answerable, plus 'not found' prompts whose blocks lack the answer)
  gpu    (device)     train the adapter (finetune.train) and generate base and adapter answers
                      for the test prompts (retrieval.llm.transformers, as `kbqa ask` does)
  score  (here)       EM/F1, ROUGE-L, BLEU-4, perplexity, abstention -> bench/results/finetune_squad.*

    python bench/finetune_squad.py prep --work /tmp/ft-squad --out .gpu/squad
    python bench/finetune_squad.py gpu --data .gpu/squad --model MODEL_DIR --out $OUT
    python bench/finetune_squad.py score --gen DIR
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SQUAD = ROOT.parent / "shared" / "data" / "squad" / "squad_v1.1_dev_articles_00-23.json"
TRAIN_ARTICLES, VAL_ARTICLES = range(0, 16), range(16, 18)  # test: 18-23


def _write_jsonl_gz(path: Path, rows) -> int:
    n = 0
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def _fewer_blocks(hits: list, key: str, distractors: int) -> list:
    """The first retrieved block holding the answer and the first `distractors` blocks lacking it,
    in retrieval order (prep --train-distractors: shorter training prompts, more questions a minute).
    The question's 'not found' prompt gets as many blocks, so that the number of blocks tells nothing."""
    from kbqa.finetune.make_data import holds

    answer = next((h for h in hits if holds(h, key)), None)
    if answer is None:  # retrieval missed: a 'not found' prompt of as many blocks
        return list(hits[: 1 + distractors])
    others = [h for h in hits if not holds(h, key)][:distractors]
    return [h for h in hits if h is answer or any(h is o for o in others)]


def prep(args) -> None:
    from kbqa.app.env import offline

    offline()
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings
    from kbqa.finetune.make_data import QAPair, holds, lacking_blocks, not_found_example, rag_example
    from kbqa.retrieval.prompts import build_messages

    articles = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    work = Path(args.work)
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for i, art in enumerate(articles):
        (docs / f"{i:02d}_{art['title'][:40].replace('/', '_')}.txt").write_text("\n\n".join(p["context"] for p in art["paragraphs"]), encoding="utf-8")
    settings = Settings.load()  # KBQA_* environment variables apply, as for the CLI
    kb = KnowledgeBase(work / "kb", settings)
    if kb.record is None:
        print(kb.ingest([docs], progress=True).render())

    rng = random.Random(args.seed)
    rows = {"train": [], "validation": [], "test": [], "test_not_found": []}
    items, paragraph_of = [], {}
    for i, art in enumerate(articles):
        split = "train" if i in TRAIN_ARTICLES else "validation" if i in VAL_ARTICLES else "test"
        for j, p in enumerate(art["paragraphs"]):
            for qa in p["qas"]:
                items.append((split, art["title"], qa))
                paragraph_of[qa["id"]] = (i, j)
    # keep the work bounded: all validation/test candidates are sampled down below
    train_items = [x for x in items if x[0] == "train"]
    rng.shuffle(train_items)
    val_items = [x for x in items if x[0] == "validation"]
    rng.shuffle(val_items)
    test_items = [x for x in items if x[0] == "test"]
    rng.shuffle(test_items)
    chosen = train_items[: args.train] + val_items[: args.val] + test_items[: args.test]
    from tqdm import tqdm

    # embed all questions in batches once (one query at a time is slow on a busy CPU);
    # retrieval itself is the service's own path
    questions = [qa["question"].strip() for _, _, qa in chosen]
    vectors = dict(zip(questions, kb.embedder.embed_documents(questions)))
    embed_query = kb.embedder.embed_query
    kb.embedder.embed_query = lambda text: vectors[text] if text in vectors else embed_query(text)
    # --share-context: a training question whose answer lies in the blocks retrieved for an earlier
    # question on the same paragraph (the first such retrieval) is asked over those very blocks
    # (likewise its 'not found' prompt), so that its prompt shares their prefix and trains packed
    # (TrainConfig.pack_shared_prefix)
    shared: dict = {}
    shared_nf: dict = {}
    for split, title, qa in tqdm(chosen, desc="retrieve", unit="q"):
        answer = qa["answers"][0]["text"].strip()
        pair = QAPair(qa["question"].strip(), answer, answer, group=title)
        para = paragraph_of[qa["id"]]
        sharing = split == "train" and args.share_context
        earlier = next((c for c in shared.get(para, ()) if any(holds(h, pair.key) for h in c[0])), None) if sharing else None
        if earlier is not None:
            hits, spare = earlier
            ex = rag_example(pair, hits, split)
            rows[split].append({"messages": ex.messages, "split": split, "meta": ex.meta})
            if rng.random() < args.not_found_ratio:
                blocks = shared_nf.get(para)
                if blocks is None or any(holds(h, pair.key) for h in blocks):
                    blocks = lacking_blocks(pair, hits, spare)
                    shared_nf.setdefault(para, blocks)
                if blocks:
                    nf = rag_example(pair, blocks, split)
                    rows[split].append({"messages": nf.messages, "split": split, "meta": nf.meta})
            continue
        k = kb.settings.retrieval.k
        wide = kb.search(pair.question, k + 4)  # the lower-ranked blocks fill 'not found' prompts
        result = type(wide)(wide.hits[:k], wide.found)
        hits = kb.assemble(result.hits) if result.found else result.hits
        spare = wide.hits[k:]
        if split == "train" and args.train_distractors is not None:
            hits = _fewer_blocks(hits, pair.key, args.train_distractors)
        if sharing and any(holds(h, pair.key) for h in hits):
            shared.setdefault(para, []).append((hits, spare))
        if split == "test":
            refs = sorted({a["text"].strip() for a in qa["answers"]})
            ex = rag_example(pair, hits, split)
            rows["test"].append(
                {
                    "id": qa["id"],
                    "question": pair.question,
                    "answers": refs,
                    "found": result.found,
                    "messages": build_messages(pair.question, hits),
                    "target": ex.messages[-1]["content"],
                    "kind": ex.meta["kind"],
                }
            )
            if len(rows["test_not_found"]) < args.test_not_found:
                # blocks that hold none of the reference answers
                lacking = [h for h in hits + spare if not any(r.lower() in h.chunk.text.lower() for r in refs)]
                nf = not_found_example(pair, hits, split, spare=lacking)
                nf = nf if nf is not None and not any(r.lower() in nf.messages[1]["content"].lower() for r in refs) else None
                if nf is not None:
                    rows["test_not_found"].append(
                        {
                            "id": qa["id"] + "-nf",
                            "question": pair.question,
                            "answers": [],
                            "found": True,
                            "messages": nf.messages[:-1],
                            "target": nf.messages[-1]["content"],
                            "kind": "not_found",
                        }
                    )
            continue
        ex = rag_example(pair, hits, split)
        rows[split].append({"messages": ex.messages, "split": split, "meta": ex.meta})
        if rng.random() < args.not_found_ratio:
            nf = not_found_example(pair, hits, split, spare=spare)
            if nf is not None:
                rows[split].append({"messages": nf.messages, "split": split, "meta": nf.meta})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_data = _write_jsonl_gz(out / "data.jsonl.gz", rows["train"] + rows["validation"])
    n_test = _write_jsonl_gz(out / "test.jsonl.gz", rows["test"] + rows["test_not_found"])
    counts = {k: len(v) for k, v in rows.items()}
    counts["train_not_found"] = sum(r["meta"]["kind"] == "not_found" for r in rows["train"])
    counts["test_retrieval_missed"] = sum(r["kind"] == "not_found" for r in rows["test"])
    (out / "prep.json").write_text(
        json.dumps({"counts": counts, "seed": args.seed, "k": kb.settings.retrieval.k, "mode": kb.settings.retrieval.mode}, indent=2)
    )
    print(json.dumps(counts), n_data, n_test)


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _densest_contexts(rows: list[dict], n: int) -> list[dict]:
    """Validation rows, and the training rows of the `n` answerable contexts (system prompt and
    blocks) asked most often, plus the most-shared 'not found' contexts up to the data's own share
    of 'not found' rows. Under --pack a context is computed once for all its questions, so this
    gives the most questions per trained token when the budget is short of an epoch over all."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["split"] == "train":
            key = (r["meta"]["kind"] == "not_found", r["messages"][0]["content"], r["messages"][1]["content"].rsplit("Question:", 1)[0])
            groups.setdefault(key, []).append(r)
    densest = sorted(groups.items(), key=lambda kv: len(kv[1]), reverse=True)
    answerable_all = [g for (nf, *_), g in densest if not nf]
    not_found_all = [g for (nf, *_), g in densest if nf]
    answerable = answerable_all[:n]
    want = round(sum(map(len, answerable)) * sum(map(len, not_found_all)) / max(1, sum(map(len, answerable_all))))
    not_found, taken = [], 0
    for g in not_found_all:
        if taken >= want:
            break
        not_found.append(g)
        taken += len(g)
    return [r for r in rows if r["split"] != "train"] + [r for g in answerable + not_found for r in g]


def gpu(args) -> None:
    """Train, then generate base and adapter answers for the test prompts (and perplexities)."""
    import torch

    from kbqa.finetune.config import TrainConfig
    from kbqa.finetune.formats import encode
    from kbqa.finetune.train import evaluate, train
    from kbqa.retrieval.llm.transformers import TransformersLLM

    data_dir, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plain = Path("/tmp/ft-data.jsonl")
    rows = _read_jsonl_gz(data_dir / "data.jsonl.gz")
    if args.dense_contexts:
        rows = _densest_contexts(rows, args.dense_contexts)
    plain.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    adapter = out / "adapter"
    info = {"device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__}
    cfg = TrainConfig(
        data=str(plain),
        output_dir=str(adapter),
        model=args.model,
        learning_rate=args.lr,
        lora_rank=args.rank,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        epochs=args.epochs,
        eval_every=args.eval_every,
        max_length=args.max_length,
        max_minutes=args.max_minutes,
        cache_dir=args.cache_dir,
        progress=args.progress,
        device=args.device,
        max_steps=args.max_steps,
        lora_last_layers=args.lora_last_layers,
        pack_shared_prefix=args.pack,
    )
    if not args.no_train:
        started = time.perf_counter()
        metrics = train(cfg)
        info["train_wall_s"] = round(time.perf_counter() - started, 1)
        print({k: v for k, v in metrics.items() if k != "history"}, flush=True)

    tests = [t for t in _read_jsonl_gz(data_dir / "test.jsonl.gz") if args.only_set in (None, t.get("set"))][: args.limit_test]
    gen = {"info": info, "items": tests}
    systems = ([] if args.no_base else [("base", None)]) + ([] if args.no_train else [("adapter", str(adapter))])
    for a in args.also_adapter:  # NAME=FOLDER, or FOLDER (named after its parent folder)
        name, _, folder = a.rpartition("=")
        systems.append((f"adapter_{name or Path(folder).parent.name}", folder))
    for name, adapter_dir in systems:
        llm = TransformersLLM(args.model, device=args.device, adapter=adapter_dir, cache_dir=Path(args.cache_dir))
        todo = [i for i, t in enumerate(tests) if t["found"]]
        t0 = time.perf_counter()
        for s in range(0, len(todo), args.gen_batch):
            idx = todo[s : s + args.gen_batch]
            texts = llm.batch([tests[i]["messages"] for i in idx], max_tokens=args.max_new_tokens)
            for i, text in zip(idx, texts):
                tests[i][name] = text
        info[f"{name}_generate_s"] = round(time.perf_counter() - t0, 1)
        print(name, "generated in", info[f"{name}_generate_s"], "s", flush=True)
        if args.no_perplexity:
            continue
        # perplexity of the reference replies (assistant tokens only)
        model, tok = llm.model, llm.tokenizer
        enc = [encode(tok, t["messages"] + [{"role": "assistant", "content": t["target"]}], 4096) for t in tests if t["found"] and t.get("target")]
        info[f"{name}_target_loss"] = evaluate(model, [e for e in enc if e], 16, tok.pad_token_id, args.device)
        print(name, "target loss", info[f"{name}_target_loss"], flush=True)
    (out / "generations.json").write_text(json.dumps(gen, ensure_ascii=False))


def score(args) -> None:
    print("scoring lives in bench/finetune_report.py", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    a = sub.add_parser("prep")
    a.add_argument("--work", default="/tmp/ft-squad")
    a.add_argument("--out", default=".gpu/squad")
    a.add_argument("--train", type=int, default=3000)
    a.add_argument("--val", type=int, default=200)
    a.add_argument("--test", type=int, default=256)
    a.add_argument("--test-not-found", dest="test_not_found", type=int, default=100)
    a.add_argument("--not-found-ratio", dest="not_found_ratio", type=float, default=0.15)
    a.add_argument("--seed", type=int, default=42)
    a.add_argument(
        "--train-distractors",
        dest="train_distractors",
        type=int,
        help="training prompts keep the first block holding the answer and only this many others (validation and test prompts keep all k)",
    )
    a.add_argument(
        "--share-context",
        dest="share_context",
        action="store_true",
        help="training questions on one paragraph reuse one retrieval's blocks when they hold the answer (for --pack)",
    )
    a.set_defaults(func=prep)
    g = sub.add_parser("gpu")
    g.add_argument("--data", default=".gpu/squad")
    g.add_argument("--model", default="smollm2")
    g.add_argument("--cache-dir", dest="cache_dir", default=os.environ.get("KBQA_CACHE_DIR", "/tmp/kbqa-cache"))
    g.add_argument("--out", required=True)
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha stays 32)")
    g.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    g.add_argument("--grad-accum", dest="grad_accum", type=int, default=1)
    g.add_argument("--epochs", type=float, default=1.0)
    g.add_argument("--eval-every", dest="eval_every", type=int, default=40)
    g.add_argument("--max-length", dest="max_length", type=int, default=2048)
    g.add_argument("--max-minutes", dest="max_minutes", type=float, default=4.0)
    g.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=256)
    g.add_argument("--device", default="cuda")
    g.add_argument("--max-steps", dest="max_steps", type=int)
    g.add_argument("--limit-test", dest="limit_test", type=int, help="only the first N test prompts (smoke runs)")
    g.add_argument("--gen-batch", dest="gen_batch", type=int, default=128)
    g.add_argument(
        "--also-adapter",
        dest="also_adapter",
        action="append",
        default=[],
        help="[NAME=]FOLDER: another adapter to generate with, as system adapter_NAME (e.g. the SQuAD adapter on the sample KB)",
    )
    g.add_argument("--no-train", dest="no_train", action="store_true", help="generate only: base and --also-adapter folders")
    g.add_argument("--no-base", dest="no_base", action="store_true", help="do not generate with the base model")
    g.add_argument("--lora-last-layers", dest="lora_last_layers", type=int, default=0, help="LoRA only in the last n layers")
    g.add_argument(
        "--dense-contexts",
        dest="dense_contexts",
        type=int,
        default=0,
        help="train only on the N most-asked answerable contexts, plus 'not found' ones in the data's proportion (with --pack: most questions per token)",
    )
    g.add_argument("--pack", action="store_true", help="pack questions that share their blocks (prep --share-context)")
    g.add_argument("--progress", action="store_true", help="a training progress bar")
    g.add_argument("--only-set", dest="only_set", help="only the test prompts of this set (e.g. sample_qa)")
    g.add_argument("--no-perplexity", dest="no_perplexity", action="store_true", help="generate only (perplexity is a second pass)")
    g.set_defaults(func=gpu)
    s = sub.add_parser("score")
    s.add_argument("--gen", required=True)
    s.set_defaults(func=score)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
