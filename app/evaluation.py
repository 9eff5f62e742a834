"""Evaluation runs that need a knowledge base or a model (the metrics themselves live in eval/).

- `answer_with_kb`: every question through the full RAG path (`KnowledgeBase.ask_batch`).
- `answer_closed_book`: the model alone, as evalscope asks it (system prompt + question).
- `squad_kb`: a knowledge base built from a SQuAD-style file's paragraphs, cached on disk.
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
        result, lang, retrieve_ms = kb._prepare(it.question, None, None)
        out.append({
            "id": it.id,
            "question": it.question,
            "messages": build_messages(it.question, result.hits, lang) if result.found else None,
            "found": result.found,
            "sources": _source_dicts(result.hits) if result.found else [],
            "retrieve_ms": round(retrieve_ms, 1),
            "not_found_answer": None if result.found else NOT_FOUND[lang],
        })
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


def squad_kb(data_path: str | Path, paragraphs: Sequence[SquadParagraph], settings: Settings, *, progress: bool = True) -> KnowledgeBase:
    """A knowledge base of the paragraphs (one ``<paragraph id>.txt`` document each), built once and
    cached under ``settings.cache_dir/eval-kb`` keyed by the file's content and the embedding settings."""
    data_path = Path(data_path)
    e, c = settings.embedder, settings.chunking
    key = hashlib.sha256()
    key.update(data_path.read_bytes())
    key.update(json.dumps([e.backend, e.model, c.chunk_tokens, c.overlap_tokens, settings.store.backend]).encode())
    root = Path(settings.cache_dir) / "eval-kb" / f"{data_path.stem}-{key.hexdigest()[:12]}"
    kb_dir, docs, done = root / "kb", root / "docs", root / "complete"
    if not done.is_file():
        docs.mkdir(parents=True, exist_ok=True)
        for p in paragraphs:
            target = docs / f"{p.id}.txt"
            if not target.is_file():
                target.write_text(p.context + "\n", encoding="utf-8")
        kb = KnowledgeBase(kb_dir, settings)
        summary = kb.ingest([docs], progress=progress)
        if not summary.ok:
            raise RuntimeError(f"building the evaluation knowledge base {kb_dir} failed:\n{summary.render()}")
        done.write_text(f"{len(paragraphs)} paragraphs\n", encoding="utf-8")
    return KnowledgeBase(kb_dir, settings)


def run_mcq(llm, items: Sequence[MCQItem], settings: Settings, *, kb: KnowledgeBase | None = None, batch_size: int = 8, progress: bool = True) -> list[dict[str, Any]]:
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
                records.append({"id": it.id, "question": it.question, "answer": it.answer, "output": text, "choice": choice,
                                "correct": float(choice == it.answer), "sources": src, "latency_ms": round(each, 1)})
            bar.update(len(group))
    return records


def run_perplexity(llm, texts: Sequence[str], *, max_length: int = 1024, progress: bool = True) -> dict[str, float]:
    """Perplexity of `llm` (a transformers backend; its adapter active when it has one) on `texts`."""
    engine = llm._loaded() if hasattr(llm, "_loaded") else None
    if engine is None or not hasattr(engine, "using"):
        raise TypeError(f"perplexity needs the transformers backend (a local model), not {type(llm).__name__}")
    with engine.using(getattr(llm, "adapter_spec", None)) as model:
        return perplexity_of_texts(model, engine.tokenizer, texts, max_length=max_length, progress=progress)

