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
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    assign = rng.integers(0, len(centres), n)
    vectors = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):  # in float32 slices: 1M x 384 in float64 would take 3 GB
        part = centres[assign[s : s + 100_000]] + 0.6 * rng.standard_normal((len(assign[s : s + 100_000]), DIM), dtype=np.float32)
        vectors[s : s + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
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
    from kbqa.retrieval.bm25 import BM25Index
    from kbqa.retrieval.tokenize import bm25_tokens

    # each invented word's token form, as the index's tokenizer makes it (once per word)
    forms = [bm25_tokens(w) or [w] for w in words]
    index = BM25Index(folder)
    index.load_tokens({id_: [t for w in row for t in forms[w]] for id_, row in zip(ids, word_ids)})
    t = time.perf_counter()
    index.build()
    return index, time.perf_counter() - t


def _exact_top(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    out = []
    for s in range(0, len(queries), 10):  # 10 queries at a time: 1M scores each
        scores = queries[s : s + 10] @ vectors.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        out.append(np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1), 1))
    return np.concatenate(out)


def _timed(fn, items) -> tuple[dict, list]:
    """Wall-clock p50/p95 of fn over items, and the p50 of the CPU time the process spent
    (all its threads): on a shared machine the wall clock waits for a core, the CPU time
    is what the work costs (about the wall clock on an idle core when nothing overlaps)."""
    wall, cpu, out = [], [], []
    for item in items:
        t, c = time.perf_counter(), time.process_time()
        out.append(fn(item))
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {**_percentiles(wall), "cpu_p50_ms": round(statistics.median(cpu), 3)}, out


def run_size(n: int, backends: list[str], n_queries: int = 100, k: int = 10) -> dict:
    from kbqa.retrieval.retriever import Retriever, RetrieverConfig
    from kbqa.retrieval.types import Chunk

    started = time.perf_counter()
    vectors, words, word_ids = synthetic(n)
    ids = [f"c{i}" for i in range(n)]
    rng = np.random.default_rng(1)
    picks = rng.integers(0, n, n_queries)
    queries = vectors[picks] + 0.3 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    texts = [" ".join(words[w] for w in word_ids[i][:5]) for i in picks]
    exact = _exact_top(queries, vectors, k)
    result: dict = {"chunks": n, "queries": n_queries, "data_s": round(time.perf_counter() - started, 1)}
    pool = RetrieverConfig().candidates  # what hybrid asks each retriever for
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-ret-") as tmp:
        tmp = Path(tmp)
        bm25, bm25_build = build_bm25(tmp / "bm25", words, word_ids, ids)
        result["bm25_build_s"] = round(bm25_build, 2)
        bm25.search(texts[0], k)
        result["bm25"] = _timed(lambda q: bm25.search(q, k), texts)[0]
        result["bm25_pool"] = _timed(lambda q: bm25.search(q, pool, normalized=True), texts)[0]
        for backend in backends:
            store, kind = _store(backend, tmp, n)
            t = time.perf_counter()
            step = 20_000
            for s in range(0, n, step):
                part = [Chunk(ids[i], " ".join(words[w] for w in word_ids[i]), "synthetic.txt", chunk=i) for i in range(s, min(n, s + step))]
                store.upsert(part, vectors[s : s + step])
            upsert_s = time.perf_counter() - t
            if backend == backends[-1]:
                vectors = word_ids = None  # 1.9 GB at 1M chunks, not needed past the last upsert
            t = time.perf_counter()
            store.query(queries[0], k)  # builds or loads the index
            first_s = time.perf_counter() - t
            dense, hits = _timed(lambda q: store.query(q, k), queries)
            found = sum(len({int(h.chunk.id[1:]) for h in found} & set(exact[qi].tolist())) for qi, found in enumerate(hits))
            lookup = _LookupEmbedder(dict(zip(texts, queries)))
            hybrid = {}
            for name, parallel in (("hybrid", True), ("hybrid_serial", False)):  # "hybrid": BM25 in a thread
                retriever = Retriever(lookup, store, bm25, config=RetrieverConfig(parallel=parallel))
                retriever.retrieve(texts[0], k, "hybrid")
                hybrid[name] = _timed(lambda q: retriever.retrieve(q, k, "hybrid"), texts)[0]
            # the hybrid's parts, each alone: dense candidates without texts, texts of the top k
            dense_pool, pairs = _timed(lambda q: store.query_ids(q, pool), queries)
            fetch = _timed(lambda p: store.get([i for i, _ in p[:k]]), pairs)[0]
            result[backend] = {
                "index": kind,
                **_index_params(store, backend),
                "upsert_s": round(upsert_s, 1),
                "first_query_s": round(first_s, 2),
                "dense": dense,
                **hybrid,
                "parts": {"dense_ids_pool": dense_pool, "bm25_pool": result["bm25_pool"], "fetch_top_k": fetch},
                "recall@10_vs_exact": round(found / (k * n_queries), 4),
            }
            if hasattr(store, "close"):
                store.close()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _index_params(store, backend: str) -> dict:
    if backend == "chroma":
        return {"ef_search": store.ef_search}
    info = store.index_info()
    if info["kind"] == "ivf":
        return {"nlist": info["nlist"], "nprobe": info["nprobe"]}
    return {}


