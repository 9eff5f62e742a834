"""Per-query retrieval latency at the product's k (5) on the SciFact knowledge base of
`kbqa eval retrieval` (built or reused), query embedding included, 200 queries per mode.

    python bench/retrieval_latency.py      -> bench/results/retrieval_latency.{json,md}

The machine is shared: os.getloadavg() is recorded beside each figure.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from kbqa.app.evaluation import build_eval_kb  # noqa: E402
from kbqa.eval.benchmarks import load_beir  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.eval.retrieval_metrics import percentile  # noqa: E402


def main() -> int:
    bench = load_beir(ROOT.parent / "shared" / "data" / "scifact", "train")
    kb, _ = build_eval_kb(bench, Settings.load(), progress=False)
    queries = [bench.queries[q] for q in list(bench.qrels)[:200]]
    kb.search("warm up", 5)
    out = {}
    for mode in ("hybrid", "dense", "bm25"):
        latencies, load = [], os.getloadavg()[0]
        for q in queries:
            started = time.perf_counter()
            kb.search(q, 5, mode)
            latencies.append((time.perf_counter() - started) * 1000)
        out[mode] = {
            "k": 5,
            "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1),
            "queries": len(latencies),
            "loadavg_1m": round((load + os.getloadavg()[0]) / 2, 2),
        }
    threads = os.environ.get("OMP_NUM_THREADS")
    meta = {
        "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python bench/retrieval_latency.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, shared",
        "chunks": kb.store.count(),
    }
    res = ROOT / "bench" / "results"
    (res / "retrieval_latency.json").write_text(json.dumps({"meta": meta, "results": out}, indent=2))
    lines = [
        f"# Retrieval latency, SciFact KB ({meta['chunks']} chunks), k=5\n",
        f"`{meta['command']}` ({meta['date']}, {meta['machine']})\n",
        "| mode | p50 ms | p95 ms | queries | load avg (1 min) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {r['p50_ms']} | {r['p95_ms']} | {r['queries']} | {r['loadavg_1m']} |" for m, r in out.items()]
    (res / "retrieval_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
