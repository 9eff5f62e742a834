"""The answer-quality benchmarks with generation moved to the GPU machine.

The shared 2-core CPU here was too contended to generate 440 answers in time (about 10% of a
core per process), so the full RAG path is split at the prompt:

1. ``prep`` (here): retrieval and prompt building exactly as `KnowledgeBase.ask_batch` does
   (`app.evaluation.rag_prompts`) for sample (40), squad (200), cmrc (200), and the evalscope
   example (closed book) -> ``.gpu/eval/<name>.jsonl``.
2. ``gpu`` (device machine, via bench/finetune_gpu.sh which carries the packaged GGUF): the same
   `TransformersLLM.batch` with the default settings (packaged SmolLM2, greedy, 256 new tokens;
   bf16 on CUDA where the CPU path uses fp32) -> ``$OUT/<name>.answers.jsonl``.
3. ``score`` (here): predictions files -> ``kbqa eval qa|squad --predictions`` run folders under
   bench/results/eval_runs/<name>-gpu/, then ``bench/eval_qa.py collect``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
PROMPTS = Path(os.environ.get("EVAL_PROMPTS", ROOT / ".gpu" / "eval"))
RUNS = ROOT / "bench" / "results" / "eval_runs"
SQUAD = SHARED / "squad" / "squad_v1.1_dev_articles_00-23.json"
CMRC = SHARED / "cmrc2018" / "cmrc2018_trial.json"
EVALSCOPE = SHARED / "evalscope_general_qa" / "example.jsonl"


def prep(names: list[str]) -> None:
    from kbqa.app.evaluation import closed_book_messages, rag_prompts, sample_evenly, squad_kb
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings
    from kbqa.eval.datasets import read_qa_jsonl, read_squad

    settings = Settings.load()
    PROMPTS.mkdir(parents=True, exist_ok=True)
    s = settings.llm
    llm_settings = {
        "model": s.model,
        "max_new_tokens": s.max_new_tokens,
        "temperature": s.temperature,
        "max_context_tokens": s.max_context_tokens,
        "stop": list(getattr(s, "stop", None) or []),
    }
    (PROMPTS / "llm_settings.json").write_text(json.dumps(llm_settings, indent=2) + "\n")
    for name in names:
        t0 = time.time()
        if name == "sample":
            sys.path.insert(0, str(ROOT / "bench"))
            from eval_qa import sample_kb

            rows = rag_prompts(KnowledgeBase(sample_kb(), settings), read_qa_jsonl(ROOT / "data" / "sample_qa.jsonl"))
        elif name in ("squad", "cmrc"):
            path = SQUAD if name == "squad" else CMRC
            paragraphs, items = read_squad(path)
            rows = rag_prompts(squad_kb(path, paragraphs, settings), sample_evenly(items, 200))
        elif name == "evalscope":
            rows = [
                {
                    "id": it.id,
                    "question": it.question,
                    "messages": closed_book_messages(it),
                    "found": True,
                    "sources": None,
                    "retrieve_ms": 0.0,
                    "not_found_answer": None,
                }
                for it in read_qa_jsonl(EVALSCOPE)
            ]
        else:
            raise SystemExit(f"unknown set {name!r}")
        with (PROMPTS / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} prompts, {sum(r['found'] for r in rows)} with context found, {time.time() - t0:.0f} s, load {os.getloadavg()}", flush=True)


def gpu(out: str, batch: int) -> None:
    import torch

    from kbqa.retrieval.llm.transformers import TransformersLLM

    cfg = json.loads((PROMPTS / "llm_settings.json").read_text())
    llm = TransformersLLM(
        cfg["model"],
        device="cuda" if torch.cuda.is_available() else "cpu",
        cache_dir=Path("/tmp/kbqa-cache"),
        stop=tuple(cfg["stop"]),
        max_context_tokens=cfg["max_context_tokens"],
    )
    llm.warm_up()
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    info = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__, "sets": {}}
    for f in sorted(p for p in PROMPTS.glob("*.jsonl") if "." not in p.stem):
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        todo = [r for r in rows if r["found"]]
        # similar lengths together: less padding
        todo.sort(key=lambda r: sum(len(m["content"]) for m in r["messages"]))
        t0 = time.perf_counter()
        for s in range(0, len(todo), batch):
            group = todo[s : s + batch]
            g0 = time.perf_counter()
            texts = llm.batch([r["messages"] for r in group], max_tokens=cfg["max_new_tokens"], temperature=cfg["temperature"])
            each = (time.perf_counter() - g0) * 1000 / len(group)
            for r, t in zip(group, texts):
                r["answer"], r["generate_ms"] = t, round(each, 1)
        for r in rows:
            if not r["found"]:
                r["answer"], r["generate_ms"] = r["not_found_answer"], 0.0
        info["sets"][f.stem] = {"n": len(rows), "generated": len(todo), "generate_s": round(time.perf_counter() - t0, 1), "batch": batch}
        with (outdir / f"{f.stem}.answers.jsonl").open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({k: r[k] for k in ("id", "question", "answer", "sources", "retrieve_ms", "generate_ms")}, ensure_ascii=False) + "\n")
        print(f.stem, info["sets"][f.stem], flush=True)
    (outdir / "gpu_info.json").write_text(json.dumps(info, indent=2) + "\n")


def score(answers_dir: str) -> None:
    kbqa = str(Path(sys.executable).parent / "kbqa")
    src = Path(answers_dir)
    info = json.loads((src / "gpu_info.json").read_text())
    for f in sorted(src.glob("*.answers.jsonl")):
        name = f.name.split(".")[0]
        preds = PROMPTS / f"{name}.predictions.jsonl"
        with preds.open("w", encoding="utf-8") as fh:
            for line in f.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                row = {"id": r["id"], "question": r["question"], "answer": r["answer"], "latency_ms": round(r["retrieve_ms"] + r["generate_ms"], 1)}
                if r["sources"] is not None:
                    row["sources"] = r["sources"]
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        data = {"sample": ROOT / "data" / "sample_qa.jsonl", "squad": SQUAD, "cmrc": CMRC, "evalscope": EVALSCOPE}[name]
        kind = "squad" if name in ("squad", "cmrc") else "qa"
        out = RUNS / f"{name}-gpu"
        cmd = [kbqa, "eval", kind, str(data), "--predictions", str(preds), "--out", str(out)] + (["--limit", "200"] if kind == "squad" else [])
        subprocess.run(cmd, check=True, cwd=ROOT)
        g = info["sets"][name]
        bench = {
            "command": f"python bench/eval_qa_gpu.py prep|gpu|score ({name}); generation on {info['device']}, torch {info['torch']}, "
            f"batch {g['batch']}: {g['generated']} answers in {g['generate_s']} s",
            "wall_s": g["generate_s"],
            "loadavg_before": [],
            "loadavg_after": [],
        }
        (out / "bench.json").write_text(json.dumps(bench, indent=2) + "\n")


if __name__ == "__main__":
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    if stage == "prep":
        prep(sys.argv[2:] or ["evalscope", "sample", "cmrc", "squad"])
    elif stage == "gpu":
        gpu(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("OUT", "/tmp/out"), int(sys.argv[3]) if len(sys.argv) > 3 else 64)
    elif stage == "score":
        score(sys.argv[2])
    else:
        raise SystemExit(__doc__)
