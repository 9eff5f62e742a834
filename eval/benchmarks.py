"""Retrieval benchmarks as plain data: a corpus, queries and graded judgements (qrels).

- `load_beir`: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
- `load_squad`: a SQuAD-style json (SQuAD v1.1, CMRC 2018), read by `eval.datasets.read_squad`
  (the one reader of that format): each paragraph a document under its paragraph id, each
  question judged against its own paragraph.

Scoring them needs a knowledge base, so the runs live in ``app/evaluation.py``. Errors are
`BenchmarkError`, a `DatasetError` that names the file (and line or field).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from kbqa.eval.datasets import DatasetError, read_squad
from kbqa.retrieval.jsonl import iter_jsonl

BEIR_KEYS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
SQUAD_KEYS = ("hit@1", "hit@5", "hit@10", "mrr@10")


@dataclass
class Benchmark:
    """A corpus with queries and their judged documents; `fingerprint` hashes the source file(s)."""

    name: str
    source: Path  # the file hashed for the fingerprint
    docs: list[tuple[str, str]]  # (doc id, text)
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, float]]  # query id -> {doc id: grade}
    metrics: tuple[str, ...] = BEIR_KEYS
    fingerprint: str = field(default="")


class BenchmarkError(DatasetError):
    """A benchmark that cannot be read or built; the message names the file."""


def hash_files(paths: list[Path]) -> str:
    """sha256 of the files' bytes, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


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
    all_queries = {str(r["_id"]): str(r["text"]) for _, _, r in iter_jsonl(queries_path, BenchmarkError) if isinstance(r, dict) and "_id" in r and "text" in r}
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
    return Benchmark(f"beir:{root.name}:{split}", corpus_path, docs, queries, qrels, BEIR_KEYS, hash_files([corpus_path]))


def load_squad(path: str | Path) -> Benchmark:
    """SQuAD-style json: each paragraph a document (its id from `read_squad`), each question's
    gold its own paragraph. Every question counts, as the shipped retrieval figures do (CMRC 2018
    trial: 1,002, two of them with empty text)."""
    path = Path(path)
    paragraphs, items = read_squad(path, every_question=True)
    docs = [(p.id, p.context) for p in paragraphs]
    queries = {it.id: it.question for it in items}
    qrels = {it.id: {str(it.source): 1.0} for it in items}
    if not docs or not queries:
        raise BenchmarkError(f"{path}: no paragraphs with questions")
    return Benchmark(f"squad:{path.name}", path, docs, queries, qrels, SQUAD_KEYS, hash_files([path]))
