"""Evaluation runs that need a knowledge base or a model (the metrics themselves live in eval/).

- `answer_with_kb`: every question through the full RAG path (`KnowledgeBase.ask_batch`).
- `answer_closed_book`: the model alone, as evalscope asks it (system prompt + question).
- `build_eval_kb`: the knowledge base of a benchmark's corpus (`eval.benchmarks`), built once
  through the normal ingest path and cached under ``<cache_dir>/eval-kb/<key>``; `squad_kb`
  is the one of a SQuAD-style file's paragraphs, named by paragraph id.
- `run_retrieval`: rank every benchmark query and score the rankings (`kbqa eval retrieval`).
- `run_mcq`, `run_perplexity`: multiple-choice accuracy and perplexity.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kbqa.app.kb import KnowledgeBase
from kbqa.app.settings import Settings
from kbqa.eval.benchmarks import SQUAD_KEYS, Benchmark, BenchmarkError, hash_files
from kbqa.eval.datasets import MCQItem, QAItem, SquadParagraph
from kbqa.eval.mcq import extract_choice, mcq_messages
from kbqa.eval.perplexity import perplexity_of_texts


def _source_dicts(hits) -> list[dict[str, Any]]:
    return [{"source": h.chunk.source, "page": h.chunk.page, "chunk": h.chunk.chunk, "score": round(float(h.score), 4)} for h in hits]


def answer_with_kb(kb: KnowledgeBase, items: Sequence[QAItem], *, batch_size: int = 8, progress: bool = True) -> list[dict[str, Any]]:
    """Ask each question through retrieval + generation; answers in the form `eval.run.score_records` takes."""
    bar = tqdm(total=len(items), desc="answering", unit="q", disable=None if progress else True)
    try:
        answers = kb.ask_batch([it.question for it in items], batch_size=batch_size, on_done=bar.update)
    finally:
        bar.close()
    return [
        {
            "answer": a.answer,
            "sources": _source_dicts(a.sources),
            "found": a.found,
            "answer_mode": a.mode,
            "grounded": a.grounded,
            "latency_ms": round(a.timings.get("retrieve_ms", 0.0) + a.timings.get("generate_ms", 0.0), 1),
        }
        for a in answers
    ]


def rag_prompts(kb: KnowledgeBase, items: Sequence[QAItem], *, progress: bool = True) -> list[dict[str, Any]]:
    """Retrieval and prompt of each question, exactly as `KnowledgeBase.ask_batch` builds them, without
    generating: ``{"id", "question", "messages", "found", "sources", "retrieve_ms", "not_found_answer"}``.
    For generating elsewhere (e.g. on a GPU machine) and scoring with ``--predictions``."""
    from kbqa.retrieval.prompts import NOT_FOUND, build_messages

    out = []
    for it in tqdm(items, desc="retrieving", unit="q", disable=None if progress else True):
        p = kb.prepare(it.question)
        out.append(
            {
                "id": it.id,
                "question": it.question,
                "messages": build_messages(it.question, p.hits, p.lang) if p.found else None,
                "found": p.found,
                "sources": _source_dicts(p.hits) if p.found else [],
                "retrieve_ms": round(p.retrieve_ms, 1),
                "not_found_answer": None if p.found else NOT_FOUND[p.lang],
            }
        )
    return out


def closed_book_messages(item: QAItem) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": item.system}] if item.system else []
    return messages + list(item.history) + [{"role": "user", "content": item.question}]


def answer_closed_book(llm, items: Sequence[QAItem], settings: Settings, *, batch_size: int = 8, progress: bool = True) -> list[dict[str, Any]]:
    """The model alone (no retrieval), as evalscope's general_qa asks it."""
    out: list[dict[str, Any]] = []
    s = settings.llm
    with tqdm(total=len(items), desc="answering (closed book)", unit="q", disable=None if progress else True) as bar:
        for start in range(0, len(items), batch_size):
            group = items[start : start + batch_size]
            t0 = time.perf_counter()
            texts = llm.batch([closed_book_messages(it) for it in group], max_tokens=s.max_new_tokens, temperature=s.temperature)
            each = (time.perf_counter() - t0) * 1000 / len(group)
            out += [{"answer": t, "latency_ms": round(each, 1)} for t in texts]
            bar.update(len(group))
    return out


