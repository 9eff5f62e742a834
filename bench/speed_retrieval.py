"""Retrieval latency at scale: dense, BM25 and hybrid, p50/p95, per vector store backend,
with recall@10 of the store's search against exact search.

Synthetic data (stated in the results): vectors of 384 dimensions drawn around 2,000
random centres (clustered, as real embeddings are: uniformly random vectors make every
approximate index look bad), texts of 40 words drawn from a Zipf-distributed vocabulary
of 30,000 invented words. Queries are perturbed copies of stored vectors plus five of
their text's words. Latency excludes embedding the query (measured separately, once).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    assign = rng.integers(0, len(centres), n)
    vectors = centres[assign] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocab_size = 30_000
    letters = np.array(list("bcdfghjklmnpqrstvwz"))
    vowels = np.array(list("aeiou"))
    words = ["".join(letters[rng.integers(0, len(letters), 3)]) + "".join(vowels[rng.integers(0, 5, 2)]) + str(i) for i in range(vocab_size)]
    ranks = np.arange(1, vocab_size + 1)
    p = 1.0 / ranks
    p /= p.sum()
    word_ids = rng.choice(vocab_size, size=(n, 40), p=p)
    return vectors, words, word_ids


def _percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


class _LookupEmbedder:
    """The query vectors, precomputed: latency figures then measure retrieval alone."""

    name = "lookup"
    dim = DIM
    max_tokens = 256

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def embed_query(self, text: str) -> np.ndarray:
        return self.table[text]


def build_bm25(folder: Path, words, word_ids, ids):
    from retrieval.bm25 import BM25Index
    from retrieval.tokenize import bm25_tokens

    # each invented word's token form, as the index's tokenizer makes it (once per word)
    forms = [bm25_tokens(w) or [w] for w in words]
    index = BM25Index(folder)
    index._tokens = {id_: [t for w in row for t in forms[w]] for id_, row in zip(ids, word_ids)}
    index._dirty = True
    t = time.perf_counter()
    index._built()
    return index, time.perf_counter() - t


def run_size(n: int, backends: list[str], n_queries: int = 100, k: int = 10) -> dict:
    from retrieval.retriever import Retriever
    from retrieval.types import Chunk

    vectors, words, word_ids = synthetic(n)
    ids = [f"c{i}" for i in range(n)]
    rng = np.random.default_rng(1)
    picks = rng.integers(0, n, n_queries)
    queries = vectors[picks] + 0.3 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    texts = [" ".join(words[w] for w in word_ids[i][:5]) for i in picks]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    result: dict = {"chunks": n, "queries": n_queries}
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-ret-") as tmp:
        tmp = Path(tmp)
        bm25, bm25_build = build_bm25(tmp / "bm25", words, word_ids, ids)
        result["bm25_build_s"] = round(bm25_build, 2)
        ms = []
        for q in texts:
            t = time.perf_counter()
            bm25.search(q, k)
            ms.append((time.perf_counter() - t) * 1000)
        result["bm25"] = _percentiles(ms)
        for backend in backends:
            store, kind = _store(backend, tmp, n)
            t = time.perf_counter()
            step = 20_000
            for s in range(0, n, step):
                part = [Chunk(ids[i], " ".join(words[w] for w in word_ids[i]), "synthetic.txt", chunk=i) for i in range(s, min(n, s + step))]
                store.upsert(part, vectors[s : s + step])
            upsert_s = time.perf_counter() - t
            t = time.perf_counter()
            store.query(queries[0], k)  # builds or loads the index
            first_s = time.perf_counter() - t
            dense_ms, found = [], 0
            for qi, q in enumerate(queries):
                t = time.perf_counter()
                hits = store.query(q, k)
                dense_ms.append((time.perf_counter() - t) * 1000)
                found += len({int(h.chunk.id[1:]) for h in hits} & set(exact[qi].tolist()))
            retriever = Retriever(_LookupEmbedder(dict(zip(texts, queries))), store, bm25)
            hybrid_ms = []
            for q in texts:
                t = time.perf_counter()
                retriever.retrieve(q, k, "hybrid")
                hybrid_ms.append((time.perf_counter() - t) * 1000)
            result[backend] = {
                "index": kind,
                "upsert_s": round(upsert_s, 1),
                "first_query_s": round(first_s, 2),
                "dense": _percentiles(dense_ms),
                "hybrid": _percentiles(hybrid_ms),
                "recall@10_vs_exact": round(found / (k * n_queries), 4),
            }
            if hasattr(store, "close"):
                store.close()
    return result


def _store(backend: str, tmp: Path, n: int):
    if backend == "faiss":
        from retrieval.stores.faiss import FaissStore

        store = FaissStore(tmp / "faiss", DIM, device="cpu")
        return store, store._wanted_kind(n)
    from retrieval.stores.chroma import ChromaStore

    return ChromaStore(tmp / "chroma", DIM), "chroma hnsw (cosine)"


def embed_query_latency(n: int = 30) -> dict:
    from retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder(device="cpu")
    e.embed_query("warm up")
    ms = []
    for i in range(n):
        t = time.perf_counter()
        e.embed_query(f"What does protein {i} do in tumour growth?")
        ms.append((time.perf_counter() - t) * 1000)
    return _percentiles(ms)


def run(quick: bool = False, sizes: list[int] | None = None, chroma_max: int = 100_000, stores: list[str] | None = None) -> dict:
    sizes = sizes or ([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000])
    out: dict = {"data": __doc__.split("\n\n")[1].replace("\n", " "), "embed_query_cpu": embed_query_latency()}
    for n in sizes:
        stores = stores or ["faiss", "chroma"]
        backends = [b for b in stores if b != "chroma" or n <= chroma_max]
        out[str(n)] = run_size(n, backends)
        if n > chroma_max and "chroma" in stores:
            out[str(n)]["chroma"] = {"skipped": f"Chroma is measured up to {chroma_max:,} chunks (upserting {n:,} takes too long on this machine)"}
    return out