def _store(backend: str, tmp: Path, n: int):
    if backend == "faiss":
        from kbqa.retrieval.stores.faiss import FaissStore

        store = FaissStore(tmp / "faiss", DIM, device="cpu")
        return store, store.wanted_kind(n)
    from kbqa.retrieval.stores.chroma import ChromaStore

    return ChromaStore(tmp / "chroma", DIM), "chroma hnsw (cosine)"


def embed_query_latency(n: int = 30) -> dict:
    from kbqa.retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder

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


def markdown(d: dict) -> list[str]:
    """The retrieval part's section of bench/results/*.md."""

    def cell(r: dict) -> str:
        cpu = f" ({r['cpu_p50_ms']})" if "cpu_p50_ms" in r else ""
        return f"{r.get('p50_ms')}{cpu} / {r.get('p95_ms')}"

    out = [f"Data: {d.get('data')}\n"]
    eq = d.get("embed_query_cpu", {})
    out.append(f"Embedding one query (MiniLM, CPU): p50 {eq.get('p50_ms')} ms, p95 {eq.get('p95_ms')} ms (not included below).\n")
    out.append(
        "Each cell: wall-clock p50 (CPU time p50, all threads of the process) / wall-clock p95, in ms. On a shared machine the wall clock includes waiting for a core; the CPU time is the work.\n"
    )
    out.append(
        "| chunks | store (index) | dense k=10 | BM25 k=10 | hybrid k=10 (default: serial) | hybrid, BM25 in a thread (`retrieval.parallel`) | recall@10 vs exact | upsert s | index build s |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    parts = []
    for size, r in d.items():
        if not size.isdigit():
            continue
        for backend in ("faiss", "chroma"):
            s = r.get(backend)
            if not s:
                continue
            if "skipped" in s:
                out.append(f"| {int(size):,} | {backend} | {s['skipped']} | | | | | | |")
                continue
            params = ", ".join(f"{key} {s[key]}" for key in ("nlist", "nprobe", "ef_search") if key in s)
            index = f"{s['index']}, {params}" if params else s["index"]
            out.append(
                f"| {int(size):,} | {backend} ({index}) | {cell(s['dense'])} | {cell(r['bm25'])} | **{cell(s.get('hybrid_serial', {}))}** | {cell(s['hybrid'])} | "
                f"{s['recall@10_vs_exact']} | {s['upsert_s']} | {s['first_query_s']} |"
            )
            if "parts" in s:
                p = s["parts"]
                parts.append(f"| {int(size):,} | {backend} | {cell(p['dense_ids_pool'])} | {cell(p['bm25_pool'])} | {cell(p['fetch_top_k'])} |")
    if parts:
        out.append(
            "\nThe hybrid's parts, each timed alone: the dense candidates as ids, BM25's normalised candidates, reading the fused top 10's texts and metadata.\n"
        )
        out.append("| chunks | store | dense ids, 50 | BM25, 50 | texts of the top 10 |")
        out.append("| --- | --- | --- | --- | --- |")
        out += parts
    sizes = [int(size) for size in d if size.isdigit()]
    if sizes:
        out.append(
            "\nSeconds per size (data, BM25 build, every store's upsert, build and queries): "
            + ", ".join(f"{n:,}: {d[str(n)].get('seconds')}" for n in sizes)
            + "."
        )
    return out
