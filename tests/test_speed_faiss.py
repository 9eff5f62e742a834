"""FAISS store specifics beyond the shared contract: index kind by size, the saved index
caught up after writes, dead labels dropped by a rebuild, IVF and HNSW recall, IVF retrained
as the store grows, settings reaching the store, a knowledge base on FAISS."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("faiss")

from kbqa.retrieval.stores.faiss import FaissStore  # noqa: E402
from kbqa.retrieval.types import Chunk  # noqa: E402

DIM = 16


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [Chunk(f"c{i}", f"text {i}", "doc.txt", chunk=i) for i in range(n)], v


def test_auto_switches_from_flat_to_ivf_by_size(tmp_path):
    chunks, v = _data(300)
    store = FaissStore(tmp_path / "f", DIM, flat_max=200, device="cpu")
    store.upsert(chunks[:100], v[:100])
    store.query(v[0], 5)
    assert store.index_info()["kind"] == "flat"
    store.upsert(chunks[100:], v[100:])
    assert store.index_info()["kind"] == "ivf"
    assert store.query(v[250], 1)[0].chunk.id == "c250"
    store.close()
    saved = json.loads((tmp_path / "f" / "index.json").read_text())
    assert saved["kind"] == "ivf" and saved["trained_on"] == 300 and saved["nlist"] == 15  # 300 // 20 caps 4 * sqrt(300)
    assert saved["codes"] == "SQfp16"


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
    assert second.index_info()["vectors"] == 50


def test_many_deletions_trigger_a_rebuild_without_dead_labels(tmp_path):
    chunks, v = _data(3000)
    store = FaissStore(tmp_path / "f", DIM, device="cpu")
    store.upsert(chunks, v)
    store.query(v[0], 1)
    store.delete([c.id for c in chunks[:1500]])
    info = store.index_info()
    assert info["vectors"] == 1500 and info["dead"] == 0
    assert {h.chunk.id for h in store.query(v[0], 10)}.isdisjoint({c.id for c in chunks[:1500]})


def test_reopen_with_other_dimension_is_refused(tmp_path):
    chunks, v = _data(3)
    FaissStore(tmp_path / "f", DIM, device="cpu").upsert(chunks, v)
    with pytest.raises(ValueError, match="dimension 16"):
        FaissStore(tmp_path / "f", DIM * 2, device="cpu").count()


def _recall(store, v, n_queries=50) -> float:
    rng = np.random.default_rng(9)
    found = 0
    for i in rng.integers(0, len(v), n_queries):
        q = v[i] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = {f"c{j}" for j in np.argsort(-(v @ q))[:10]}
        found += len(exact & {h.chunk.id for h in store.query(q, 10)})
    return found / (10 * n_queries)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_against_exact(tmp_path, kind):
    chunks, v = _data(5000, seed=3)
    store = FaissStore(tmp_path / "f", DIM, index=kind, device="cpu", probe_vectors=1000)
    store.upsert(chunks, v)
    assert _recall(store, v) >= 0.95
    if kind == "ivf":
        info = store.index_info()
        assert info["nlist"] == 250 and info["nprobe"] == 50  # 1,000 of 5,000 vectors scanned


def test_ivf_probing_one_list_misses_neighbours_that_the_default_finds(tmp_path):
    chunks, v = _data(5000, seed=3)
    narrow = FaissStore(tmp_path / "a", DIM, index="ivf", nprobe=1, device="cpu")
    narrow.upsert(chunks, v)
    assert _recall(narrow, v) < 0.9  # the setting reaches the search


def test_ivf_saved_reloaded_and_retrained_as_the_store_grows(tmp_path):
    chunks, v = _data(4000, seed=5)
    first = FaissStore(tmp_path / "f", DIM, index="ivf", device="cpu")
    first.upsert(chunks[:500], v[:500])
    assert first.query(v[7], 1)[0].chunk.id == "c7"
    info = first.index_info()
    assert info["trained_on"] == 500 and info["nlist"] == 25
    first.close()
    second = FaissStore(tmp_path / "f", DIM, index="ivf", device="cpu")
    second.upsert(chunks[500:1500], v[500:1500])  # not loaded yet: SQLite only
    assert second.query(v[1200], 1)[0].chunk.id == "c1200"
    info = second.index_info()
    assert info["trained_on"] == 500 and info["vectors"] == 1500  # the saved index, caught up
    second.upsert(chunks[1500:], v[1500:])  # past 4 x 500: new centroids
    info = second.index_info()
    assert info["trained_on"] == 4000 and info["nlist"] == 200
    assert second.query(v[3999], 1)[0].chunk.id == "c3999"


def test_query_ids_agrees_with_query(tmp_path):
    chunks, v = _data(2000, seed=2)
    store = FaissStore(tmp_path / "f", DIM, index="ivf", device="cpu")
    store.upsert(chunks, v)
    store.delete([c.id for c in chunks[:50]])
    for i in (60, 700, 1999):
        hits = store.query(v[i], 20)
        assert store.query_ids(v[i], 20) == [(h.chunk.id, h.score) for h in hits]
        assert len(hits) == 20 and hits[0].chunk.id == f"c{i}"


def test_unknown_index_kind_and_bad_numbers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        FaissStore(tmp_path / "f", DIM, index="pq")
    with pytest.raises(ValueError, match="nprobe"):
        FaissStore(tmp_path / "f", DIM, nprobe=0)


def test_store_settings_reach_the_faiss_store(tmp_path, settings):
    from kbqa.app.kb import KnowledgeBase

    s = settings.with_overrides(
        {"store.backend": "faiss", "store.faiss_index": "ivf", "store.faiss_nprobe": 3, "store.faiss_flat_max": 10, "retrieval.parallel": True}
    )
    kb = KnowledgeBase(tmp_path / "kb", s)
    assert (kb.store.index_kind, kb.store.nprobe, kb.store.flat_max, kb.store.nlist) == ("ivf", 3, 10, None)
    assert kb.retriever.config.parallel is True


def test_hybrid_with_bm25_in_a_thread_equals_serial(tmp_path):
    from kbqa.retrieval.bm25 import BM25Index
    from kbqa.retrieval.retriever import Retriever, RetrieverConfig

    words = [f"word{i}" for i in range(300)]
    rng = np.random.default_rng(4)
    chunks, v = _data(3000, seed=4)
    chunks = [Chunk(c.id, " ".join(rng.choice(words, 12)), c.source, chunk=c.chunk) for c in chunks]
    store = FaissStore(tmp_path / "f", DIM, index="ivf", device="cpu")
    store.upsert(chunks, v)
    keyword = BM25Index(tmp_path / "bm25")
    keyword.add(chunks)
    queries = {" ".join(chunks[i].text.split()[:4]): v[i] for i in range(0, 3000, 97)}

    class Lookup:
        name, dim, max_tokens = "lookup", DIM, 256

        def embed_query(self, text):
            return queries[text]

    serial = Retriever(Lookup(), store, keyword, config=RetrieverConfig(parallel=False))
    threaded = Retriever(Lookup(), store, keyword, config=RetrieverConfig(parallel=True))
    for text in queries:
        a, b = serial.retrieve(text, 10, "hybrid"), threaded.retrieve(text, 10, "hybrid")
        assert [(h.chunk.id, h.score) for h in a.hits] == [(h.chunk.id, h.score) for h in b.hits] and a.found == b.found
        assert len(a.hits) == 10 and a.hits[0].chunk.text  # texts read for the fused top k


def test_knowledge_base_on_faiss(tmp_path, settings):
    from kbqa.app.kb import KnowledgeBase

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
