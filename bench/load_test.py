"""Bounded load test of `kbqa serve` from a second process on 127.0.0.1.

N concurrent clients send retrieval requests (and every `--chat-every`-th request a chat
completion) for a fixed duration while an upload is being ingested; the run stops by
itself. Reported: throughput, p50/p95/p99 latency per request kind, errors (any non-2xx
or exception, by kind) and the server's resident memory over time.

    python bench/load_test.py --clients 8 --duration 60          # starts its own server
    python bench/load_test.py --url http://127.0.0.1:8000 ...     # against a running one

Writes bench/results/load_<name>.{json,md}. `run_load(url, ...)` is the reusable part
(tests/test_security_load.py runs a short form of it in CI).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

QUESTIONS = [
    "When did the Lanshan Mountain Railway open?",
    "How long does the journey to Cloud Peak Summit take?",
    "Can I bring my dog on the train?",
    "What does a return ticket cost?",
    "蓝山铁路冬季是否运营？",
    "Which stations do upward trains call at?",
    "Who surveyed the route?",
    "行李限重是多少？",
]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[i]


def run_load(
    url: str,
    *,
    clients: int = 4,
    duration_s: float = 10.0,
    chat_every: int = 5,
    kb: str = "sample",
    upload_kb: str | None = None,
    upload: tuple[str, bytes] | None = None,
    token: str | None = None,
    server_pid: int | None = None,
    request_timeout_s: float = 120.0,
    max_tokens: int = 16,
    seed: int = 0,
) -> dict:
    """Drive the server for `duration_s`; every request has a timeout, so the run ends by itself."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    records: list[dict] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration_s
    memory: list[dict] = []
    stop = threading.Event()

    def record(kind: str, t0: float, status: int | None, error: str | None = None):
        with lock:
            records.append({"kind": kind, "t": round(t0 - started, 3), "ms": (time.monotonic() - t0) * 1000, "status": status, "error": error})

    def client(n: int):
        rng = random.Random(seed + n)
        with httpx.Client(base_url=url, headers=headers, timeout=request_timeout_s) as http:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                q = rng.choice(QUESTIONS)
                t0 = time.monotonic()
                try:
                    if chat_every and i % chat_every == 0:
                        kind = "chat"
                        r = http.post("/v1/chat/completions", json={"model": kb, "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens})
                    else:
                        kind = "retrieve"
                        r = http.post("/v1/retrieve", json={"kb": kb, "query": q, "k": 5})
                    record(kind, t0, r.status_code, None if r.is_success else r.text[:200])
                except httpx.HTTPError as exc:
                    record(kind, t0, None, f"{type(exc).__name__}: {exc}"[:200])

    def uploader():
        time.sleep(min(2.0, duration_s / 4))
        name, data = upload
        t0 = time.monotonic()
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=max(request_timeout_s, 600)) as http:
                r = http.post(f"/v1/kbs/{upload_kb or kb}/documents", files=[("files", (name, data, "text/markdown"))])
            record("upload", t0, r.status_code, None if r.is_success else r.text[:200])
        except httpx.HTTPError as exc:
            record("upload", t0, None, f"{type(exc).__name__}: {exc}"[:200])

    def sampler():
        while not stop.is_set():
            if server_pid:
                mb = rss_mb(server_pid)
                if mb is not None:
                    memory.append({"t": round(time.monotonic() - started, 1), "rss_mb": round(mb, 1)})
            stop.wait(1.0)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    if upload:
        threads.append(threading.Thread(target=uploader, daemon=True))
    mem_thread = threading.Thread(target=sampler, daemon=True)
    mem_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + request_timeout_s + 600)
    stop.set()
    mem_thread.join(5)
    wall = time.monotonic() - started
    summary: dict = {"clients": clients, "duration_s": duration_s, "wall_s": round(wall, 1), "kinds": {}}
    for kind in ("retrieve", "chat", "upload"):
        rows = [r for r in records if r["kind"] == kind]
        if not rows:
            continue
        ok = [r["ms"] for r in rows if r["status"] is not None and 200 <= r["status"] < 300]
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        summary["kinds"][kind] = {
            "requests": len(rows),
            "errors": len(rows) - len(ok),
            "per_s": round(len(ok) / wall, 2),
            "p50_ms": _r(percentile(ok, 50)),
            "p95_ms": _r(percentile(ok, 95)),
            "p99_ms": _r(percentile(ok, 99)),
            "max_ms": _r(max(ok) if ok else None),
            "statuses": statuses,
            "error_samples": sorted({r["error"] for r in rows if r["error"]})[:3],
        }
    summary["requests"] = len(records)
    summary["errors"] = sum(k["errors"] for k in summary["kinds"].values())
    summary["per_s"] = round(sum(k["per_s"] for k in summary["kinds"].values()), 2)
    summary["memory"] = memory
    if memory:
        summary["rss_mb_start"], summary["rss_mb_max"], summary["rss_mb_end"] = memory[0]["rss_mb"], max(m["rss_mb"] for m in memory), memory[-1]["rss_mb"]
    return summary


