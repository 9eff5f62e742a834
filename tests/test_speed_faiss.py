"""FAISS store specifics beyond the shared contract: index kind by size, the saved index
caught up after writes, dead labels dropped by a rebuild, HNSW recall, a knowledge base on FAISS."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("faiss")

from retrieval.stores.faiss import FaissStore  # noqa: E402
from retrieval.types import Chunk  # noqa: E402

DIM = 16


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [Chunk(f"c{i}", f"text {i}", "doc.txt", chunk=i) for i in range(n)], v


def test_auto_switches_from_flat_to_hnsw_by_size(tmp_path):
    chunks, v = _data(300)
    store = FaissStore(tmp_path / "f", DIM, hnsw_threshold=200, device="cpu")
    store.upsert(chunks[:100], v[:100])
    store.query(v[0], 5)
    assert store._index_kind == "flat"
    store.upsert(chunks[100:], v[100:])
    assert store._index_kind == "hnsw"
    assert store.query(v[250], 1)[0].chunk.id == "c250"
    store.close()
    assert json.loads((tmp_path / "f" / "index.json").read_text())["kind"] == "hnsw"


def test_saved_index_is_caught_up_with_later_writes(tmp_path):
    chunks, v = _data(50)
    first = FaissStore(tmp_path / "f", DIM, device="cpu")
    first.upsert(chunks[:30], v[:30])
    first.flush()
    saved = json.loads((tmp_path / "f" / "index.json").read_text())
    assert saved["ntotal"] == 30
    first.upsert(chunks[30:], v[30:])  # not flushed: only SQLite has these
    second = FaissStore(tmp_path / "f", DIM, device="cpu")
    assert second.query(v[45], 1)[0].chunk.id == "c45"
    assert second._index.ntotal == 50


def test_many_deletions_trigger_a_rebuild_without_dead_labels(tmp_path):
    chunks, v = _data(3000)
    store = FaissStore(tmp_path / "f", DIM, device="cpu")
    store.upsert(chunks, v)
    store.query(v[0], 1)
    store.delete([c.id for c in chunks[:1500]])
    assert store._index.ntotal == 1500 and store._dead == 0
    assert {h.chunk.id for h in store.query(v[0], 10)}.isdisjoint({c.id for c in chunks[:1500]})


def test_reopen_with_other_dimension_is_refused(tmp_path):
    chunks, v = _data(3)
    FaissStore(tmp_path / "f", DIM, device="cpu").upsert(chunks, v)
    with pytest.raises(ValueError, match="dimension 16"):
        FaissStore(tmp_path / "f", DIM * 2, device="cpu").count()


def test_hnsw_recall_against_exact(tmp_path):
    chunks, v = _data(5000, seed=3)
    store = FaissStore(tmp_path / "f", DIM, index="hnsw", device="cpu")
    store.upsert(chunks, v)
    rng = np.random.default_rng(9)
    found = 0
    for i in rng.integers(0, 5000, 50):
        q = v[i] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = {f"c{j}" for j in np.argsort(-(v @ q))[:10]}
        found += len(exact & {h.chunk.id for h in store.query(q, 10)})
    assert found / 500 >= 0.95


def test_unknown_index_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        FaissStore(tmp_path / "f", DIM, index="ivf")


def test_knowledge_base_on_faiss(tmp_path, settings):
    from app.kb import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Trains\n\nThe Lanshan Mountain Railway opened in 1931.\n", encoding="utf-8")
    (docs / "b.md").write_text("# Tea\n\nLanshan green tea is picked in April on the eastern slopes.\n", encoding="utf-8")
    kb = KnowledgeBase(tmp_path / "kb", settings.with_overrides({"store.backend": "faiss"}))
    assert kb.ingest([docs]).ok
    assert (tmp_path / "kb" / "faiss" / "store.sqlite").is_file()
    reopened = KnowledgeBase(tmp_path / "kb", settings)  # the record says faiss
    hits = reopened.retrieve("When did the railway open?", k=1, mode="dense")
    assert hits[0].chunk.source.endswith("a.md")
    (docs / "a.md").unlink()
    reopened.ingest([docs], prune=True)
    assert all(not h.chunk.source.endswith("a.md") for h in reopened.retrieve("railway opened 1931", k=5, mode="dense"))
