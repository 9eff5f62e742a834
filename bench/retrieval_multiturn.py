"""Multi-turn retrieval: hit@k of follow-up questions over the sample knowledge base, with and
without rewriting them from the conversation (`retrieval.rewrite`).

    python bench/retrieval_multiturn.py [--kb DIR]

A hit: one of the top-k chunks comes from the expected document and holds the answer's key
text. Writes bench/results/retrieval_multiturn.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from kbqa.app.kb import KnowledgeBase  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.retrieval.rewrite import rewrite_query  # noqa: E402


def hit(hits, case) -> bool:
    return any(Path(h.chunk.source).name == case["source"] and case["key"] in h.chunk.text for h in hits)


def measure(kb: KnowledgeBase, cases: list[dict], ks=(1, 3, 5), mode: str | None = None) -> dict:
    out = {}
    for label, rewrite in (("without rewriting", False), ("with rewriting", True)):
        rows = []
        for case in cases:
            query = rewrite_query(case["query"], case["history"]) if rewrite else case["query"]
            hits = kb.search(query, max(ks), mode).hits
            rows.append({"query": query, **{f"hit@{k}": hit(hits[:k], case) for k in ks}})
        out[label] = {f"hit@{k}": round(sum(r[f"hit@{k}"] for r in rows) / len(rows), 3) for k in ks} | {"cases": len(rows), "items": rows}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", help="a knowledge base of data/sample (default: built in a temporary folder)")
    args = ap.parse_args(argv)
    cases = [json.loads(line) for line in (ROOT / "data" / "multiturn_qa.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    settings = Settings.load()
    path = Path(args.kb) if args.kb else Path(tempfile.mkdtemp()) / "kb"
    kb = KnowledgeBase(path, settings)
    if not (path / "kb.json").is_file():
        kb.ingest([ROOT / "data" / "sample"])
    results = {mode: measure(kb, cases, mode=mode) for mode in ("hybrid", "bm25", "dense")}
    meta = {
        "command": "python bench/retrieval_multiturn.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "embedder": f"{settings.embedder.backend}:{settings.embedder.model}",
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval_multiturn.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False))
    lines = [
        "# Multi-turn retrieval (data/multiturn_qa.jsonl over data/sample)\n",
        f"`{meta['command']}` ({meta['date']}, {meta['machine']}, {meta['embedder']})\n",
        "| mode | rewriting | hit@1 | hit@3 | hit@5 | cases |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        for label, m in r.items():
            lines.append(f"| {mode} | {label} | {m['hit@1']} | {m['hit@3']} | {m['hit@5']} | {m['cases']} |")
    (out / "retrieval_multiturn.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