def _r(x):
    return None if x is None else round(x, 1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(kb_dirs: list[str], port: int, log_path: Path, max_new_tokens: int) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_LLM__MAX_NEW_TOKENS=str(max_new_tokens))
    cmd = [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "serve", "--port", str(port), "--no-ui"]
    for d in kb_dirs:
        cmd += ["--kb", d]
    log = open(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    limit = time.monotonic() + 600
    while time.monotonic() < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"kbqa serve exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("kbqa serve did not start within 600 s")


def render_md(result: dict, meta: dict) -> str:
    lines = [
        f"# Load test: {meta['name']}",
        "",
        f"`{meta['command']}` on {meta['machine']}, {meta['date']}; load average before {meta['loadavg_before']}, after {meta['loadavg_after']} "
        "(a shared 2-core machine: latencies are under contention from other work). Server: `kbqa serve` (one uvicorn worker, "
        f"SmolLM2-135M on CPU, max_new_tokens {meta['max_new_tokens']}); clients: {result['clients']} threads in a second process, "
        f"{result['duration_s']} s, an upload ingested during the run.",
        "",
        "| kind | requests | errors | ok/s | p50 ms | p95 ms | p99 ms | max ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, k in result["kinds"].items():
        lines.append(f"| {kind} | {k['requests']} | {k['errors']} | {k['per_s']} | {k['p50_ms']} | {k['p95_ms']} | {k['p99_ms']} | {k['max_ms']} | {k['statuses']} |")
    if result.get("memory"):
        lines += ["", f"Server RSS: start {result['rss_mb_start']} MB, max {result['rss_mb_max']} MB, end {result['rss_mb_end']} MB "
                  f"({len(result['memory'])} samples, 1 s apart; all in the JSON)."]
    for kind, k in result["kinds"].items():
        for e in k["error_samples"]:
            lines.append(f"- {kind} error: `{e}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server (default: start `kbqa serve` on the sample knowledge base)")
    p.add_argument("--kb-dir", help="knowledge base to serve (default: build one from data/sample in a temp folder)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--chat-every", type=int, default=5, help="every n-th request of a client is a chat completion (0: none)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.add_argument("--name", default="default")
    args = p.parse_args(argv)
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="kbqa-load-"))
    proc = None
    url, pid = args.url, None
    before = tuple(round(x, 1) for x in os.getloadavg())
    try:
        if not url:
            kb_dir = args.kb_dir
            if not kb_dir:
                kb_dir = str(tmp / "sample")
                subprocess.run([sys.executable, "-m", "kbqa.app.cli.ingest_main", str(ROOT / "data" / "sample"), "--kb", kb_dir, "--no-progress"],
                               check=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=subprocess.DEVNULL)
            port = _free_port()
            proc = _start_server([f"sample={kb_dir}", f"uploads={tmp / 'uploads'}"], port, tmp / "server.log", args.max_new_tokens)
            url, pid = f"http://127.0.0.1:{port}", proc.pid
        upload = ("upload_history.md", (ROOT / "data" / "sample" / "history.md").read_bytes() * 3)
        result = run_load(url, clients=args.clients, duration_s=args.duration, chat_every=args.chat_every, upload=upload,
                          upload_kb="uploads" if proc else None, server_pid=pid, request_timeout_s=args.timeout, max_tokens=args.max_new_tokens)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    meta = {
        "name": args.name,
        "command": "python bench/load_test.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg_before": before,
        "loadavg_after": tuple(round(x, 1) for x in os.getloadavg()),
        "max_new_tokens": args.max_new_tokens,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"load_{args.name}.json").write_text(json.dumps({"meta": meta, "result": result}, ensure_ascii=False, indent=2), encoding="utf-8")
    (RESULTS / f"load_{args.name}.md").write_text(render_md(result, meta), encoding="utf-8")
    print(render_md(result, meta))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
