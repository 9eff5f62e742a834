"""GPU benchmark: embedding throughput, exact search at 1M vectors, the FAISS store's GPU
path, generation tokens/s, and the embedder precision quality check (SciFact nDCG@10).

Meant for a CUDA machine with torch, transformers and sentence-transformers (no faiss,
pydantic or chromadb needed). Inputs come from a folder (default ``.gpu/``):

- ``minilm/``: the packaged all-MiniLM-L6-v2 folder (weights may be fp16 to travel light),
- ``scifact/``: ``corpus.jsonl[.gz]``, ``queries.jsonl``, ``train.tsv`` (BEIR SciFact),
- ``smollm2/``: SmolLM2-135M-Instruct's config and tokenizer. Generation speed is measured
  with that architecture and random weights (the weights do not change the arithmetic),
  forcing a fixed number of new tokens.

    python -m bench.gpu --inputs .gpu --out results.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_scifact(folder: Path):
    opener = gzip.open if (folder / "corpus.jsonl.gz").exists() else open
    name = "corpus.jsonl.gz" if (folder / "corpus.jsonl.gz").exists() else "corpus.jsonl"
    with opener(folder / name, "rt", encoding="utf-8") as handle:
        corpus = [json.loads(line) for line in handle if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines())}
    qrels: dict[str, dict[str, float]] = {}
    for line in (folder / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = float(score)
    return corpus, queries, qrels


def ndcg10(ranked: list[str], relevant: dict[str, float]) -> float:
    dcg = sum(relevant.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def scifact_ndcg(embedder, corpus, queries, qrels) -> dict:
    texts = [(d.get("title", "") + ". " + d.get("text", "")).strip() for d in corpus]
    ids = [d["_id"] for d in corpus]
    t = time.perf_counter()
    docs = embedder.embed_documents(texts)
    doc_s = time.perf_counter() - t
    qids = [q for q in qrels if q in queries]
    qv = embedder.embed_documents([queries[q] for q in qids])
    scores = qv @ docs.T
    top = np.argsort(-scores, axis=1)[:, :10]
    per = [ndcg10([ids[j] for j in row], qrels[q]) for q, row in zip(qids, top)]
    return {"ndcg@10": round(float(np.mean(per)), 4), "queries": len(qids), "docs": len(ids), "docs_per_s": round(len(ids) / doc_s, 1)}


def bench_embedding(inputs: Path, corpus, device: str) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from kbqa.retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder

    base = [(d.get("title", "") + ". " + d.get("text", "")) for d in corpus]
    model_dir = str(inputs / "minilm")
    emb = SentenceTransformerEmbedder(model_dir, device=device, batch_size=512, precision="fp16")
    tok = emb.tokenizer
    # chunks of exactly 256 tokens (the model's window): long abstracts cut at 254 word pieces
    full = [t for t in base if len(tok(t, add_special_tokens=False)["input_ids"]) >= 254]
    chunks = []
    for t in full:
        ids = tok(t, add_special_tokens=False)["input_ids"][:254]
        chunks.append(tok.decode(ids))
    n_target = 20_000
    texts = (chunks * (n_target // max(len(chunks), 1) + 1))[:n_target]
    lengths = [min(len(x), 256) for x in tok(texts[:2000], truncation=True, max_length=256)["input_ids"]]
    out: dict = {"chunks": len(texts), "mean_tokens": round(statistics.mean(lengths), 1)}
    emb.embed_documents(texts[:1024])  # warm up (CUDA context, kernels)
    torch.cuda.synchronize()
    t = time.perf_counter()
    tok(texts, truncation=True, max_length=256)
    out["tokenize_only_chunks_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    emb.token_ids(texts)
    out["tokenize_raw_rust_chunks_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    for bs in (256, 512, 1024):
        emb.batch_size = bs
        torch.cuda.synchronize()
        t = time.perf_counter()
        emb.embed_documents(texts)
        torch.cuda.synchronize()
        out[f"kbqa_fp16_bs{bs}_chunks_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    st = SentenceTransformer(model_dir, device=device, local_files_only=True).half()
    st.encode(texts[:1024], batch_size=256)
    for bs in (256,):
        torch.cuda.synchronize()
        t = time.perf_counter()
        st.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
        torch.cuda.synchronize()
        out[f"st_encode_fp16_bs{bs}_chunks_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    # the model alone: pre-tokenized, pre-padded batches of 512 x 256 tokens
    ids = torch.randint(1000, 20000, (512, 256), device=device)
    mask = torch.ones_like(ids)
    feats = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    with torch.inference_mode():
        emb.model(feats)
        torch.cuda.synchronize()
        t = time.perf_counter()
        reps = 20
        for _ in range(reps):
            emb.model(feats)
        torch.cuda.synchronize()
    out["model_only_fp16_chunks_per_s"] = round(512 * reps / (time.perf_counter() - t), 1)
    return out


def bench_search(device: str) -> dict:
    import torch

    n, dim = 1_000_000, 384
    g = torch.Generator(device=device).manual_seed(0)
    base = torch.randn(n, dim, device=device, generator=g, dtype=torch.float16)
    base = torch.nn.functional.normalize(base.float(), dim=1).half()
    out = {"vectors": n, "dim": dim, "dtype": "fp16"}
    for nq in (1, 64):
        q = torch.nn.functional.normalize(torch.randn(nq, dim, device=device, generator=g), dim=1).half()
        for _ in range(3):
            torch.topk(q @ base.T, 10, dim=1)
        torch.cuda.synchronize()
        times = []
        for _ in range(50):
            t = time.perf_counter()
            s, i = torch.topk((q @ base.T).float(), 10, dim=1)
            i.cpu()
            times.append((time.perf_counter() - t) * 1000)
        out[f"exact_top10_{nq}q_ms_p50"] = round(statistics.median(times), 3)
        out[f"exact_top10_{nq}q_ms_p95"] = round(float(np.percentile(times, 95)), 3)
    del base
    torch.cuda.empty_cache()
    return out


def bench_faiss_store_gpu(device: str, n: int = 200_000, dim: int = 384) -> dict:
    from kbqa.retrieval.stores.faiss import FaissStore
    from kbqa.retrieval.types import Chunk

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    folder = Path(tempfile.mkdtemp()) / "faiss"
    store = FaissStore(folder, dim, device=device)
    t = time.perf_counter()
    step = 50_000
    for s in range(0, n, step):
        store.upsert([Chunk(f"c{i}", f"chunk {i}", "synthetic.txt", chunk=i) for i in range(s, min(n, s + step))], vectors[s : s + step])
    upsert_s = time.perf_counter() - t
    queries = rng.standard_normal((100, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    store.query(queries[0], 10)  # moves the vectors to the GPU
    times, agree = [], 0
    for q in queries:
        t = time.perf_counter()
        hits = store.query(q, 10)
        times.append((time.perf_counter() - t) * 1000)
        exact = set(np.argsort(-(vectors @ q))[:10].tolist())
        agree += len(exact & {int(h.chunk.id[1:]) for h in hits})
    return {
        "chunks": n,
        "backend": store.index_info()["gpu_search"] or "?",
        "upsert_s": round(upsert_s, 1),
        "query_ms_p50": round(statistics.median(times), 3),
        "query_ms_p95": round(float(np.percentile(times, 95)), 3),
        "recall@10_vs_exact_fp32": round(agree / (10 * len(queries)), 4),
    }


def bench_generation(inputs: Path, device: str) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = inputs / "smollm2"
    config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompt_tokens, new_tokens = 1200, 128
    ids = torch.randint(100, config.vocab_size - 100, (1, prompt_tokens), device=device)
    out: dict = {"model": "SmolLM2-135M architecture, random weights, bf16", "prompt_tokens": prompt_tokens, "new_tokens": new_tokens}
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        for batch in (1, 32):
            x = ids.repeat(batch, 1)
            torch.cuda.synchronize()
            t = time.perf_counter()
            model.generate(x, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            torch.cuda.synchronize()
            ttft = time.perf_counter() - t
            t = time.perf_counter()
            model.generate(x, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            torch.cuda.synchronize()
            total = time.perf_counter() - t
            out[f"batch{batch}_ttft_ms"] = round(ttft * 1000, 1)
            out[f"batch{batch}_tokens_per_s"] = round(batch * new_tokens / total, 1)
            out[f"batch{batch}_decode_tokens_per_s"] = round(batch * (new_tokens - 1) / max(total - ttft, 1e-9), 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default=".gpu")
    parser.add_argument("--out", default="gpu_results.json")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: embedding,search,store,generation,quality")
    args = parser.parse_args(argv)
    import torch

    inputs, skip = Path(args.inputs), set(filter(None, args.skip.split(",")))
    device = "cuda"
    result: dict = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    corpus, queries, qrels = load_scifact(inputs / "scifact")

    def part(name, fn):
        if name in skip:
            return
        t = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as exc:  # record and go on: one failed part must not lose the others
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        result[name]["seconds"] = round(time.perf_counter() - t, 1) if isinstance(result[name], dict) else None
        _log(name, json.dumps(result[name]))
        Path(args.out).write_text(json.dumps(result, indent=2))

    part("embedding", lambda: bench_embedding(inputs, corpus, device))
    part("search", lambda: bench_search(device))
    part("store", lambda: bench_faiss_store_gpu(device))
    part("generation", lambda: bench_generation(inputs, device))

    def quality():
        from kbqa.retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder

        model_dir = str(inputs / "minilm")
        out = {"note": "SciFact train queries with qrels, full corpus, title + abstract truncated at 256 tokens"}
        variants = [("fp32_cpu", "cpu", "fp32"), ("int8_cpu", "cpu", "int8"), ("fp16_cuda", "cuda", "fp16"), ("bf16_cpu", "cpu", "bf16")]
        only = os.environ.get("KBQA_QUALITY_ONLY")
        if only:
            variants = [v for v in variants if v[0] in only.split(",")]
        for name, dev, prec in variants:
            t = time.perf_counter()
            out[name] = scifact_ndcg(SentenceTransformerEmbedder(model_dir, device=dev, batch_size=64, precision=prec), corpus, queries, qrels)
            out[name]["seconds"] = round(time.perf_counter() - t, 1)
            _log(name, out[name])
            Path(args.out).write_text(json.dumps({**result, "quality": out}, indent=2))
        ref = out["fp32_cpu"]["ndcg@10"]
        for name in [v[0] for v in variants if v[0] != "fp32_cpu"]:
            out[name]["delta_vs_fp32"] = round(out[name]["ndcg@10"] - ref, 4)
            out[name]["within_0.005"] = abs(out[name]["ndcg@10"] - ref) <= 0.005
        return out

    part("quality", quality)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
