"""The vector-store contract: every backend behind `VectorStore` passes the same tests.

To add a backend, write a factory fixture `(path, dim) -> store` and add its name to
`STORE_FACTORIES`. A factory must return a store that persists under `path` (or, for
a server, under a collection that a second call with the same `path` reopens).
"""

from __future__ import annotations

import numpy as np
import pytest

from kbqa.retrieval.protocols import VectorStore
from kbqa.retrieval.types import Chunk

DIM = 8


@pytest.fixture()
def chroma_factory():
    from kbqa.retrieval.stores.chroma import ChromaStore

    return lambda path, dim: ChromaStore(path / "chroma", dim=dim)


@pytest.fixture()
def faiss_factory():
    pytest.importorskip("faiss")
    from kbqa.retrieval.stores.faiss import FaissStore

    return lambda path, dim: FaissStore(path / "faiss", dim=dim, device="cpu")


@pytest.fixture()
def faiss_hnsw_factory():
    pytest.importorskip("faiss")
    from kbqa.retrieval.stores.faiss import FaissStore

    return lambda path, dim: FaissStore(path / "faiss-hnsw", dim=dim, index="hnsw", device="cpu")


@pytest.fixture()
def faiss_ivf_factory():
    pytest.importorskip("faiss")
    from kbqa.retrieval.stores.faiss import FaissStore

    return lambda path, dim: FaissStore(path / "faiss-ivf", dim=dim, index="ivf", device="cpu")


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory):
    """A real Chroma server (`chroma run`) shared by the session's tests, stopped at the end."""
    from chroma_server import chroma_server

    with chroma_server(tmp_path_factory.mktemp("chroma-server") / "data") as url:
        yield url


@pytest.fixture()
def chroma_server_factory(chroma_server_url):
    import hashlib

    from kbqa.retrieval.stores.chroma import ChromaStore

    def make(path, dim):  # one collection per test directory, reopened by the same path
        collection = "t" + hashlib.sha1(str(path).encode()).hexdigest()[:16]
        return ChromaStore(path / "chroma", dim=dim, url=chroma_server_url, collection=collection)

    return make


STORE_FACTORIES = ["chroma_factory", "chroma_server_factory", "faiss_factory", "faiss_hnsw_factory", "faiss_ivf_factory"]


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _chunks(n: int, prefix: str = "c", source: str = "doc.md") -> list[Chunk]:
    return [Chunk(f"{prefix}{i}", f"text {prefix}{i} 中文", source, page=(i % 3) or None, chunk=i, doc_hash="h" * 8, extra={"lang": "en"}) for i in range(n)]