def sample_evenly(items: Sequence, n: int | None) -> list:
    """`n` items spread evenly over the list (every len/n-th), so that a limit covers all articles."""
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


EVAL_KB_MARKER = "complete.json"  # written when a cached evaluation knowledge base is whole


def eval_kb_key(bench: Benchmark, settings: Settings, *, named_by_id: bool = False) -> str:
    """The cache key: the corpus's fingerprint, the settings that shape the index, the file layout."""
    shaping = {
        "corpus": bench.fingerprint,
        "embedder": [settings.embedder.backend, settings.embedder.model],
        "chunking": [settings.chunking.chunk_tokens, settings.chunking.overlap_tokens],
        "store": settings.store.backend,
        "layout": "ids" if named_by_id else 1,  # 1: d000000.txt files (the retrieval benchmarks' caches)
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def eval_kb_root(bench: Benchmark, settings: Settings, *, named_by_id: bool = False) -> Path:
    """The folder of the cached knowledge base: ``docs/``, ``kb/`` and the `EVAL_KB_MARKER`."""
    return Path(settings.cache_dir) / "eval-kb" / eval_kb_key(bench, settings, named_by_id=named_by_id)


def mark_eval_kb_complete(root: Path, bench: Benchmark, **info: Any) -> None:
    """Mark a cached knowledge base as whole, so that later runs reuse it without re-checking."""
    record = {"benchmark": bench.name, "documents": len(bench.docs), **info}
    (root / EVAL_KB_MARKER).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")


def build_eval_kb(
    bench: Benchmark, settings: Settings, *, named_by_id: bool = False, rebuild: bool = False, progress: bool = True, embedder=None, finish: bool = True
) -> tuple[KnowledgeBase, dict[str, str]]:
    """The knowledge base of the benchmark's documents, built once and reused: (KnowledgeBase, {file stem: doc id}).

    Each document is one text file: ``d000000.txt`` in corpus order, or with `named_by_id`
    ``<doc id>.txt`` holding the text and a newline (sources then cite the paragraph id).
    More than 1% of the documents failing (a few empty ones are normal) is a `BenchmarkError`.
    `embedder` replaces the settings' embedder for this build (bench/ uses it to embed on
    another machine); `finish=False` leaves the cache unmarked, so the next call re-checks it."""
    import shutil

    root = eval_kb_root(bench, settings, named_by_id=named_by_id)
    if rebuild and root.exists():
        shutil.rmtree(root)
    docs_dir, kb_dir = root / "docs", root / "kb"
    if named_by_id:
        files = [(doc_id, text + "\n") for doc_id, text in bench.docs]
    else:
        files = [(f"d{n:06d}", text) for n, (_, text) in enumerate(bench.docs)]
    stems = {stem: doc_id for (stem, _), (doc_id, _) in zip(files, bench.docs)}
    if not (root / EVAL_KB_MARKER).is_file():
        docs_dir.mkdir(parents=True, exist_ok=True)
        for stem, text in files:
            target = docs_dir / f"{stem}.txt"
            if not target.exists():
                target.write_text(text, encoding="utf-8")
        kb = KnowledgeBase(kb_dir, settings)
        if embedder is not None:
            kb.embedder = embedder
        summary = kb.ingest([docs_dir], progress=progress)
        failed = [f for f in summary.files if f.status == "failed"]
        if len(failed) > len(bench.docs) // 100:
            raise BenchmarkError(
                f"building the knowledge base for {bench.name} in {kb_dir}: {len(failed)} documents failed, e.g. {failed[0].path}: {failed[0].reason}"
            )
        if finish:
            mark_eval_kb_complete(root, bench, settings=settings.model_dump(mode="json"))
    return KnowledgeBase(kb_dir, settings), stems


def squad_kb(data_path: str | Path, paragraphs: Sequence[SquadParagraph], settings: Settings, *, progress: bool = True) -> KnowledgeBase:
    """A knowledge base of a SQuAD-style file's paragraphs (one ``<paragraph id>.txt`` document each),
    built once and cached, keyed by the file's content, the paragraphs chosen from it and the
    settings that shape the index."""
    data_path = Path(data_path)
    docs = [(p.id, p.context) for p in paragraphs]
    chosen = hashlib.sha256("\n".join([hash_files([data_path]), *(doc_id for doc_id, _ in docs)]).encode()).hexdigest()
    bench = Benchmark(f"squad:{data_path.name}", data_path, docs, {}, {}, SQUAD_KEYS, chosen)
    return build_eval_kb(bench, settings, named_by_id=True, progress=progress)[0]


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


def run_retrieval(
    bench: Benchmark,
    settings: Settings,
    *,
    mode: str | None = None,
    limit: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
    latency_sample: int | None = None,
) -> dict:
    """Rank every query and score the rankings: ``{"metrics", "per_item", "mode"}``.

    `latency_sample=N` (benchmarks on a busy machine): the quality metrics come from query
    vectors embedded in one batch, the latency from N queries timed through the full path."""
    from kbqa.eval.retrieval_metrics import evaluate_rankings, percentile

    kb, stems = build_eval_kb(bench, settings, rebuild=rebuild, progress=progress)
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
    e = kb.settings.embedder  # the knowledge base's own (embedder.backend = auto chose it at the build)
    return {"metrics": out, "per_item": per_item, "mode": mode, "embedder": f"{e.backend}:{e.model}"}


def run_mcq(
    llm, items: Sequence[MCQItem], settings: Settings, *, kb: KnowledgeBase | None = None, batch_size: int = 8, progress: bool = True
) -> list[dict[str, Any]]:
    """Ask each multiple-choice question (with retrieved context when `kb` is given); the model answers
    with a letter, read by `eval.mcq.extract_choice`. Per-item records with ``correct`` in {0, 1}."""
    records: list[dict[str, Any]] = []
    with tqdm(total=len(items), desc="mcq", unit="q", disable=None if progress else True) as bar:
        for start in range(0, len(items), batch_size):
            group = items[start : start + batch_size]
            conversations, sources = [], []
            for it in group:
                hits = kb.retrieve(it.question + " " + " ".join(it.options.values())) if kb is not None else []
                conversations.append(mcq_messages(it, [h.chunk.text for h in hits]))
                sources.append(_source_dicts(hits))
            t0 = time.perf_counter()
            texts = llm.batch(conversations, max_tokens=16, temperature=0.0)
            each = (time.perf_counter() - t0) * 1000 / len(group)
            for it, text, src in zip(group, texts, sources):
                choice = extract_choice(text, it.options)
                records.append(
                    {
                        "id": it.id,
                        "question": it.question,
                        "answer": it.answer,
                        "output": text,
                        "choice": choice,
                        "correct": float(choice == it.answer),
                        "sources": src,
                        "latency_ms": round(each, 1),
                    }
                )
            bar.update(len(group))
    return records


def run_perplexity(llm, texts: Sequence[str], *, max_length: int = 1024, progress: bool = True) -> dict[str, float]:
    """Perplexity of `llm` (a transformers backend; its adapter active when it has one) on `texts`."""
    engine = getattr(llm, "engine", None)
    if engine is None or not hasattr(engine, "using"):
        raise TypeError(f"perplexity needs the transformers backend (a local model), not {type(llm).__name__}")
    with engine.using(getattr(llm, "adapter_spec", None)) as model:
        return perplexity_of_texts(model, engine.tokenizer, texts, max_length=max_length, progress=progress)
