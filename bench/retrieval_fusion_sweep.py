"""Choose the hybrid fusion by measurement: dump each query's dense and BM25 candidates once
(cosine and normalised BM25 scores, chunks mapped to documents), then score fusion variants
offline (RRF with several k, weighted sums with per-language weights, adaptive weights).

    python bench/retrieval_fusion_sweep.py            # SciFact train, SQuAD, CMRC (MiniLM and USE)

Writes bench/results/retrieval_fusion_sweep.{json,md}. Uses the cached benchmark KBs of
`kbqa eval retrieval` (built on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
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
from kbqa.eval.benchmarks import load_beir, load_squad  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.eval.retrieval_metrics import dedupe, evaluate_rankings  # noqa: E402
from kbqa.retrieval.fusion import dense_weight, rrf_fuse, weighted_fuse  # noqa: E402
from kbqa.retrieval.lang import detect_language  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "scifact": lambda: load_beir(SHARED / "scifact", "train"),
    "squad": lambda: load_squad(SHARED / "squad" / "squad_v1.1_dev_articles_00-23.json"),
    "cmrc": lambda: load_squad(SHARED / "cmrc2018" / "cmrc2018_trial.json"),
}
POOL = 100


def query_vectors(embedder, queries: list[str]):
    """Query vectors: one batch where a query embeds as a document does; e5 marks queries (``query: ``)."""
    import numpy as np

    if getattr(embedder, "name", "") == "multilingual-e5-small":
        return np.stack([embedder.embed_query(q) for q in queries])
    return embedder.embed_documents(queries)


def candidates(name: str, embedder_backend: str, settings: Settings):
    bench = DATASETS[name]()
    settings = settings.with_overrides({"embedder.backend": embedder_backend})
    kb, stems = build_eval_kb(bench, settings)
    cache = Path(settings.cache_dir) / "eval-kb" / f"candidates-{name}-{embedder_backend}.pkl"
    if cache.is_file():
        return bench, pickle.loads(cache.read_bytes())
    chunk_doc = {}
    for record in kb.manifest.all():
        doc = stems.get(Path(record.source).stem, record.source)
        for cid in record.chunk_ids:
            chunk_doc[cid] = doc
    out = {}
    from tqdm import tqdm

    qids = list(bench.qrels)
    vectors = query_vectors(kb.embedder, [bench.queries[q] for q in qids])
    for qid, vector in tqdm(zip(qids, vectors), total=len(qids), desc=f"candidates {name}/{embedder_backend}"):
        q = bench.queries[qid]
        dense = [(h.chunk.id, h.score) for h in kb.store.query(vector, POOL)]
        sparse = kb.keyword_index.search(q, POOL, normalized=True)
        out[qid] = (detect_language(q), dense, sparse)
    data = {"chunk_doc": chunk_doc, "queries": out}
    cache.write_bytes(pickle.dumps(data))
    return bench, data


def floor_stats(name: str, backend: str, settings: Settings, foreign: list[str]) -> dict:
    """Where the dense relevance floor goes for this embedder: the top-1 cosine of this set's own
    (answerable) questions against the top-1 cosine of other sets' questions (off topic, so
    "not found" is right) on the same knowledge base."""
    import numpy as np

    bench = DATASETS[name]()
    kb, _ = build_eval_kb(bench, settings.with_overrides({"embedder.backend": backend}))

    def top1(queries: list[str]) -> np.ndarray:
        vectors = query_vectors(kb.embedder, queries)
        return np.array([kb.store.query(v, 1)[0].score for v in vectors])

    from kbqa.retrieval.lang import detect_language

    own = top1([bench.queries[q] for q in list(bench.qrels)[:300]])
    other = top1(foreign)
    grid = np.round(np.arange(0.0, 1.0, 0.01), 2)
    # the floor that best separates them: most own questions above, most foreign ones below
    best = max(grid, key=lambda t: (own >= t).mean() + (other < t).mean())
    # a lenient floor: the highest that keeps 99% of the set's own questions, and what it rejects
    # of the foreign questions in each language
    lenient = max(t for t in grid if (own >= t).mean() >= 0.99)
    from kbqa.retrieval.calibration import calibration

    shipped = calibration(kb.embedder.name)["min_score"]
    langs = np.array([detect_language(q) for q in foreign])
    by_lang = {"shipped_floor": shipped, "own_kept_at_shipped": round(float((own >= shipped).mean()), 3)}
    for floor_name, t in (("shipped", shipped), ("lenient", lenient)):
        for lang in sorted(set(langs)):
            by_lang[f"foreign_{lang}_rejected_at_{floor_name}"] = round(float((other[langs == lang] < t).mean()), 3)
    return {
        "own_p05": round(float(np.percentile(own, 5)), 3),
        "own_median": round(float(np.median(own)), 3),
        "foreign_median": round(float(np.median(other)), 3),
        "foreign_p95": round(float(np.percentile(other, 95)), 3),
        "best_floor": float(best),
        "own_kept": round(float((own >= best).mean()), 3),
        "foreign_rejected": round(float((other < best).mean()), 3),
        "lenient_floor": float(lenient),
        **by_lang,
    }


def score(bench, data, fuse) -> dict:
    chunk_doc = data["chunk_doc"]
    rankings = {}
    for qid, (lang, dense, sparse) in data["queries"].items():
        fused = fuse(lang, dense, sparse)
        rankings[qid] = dedupe(chunk_doc.get(i, i) for i, _ in fused)
    metrics = ("ndcg@10", "recall@100", "hit@1", "hit@5", "mrr@10")
    means, _ = evaluate_rankings(rankings, bench.qrels, metrics)
    return {k: round(v, 4) for k, v in means.items()}


def variants(trusted_langs):
    out = {
        "dense": lambda lang, d, s: d,
        "bm25": lambda lang, d, s: s,
    }
    for k in (20, 60):
        out[f"rrf k={k}"] = lambda lang, d, s, k=k: rrf_fuse([[i for i, _ in d], [i for i, _ in s]], k=k)
    for w in (0.3, 0.4, 0.5, 0.6, 0.7):
        for weak in (0.0, 0.1, 0.2):
            for adapt in (0.0, 0.5):

                def fuse(lang, d, s, w=w, weak=weak, adapt=adapt):
                    wd = dense_weight(
                        w,
                        language_supported=lang in trusted_langs,
                        weak_language_weight=weak,
                        dense_scores=[x for _, x in d],
                        sparse_scores=[x for _, x in s],
                        adapt=adapt,
                    )
                    return weighted_fuse(d, s, wd)

                out[f"weighted w={w} weak={weak} adapt={adapt}"] = fuse
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="scifact:sentence-transformers,squad:sentence-transformers,cmrc:sentence-transformers,cmrc:use,squad:use")
    ap.add_argument("--out", default="retrieval_fusion_sweep", help="file name under bench/results (.json and .md)")
    ap.add_argument("--floors", action="store_true", help="also measure where the dense relevance floor goes (own vs other sets' questions)")
    args = ap.parse_args(argv)
    load_start = round(os.getloadavg()[0], 2)
    settings = Settings.load()
    results, floors = {}, {}
    for run in args.runs.split(","):
        name, backend = run.split(":")
        bench, data = candidates(name, backend, settings)
        trusted = {"en", "zh"} if backend in ("use", "e5") else {"en"}
        started = time.time()
        results[run] = {label: score(bench, data, fuse) for label, fuse in variants(trusted).items()}
        print(f"{run}: {len(data['queries'])} queries scored in {time.time() - started:.0f}s", file=sys.stderr)
        if args.floors:
            others = [n for n in DATASETS if n != name]
            foreign = [q for n in others for q in list(DATASETS[n]().queries.values())[:150]]
            floors[run] = floor_stats(name, backend, settings, foreign)
            print(run, floors[run], file=sys.stderr)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python bench/retrieval_fusion_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "pool": POOL,
        "load_average_start": load_start,
    }
    meta["load_average_end"] = round(os.getloadavg()[0], 2)
    (out / f"{args.out}.json").write_text(json.dumps({"meta": meta, "results": results, "floors": floors}, indent=2))
    lines = [
        "# Fusion sweep\n",
        f"`{meta['command']}` ({meta['date']}, {meta['machine']}, load average {meta['load_average_start']} at the start, {meta['load_average_end']} at the end); candidates per retriever: {POOL}.\n",
    ]
    for run, table in results.items():
        keys = list(next(iter(table.values())))
        lines += [f"\n## {run}\n", "| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for label, m in table.items():
            lines.append(f"| {label} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
    if floors:
        keys = list(next(iter(floors.values())))
        lines += [
            "\n## Dense relevance floor: top-1 cosine of a set's own questions vs other sets' (off-topic) questions\n",
            "| run | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        lines += [f"| {run} | " + " | ".join(str(v) for v in f.values()) + " |" for run, f in floors.items()]
    (out / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print((out / f"{args.out}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
