"""Latency the rerank stage adds (retrieval.rerank), in one run: the sample knowledge base's 40
questions, hybrid retrieval at k=5 without a reranker (the baseline) and with a cross-encoder
re-scoring the first stage's top 30 (k=5 kept), per query, query embedding included.

    OMP_NUM_THREADS=1 python bench/rerank.py [--model FOLDER] [--candidates 30] [--rounds 3]

No reranker weights ship with kbqa. Without --model the cross-encoder is the packaged MiniLM
(L6, 384-d: the size of the common ms-marco MiniLM-L-6 cross-encoders) with a fresh, untrained
one-label head (seeded), saved as a CrossEncoder folder in a temporary directory: its latency is
a real cross-encoder's of that size, its ranking is noise (hit@k is written beside it for that
reason, not as a quality figure). With --model (a local CrossEncoder folder) both mean something.

Writes bench/results/rerank.{json,md}; os.getloadavg() is recorded beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kbqa.app.kb import KnowledgeBase  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.eval.retrieval_metrics import percentile  # noqa: E402
from kbqa.retrieval.rerankers import make_reranker  # noqa: E402
from kbqa.retrieval.retriever import Retriever, RetrieverConfig  # noqa: E402

K = 5


def untrained_cross_encoder(folder: Path) -> Path:
    import torch
    from sentence_transformers import CrossEncoder

    from kbqa.retrieval.packaged import minilm_dir

    torch.manual_seed(0)
    CrossEncoder(str(minilm_dir()), num_labels=1, device="cpu", local_files_only=True).save(str(folder))
    return folder


def run(retriever: Retriever, qa: list[dict], rounds: int) -> dict:
    latencies, hit1, hit5, load = [], 0, 0, os.getloadavg()[0]
    for r in range(rounds):
        for item in qa:
            started = time.perf_counter()
            got = retriever.retrieve(item["query"], K)
            latencies.append((time.perf_counter() - started) * 1000)
            if r == 0:
                sources = [Path(h.chunk.source).name for h in got.hits]
                hit1 += bool(sources) and sources[0] == item["source"]
                hit5 += item["source"] in sources
    return {
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "timed_queries": len(latencies),
        "hit@1": round(hit1 / len(qa), 3),
        "hit@5": round(hit5 / len(qa), 3),
        "loadavg_1m": round((load + os.getloadavg()[0]) / 2, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a local sentence-transformers CrossEncoder folder (default: MiniLM with an untrained head)")
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the questions (latency from all, hit@k from the first)")
    args = ap.parse_args()
    qa = [json.loads(line) for line in (ROOT / "data" / "sample_qa.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        kb = KnowledgeBase(Path(tmp) / "kb", settings)
        kb.ingest([ROOT / "data" / "sample"])
        model = Path(args.model) if args.model else untrained_cross_encoder(Path(tmp) / "minilm-untrained-ce")
        base = kb.retriever
        config = RetrieverConfig.from_mapping({**settings.retrieval.model_dump(), "rerank_candidates": args.candidates})
        reranked = Retriever(kb.embedder, kb.store, kb.keyword_index, config=config, reranker=make_reranker(str(model), device="cpu"))
        for r in (base, reranked):
            r.retrieve("warm up the models", K)
        out = {
            "baseline (hybrid, no rerank)": run(base, qa, args.rounds),
            f"hybrid + rerank ({config.rerank_candidates} -> {K})": run(reranked, qa, args.rounds),
        }
        chunks = kb.store.count()
    base_row, rr_row = out.values()
    added = round(rr_row["p50_ms"] - base_row["p50_ms"], 1)
    threads = os.environ.get("OMP_NUM_THREADS")
    meta = {
        "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python bench/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, shared",
        "reranker": args.model or "packaged MiniLM + untrained one-label head (latency only)",
        "chunks": chunks,
        "questions": len(qa),
        "k": K,
        "candidates": config.rerank_candidates,
        "p50_added_ms": added,
    }
    res = ROOT / "bench" / "results"
    (res / "rerank.json").write_text(json.dumps({"meta": meta, "results": out}, indent=2) + "\n")
    lines = [
        f"# Rerank latency, sample KB ({chunks} chunks, {len(qa)} questions x {args.rounds}), k={K}\n",
        f"`{meta['command']}` ({meta['date']}, {meta['machine']}); reranker: {meta['reranker']}\n",
        "| system | p50 ms | p95 ms | timed queries | hit@1 | hit@5 | load avg (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {x['p50_ms']} | {x['p95_ms']} | {x['timed_queries']} | {x['hit@1']} | {x['hit@5']} | {x['loadavg_1m']} |" for name, x in out.items()]
    lines.append(f"\nRerank adds {added} ms at p50 per query ({config.rerank_candidates} (question, chunk) pairs through the cross-encoder).")
    if not args.model:
        lines.append("hit@k with the untrained head is noise, shown only to make that plain; it is not a quality figure.")
    (res / "rerank.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
