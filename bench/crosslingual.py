"""Cross-lingual retrieval: Chinese questions about the English sample documents and English
questions about the Chinese ones (data/crosslingual_qa.jsonl over data/sample).

    python bench/crosslingual.py [--embedders sentence-transformers,e5,e5+centering,use] [--modes dense,bm25,hybrid]

Each embedder gets its own knowledge base of data/sample (built in a temporary folder); MiniLM
(`sentence-transformers`, the default) is the baseline of the same run; ``e5+centering`` searches
the e5 knowledge base again with `retrieval.language_centering` on (retrieval/centering.py). A hit: one of the top-k
chunks comes from the expected document and holds the item's key text (as in
bench/retrieval_multiturn.py). `found`: the share of questions whose best chunk passes the
relevance floor (below it `ask` answers "not found"). Per direction: zh->en (a Chinese question,
an English document) and en->zh. Writes bench/results/crosslingual.{json,md} with every miss.
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.retrieval_multiturn import hit  # noqa: E402
from bench.run import machine  # noqa: E402
from kbqa.app.kb import KnowledgeBase  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.eval.retrieval_metrics import percentile  # noqa: E402

DATA = ROOT / "data" / "crosslingual_qa.jsonl"
DIRECTIONS = {"zh": "zh->en", "en": "en->zh"}  # the question's language -> direction
LABELS = {
    "sentence-transformers": "MiniLM (baseline)",
    "e5": "multilingual-e5-small",
    "use": "USE v3",
    "e5+centering": "multilingual-e5-small, language centering",
}
VARIANTS = {"centering": {"retrieval.language_centering": True}}  # "<backend>+<variant>": the backend's KB, searched so
KS = (1, 5)
TARGET = 0.85
ONLY = "hit@5 other-language docs only"


def load_cases(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def first_hit(hits, case) -> int | None:
    return next((i + 1 for i in range(len(hits)) if hit(hits[i : i + 1], case)), None)


def measure(kb: KnowledgeBase, cases: list[dict], mode: str) -> dict:
    """hit@1/hit@5/found per direction, the latency of each search, and every miss at 5.
    `hit@5 other-language docs only`: the same ranking, deep, with the chunks of documents in
    the question's own language taken out (how far the language of a chunk, not its meaning, decides)."""
    kb.search("warm up", 1, mode)
    docs_of = {lang: {c["source"] for c in cases if c["lang"] == lang} for lang in DIRECTIONS}
    everything = len(kb.store.all_ids())
    rows, latencies = [], []
    for case in cases:
        started = time.perf_counter()
        result = kb.search(case["query"], max(KS), mode)
        latencies.append((time.perf_counter() - started) * 1000)
        deep = [h for h in kb.search(case["query"], everything, mode).hits if Path(h.chunk.source).name in docs_of[case["lang"]]]
        rows.append(
            {
                "case": case,
                "rank": first_hit(result.hits, case),
                "found": result.found,
                "other": first_hit(deep[: max(KS)], case),
                "top": [f"{Path(h.chunk.source).name}#{h.chunk.chunk}" for h in result.hits[:3]],
            }
        )
    out: dict = {}
    for lang, direction in DIRECTIONS.items():
        mine = [r for r in rows if r["case"]["lang"] == lang]
        out[direction] = {f"hit@{k}": round(sum(r["rank"] is not None and r["rank"] <= k for r in mine) / len(mine), 3) for k in KS}
        out[direction][ONLY] = round(sum(r["other"] is not None for r in mine) / len(mine), 3)
        out[direction]["found"] = round(sum(r["found"] for r in mine) / len(mine), 3)
        out[direction]["questions"] = len(mine)
    out["p50_ms"], out["p95_ms"] = round(percentile(latencies, 50), 1), round(percentile(latencies, 95), 1)
    out["misses@5"] = [
        {"query": r["case"]["query"], "source": r["case"]["source"], "key": r["case"]["key"], "top3": r["top"]} for r in rows if r["rank"] is None
    ]
    return out


