"""`kbqa eval retrieval`: rank documents for benchmark queries and score the rankings.

    kbqa eval retrieval --beir DIR  [--split train|test] [--mode dense|bm25|hybrid] [--json]
    kbqa eval retrieval --squad FILE [--mode dense|bm25|hybrid] [--json]

The knowledge base is built from the corpus through the normal ingest path (each document
one text file) and cached under ``<cache_dir>/eval-kb/<key>``, the key hashing the corpus
and the settings that shape the index (embedder, chunking, store); a later run reuses it.
Chunks are deduplicated to their document before scoring.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from kbqa.app.cli.common import add_settings_flags, fail, print_json, settings_from_args
from kbqa.app.settings import Settings
from kbqa.retrieval.jsonl import iter_jsonl

BEIR_KEYS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
SQUAD_KEYS = ("hit@1", "hit@5", "hit@10", "mrr@10")
_DONE = "complete.json"


@dataclass
class Benchmark:
    name: str
    source: Path  # the file(s) hashed for the cache key
    docs: list[tuple[str, str]]  # (doc id, text)
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, float]]  # query id -> {doc id: grade}
    metrics: tuple[str, ...] = BEIR_KEYS
    fingerprint: str = field(default="")


class BenchmarkError(ValueError):
    pass


def load_beir(directory: str | Path, split: str = "test") -> Benchmark:
    """BEIR layout: corpus.jsonl {_id, title, text}, queries.jsonl {_id, text}, qrels/<split>.tsv."""
    root = Path(directory)
    corpus_path, queries_path, qrels_path = root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        if not path.is_file():
            raise BenchmarkError(f"{path}: missing (a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv)")
    docs = []
    for _, where, row in iter_jsonl(corpus_path, BenchmarkError):
        if not isinstance(row, dict) or "_id" not in row or "text" not in row:
            raise BenchmarkError(f"{where}: needs an object with fields _id and text")
        title = (row.get("title") or "").strip()
        docs.append((str(row["_id"]), f"{title}\n\n{row['text']}" if title else str(row["text"])))
    all_queries = {str(r["_id"]): str(r["text"]) for _, _, r in iter_jsonl(queries_path, BenchmarkError)
                   if isinstance(r, dict) and "_id" in r and "text" in r}
    qrels: dict[str, dict[str, float]] = {}
    for n, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split("\t")
        if n == 1 and not parts[-1].strip().lstrip("-").isdigit():
            continue  # header
        if len(parts) < 3:
            raise BenchmarkError(f"{qrels_path}, line {n}: expected query-id<TAB>corpus-id<TAB>score")
        qrels.setdefault(parts[0].strip(), {})[parts[1].strip()] = float(parts[2])
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise BenchmarkError(f"{qrels_path}: {len(missing)} query ids not in {queries_path} (first: {missing[0]})")
    queries = {q: all_queries[q] for q in qrels}
    return Benchmark(f"beir:{root.name}:{split}", corpus_path, docs, queries, qrels, BEIR_KEYS, _hash_files([corpus_path]))


def load_squad(path: str | Path) -> Benchmark:
    """SQuAD-style json (SQuAD, CMRC 2018): each paragraph a document, each question's gold its paragraph."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{path}: not a SQuAD-style json with a top-level 'data' list ({exc})") from exc
    docs, queries, qrels = [], {}, {}
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            doc_id = f"{a}-{p}"
            docs.append((doc_id, str(paragraph["context"])))
            for qa in paragraph.get("qas", []):
                qid = str(qa.get("id") or f"{doc_id}-{len(queries)}")
                queries[qid] = str(qa["question"])
                qrels[qid] = {doc_id: 1.0}
    if not docs or not queries:
        raise BenchmarkError(f"{path}: no paragraphs with questions")
    return Benchmark(f"squad:{path.name}", path, docs, queries, qrels, SQUAD_KEYS, _hash_files([path]))


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def kb_key(bench: Benchmark, settings: Settings) -> str:
    shaping = {
        "corpus": bench.fingerprint,
        "embedder": [settings.embedder.backend, settings.embedder.model],
        "chunking": [settings.chunking.chunk_tokens, settings.chunking.overlap_tokens],
        "store": settings.store.backend,
        "layout": 1,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def kb_root(bench: Benchmark, settings: Settings) -> Path:
    return Path(settings.cache_dir) / "eval-kb" / kb_key(bench, settings)


def build_kb(bench: Benchmark, settings: Settings, *, rebuild: bool = False, progress: bool = True, embedder=None, finish: bool = True):
    """The benchmark's knowledge base, built once and reused: (KnowledgeBase, {file stem: doc id}).

    `embedder` replaces the settings' embedder for this build (bench/ uses it to embed on
    another machine); `finish=False` leaves the cache unmarked, so the next call re-checks it."""
    import shutil

    from kbqa.app.kb import KnowledgeBase

    root = kb_root(bench, settings)
    if rebuild and root.exists():
        shutil.rmtree(root)
    docs_dir, kb_dir = root / "docs", root / "kb"
    stems = {f"d{n:06d}": doc_id for n, (doc_id, _) in enumerate(bench.docs)}
    if not (root / _DONE).is_file():
        docs_dir.mkdir(parents=True, exist_ok=True)
        for n, (_, text) in enumerate(bench.docs):
            target = docs_dir / f"d{n:06d}.txt"
            if not target.exists():
                target.write_text(text, encoding="utf-8")
        kb = KnowledgeBase(kb_dir, settings)
        if embedder is not None:
            kb.embedder = embedder
        summary = kb.ingest([docs_dir], progress=progress)
        failed = [f for f in summary.files if f.status == "failed"]
        if len(failed) > len(bench.docs) // 100:  # a few empty documents are normal; more is a fault
            raise BenchmarkError(f"building the knowledge base for {bench.name}: {len(failed)} documents failed, e.g. {failed[0].path}: {failed[0].reason}")
        if finish:
            (root / _DONE).write_text(json.dumps({"benchmark": bench.name, "documents": len(bench.docs), "settings": settings.model_dump(mode="json")}, indent=2))
    return KnowledgeBase(kb_dir, settings), stems


def doc_ranking(hits, stems: dict[str, str]) -> list[str]:
    """Chunks -> their documents, best rank kept."""
    from kbqa.eval.retrieval_metrics import dedupe

    return dedupe(stems.get(Path(h.chunk.source).stem, h.chunk.source) for h in hits)


class _QueryTable:
    """The knowledge base's embedder, answering queries from one batched pass (same vectors)."""

    def __init__(self, embedder, queries: list[str]):
        self.base, self.name = embedder, embedder.name
        self.table = dict(zip(queries, embedder.embed_documents(queries)))

    def __getattr__(self, name):
        return getattr(self.base, name)

    def embed_query(self, text):
        return self.table[text] if text in self.table else self.base.embed_query(text)


def run(bench: Benchmark, settings: Settings, *, mode: str | None = None, limit: int | None = None, rebuild: bool = False,
        progress: bool = True, latency_sample: int | None = None) -> dict:
    """Rank every query and score the rankings.

    `latency_sample=N` (benchmarks on a busy machine): the quality metrics come from query
    vectors embedded in one batch, the latency from N queries timed through the full path."""
    from tqdm import tqdm

    from kbqa.eval.retrieval_metrics import evaluate_rankings, percentile

    kb, stems = build_kb(bench, settings, rebuild=rebuild, progress=progress)
    mode = mode or settings.retrieval.mode
    depth = max(int(m.split("@")[1]) for m in bench.metrics)
    k_chunks = min(depth * 2, 200)  # documents may hold several chunks
    ids = list(bench.qrels)[:limit] if limit else list(bench.qrels)
    kb.search("warm up", 1, mode)  # load the models and build the index outside the timing
    rankings, latencies = {}, []
    timed = ids
    if latency_sample is not None and mode != "bm25":
        timed = ids[:latency_sample]
        for qid in tqdm(timed, desc=f"latency ({mode})", unit="q", disable=None if progress else True):
            started = time.perf_counter()
            kb.search(bench.queries[qid], k_chunks, mode)
            latencies.append((time.perf_counter() - started) * 1000)
        kb.retriever.embedder = _QueryTable(kb.embedder, [bench.queries[q] for q in ids])
    for qid in tqdm(ids, desc=f"queries ({mode})", unit="q", disable=None if progress else True):
        started = time.perf_counter()
        result = kb.search(bench.queries[qid], k_chunks, mode)
        if timed is ids:
            latencies.append((time.perf_counter() - started) * 1000)
        rankings[qid] = doc_ranking(result.hits, stems)
    means, per_item = evaluate_rankings(rankings, {q: bench.qrels[q] for q in ids}, bench.metrics)
    out = {k: round(v, 4) for k, v in means.items()}
    out.update({"p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2), "queries": len(ids)})
    if timed is not ids:
        out["latency_queries"] = len(latencies)
    return {"metrics": out, "per_item": per_item, "mode": mode}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieval", help="retrieval quality on a BEIR folder or a SQuAD-style json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--beir", metavar="DIR", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    src.add_argument("--squad", metavar="FILE", help="SQuAD-style json (SQuAD, CMRC 2018)")
    p.add_argument("--split", default="test", help="qrels split for --beir (default test)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--limit", type=int, help="only the first N queries")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached knowledge base")
    add_settings_flags(p, llm=False, ingest=True)
    p.set_defaults(func=cmd_eval_retrieval)


def cmd_eval_retrieval(args) -> int:
    settings = settings_from_args(args)
    try:
        bench = load_beir(args.beir, args.split) if args.beir else load_squad(args.squad)
        result = run(bench, settings, mode=args.mode, limit=args.limit, rebuild=args.rebuild, progress=True)
    except BenchmarkError as exc:
        fail(str(exc))
    metrics = result["metrics"]
    if args.json:
        print_json(metrics)
    else:
        print(f"{bench.name}  mode={result['mode']}  embedder={settings.embedder.backend}:{settings.embedder.model}")
        for key, value in metrics.items():
            print(f"  {key:<11} {value}")
    return 0
