"""A short, bounded form of bench/load_test.py: every kind of request (retrieval, chat streamed
and not, document listing, uploads of real files) from concurrent clients with a read-only and a
read-write key, against a real uvicorn server on 127.0.0.1. It checks that every request is
answered (200, or 429/503 with Retry-After), that each accepted upload is listed once, and that
the run ends by itself (no latency thresholds)."""

from __future__ import annotations

import os

from bench.load_test import run_load, verify_uploads
from tests.live_server import running


def test_short_load_run_has_no_errors(tmp_path, settings, sample_kb_dir):
    from kbqa.app.doctor import check
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.server.auth import ApiKey, KeyRing
    from kbqa.app.service import QAService

    s = settings.with_overrides({"llm.max_new_tokens": 4})
    service = QAService.open([f"sample={sample_kb_dir}", f"uploads={tmp_path / 'uploads'}"], s)
    keys = KeyRing([ApiKey("ro", "read-only-key-0001", {"*": "r"}), ApiKey("rw", "read-write-key-0002", {"*": "rw"})])
    app = build_app(service, keys, ServerConfig(ui=False))
    with running(app) as url:
        result = run_load(
            url,
            clients=4,
            duration_s=8,
            ro_token="read-only-key-0001",
            rw_token="read-write-key-0002",
            server_pid=os.getpid(),
            max_tokens=4,
            request_timeout_s=300,
        )
        uploads = verify_uploads(url, "uploads", result["uploads_accepted"], "read-write-key-0002")
    assert result["errors"] == 0 and result["clients_hung"] == 0, result["kinds"]
    kinds = result["kinds"]
    assert kinds["retrieve"]["requests"] >= 1 and kinds["retrieve"]["p50_ms"] is not None
    assert set(kinds) <= {"retrieve", "chat", "chat_stream", "list", "upload"} and len(kinds) >= 3
    for k in kinds.values():
        assert set(k["statuses"]) <= {"200", "429", "503"}
    assert uploads["missing"] == [] and uploads["duplicated"] == [] and uploads["landed"] == len(service.documents("uploads"))
    assert result["samples"] and result["rss_mb_max"] >= result["rss_mb_start"] > 0
    if uploads["landed"]:
        assert check(tmp_path / "uploads", s).ok


def test_one_client_flooding_chat_does_not_starve_retrieval(tmp_path, settings, sample_kb_dir):
    """One client sends chat after chat (seeded, so none comes from the answer cache) on four
    connections at once; meanwhile another client's retrievals are all answered, and every chat
    is answered or refused with 503 and Retry-After (the answers' queue is bounded at 2)."""
    import threading

    import httpx

    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.service import QAService

    s = settings.with_overrides({"llm.max_new_tokens": 4})
    service = QAService.open([f"sample={sample_kb_dir}"], s, max_pending=2)
    app = build_app(service, None, ServerConfig(ui=False))
    done = threading.Event()
    chats: list[httpx.Response] = []

    def flood(n):
        with httpx.Client(timeout=300) as http:
            for i in range(200):
                if done.is_set():
                    return
                chats.append(
                    http.post(
                        f"{url}/v1/chat/completions",
                        json={"model": "sample", "seed": n * 1000 + i, "messages": [{"role": "user", "content": f"What does a return ticket cost? ({i})"}]},
                    )
                )

    with running(app) as url:
        flooders = [threading.Thread(target=flood, args=(n,)) for n in range(4)]
        for t in flooders:
            t.start()
        try:
            while len(chats) < 4:  # the flood is under way (bounded by pytest's timeout)
                threading.Event().wait(0.1)
            with httpx.Client(timeout=300) as http:
                retrievals = [http.post(f"{url}/v1/retrieve", json={"kb": "sample", "query": "when did the railway open"}) for _ in range(5)]
        finally:
            done.set()
            for t in flooders:
                t.join(300)
    assert [r.status_code for r in retrievals] == [200] * 5 and all(r.json()["results"] for r in retrievals)
    assert {r.status_code for r in chats} <= {200, 503}
    assert all(r.headers.get("retry-after") for r in chats if r.status_code == 503)
