"""Load test of `kbqa serve` from a second process on 127.0.0.1 (issue 22, item 1).

32 concurrent clients for 5 minutes by default: chat (streamed and not), retrieval, document
listing and uploads of real files, half with a read-only and half with a read-write key. Every
request must get 200, or 429/503 with Retry-After, within the client's timeout: anything else
(another status, a 503 without Retry-After, a timeout, a dropped connection, an error event in
a stream) is an error. Afterwards every upload answered 200 must be listed in the knowledge
base once, and `kbqa doctor` must be clean. Reported: p50/p95/p99 per kind, the share of
503s, the server's RSS (start, peak, end) and the load average.

    python bench/load_test.py                        # 32 clients, 300 s; starts its own server
    python bench/load_test.py --clients 4 --seconds 20 --name smoke
    python bench/load_test.py --soak 1800            # the 30-minute soak
    python bench/load_test.py --url http://127.0.0.1:8000 --ro-key R --rw-key W

Writes bench/results/load_<name>.{json,md}; exit 1 when the run fails the bar above.
`run_load(url, ...)` is the reusable part (tests/test_security_load.py runs a short form).
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


MIX = {"retrieve": 0.4, "chat": 0.15, "chat_stream": 0.15, "list": 0.15, "upload": 0.15}  # upload: read-write clients only
UPLOAD_SOURCES = ("history.md", "faq_zh.md", "safety_rules.txt", "timetable_and_fares.html")


def sample_uploads() -> list[tuple[str, bytes]]:
    """Real documents from data/sample (each upload gets a line of its own, or it would be a duplicate)."""
    return [(name, (ROOT / "data" / "sample" / name).read_bytes()) for name in UPLOAD_SOURCES if (ROOT / "data" / "sample" / name).is_file()]


def _outcome(r) -> tuple[int, str | None]:
    """(status, error or None): 200 is fine; 429/503 are fine with a Retry-After; all else is an error."""
    if r.status_code == 200:
        return 200, None
    if r.status_code in (429, 503) and r.headers.get("retry-after"):
        return r.status_code, None
    return r.status_code, f"HTTP {r.status_code}" + ("" if r.status_code not in (429, 503) else " without Retry-After") + f": {r.text[:150]}"


def _stream_outcome(r) -> tuple[int, str | None]:
    if r.status_code != 200:
        return _outcome(r)
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return 200, "stream ended without [DONE]"
    if any(e.startswith('{"error"') for e in events):
        return 200, "error event in the stream: " + next(e for e in events if e.startswith('{"error"'))[:150]
    return 200, None


def run_load(
    url: str,
    *,
    clients: int = 32,
    duration_s: float = 300.0,
    kb: str = "sample",
    upload_kb: str = "uploads",
    ro_token: str | None = None,
    rw_token: str | None = None,
    uploads: list[tuple[str, bytes]] | None = None,
    server_pid: int | None = None,
    request_timeout_s: float = 120.0,
    max_tokens: int = 16,
    seed: int = 0,
    mix: dict[str, float] | None = None,
) -> dict:
    """Drive the server for `duration_s` with `clients` threads (even ones hold the read-write key
    and upload, odd ones the read-only key); every request has a timeout, so the run ends by itself."""
    import httpx

    mix = dict(mix or MIX)
    uploads = uploads if uploads is not None else sample_uploads()
    records: list[dict] = []
    accepted: list[dict] = []  # uploads answered 200, checked in the knowledge base afterwards
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration_s
    samples: list[dict] = []
    stop = threading.Event()

    def record(kind: str, t0: float, status: int | None, error: str | None):
        with lock:
            records.append({"kind": kind, "t": round(t0 - started, 3), "ms": (time.monotonic() - t0) * 1000, "status": status, "error": error})

    def one(http, kind: str, n: int, i: int, rng) -> tuple[int, str | None]:
        q = rng.choice(QUESTIONS)
        if kind == "retrieve":
            return _outcome(http.post("/v1/retrieve", json={"kb": kb, "query": q, "k": 5}))
        if kind == "list":
            return _outcome(http.get(f"/v1/kbs/{kb}/documents"))
        if kind in ("chat", "chat_stream"):
            body = {
                "model": kb,
                "messages": [{"role": "user", "content": q}],
                "max_tokens": max_tokens,
                "stream": kind == "chat_stream",
                "seed": rng.randrange(2**31),
            }  # a seed: the answer cache does not answer it, every chat is worked out
            r = http.post("/v1/chat/completions", json=body)
            return _stream_outcome(r) if kind == "chat_stream" else _outcome(r)
        name, data = uploads[(n + i) % len(uploads)]
        stem, _, ext = name.rpartition(".")
        unique = f"load_c{n}_{i}_{stem}.{ext}"
        data = data + f"\n\nLoad test upload {unique}.\n".encode()
        r = http.post(f"/v1/kbs/{upload_kb}/documents", files=[("files", (unique, data, "text/plain"))])
        if r.status_code == 200:
            with lock:
                accepted.extend(r.json()["files"])
        return _outcome(r)

    def client(n: int):
        rng = random.Random(seed + n)
        writer = n % 2 == 0 and bool(uploads)
        token = rw_token if writer else ro_token
        kinds = [k for k in mix if writer or k != "upload"]
        weights = [mix[k] for k in kinds]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=url, headers=headers, timeout=request_timeout_s) as http:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                kind = rng.choices(kinds, weights)[0]
                t0 = time.monotonic()
                try:
                    status, error = one(http, kind, n, i, rng)
                except httpx.TimeoutException as exc:
                    status, error = None, f"no answer within {request_timeout_s:g} s ({type(exc).__name__})"
                except httpx.HTTPError as exc:
                    status, error = None, f"connection: {type(exc).__name__}: {exc}"[:200]
                record(kind, t0, status, error)

    def sampler():
        while not stop.is_set():
            row = {"t": round(time.monotonic() - started, 1), "load1": round(os.getloadavg()[0], 2)}
            mb = rss_mb(server_pid) if server_pid else None
            if mb is not None:
                row["rss_mb"] = round(mb, 1)
            samples.append(row)
            stop.wait(1.0)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    mem_thread = threading.Thread(target=sampler, daemon=True)
    mem_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + request_timeout_s + 600)
    hung = sum(t.is_alive() for t in threads)
    stop.set()
    mem_thread.join(5)
    summary = _summarise(records, time.monotonic() - started, clients, duration_s, samples)
    summary["clients_hung"] = hung
    summary["uploads_accepted"] = accepted
    return summary


def _summarise(records: list[dict], wall: float, clients: int, duration_s: float, samples: list[dict]) -> dict:
    summary: dict = {"clients": clients, "duration_s": duration_s, "wall_s": round(wall, 1), "kinds": {}}
    for kind in (*MIX, *sorted({r["kind"] for r in records} - set(MIX))):
        rows = [r for r in records if r["kind"] == kind]
        if not rows:
            continue
        ok = [r["ms"] for r in rows if r["status"] == 200 and not r["error"]]
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        summary["kinds"][kind] = {
            "requests": len(rows),
            "errors": sum(1 for r in rows if r["error"]),
            "per_s": round(len(ok) / wall, 2),
            "p50_ms": _r(percentile(ok, 50)),
            "p95_ms": _r(percentile(ok, 95)),
            "p99_ms": _r(percentile(ok, 99)),
            "max_ms": _r(max(ok) if ok else None),
            "share_503": round(statuses.get("503", 0) / len(rows), 3),
            "statuses": statuses,
            "error_samples": sorted({r["error"] for r in rows if r["error"]})[:3],
        }
    summary["requests"] = len(records)
    summary["errors"] = sum(k["errors"] for k in summary["kinds"].values())
    summary["share_503"] = round(sum(k["statuses"].get("503", 0) for k in summary["kinds"].values()) / max(1, len(records)), 3)
    summary["per_s"] = round(sum(k["per_s"] for k in summary["kinds"].values()), 2)
    summary["samples"] = samples
    rss = [s["rss_mb"] for s in samples if "rss_mb" in s]
    if rss:
        summary["rss_mb_start"], summary["rss_mb_max"], summary["rss_mb_end"] = rss[0], max(rss), rss[-1]
    loads = [s["load1"] for s in samples]
    if loads:
        summary["load1_min"], summary["load1_max"] = min(loads), max(loads)
    return summary


def verify_uploads(url: str, upload_kb: str, accepted: list[dict], token: str | None) -> dict:
    """Every upload answered 200 (added, replaced or unchanged) is listed in the knowledge base, once."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    listed = httpx.get(f"{url}/v1/kbs/{upload_kb}/documents", headers=headers, timeout=300).json()["documents"]
    names = [d["name"] for d in listed]
    landed = [f for f in accepted if f["status"] in ("added", "replaced", "unchanged")]
    missing = sorted({f["name"] for f in landed} - set(names))
    duplicated = sorted({n for n in names if names.count(n) > 1})
    return {
        "accepted": len(accepted),
        "landed": len(landed),
        "listed": len(listed),
        "missing": missing,
        "duplicated": duplicated,
        "other_statuses": sorted({f["status"] for f in accepted} - {"added", "replaced", "unchanged"}),
    }


