"""One entry point for kbqa's speed benchmarks.

    python -m bench.run                     # everything (about an hour on 2 busy cores)
    python -m bench.run --quick             # smaller corpus and sizes (10k/100k chunks)
    python -m bench.run --only retrieval,generation

Parts: ingestion and reingest (bench/speed_ingestion.py), retrieval (bench/speed_retrieval.py),
generation (bench/speed_generation.py), serve (peak RSS of ``kbqa serve``). Writes
``bench/results/speed.json`` and ``speed.md`` (or ``--out NAME``), each with the machine,
command, date and the load average before and after every part: on a shared machine the
figures are only as good as the load beside them. The GPU figures come from
``bench/gpu.py`` on a CUDA machine (``bench/results/gpu_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PARTS = ("ingestion", "reingest", "retrieval", "generation", "serve")


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    except ImportError:
        torch_info = {}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "commit": commit, **torch_info}


def serve_peak_rss(port: int = 8765) -> dict:
    """Start `kbqa serve` on the sample knowledge base, answer one question, read its peak RSS."""
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    exe = Path(sys.executable).parent / "kbqa"
    if not exe.exists():
        return {"skipped": "the kbqa command is not installed in this environment"}
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-serve-") as tmp:
        kb_dir = Path(tmp) / "sample"
        KnowledgeBase(kb_dir, Settings()).ingest([ROOT / "data" / "sample"])
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "GRADIO_ANALYTICS_ENABLED": "False"}
        proc = subprocess.Popen(
            [str(exe), "serve", "--kb", f"sample={kb_dir}", "--port", str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            started = time.perf_counter()
            while True:
                if proc.poll() is not None:
                    return {"error": f"kbqa serve exited with {proc.returncode}: {proc.stderr.read().decode()[-400:]}"}
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                    break
                except OSError:
                    if time.perf_counter() - started > 600:
                        return {"error": "kbqa serve did not answer /healthz within 600 s"}
                    time.sleep(1)
            ready_s = time.perf_counter() - started
            rss_ready = _rss(proc.pid)
            body = json.dumps(
                {"model": "sample", "messages": [{"role": "user", "content": "When did the Lanshan Mountain Railway open?"}], "max_tokens": 32}
            ).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            urllib.request.urlopen(request, timeout=600).read()
            answer_s = time.perf_counter() - t
            peak = _rss(proc.pid)
            return {
                "command": "kbqa serve --kb sample=<sample kb> --no-ui",
                "ready_s": round(ready_s, 1),
                "rss_after_start_mb": rss_ready["rss_mb"],
                "peak_rss_mb_after_one_answer": peak["peak_mb"],
                "first_answer_s": round(answer_s, 2),
            }
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _rss(pid: int) -> dict:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            values[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(values.get("VmRSS", 0), 1), "peak_mb": round(values.get("VmHWM", 0), 1)}


def to_markdown(report: dict) -> str:
    m, lines = report["machine"], []
    lines += [
        "# kbqa speed benchmarks",
        "",
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
        f"- machine: {m.get('cpu')} ({m.get('cores')} cores), Python {m.get('python')}, torch {m.get('torch')} ({m.get('torch_threads')} threads), commit {m.get('commit')}",
        "- load average (1, 5, 15 min) before and after each part is recorded below; other engineers' jobs shared these cores",
        "",
    ]
    for name, part in report["parts"].items():
        lines.append(f"## {name}  (load before {part.get('load_before')}, after {part.get('load_after')}; {part.get('seconds')} s)")
        lines.append("")
        data = part.get("result", {})
        if "error" in part:
            lines += [f"error: {part['error']}", ""]
            continue
        lines += _section(name, data)
        lines.append("")
    return "\n".join(lines) + "\n"


def _section(name: str, d: dict) -> list[str]:
    out = []
    if name == "ingestion":
        pdf = d.get("pdf_parsing", {})
        out.append(
            f"PDF parsing: {pdf.get('pages')} pages of {pdf.get('pdfs')} PDFs ({pdf.get('failed')} failed: protected/scanned) in {pdf.get('seconds')} s = **{pdf.get('pages_per_s')} pages/s**"
        )
        c = d.get("corpus", {})
        out.append(
            f"\nCorpus: {c.get('source')}, {c.get('documents')} documents, {c.get('characters')} characters; quality over {c.get('queries')} training queries.\n"
        )
        out.append("| pipeline | chunks | seconds | chunks/s | tokens/s | docs/s | nDCG@10 |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        k, e, p = d.get("kbqa", {}), d.get("embedder_only", {}), d.get("peer", {})
        q = k.get("quality", {})
        out.append(
            f"| kbqa ingest (200-token chunks, Chroma, BM25) | {k.get('chunks')} | {k.get('seconds')} | {k.get('chunks_per_s')} | {k.get('tokens_per_s')} | {k.get('docs_per_s')} | dense {q.get('ndcg@10_dense')}, hybrid {q.get('ndcg@10_hybrid')} |"
        )
        out.append(f"| embedder only, same chunks | {k.get('chunks')} | {e.get('seconds')} | {e.get('chunks_per_s')} | {e.get('tokens_per_s')} | | |")
        if "error" in p:
            out.append(f"| LangChain peer | | | | | | {p['error']} |")
        else:
            out.append(
                f"| LangChain tutorial peer (1000/200 chars) | {p.get('chunks')} | {p.get('seconds')} | {p.get('chunks_per_s')} | {p.get('tokens_per_s')} | {p.get('docs_per_s')} | dense {p.get('quality', {}).get('ndcg@10_dense')} |"
            )
        out.append(
            f"\nkbqa end to end = {k.get('fraction_of_bound')} of the embedder-only bound; vs the peer: {d.get('speedup_vs_peer_chunks_per_s')}x chunks/s, {d.get('speedup_vs_peer_corpus_seconds')}x on time for the whole corpus."
        )
    elif name == "reingest":
        c = d.get("corpus", {})
        out.append(
            f"Corpus: {c.get('source')} ({c.get('files')} files, {c.get('characters')} characters); {c.get('edited_files')} files edited ({c.get('edit')}).\n"
        )
        out.append("| run | seconds | files replaced | chunks added | embedded | reused | load before / after |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for key in ("initial", "reuse_on", "restore", "reuse_off"):
            r = d.get(key)
            if r:
                out.append(
                    f"| {r['run']} | {r['seconds']} | {r['files_replaced']} | {r['chunks_added']} | {r['chunks_embedded']} | {r['chunks_reused']} | {r['load_before']} / {r['load_after']} |"
                )
        out.append(f"\nRe-ingest with reuse on: {d.get('speedup_on_vs_off')}x faster than with it off ({d.get('embedded_on_vs_off')} embedded).")
    elif name == "retrieval":
        from bench.speed_retrieval import markdown

        out += markdown(d)
    elif name == "generation":
        out.append(
            f"Model: {d.get('model')}; prompt {d.get('prompt_tokens')} tokens (5 chunks), {d.get('new_tokens')} new tokens forced, {d.get('threads')} threads.\n"
        )
        out.append("| variant | TTFT s | prefill tok/s | decode tok/s batch 1 | decode tok/s batch 4 |")
        out.append("| --- | --- | --- | --- | --- |")
        for v in ("fp32", "int8_dynamic"):
            r = d.get(v)
            if r and "error" not in r:
                out.append(
                    f"| {v} | {r['ttft_s']} | {r['prefill_tokens_per_s']} | {r['decode_tokens_per_s_batch1']} | {r.get('decode_tokens_per_s_batch4', '')} |"
                )
        f = d.get("fp32", {})
        if "ttft_s_2_chunks" in f:
            out.append(f"\nTTFT with 2 chunks ({f['prompt_tokens_2_chunks']} prompt tokens): {f['ttft_s_2_chunks']} s.")
        i8 = d.get("int8_dynamic", {})
        if "greedy_24_tokens_identical_to_fp32" in i8:
            out.append(f"int8 greedy output identical to fp32 over 24 tokens: {i8['greedy_24_tokens_identical_to_fp32']}.")
        c = d.get("answer_cache", {})
        out.append(
            f"\nAnswer cache: first ask {c.get('first_ask_ms')} ms, repeated identical question p50 **{c.get('cached_ask_ms_p50')} ms** (max {c.get('cached_ask_ms_max')} ms)."
        )
    elif name == "serve":
        out.append("```\n" + json.dumps(d, indent=2) + "\n```")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description="kbqa speed benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller corpus and sizes")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--out", default="speed", help="result file name (without extension) under bench/results/")
    parser.add_argument("--sizes", help="retrieval: comma-separated store sizes (default 10000,100000[,1000000])")
    parser.add_argument("--stores", default="faiss,chroma", help="retrieval: stores to measure (default faiss,chroma)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(unknown)} (choose from {', '.join(PARTS)})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": command.strip(), "machine": machine(), "parts": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{args.out}.json", RESULTS / f"{args.out}.md"
    for name in parts:
        entry: dict = {"load_before": [round(x, 2) for x in os.getloadavg()]}
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            if name == "ingestion":
                from bench.speed_ingestion import run
            elif name == "reingest":
                from bench.speed_ingestion import reingest as run
            elif name == "retrieval":
                from bench.speed_retrieval import run
            elif name == "generation":
                from bench.speed_generation import run
            else:
                run = None
            if name == "retrieval":
                sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
                entry["result"] = run(quick=args.quick, sizes=sizes, stores=args.stores.split(","))
            else:
                entry["result"] = serve_peak_rss() if run is None else run(quick=args.quick)
        except Exception as exc:  # one broken part must not lose the others' figures
            import traceback

            entry["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        entry["seconds"] = round(time.perf_counter() - started, 1)
        entry["load_after"] = [round(x, 2) for x in os.getloadavg()]
        report["parts"][name] = entry
        json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        md_path.write_text(to_markdown(report), encoding="utf-8")
        print(f"[bench] {name} done in {entry['seconds']} s", file=sys.stderr, flush=True)
    print(md_path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
