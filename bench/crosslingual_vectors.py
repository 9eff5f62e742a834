"""The vectors of the cross-lingual study (bench/crosslingual_study.py), embedded once with e5 and
cached under ``<cache_dir>/crosslingual-study/``:

* ``sample``: the chunks of the data/sample knowledge base (built through the normal ingest path),
  their language, the query vectors and the normalised BM25 scores over every chunk of
  data/crosslingual_qa.jsonl, data/sample_qa.jsonl and the off-topic questions of
  tests/test_retrieval_kb.py, plus a sample of SQuAD and CMRC questions (off-topic on this KB);
* ``mixed``: a bilingual corpus of SQuAD v1.1 dev and CMRC 2018 trial paragraphs (one chunk
  each), the vectors of a sample of each set's questions and their BM25 scores, for the
  same-language regression check in a knowledge base that holds both languages.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SQUAD = SHARED / "squad" / "squad_v1.1_dev_articles_00-23.json"
CMRC = SHARED / "cmrc2018" / "cmrc2018_trial.json"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def off_topic() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.test_retrieval_kb import OFF_TOPIC

    return list(OFF_TOPIC)


def squad_sets(steps: dict[str, int], questions: int, seed: int = 0) -> dict:
    """Every `steps[name]`-th paragraph of SQuAD dev and of CMRC trial, and up to `questions`
    of each set's questions on those paragraphs (a seeded sample): {name: {docs, queries, gold}}."""
    from kbqa.eval.datasets import read_squad

    rng = np.random.default_rng(seed)
    out = {}
    for name, path in (("squad", SQUAD), ("cmrc", CMRC)):
        paragraphs, items = read_squad(path, every_question=True)
        kept = paragraphs[:: steps[name]]
        ids = {p.id for p in kept}
        items = [it for it in items if str(it.source) in ids and it.question.strip()]
        pick = sorted(rng.choice(len(items), size=min(questions, len(items)), replace=False))
        out[name] = {"docs": [(p.id, p.context) for p in kept], "queries": [items[i].question for i in pick], "gold": [str(items[i].source) for i in pick]}
    return out


def _queries(embedder, texts: list[str]) -> np.ndarray:
    return np.stack([embedder.embed_query(t) for t in texts]) if texts else np.zeros((0, embedder.dim), np.float32)


def _bm25_rows(keyword, ids: list[str], texts: list[str]) -> np.ndarray:
    """Normalised BM25 score of every chunk for every query (0 where it matches nothing)."""
    col = {i: n for n, i in enumerate(ids)}
    out = np.zeros((len(texts), len(ids)), np.float32)
    for r, text in enumerate(texts):
        for i, s in keyword.search(text, len(ids), normalized=True):
            out[r, col[i]] = s
    return out


def sample_vectors(cache: Path, extra: dict[str, tuple[list[str], np.ndarray]]) -> dict:
    """The data/sample KB with e5: chunks, vectors, languages; every question set's vectors and BM25."""
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings
    from kbqa.retrieval.lang import detect_language

    target = cache / "sample.npz"
    if target.is_file():
        return dict(np.load(target, allow_pickle=True))
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(Path(tmp) / "kb", Settings.load(env={}, overrides={"embedder.backend": "e5"}))
        assert kb.ingest([ROOT / "data" / "sample"], progress=False).ok
        ids = sorted(kb.store.all_ids())
        chunks = {c.id: c for c in kb.store.get(ids)}
        texts = [chunks[i].text for i in ids]
        out = {
            "ids": np.array(ids),
            "texts": np.array(texts, dtype=object),
            "sources": np.array([Path(chunks[i].source).name for i in ids]),
            "langs": np.array([detect_language(t) for t in texts]),
            "vectors": kb.embedder.embed_documents(texts),
        }
        sets = {
            "crosslingual": [c["query"] for c in _jsonl(ROOT / "data" / "crosslingual_qa.jsonl")],
            "sample_qa": [c["query"] for c in _jsonl(ROOT / "data" / "sample_qa.jsonl")],
            "off_topic": off_topic(),
        }
        for name, queries in [*sets.items(), *((n, t) for n, (t, _) in extra.items())]:
            out[f"q_{name}"] = extra[name][1] if name in extra else _queries(kb.embedder, queries)
            out[f"bm25_{name}"] = _bm25_rows(kb.retriever.keyword, ids, queries)
            out[f"text_{name}"] = np.array(queries, dtype=object)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(target, **out)
    return out


def mixed_vectors(cache: Path, sets: dict) -> dict:
    """SQuAD + CMRC paragraphs in one corpus (one chunk each), e5 vectors, each set's questions and BM25."""
    from kbqa.retrieval.bm25 import BM25Index
    from kbqa.retrieval.embedders.e5 import E5Embedder
    from kbqa.retrieval.types import Chunk

    target = cache / "mixed.npz"
    if target.is_file():
        return dict(np.load(target, allow_pickle=True))
    embedder = E5Embedder()
    ids, texts, langs = [], [], []
    for name, data in sets.items():
        for doc_id, text in data["docs"]:
            ids.append(f"{name}:{doc_id}")
            texts.append(text)
            langs.append("zh" if name == "cmrc" else "en")
    out = {"ids": np.array(ids), "langs": np.array(langs), "vectors": embedder.embed_documents(texts)}
    with tempfile.TemporaryDirectory() as tmp:
        keyword = BM25Index(Path(tmp))
        keyword.add([Chunk(i, t, i) for i, t in zip(ids, texts)])
        for name, data in sets.items():
            out[f"q_{name}"] = _queries(embedder, data["queries"])
            out[f"bm25_{name}"] = _bm25_rows(keyword, ids, data["queries"])
            out[f"gold_{name}"] = np.array([f"{name}:{g}" for g in data["gold"]])
            out[f"text_{name}"] = np.array(data["queries"], dtype=object)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(target, **out)
    return out


def vectors(cache: Path, steps: dict[str, int], questions: int) -> tuple[dict, dict]:
    """(sample, mixed): the mixed corpus first, so the SQuAD and CMRC questions embed once."""
    mixed = mixed_vectors(cache, squad_sets(steps, questions))
    extra = {name: (list(mixed[f"text_{name}"]), mixed[f"q_{name}"]) for name in ("squad", "cmrc")}
    return sample_vectors(cache, extra), mixed