def doctor(kb_dir: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "doctor", "--kb", kb_dir, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        timeout=600,
    )
    try:
        return {"exit": out.returncode, **json.loads(out.stdout)}
    except json.JSONDecodeError:
        return {"exit": out.returncode, "problems": [out.stderr[-500:]]}


def _r(x):
    return None if x is None else round(x, 1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RO_TOKEN, RW_TOKEN = "load-test-read-only-key", "load-test-read-write-key"


def _keys_file(path: Path) -> Path:
    path.write_text(
        f'[[key]]\nname = "ro"\ntoken = "{RO_TOKEN}"\nkbs = {{ "*" = "r" }}\n\n[[key]]\nname = "rw"\ntoken = "{RW_TOKEN}"\nkbs = {{ "*" = "rw" }}\n',
        encoding="utf-8",
    )
    return path


def _start_server(kb_dirs: list[str], port: int, log_path: Path, max_new_tokens: int, keys: Path, extra: list[str]) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_LLM__MAX_NEW_TOKENS=str(max_new_tokens))
    cmd = [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "serve", "--port", str(port), "--no-ui", "--keys", str(keys), *extra]
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


def passed(result: dict) -> bool:
    """Item 1's bar: no error (429/503 with Retry-After count as handled), no hung client, every
    accepted upload listed once, and `kbqa doctor` clean on every served knowledge base."""
    check = result.get("uploads_check") or {}
    return (
        result["errors"] == 0
        and not result.get("clients_hung")
        and not check.get("missing")
        and not check.get("duplicated")
        and all(d.get("exit") == 0 for d in result.get("doctor", {}).values())
    )