def keys_in_chunks(kb: KnowledgeBase, cases: list[dict]) -> list[str]:
    """Keys that no chunk of their source holds (such an item could never be a hit)."""
    chunks = kb.store.get(kb.store.all_ids())
    return [c["key"] for c in cases if not any(Path(ch.source).name == c["source"] and c["key"] in ch.text for ch in chunks)]


def run(embedders: list[str], modes: list[str], cases: list[dict]) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in embedders:
            backend, _, variant = name.partition("+")
            settings = Settings.load(overrides={"embedder.backend": backend, **VARIANTS.get(variant, {})})
            kb = KnowledgeBase(Path(tmp) / backend, settings)  # a variant reuses its backend's KB when built
            assert kb.ingest([ROOT / "data" / "sample"], progress=False).ok
            entry = {
                "embedder": f"{backend}:{kb.record.embedder_model}",
                "min_score": kb.retriever.min_score,
                "keys_missing_from_chunks": keys_in_chunks(kb, cases),
            }
            for mode in modes:
                load = os.getloadavg()[0]
                entry[mode] = measure(kb, cases, mode) | {"loadavg_1m": round((load + os.getloadavg()[0]) / 2, 2)}
                print(name, mode, {d: entry[mode][d] for d in DIRECTIONS.values()}, file=sys.stderr, flush=True)
            results[name] = entry
    return results


def write(results: dict, meta: dict) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "crosslingual.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# Cross-lingual retrieval (data/crosslingual_qa.jsonl over data/sample)\n",
        f"`{meta['command']}` ({meta['date']}; {meta['machine']['cores']} cores, load average {meta['loadavg']}). "
        f"{meta['questions']['zh->en']} Chinese questions about English documents (zh->en), {meta['questions']['en->zh']} "
        "English questions about Chinese documents (en->zh). A hit: a top-k chunk from the expected document holding the key; "
        "found: the best chunk passes the relevance floor; other-language docs only: the same ranking with the chunks of "
        "documents in the question's own language removed (a diagnostic, not a retrieval mode). Misses are listed in crosslingual.json.\n",
        "| embedder | mode | zh->en hit@1 | zh->en hit@5 | zh->en found | en->zh hit@1 | en->zh hit@5 | en->zh found "
        "| hit@5 other-language docs only (zh->en / en->zh) | p50 ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, entry in results.items():
        for mode in meta["modes"]:
            m = entry[mode]
            a, b = m["zh->en"], m["en->zh"]
            lines.append(
                f"| {LABELS.get(backend, backend)} | {mode} | {a['hit@1']} | {a['hit@5']} | {a['found']} | {b['hit@1']} | {b['hit@5']} "
                f"| {b['found']} | {a[ONLY]} / {b[ONLY]} | {m['p50_ms']} | {m['loadavg_1m']} |"
            )
    for name in ("e5", "e5+centering"):
        if name in results and "hybrid" in meta["modes"]:
            e5 = results[name]["hybrid"]
            met = all(e5[d]["hit@5"] >= TARGET for d in DIRECTIONS.values())
            lines.append(
                f"\nTarget ({LABELS[name]} hybrid hit@5 >= {TARGET} in both directions): {'met' if met else 'missed'} "
                f"({e5['zh->en']['hit@5']} zh->en, {e5['en->zh']['hit@5']} en->zh)."
            )
    (out / "crosslingual.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--embedders",
        default="sentence-transformers,e5,e5+centering,use",
        help="comma-separated embedder.backend values (+centering: with retrieval.language_centering); the first is the baseline",
    )
    ap.add_argument("--modes", default="dense,bm25,hybrid")
    args = ap.parse_args(argv)
    cases = load_cases()
    modes = args.modes.split(",")
    load_before = os.getloadavg()
    results = run(args.embedders.split(","), modes, cases)
    meta = {
        "command": "python bench/crosslingual.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "modes": modes,
        "loadavg": f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after",
        "questions": {d: sum(c["lang"] == lang for c in cases) for lang, d in DIRECTIONS.items()},
    }
    write(results, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
