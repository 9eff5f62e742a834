"""Scale-out: knowledge bases whose vectors live on a Chroma server (`chroma run`), shared
by several workers. The store contract itself runs against the server in
test_store_contract.py (`chroma_server_factory`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from chroma_server import chroma_server
from conftest import ROOT, SAMPLE
from live_server import free_port

QUESTION = "How much is an adult return ticket for the whole line?"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with chroma_server(tmp_path_factory.mktemp("chroma-server") / "data") as url:
        yield url


@pytest.fixture(scope="module")
def server_kb(server_url, settings, tmp_path_factory):
    """The sample documents ingested into a knowledge base whose vectors live on the server."""
    from kbqa.app.kb import KnowledgeBase

    s = settings.with_overrides({"store.chroma_url": server_url})
    kb_dir = tmp_path_factory.mktemp("server-kbs") / "railway"
    summary = KnowledgeBase(kb_dir, s).ingest([SAMPLE])
    assert summary.ok, summary.render()
    return kb_dir, s


def test_knowledge_bases_keep_their_vectors_on_the_server(server_kb, server_url, tmp_path):
    import chromadb

    from kbqa.app.kb import KnowledgeBase

    kb_dir, s = server_kb
    assert not (kb_dir / "chroma").exists()  # the vectors went to the server, not to disk here
    KnowledgeBase(tmp_path / "other", s).ingest([SAMPLE / "history.md"])
    client = chromadb.HttpClient(host="127.0.0.1", port=int(server_url.rsplit(":", 1)[1]))
    counts = {c.name: c.count() for c in client.list_collections()}
    second_worker = KnowledgeBase(kb_dir, s)  # another KnowledgeBase on the same directory and server
    assert counts["kbqa-railway"] == second_worker.store.count() > counts["kbqa-other"] > 0
    hits = second_worker.retrieve(QUESTION, 3, "dense")
    assert hits[0].chunk.source.endswith("timetable_and_fares.html")


@pytest.mark.slow
def test_serve_workers_share_a_knowledge_base_on_a_chroma_server(server_kb, tmp_path):
    from kbqa.app.kb import KnowledgeBase

    kb_dir, s = server_kb
    server_url = s.store.chroma_url
    # more workers: `kbqa serve --workers 2` in another process, on the same directory and server
    port = free_port()
    env = dict(os.environ, KBQA_STORE__CHROMA_URL=server_url, KBQA_CACHE_DIR=str(s.cache_dir), HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "kbqa.app.cli.kbqa_main",
        "serve",
        "--kb",
        f"railway={kb_dir}",
        "--port",
        str(port),
        "--workers",
        "2",
        "--no-ui",
        "--no-warm-up",
    ]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, tmp_path / "serve.log")
        assert len(_children(proc.pid)) >= 2, "expected two uvicorn worker processes"
        body = {"kb": "railway", "query": QUESTION, "k": 3, "mode": "dense"}
        with httpx.Client(base_url=url, timeout=600) as http:
            answers = [http.post("/v1/retrieve", json=body) for _ in range(3)]
            # whichever worker answers, /metrics counts every worker's requests
            counted = [http.get("/metrics").text for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    for text in counted:
        assert 'kbqa_http_requests_total{method="POST",route="/v1/retrieve",status="200"} 3' in text, text
    expected = [h.as_source() for h in KnowledgeBase(kb_dir, s).retrieve(QUESTION, 3, "dense")]
    assert expected[0]["source"].endswith("timetable_and_fares.html")
    for answer in answers:
        assert answer.status_code == 200, answer.text
        got = answer.json()["results"]
        assert [(r["source"], r["chunk"]) for r in got] == [(e["source"], e["chunk"]) for e in expected]
        assert [r["score"] for r in got] == pytest.approx([e["score"] for e in expected], abs=1e-5)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _wait_healthy(url: str, proc, log_path, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kbqa serve exited with {proc.returncode}: {log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"kbqa serve did not answer within {timeout_s:.0f} s: {log_path.read_text(errors='replace')[-3000:]}")


def test_doctor_checks_the_knowledge_base_on_the_chroma_server(server_kb):
    from kbqa.app.doctor import check
    from kbqa.app.kb import KnowledgeBase

    kb_dir, s = server_kb
    report = check(kb_dir, s)  # the collection named after the directory, not the embedded default
    assert report.problems == [], report.problems
    assert report.chunks == KnowledgeBase(kb_dir, s).store.count() > 0 and report.documents > 0