@pytest.mark.parametrize("factory_name", STORE_FACTORIES)
class TestStoreContract:
    @pytest.fixture()
    def make(self, request, factory_name, tmp_path):
        factory = request.getfixturevalue(factory_name)
        return lambda dim=DIM: factory(tmp_path, dim)

    def test_is_a_vector_store(self, make):
        assert isinstance(make(), VectorStore)

    def test_empty_store(self, make):
        store = make()
        assert store.count() == 0
        assert store.all_ids() == []
        assert store.query(np.ones(DIM, dtype=np.float32), 5) == []
        assert store.get(["nope"]) == []

    def test_upsert_then_get_round_trips_chunks(self, make):
        store = make()
        chunks = _chunks(5)
        store.upsert(chunks, _unit(np.random.default_rng(0), 5))
        assert store.count() == 5
        assert sorted(store.all_ids()) == sorted(c.id for c in chunks)
        got = store.get(["c3", "missing", "c1"])
        assert [c.id for c in got] == ["c3", "c1"]  # requested order, unknown ids skipped
        assert got[0] == chunks[3] and got[1] == chunks[1]

    def test_vectors_returns_the_stored_vectors_in_the_asked_order(self, make):
        store = make()
        vectors = _unit(np.random.default_rng(2), 4)
        store.upsert(_chunks(4), vectors)
        ids, got = store.vectors(["c2", "missing", "c0"])  # retrieval.language_centering reads them
        assert ids == ["c2", "c0"]
        np.testing.assert_allclose(got, vectors[[2, 0]], atol=1e-6)
        assert store.vectors([])[1].shape == (0, DIM)

    def test_query_orders_by_cosine_and_scores_match(self, make):
        rng = np.random.default_rng(1)
        vectors = _unit(rng, 40)
        store = make()
        store.upsert(_chunks(40), vectors)
        query = _unit(rng, 1)[0]
        hits = store.query(query, 7)
        expected = np.argsort(-(vectors @ query))[:7]
        assert [h.chunk.id for h in hits] == [f"c{i}" for i in expected]
        assert [round(h.score, 4) for h in hits] == [round(float(vectors[i] @ query), 4) for i in expected]
        assert hits[0].chunk.text == f"text c{expected[0]} 中文"

    def test_query_ids_agrees_with_query(self, make):
        rng = np.random.default_rng(11)
        vectors = _unit(rng, 30)
        store = make()
        store.upsert(_chunks(30), vectors)
        store.delete(["c3"])
        query = _unit(rng, 1)[0]
        hits = store.query(query, 8)
        pairs = store.query_ids(query, 8)
        assert [i for i, _ in pairs] == [h.chunk.id for h in hits] and len(pairs) == 8
        assert [s for _, s in pairs] == pytest.approx([h.score for h in hits], abs=1e-6)
        assert store.query_ids(query, 0) == [] and "c3" not in dict(store.query_ids(query, 30))

    def test_query_k_larger_than_store(self, make):
        store = make()
        store.upsert(_chunks(3), _unit(np.random.default_rng(2), 3))
        query = _unit(np.random.default_rng(3), 1)[0]
        assert len(store.query(query, 10)) == 3 and len(store.query_ids(query, 10)) == 3
        store.delete(["c0", "c1", "c2"])  # emptied again: no hits, no error
        assert store.query(query, 10) == [] and store.query_ids(query, 10) == []

    def test_upsert_same_id_replaces(self, make):
        rng = np.random.default_rng(4)
        store = make()
        store.upsert(_chunks(4), _unit(rng, 4))
        new_vector = _unit(rng, 1)
        replacement = Chunk("c2", "replaced text", "other.md", page=None, chunk=9, doc_hash="new")
        store.upsert([replacement], new_vector)
        assert store.count() == 4
        got = store.get(["c2"])[0]
        # core fields only: Chroma merges old metadata keys into an upserted record
        assert (got.text, got.source, got.page, got.chunk, got.doc_hash) == ("replaced text", "other.md", None, 9, "new")
        top = store.query(new_vector[0], 1)[0]
        assert top.chunk.id == "c2" and top.chunk.text == "replaced text" and top.score == pytest.approx(1.0, abs=1e-4)

    def test_delete(self, make):
        rng = np.random.default_rng(5)
        vectors = _unit(rng, 6)
        store = make()
        store.upsert(_chunks(6), vectors)
        store.delete(["c0", "c4", "not-there"])
        assert store.count() == 4
        assert sorted(store.all_ids()) == ["c1", "c2", "c3", "c5"]
        assert store.get(["c0"]) == []
        hits = store.query(vectors[0], 6)
        assert "c0" not in [h.chunk.id for h in hits] and len(hits) == 4
        store.delete([])
        assert store.count() == 4

    def test_persists_and_reopens(self, make):
        rng = np.random.default_rng(6)
        vectors = _unit(rng, 10)
        store = make()
        store.upsert(_chunks(10), vectors)
        store.delete(["c9"])
        store.upsert([Chunk("c1", "changed", "doc.md", chunk=1)], vectors[5:6])
        if hasattr(store, "close"):
            store.close()
        reopened = make()
        assert reopened.count() == 9
        assert reopened.get(["c1"])[0].text == "changed"
        assert [h.chunk.id for h in reopened.query(vectors[5], 2)] in (["c5", "c1"], ["c1", "c5"])
        assert "c9" not in reopened.all_ids()

    def test_reopen_sees_writes_without_close(self, make):
        rng = np.random.default_rng(7)
        vectors = _unit(rng, 4)
        first = make()
        first.upsert(_chunks(4), vectors)
        first.query(vectors[0], 1)  # an index built and possibly saved before more writes
        first.upsert(_chunks(2, prefix="late"), _unit(rng, 2))
        first.delete(["c0"])
        second = make()
        assert second.count() == 5
        assert "c0" not in [h.chunk.id for h in second.query(vectors[0], 5)]

    def test_dimension_mismatch_is_an_error(self, make):
        store = make()
        with pytest.raises(ValueError, match="dimension"):
            store.upsert(_chunks(2), np.ones((2, DIM + 1), dtype=np.float32))
        assert store.count() == 0

    def test_many_chunks_in_one_upsert(self, make):
        rng = np.random.default_rng(8)
        n = 2500  # over SQLite's parameter limit and several internal batches
        vectors = _unit(rng, n)
        store = make()
        store.upsert(_chunks(n), vectors)
        assert store.count() == n
        assert len(store.get([f"c{i}" for i in range(n)])) == n
        assert store.query(vectors[1234], 1)[0].chunk.id == "c1234"