def render_md(result: dict, meta: dict) -> str:
    lines = [
        f"# Load test: {meta['name']}",
        "",
        f"`{meta['command']}` on {meta['machine']}, {meta['date']}. Load average (1 min) before {meta['loadavg_before']}, "
        f"during {result.get('load1_min')}-{result.get('load1_max')}, after {meta['loadavg_after']}. Server: `kbqa serve` (one uvicorn "
        f"worker, the packaged models on CPU, max_new_tokens {meta['max_new_tokens']}, --max-pending {meta['max_pending']}); "
        f"{result['clients']} client threads in a second process for {result['duration_s']:g} s, half with a read-write key "
        "(which also upload real files from data/sample), half with a read-only key. Chat requests carry a seed, so none "
        "is answered from the answer cache.",
        "",
        f"**{'PASS' if passed(result) else 'FAIL'}**: {result['requests']} requests, {result['errors']} errors, "
        f"{result.get('clients_hung', 0)} clients hung, 503 share {result['share_503']:.1%}.",
        "",
        "| kind | requests | errors | ok/s | p50 ms | p95 ms | p99 ms | max ms | 503 share | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, k in result["kinds"].items():
        lines.append(
            f"| {kind} | {k['requests']} | {k['errors']} | {k['per_s']} | {k['p50_ms']} | {k['p95_ms']} | {k['p99_ms']} | "
            f"{k['max_ms']} | {k['share_503']:.1%} | {k['statuses']} |"
        )
    lines.append("")
    if "rss_mb_start" in result:
        lines.append(
            f"Server RSS: start {result['rss_mb_start']} MB, peak {result['rss_mb_max']} MB, end {result['rss_mb_end']} MB "
            f"(sampled every second; all samples in the JSON)."
        )
    check = result.get("uploads_check")
    if check:
        lines.append(
            f"Uploads: {check['accepted']} answered 200, {check['landed']} stored, {check['listed']} listed afterwards; "
            f"missing {check['missing'] or 'none'}, listed twice {check['duplicated'] or 'none'}."
        )
    for name, d in result.get("doctor", {}).items():
        lines.append(
            f"`kbqa doctor` on {name}: exit {d.get('exit')}, {d.get('documents')} documents, {d.get('chunks')} chunks, problems {d.get('problems') or 'none'}."
        )
    for kind, k in result["kinds"].items():
        for e in k["error_samples"]:
            lines.append(f"- {kind} error: `{e}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server (default: start `kbqa serve` on the sample knowledge base)")
    p.add_argument("--kb-dir", help="knowledge base to serve (default: build one from data/sample in a temp folder)")
    p.add_argument("--ro-key", default=None, help="with --url: the read-only key (default: none)")
    p.add_argument("--rw-key", default=None, help="with --url: the read-write key (default: none)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", "--duration", dest="seconds", type=float, default=300.0, help="how long to run (default 300)")
    p.add_argument("--soak", type=float, metavar="SECONDS", help="a soak run of this length (e.g. 1800), named 'soak' unless --name is given")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--max-pending", type=int, default=8, help="the server's --max-pending")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.add_argument("--name", default=None, help="results go to bench/results/load_NAME.{json,md} (default: NclientsXs)")
    args = p.parse_args(argv)
    if args.soak:
        args.seconds = args.soak
    name = args.name or ("soak" if args.soak else f"{args.clients}clients_{args.seconds:g}s")
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="kbqa-load-"))
    proc = None
    url, pid, ro, rw = args.url, None, args.ro_key, args.rw_key
    before = tuple(round(x, 2) for x in os.getloadavg())
    kb_dirs: dict[str, str] = {}
    try:
        if not url:
            kb_dir = args.kb_dir
            if not kb_dir:
                kb_dir = str(tmp / "sample")
                subprocess.run(
                    [sys.executable, "-m", "kbqa.app.cli.ingest_main", str(ROOT / "data" / "sample"), "--kb", kb_dir, "--no-progress"],
                    check=True,
                    cwd=ROOT,
                    env=dict(os.environ, HF_HUB_OFFLINE="1"),
                    stdout=subprocess.DEVNULL,
                )
            kb_dirs = {"sample": kb_dir, "uploads": str(tmp / "uploads")}
            port = _free_port()
            proc = _start_server(
                [f"{k}={v}" for k, v in kb_dirs.items()],
                port,
                tmp / "server.log",
                args.max_new_tokens,
                _keys_file(tmp / "keys.toml"),
                ["--max-pending", str(args.max_pending)],
            )
            url, pid, ro, rw = f"http://127.0.0.1:{port}", proc.pid, RO_TOKEN, RW_TOKEN
        result = run_load(
            url,
            clients=args.clients,
            duration_s=args.seconds,
            ro_token=ro,
            rw_token=rw,
            server_pid=pid,
            request_timeout_s=args.timeout,
            max_tokens=args.max_new_tokens,
        )
        result["uploads_check"] = verify_uploads(url, "uploads", result.pop("uploads_accepted"), rw)
        result["doctor"] = {k: doctor(v) for k, v in kb_dirs.items()}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    meta = {
        "name": name,
        "command": "python bench/load_test.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg_before": before,
        "loadavg_after": tuple(round(x, 2) for x in os.getloadavg()),
        "max_new_tokens": args.max_new_tokens,
        "max_pending": args.max_pending,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"load_{name}.json").write_text(json.dumps({"meta": meta, "result": result}, ensure_ascii=False, indent=2), encoding="utf-8")
    (RESULTS / f"load_{name}.md").write_text(render_md(result, meta), encoding="utf-8")
    print(render_md(result, meta))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
