"""The API's auth matrix against a real `kbqa serve` process on 127.0.0.1.

Keys: admin (rw everywhere), reader (r on "sample"), other (rw on "other" only).
Checked: no key / wrong key -> 401 on every route, a read key writing -> 403, a key for
another knowledge base -> 403 (and that base is not listed), tokens never in the server's
log, CORS off by default, upload names sanitised and sizes limited.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.live_server import free_port

KEYS = {"admin": "admin-secret-token-0001", "reader": "reader-secret-token-0002", "other": "other-secret-token-0003"}
WRONG = ["admin-secret-token-0000", "x" * 5000, "Bearer admin-secret-token-0001", KEYS["admin"][:-1], KEYS["admin"].upper()]


@pytest.fixture(scope="module")
def serve(tmp_path_factory, sample_kb_dir):
    tmp = tmp_path_factory.mktemp("secure")
    keys = tmp / "keys.toml"
    keys.write_text(
        f'[[key]]\nname = "admin"\ntoken = "{KEYS["admin"]}"\nkbs = {{ "*" = "rw" }}\n\n'
        f'[[key]]\nname = "reader"\ntoken = "{KEYS["reader"]}"\nkbs = {{ sample = "r" }}\n\n'
        f'[[key]]\nname = "other"\ntoken = "{KEYS["other"]}"\nkbs = {{ other = "rw" }}\n',
        encoding="utf-8",
    )
    port = free_port()
    log = open(tmp / "server.log", "w+", encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_LLM__MAX_NEW_TOKENS="8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "serve", "--kb", f"sample={sample_kb_dir}", "--kb", f"other={tmp / 'other-kb'}",
         "--port", str(port), "--keys", str(keys), "--no-ui", "--no-warm-up", "--max-upload-mb", "0.05"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:  # bounded by pytest's timeout; fails fast if the server exits
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"kbqa serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url, tmp / "server.log"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _call(url, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=300, **kwargs)


UPLOAD = {"files": [("files", ("note.md", b"# Note\n\nThe depot cat is called Biscuit.\n", "text/markdown"))]}
ROUTES = [
    ("GET", "/v1/models", {}),
    ("GET", "/v1/kbs", {}),
    ("GET", "/metrics", {}),
    ("POST", "/v1/retrieve", {"json": {"kb": "sample", "query": "when did the railway open"}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "sample", "messages": [{"role": "user", "content": "hi"}]}}),
    ("GET", "/v1/kbs/sample/documents", {}),
    ("POST", "/v1/kbs/sample/documents", UPLOAD),
    ("DELETE", "/v1/kbs/sample/documents", {"params": {"source": "history.md"}}),
]


@pytest.mark.parametrize("method,path,kwargs", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_no_key_and_wrong_keys_are_401(serve, method, path, kwargs):
    url, _ = serve
    r = _call(url, method, path, None, **kwargs)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    for wrong in WRONG:
        r = _call(url, method, path, wrong, **kwargs)
        assert r.status_code == 401, (wrong[:30], r.text)
    r = _call(url, method, path, None, headers={"Authorization": f"Basic {KEYS['admin']}"}, **kwargs)
    assert r.status_code == 401


def test_read_key_cannot_write(serve):
    url, _ = serve
    r = _call(url, "POST", "/v1/kbs/sample/documents", KEYS["reader"], **UPLOAD)
    assert r.status_code == 403 and "may not write" in r.json()["error"]["message"]
    r = _call(url, "DELETE", "/v1/kbs/sample/documents", KEYS["reader"], params={"source": "history.md"})
    assert r.status_code == 403
    r = _call(url, "GET", "/v1/kbs/sample/documents", KEYS["admin"])
    assert any(d["source"].endswith("history.md") for d in r.json()["documents"])  # nothing was deleted
    r = _call(url, "POST", "/v1/retrieve", KEYS["reader"], json={"kb": "sample", "query": "when did the railway open"})
    assert r.status_code == 200 and r.json()["results"]


def test_key_for_another_kb_is_refused_and_the_kb_hidden(serve):
    url, _ = serve
    token = KEYS["other"]
    for method, path, kwargs in ROUTES[3:]:
        r = _call(url, method, path, token, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
    assert [m["id"] for m in _call(url, "GET", "/v1/models", token).json()["data"]] == ["other"]
    assert [k["name"] for k in _call(url, "GET", "/v1/kbs", token).json()["kbs"]] == ["other"]
    r = _call(url, "POST", "/v1/retrieve", KEYS["reader"], json={"kb": "other", "query": "anything"})
    assert r.status_code == 403


def test_uploads_are_sanitised_and_size_limited(serve):
    url, _ = serve
    evil = {"files": [("files", ("../../../tmp/evil\x00name.md", b"# Evil\n\nThe depot cat is called Biscuit.\n", "text/markdown"))]}
    r = _call(url, "POST", "/v1/kbs/other/documents", KEYS["other"], **evil)
    assert r.status_code == 200, r.text
    name = r.json()["files"][0]["name"]
    assert "/" not in name and ".." not in name and "\x00" not in name
    big = {"files": [("files", ("big.md", b"a" * 200_000, "text/markdown"))]}
    r = _call(url, "POST", "/v1/kbs/other/documents", KEYS["other"], **big)
    assert r.status_code == 413


def test_cors_is_off_by_default(serve):
    url, _ = serve
    r = _call(url, "GET", "/v1/models", KEYS["admin"], headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = _call(url, "OPTIONS", "/v1/retrieve", None, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_tokens_never_reach_the_log(serve):
    url, log_path = serve
    for token in [*KEYS.values(), *WRONG[:1]]:
        _call(url, "GET", "/v1/models", token)
    text = log_path.read_text(encoding="utf-8")
    assert "GET /v1/models" in text  # the log is being written
    for token in [*KEYS.values(), WRONG[0]]:
        assert token not in text
