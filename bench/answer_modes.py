"""Answer modes side by side on the full RAG path, packaged model, this CPU.

    python bench/answer_modes.py                    # bench/results/answer_modes.{json,md}
    python bench/answer_modes.py --answerable 30 --unanswerable 15 --extractive-answerable 150

Data (questions about documents that training never saw):
- English: ../shared/data/squad articles 18-23 (the reader trains on 0-15, calibrates on 16-17).
- Chinese: ../shared/data/cmrc2018, the paragraphs of the hash split "test" (finetune/reader_data.py).
- Sample: data/sample_qa.jsonl over data/sample (written for this project, in no training set).

In each language a quarter of the test paragraphs (by a hash of their text) is left out of the
knowledge base: their questions whose answer text occurs in no paragraph that is in it are the
unanswerable ones, with passages on the same topic still in the knowledge base (the RGB
"negative rejection" setting). The other questions are answerable.

Configurations: the base model and the shipped adapter generating freely (no check), the
adapter's same answers after verification (replaced by the reader's quote or "not found" when
they fail), and the extractive reader. Generative answers are slow here, so they run on the
first `--answerable` + `--unanswerable` questions of each language; the extractive reader also
runs on a larger set (`--extractive-answerable`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"

from kbqa.app.evaluation import squad_kb  # noqa: E402
from kbqa.app.kb import KnowledgeBase  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.eval.datasets import QAItem, read_qa_jsonl, read_squad  # noqa: E402
from kbqa.eval.error_analysis import is_correct, is_not_found  # noqa: E402
from kbqa.eval.squad_metrics import squad_scores  # noqa: E402
from kbqa.finetune.reader_data import split_of  # noqa: E402
from kbqa.retrieval.answering import checked_answer, extractive_answer  # noqa: E402
from kbqa.retrieval.citations import strip_citations  # noqa: E402
from kbqa.retrieval.verify import is_number, verify_answer  # noqa: E402

SAMPLE_UNANSWERABLE = [
    "What is the capital of Peru?",
    "How many passengers did the railway carry in 1950?",
    "Who designed the uniforms of the station staff?",
    "What is the phone number of the lost property office at Mirror Lake Station?",
    "兰山铁路的总经理是谁？",
    "2020年兰山铁路的票价收入是多少？",
    "云峰站的海拔比泰山高多少米？",
    "列车上提供哪些品牌的咖啡？",
]


def _evenly(items: list, n: int) -> list:
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _held_out(text: str) -> bool:
    return int(hashlib.sha1(("holdout:" + text).encode()).hexdigest(), 16) % 4 == 0


def shared_sets(lang: str):
    """(the data file, paragraphs in the KB, answerable items, unanswerable items) for 'en' or 'zh'."""
    path = SHARED / ("squad/squad_v1.1_dev_articles_00-23.json" if lang == "en" else "cmrc2018/cmrc2018_trial.json")
    paras, items = read_squad(path)
    if lang == "en":
        paras = [p for p in paras if 18 <= int(p.id[1:4]) <= 23]
    else:
        paras = [p for p in paras if split_of(p.context) == "test"]
    kb = [p for p in paras if not _held_out(p.context)]
    in_kb = {p.id for p in kb}
    out = {p.id for p in paras} - in_kb
    texts = [p.context for p in kb]
    answerable = [it for it in items if it.source in in_kb]
    unanswerable = [it for it in items if it.source in out and not any(r in t for r in it.references for t in texts)]
    return path, kb, answerable, unanswerable


def unsupported_number(answer: str, blocks: list[str]) -> bool:
    return any(is_number(fact) for fact in verify_answer(answer, blocks).facts)


def record(item: QAItem, answerable: bool, answer, seconds: float) -> dict:
    text = answer.answer
    nf = is_not_found(text, answer.found)
    scores = squad_scores(strip_citations(text), item.references) if answerable else {}
    if answerable and item.keys and item.keys != item.references:  # a short key answer (data/sample_qa.jsonl): contains checks it
        scores["contains"] = squad_scores(strip_citations(text), item.keys)["contains"]
    blocks = [h.chunk.text for h in answer.sources]
    return {
        "question": item.question,
        "references": item.references,
        "answerable": answerable,
        "answer": text,
        "not_found": nf,
        "correct": bool(answerable and not nf and is_correct(scores)),
        **scores,
        "seconds": round(seconds, 3),
        "unsupported_number": bool(not nf and unsupported_number(text, blocks)),
        "grounded": answer.grounded,
        "mode": answer.mode,
    }


def run_config(kb: KnowledgeBase, answerable: list[QAItem], unanswerable: list[QAItem], batch: int) -> list[dict]:
    questions = [(it, True) for it in answerable] + [(it, False) for it in unanswerable]
    started = time.perf_counter()
    answers = kb.ask_batch([it.question for it, _ in questions], batch_size=batch)
    print(f"  {len(questions)} answers in {time.perf_counter() - started:.0f} s", flush=True)
    return [record(it, ok, a, (a.timings.get("retrieve_ms", 0) + a.timings.get("generate_ms", 0)) / 1000) for (it, ok), a in zip(questions, answers)]


def verified(kb: KnowledgeBase, raw: list[dict], answerable: list[QAItem], unanswerable: list[QAItem]) -> list[dict]:
    """The raw generations checked after the fact, exactly as `answer.verify` checks them."""
    out = []
    for rec, (item, ok) in zip(raw, [(it, True) for it in answerable] + [(it, False) for it in unanswerable]):
        started = time.perf_counter()
        p = kb.prepare(item.question)
        if not p.found or rec["not_found"]:
            out.append(dict(rec))
            continue
        g = checked_answer(
            rec["answer"], p.hits, p.lang, lambda: extractive_answer(kb.answerer.reader, item.question, p.hits, p.lang, threshold=kb.answerer.threshold(p.lang))
        )
        from kbqa.retrieval.types import Answer

        a = Answer(g.text, p.hits if g.found else [], {}, found=g.found, mode="generative", grounded=g.grounded)
        out.append(record(item, ok, a, rec["seconds"] + time.perf_counter() - started))
    return out


def summarise(records: list[dict]) -> dict:
    ans = [r for r in records if r["answerable"]]
    una = [r for r in records if not r["answerable"]]
    answered = [r for r in records if not r["not_found"]]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {
        "answerable": len(ans),
        "unanswerable": len(una),
        "em": mean([r["em"] for r in ans]),
        "f1": mean([r["f1"] for r in ans]),
        "contains": mean([r["contains"] for r in ans]),
        "wrong": mean([float(not r["correct"] and not r["not_found"]) for r in ans]),
        "not_found_answerable": mean([float(r["not_found"]) for r in ans]),
        "negative_rejection": mean([float(r["not_found"]) for r in una]),
        "unsupported_number": mean([float(r["unsupported_number"]) for r in answered]),
        "seconds_per_answer": mean([r["seconds"] for r in records]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answerable", type=int, default=30, help="answerable questions per language for every configuration")
    ap.add_argument("--unanswerable", type=int, default=15)
    ap.add_argument("--extractive-answerable", type=int, default=150, help="answerable questions per language for the extractive reader alone")
    ap.add_argument("--extractive-unanswerable", type=int, default=75)
    ap.add_argument("--langs", default="en,zh,sample")
    ap.add_argument("--configs", default="base,adapter,verified,extractive")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=str(RESULTS / "answer_modes"))
    ap.add_argument("--merge", action="store_true", help="keep the runs already in OUT.json that this call does not redo")
    ap.add_argument("--reader", help="the extractive reader's folder (default: the shipped one)")
    ap.add_argument("--tag", help="name this call's runs CONFIG:TAG (to set readers or settings side by side with --merge)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings.load()
    configs = args.configs.split(",")
    results: dict = {
        "meta": {
            "command": shlex.join(["python", "bench/answer_modes.py", *(argv if argv is not None else sys.argv[1:])]),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_start": os.getloadavg()[0],
            "machine": f"{os.cpu_count()} CPUs",
            "k": settings.retrieval.k,
            "retrieval": settings.retrieval.mode,
        },
        "sets": {},
        "runs": {},
    }
    previous = Path(args.out).with_suffix(".json")
    if args.merge and previous.is_file():
        old = json.loads(previous.read_text(encoding="utf-8"))
        results["sets"], results["runs"] = old["sets"], old["runs"]
        results["meta"]["command"] = old["meta"]["command"] + " ; " + results["meta"]["command"]
        results["meta"]["date"] = old["meta"]["date"] + " ; " + results["meta"]["date"]
    shared_llm = shared_reader = None
    tag = f":{args.tag}" if args.tag else ""
    for lang in args.langs.split(","):
        if lang == "sample":
            kb_dir = _sample_kb(settings)
            items = read_qa_jsonl(ROOT / "data" / "sample_qa.jsonl")
            neg = [QAItem(question=q, references=["-"], id=f"neg{i}") for i, q in enumerate(SAMPLE_UNANSWERABLE)]
            small = (items, neg)
            large = (items, neg)
        else:
            path, paras, answerable, unanswerable = shared_sets(lang)
            kb_dir = squad_kb(path, paras, settings).path  # the cached evaluation KB (app/evaluation.py)
            small = (_evenly(answerable, args.answerable), _evenly(unanswerable, args.unanswerable))
            large = (_evenly(answerable, args.extractive_answerable), _evenly(unanswerable, args.extractive_unanswerable))
        results["sets"][lang] = {
            "kb": str(kb_dir),
            "answerable": len(small[0]),
            "unanswerable": len(small[1]),
            "extractive_answerable": len(large[0]),
            "extractive_unanswerable": len(large[1]),
        }
        for config in configs:
            if config == "verified":
                continue
            overrides = {
                "base": {"answer.mode": "generative", "answer.verify": False},
                "adapter": {"answer.mode": "generative", "answer.verify": False},
                "extractive": {"answer.mode": "extractive", **({"answer.reader": args.reader} if args.reader else {})},
            }[config]
            llm = None
            if config in ("base", "adapter"):  # one loaded model: the base model, or the shipped adapter over it
                from kbqa.retrieval.llm import make_llm
                from kbqa.retrieval.llm.adapters import select_adapter

                shared_llm = shared_llm or make_llm(settings.llm, settings.cache_dir)
                llm = select_adapter(shared_llm, "base" if config == "base" else None)
            kb = KnowledgeBase(kb_dir, settings.with_overrides(overrides), llm=llm, reader=shared_reader)
            kb.warm_up()
            shared_reader = shared_reader or kb.answerer.reader
            print(f"{lang} / {config}", flush=True)
            load = round(os.getloadavg()[0], 1)
            recs = run_config(kb, *small, args.batch)
            results["runs"][f"{lang}/{config}{tag}"] = {"metrics": summarise(recs), "load_average": load, "records": recs}
            if config == "adapter" and "verified" in configs:
                vrecs = verified(kb, recs, *small)
                results["runs"][f"{lang}/verified{tag}"] = {"metrics": summarise(vrecs), "load_average": load, "records": vrecs}
            if config == "extractive" and large != small:
                load = round(os.getloadavg()[0], 1)
                big = run_config(kb, *large, args.batch)
                results["runs"][f"{lang}/extractive-large{tag}"] = {"metrics": summarise(big), "load_average": load, "records": big}
    results["meta"]["load_average_end"] = os.getloadavg()[0]
    write(results, Path(args.out))
    return 0


def _sample_kb(settings: Settings) -> Path:
    """The bundled sample KB, cached under a key of its files' bytes and the settings that shape a
    knowledge base (a change to data/sample or to the embedder builds a new one)."""
    key = hashlib.sha1()
    for path in sorted((ROOT / "data" / "sample").rglob("*")):
        if path.is_file():
            key.update(path.name.encode() + b"\0" + path.read_bytes())
    key.update(json.dumps(settings.model_dump(mode="json", include={"embedder", "chunking", "store"}), sort_keys=True).encode())
    kb_dir = Path(settings.cache_dir) / "bench-answer-modes" / f"sample-{key.hexdigest()[:12]}" / "kb"
    if not (kb_dir / "kb.json").is_file():
        summary = KnowledgeBase(kb_dir, settings).ingest([ROOT / "data" / "sample"], progress=True)
        assert summary.ok, summary.render()
    return kb_dir


COLUMNS = [
    ("em", "EM"),
    ("f1", "F1"),
    ("contains", "contains"),
    ("wrong", "wrong"),
    ("not_found_answerable", "not found (answerable)"),
    ("negative_rejection", "negative rejection"),
    ("unsupported_number", "unsupported number"),
    ("seconds_per_answer", "s / answer"),
]
NAMES = {
    "base": "base model, generative",
    "adapter": "shipped adapter, generative",
    "verified": "shipped adapter + verification",
    "extractive": "extractive reader",
    "extractive-large": "extractive reader (larger set)",
}


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    m = results["meta"]
    lines = [
        "# Answer modes on the full RAG path (packaged models, CPU)",
        "",
        f"Command: `{m['command']}`  ",
        f"Date: {m['date']}; load average {m['load_average_start']:.1f} at the start, "
        f"{m.get('load_average_end', 0):.1f} at the end; {m['machine']}; retrieval {m['retrieval']}, k={m['k']}.",
        "",
    ]
    for lang, info in results["sets"].items():
        title = {"en": "English: SQuAD articles 18-23", "zh": "Chinese: CMRC 2018 test split", "sample": "Sample KB (data/sample_qa.jsonl)"}[lang]
        lines += [
            f"## {title}",
            "",
            f"{info['answerable']} answerable + {info['unanswerable']} unanswerable questions per configuration"
            + (f"; the larger extractive set: {info['extractive_answerable']} + {info['extractive_unanswerable']}." if lang != "sample" else "."),
            "",
            "| configuration | n | " + " | ".join(c[1] for c in COLUMNS) + " | load |",
            "|---|---|" + "---|" * (len(COLUMNS) + 1),
        ]
        for key, run in results["runs"].items():
            if key.split("/")[0] != lang:
                continue
            met = run["metrics"]
            cells = ["-" if met[c] is None else (f"{met[c]:.2f}" if c == "seconds_per_answer" else f"{met[c]:.3f}") for c, _ in COLUMNS]
            config, _, run_tag = key.split("/")[1].partition(":")
            lines.append(
                f"| {NAMES[config]}{f' ({run_tag})' if run_tag else ''} | {met['answerable']}+{met['unanswerable']} | "
                + " | ".join(cells)
                + f" | {run.get('load_average', '-')} |"
            )
        lines.append("")
    lines += [
        "EM, F1 (SQuAD rules; characters for Chinese) and contains are over the answerable questions, on the answer without its",
        "citation markers. *wrong*: an answerable question answered neither correctly (contains the reference, or F1 >= 0.5)",
        'nor with "not found". *negative rejection*: unanswerable questions answered "not found". *unsupported number*: answers',
        '(other than "not found") stating a number that is in none of the blocks they cite. Seconds per answer include retrieval.',
        "*load*: the 1-minute load average when the run started (2 cores).",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
