"""Retrieval quality, in one run on one machine: the tutorial LangChain peer against our dense,
BM25 and hybrid retrieval, on SciFact (train), SQuAD (articles 0-23) and CMRC 2018 (trial).

    python bench/retrieval_quality.py [--only scifact,squad,cmrc] [--skip-peer] [--use | --use-only]

The peer is the common tutorial pipeline: `RecursiveCharacterTextSplitter(1000, 200)`,
`HuggingFaceEmbeddings` over the same packaged all-MiniLM-L6-v2 folder, `langchain_chroma.Chroma`
similarity search. Ours goes through `kbqa eval retrieval` (app.evaluation.run_retrieval):
the ingest pipeline (200-token chunks), Chroma + BM25, the configured fusion. `--use` adds the
multilingual USE v3 embedder (dense and hybrid) on SQuAD and CMRC.

Knowledge bases are cached under settings.cache_dir (eval-kb/, eval-peer/) and reused.
Writes bench/results/retrieval_quality.{json,md}. Quality metrics use every query (their
vectors embedded in one batch: the same vectors, hours less on a busy 2-core machine);
latency is timed per query through the full path (embedding included) on the first 300,
under whatever load the machine carries (os.getloadavg() is recorded beside them).
The SciFact corpus (~11k of our chunks, ~14k of the peer's) was embedded once on a GPU
machine with bench/minilm_torch.py (plain torch, same weights; `check` matches
sentence-transformers to cosine 1.0000): `--gpu-prep`, then `--gpu-finish VECTORS`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kbqa.app.evaluation import run_retrieval  # noqa: E402
from kbqa.eval.benchmarks import Benchmark, load_beir, load_squad  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.eval.retrieval_metrics import dedupe, evaluate_rankings, percentile  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
# quality from all queries (query vectors embedded in one batch); latency from this many, one by one
LATENCY_SAMPLE = 300
DATASETS = {
    "scifact": ("SciFact train", lambda: load_beir(SHARED / "scifact", "train")),
    "squad": ("SQuAD dev articles 0-23", lambda: load_squad(SHARED / "squad" / "squad_v1.1_dev_articles_00-23.json")),
    "cmrc": ("CMRC 2018 trial", lambda: load_squad(SHARED / "cmrc2018" / "cmrc2018_trial.json")),
}


def peer(bench: Benchmark, settings: Settings, k: int, build_with=None) -> dict:
    """The tutorial pipeline, built once per corpus and cached."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from tqdm import tqdm

    from kbqa.retrieval.packaged import minilm_dir

    key = hashlib.sha256(f"{bench.fingerprint}:peer:1000:200".encode()).hexdigest()[:16]
    root = Path(settings.cache_dir) / "eval-peer" / key
    embeddings = HuggingFaceEmbeddings(model_name=str(minilm_dir()), model_kwargs={"device": "cpu"})
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(root / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    store = Chroma("peer", embedding_function=embeddings, client=client)
    if build_with is not None:
        store = Chroma("peer", embedding_function=build_with, client=client)
    if not (root / "complete").is_file():
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        docs = splitter.split_documents([Document(page_content=text, metadata={"doc_id": doc_id}) for doc_id, text in bench.docs])
        have = client.get_collection("peer", embedding_function=None).count()  # LangChain made it; the chunks an interrupted build stored
        batch = 256
        for start in tqdm(range(have - have % batch, len(docs), batch), desc=f"peer embedding {bench.name}", unit="batch"):
            part = docs[start : start + batch]
            store.add_documents(part, ids=[f"c{start + i}" for i in range(len(part))])
        (root / "complete").write_text(str(len(docs)))
    if build_with is not None:
        return {}
    store.similarity_search("warm up", k=1)
    rankings, latencies = {}, []
    ids = list(bench.qrels)
    for qid in tqdm(ids[:LATENCY_SAMPLE], desc=f"peer latency {bench.name}", unit="q"):
        started = time.perf_counter()
        store.similarity_search(bench.queries[qid], k=k)
        latencies.append((time.perf_counter() - started) * 1000)
    vectors = embeddings.embed_documents([bench.queries[q] for q in ids])  # one batch; same vectors as embed_query
    for qid, vector in tqdm(zip(ids, vectors), total=len(ids), desc=f"peer queries {bench.name}", unit="q"):
        found = store.similarity_search_by_vector(vector, k=k)
        rankings[qid] = dedupe(d.metadata["doc_id"] for d in found)
    means, _ = evaluate_rankings(rankings, bench.qrels, bench.metrics)
    out = {m: round(v, 4) for m, v in means.items()}
    out.update(
        {
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "queries": len(rankings),
            "latency_queries": len(latencies),
        }
    )
    return out


# ---- embedding the large corpora on a GPU machine that has only torch (bench/minilm_torch.py) ----
GPU_DIR = ROOT / ".gpu" / "retrieval"


class _RecordingEmbedder:
    """The packaged MiniLM for token counts; zero vectors for documents, their texts recorded."""

    def __init__(self, base):
        self.base, self.name, self.texts = base, base.name, []

    dim = property(lambda self: self.base.dim)
    max_tokens = property(lambda self: self.base.max_tokens)

    def count_tokens(self, texts):
        return self.base.count_tokens(texts)

    def embed_documents(self, texts):
        import numpy as np

        self.texts.extend(texts)
        return np.zeros((len(texts), self.base.dim), dtype=np.float32)

    def embed_query(self, text):
        return self.base.embed_query(text)


class _TableEmbeddings:
    """LangChain Embeddings answering documents from the GPU-made table (queries never come here)."""

    def __init__(self, table):
        self.table = table

    def embed_documents(self, texts):
        return [self.table[_sha(t)].tolist() for t in texts]

    def embed_query(self, text):
        raise RuntimeError("queries go through HuggingFaceEmbeddings")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _peer_texts(bench: Benchmark) -> list[str]:
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    return [d.page_content for d in splitter.split_documents([Document(page_content=t, metadata={"doc_id": i}) for i, t in bench.docs])]


def gpu_prep(names: list[str], settings: Settings) -> None:
    """Texts to embed: ours (SciFact, through the real ingest with zero vectors) and the peer's."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from kbqa.app.evaluation import build_eval_kb
    from kbqa.retrieval.embedders import make_embedder
    from kbqa.retrieval.packaged import minilm_dir

    base = make_embedder("sentence-transformers", settings.embedder.model, device="cpu")
    texts: list[str] = []
    for name in names:
        bench = DATASETS[name][1]()
        if name == "scifact":
            rec = _RecordingEmbedder(base)
            build_eval_kb(bench, settings, embedder=rec, finish=False)
            kb, _ = build_eval_kb(bench, settings, finish=False)
            texts += [c.text for c in kb.store.get(kb.store.all_ids())]
        texts += _peer_texts(bench)
    texts = list(dict.fromkeys(texts))
    enc = base.model.tokenizer(texts, truncation=True, max_length=base.max_tokens)["input_ids"]
    GPU_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(GPU_DIR / "in.npz", ids=np.array([i for e in enc for i in e], dtype=np.uint16), lengths=np.array([len(e) for e in enc], dtype=np.int32))
    (GPU_DIR / "texts.json").write_text(json.dumps([_sha(t) for t in texts]))
    torch.save({k: v.half() for k, v in load_file(str(minilm_dir() / "model.safetensors")).items()}, GPU_DIR / "minilm.pt")
    print(
        f"{len(texts)} texts ready in {GPU_DIR}; on the GPU machine: python bench/minilm_torch.py embed .gpu/retrieval/in.npz .gpu/retrieval/minilm.pt $OUT/vectors.npy"
    )


def gpu_finish(names: list[str], settings: Settings, vectors_path: str) -> None:
    """Put the GPU-made vectors into our SciFact store and build the peer stores from them."""
    import numpy as np

    from kbqa.app.evaluation import EVAL_KB_MARKER, build_eval_kb, eval_kb_root, mark_eval_kb_complete

    vectors = np.load(vectors_path).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = dict(zip(json.loads((GPU_DIR / "texts.json").read_text()), vectors))
    for name in names:
        bench = DATASETS[name][1]()
        if name == "scifact" and not (eval_kb_root(bench, settings) / EVAL_KB_MARKER).is_file():
            kb, _ = build_eval_kb(bench, settings, finish=False)
            ids = kb.store.all_ids()
            for start in range(0, len(ids), 2000):
                chunks = kb.store.get(ids[start : start + 2000])
                kb.store.upsert(chunks, np.stack([table[_sha(c.text)] for c in chunks]))
            mark_eval_kb_complete(eval_kb_root(bench, settings), bench, embedded="bench/minilm_torch.py on a GPU machine (fp16 weights, fp32 compute)")
        peer(bench, settings, 1, build_with=_TableEmbeddings(table))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="scifact,squad,cmrc")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--peer-only", action="store_true")
    ap.add_argument("--use", action="store_true", help="also the multilingual USE embedder on SQuAD and CMRC")
    ap.add_argument("--use-only", action="store_true", help="only the USE rows (other rows in the results stay as they are)")
    ap.add_argument("--gpu-prep", action="store_true", help="write the texts to embed on a GPU machine to .gpu/retrieval/")
    ap.add_argument("--gpu-finish", metavar="VECTORS", help="fill the stores from the GPU machine's vectors.npy")
    args = ap.parse_args(argv)
    settings = Settings.load()
    if args.gpu_prep:
        gpu_prep(args.only.split(","), settings)
        return 0
    if args.gpu_finish:
        gpu_finish(args.only.split(","), settings, args.gpu_finish)
        return 0
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    command = "python bench/retrieval_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for name in args.only.split(","):
        label, load = DATASETS[name]
        bench = load()
        table = results.setdefault(name, {"label": label})
        k_chunks = min(max(int(m.split("@")[1]) for m in bench.metrics) * 2, 200)
        runs = [("peer (LangChain tutorial, MiniLM)", None, None)] if not (args.skip_peer or args.use_only) else []
        if args.use_only:
            args.use, runs = True, []
        elif not args.peer_only:
            runs += [(f"ours {m} (MiniLM)", "sentence-transformers", m) for m in ("dense", "bm25", "hybrid")]
        if args.use and name in ("squad", "cmrc") and not args.peer_only:
            runs += [(f"ours {m} (USE v3)", "use", m) for m in ("dense", "hybrid")]
        for row, backend, mode in runs:
            load_before = os.getloadavg()
            started = time.time()
            if backend is None:
                metrics = peer(bench, settings, k_chunks)
            else:
                metrics = run_retrieval(bench, settings.with_overrides({"embedder.backend": backend}), mode=mode, latency_sample=LATENCY_SAMPLE)["metrics"]
            metrics["loadavg_1m"] = round((load_before[0] + os.getloadavg()[0]) / 2, 2)
            metrics["command"] = command
            metrics["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            table[row] = metrics
            print(f"{name} | {row} | {metrics} ({time.time() - started:.0f}s)", file=sys.stderr, flush=True)
            _write(out_dir, results, settings)
    return 0


def _write(out_dir: Path, results: dict, settings: Settings) -> None:
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} (shared with other work; see loadavg_1m)",
        "settings": settings.retrieval.model_dump(mode="json"),
        "chunking": settings.chunking.model_dump(mode="json"),
    }
    path = out_dir / "retrieval_quality.json"
    merged = json.loads(path.read_text()).get("results", {}) if path.is_file() else {}  # other runs' rows stay
    for name, table in results.items():
        merged.setdefault(name, {}).update(table)
    results = merged
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False))
    lines = [
        "# Retrieval quality: tutorial peer vs ours\n",
        f"Machine: {meta['machine']}. Chunking: {meta['chunking']}. Retrieval settings: `{json.dumps(meta['settings'])}`.\n",
    ]
    for name, table in results.items():
        rows = {k: v for k, v in table.items() if k != "label"}
        if not rows:
            continue
        keys = [k for k in next(iter(rows.values())) if k not in ("command", "date")]
        lines += [f"\n## {table['label']}\n", "| system | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for row, m in rows.items():
            lines.append(f"| {row} | " + " | ".join(str(m.get(k, "")) for k in keys) + " |")
        cmds = sorted({f"`{m['command']}` ({m['date']})" for m in rows.values()})
        lines.append("\nProduced by: " + "; ".join(cmds))
    (out_dir / "retrieval_quality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
