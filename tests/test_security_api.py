"""The API's auth matrix against a real `kbqa serve` process on 127.0.0.1.

Keys: admin (rw everywhere), reader (r on "sample"), other (rw on "other" only), limited
(r on "sample", rate_limit = 2 requests a minute).
Checked: no key / wrong key -> 401 on every route, a read key writing -> 403, a key for
another knowledge base -> 403 (and that base is not listed), tokens never in the server's
log (for accepted and refused requests), tokens compared with hmac.compare_digest against
every key, per-key rate limits (429 with Retry-After), CORS off, upload names that can never
leave the knowledge base's uploads folder, sizes limited.
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

KEYS = {"admin": "admin-secret-token-0001", "reader": "reader-secret-token-0002", "other": "other-secret-token-0003", "limited": "limited-secret-token-0004"}
WRONG = ["admin-secret-token-0000", "x" * 5000, "Bearer admin-secret-token-0001", KEYS["admin"][:-1], KEYS["admin"].upper()]


@pytest.fixture(scope="module")
def serve(tmp_path_factory, sample_kb_dir):
    tmp = tmp_path_factory.mktemp("secure")
    keys = tmp / "keys.toml"
    keys.write_text(
        f'[[key]]\nname = "admin"\ntoken = "{KEYS["admin"]}"\nkbs = {{ "*" = "rw" }}\n\n'
        f'[[key]]\nname = "reader"\ntoken = "{KEYS["reader"]}"\nkbs = {{ sample = "r" }}\n\n'
        f'[[key]]\nname = "other"\ntoken = "{KEYS["other"]}"\nkbs = {{ other = "rw" }}\n\n'
        f'[[key]]\nname = "limited"\ntoken = "{KEYS["limited"]}"\nkbs = {{ sample = "r" }}\nrate_limit = 2\n',
        encoding="utf-8",
    )
    port = free_port()
    log = open(tmp / "server.log", "w+", encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_LLM__MAX_NEW_TOKENS="8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kbqa.app.cli.kbqa_main",
            "serve",
            "--kb",
            f"sample={sample_kb_dir}",
            "--kb",
            f"other={tmp / 'other-kb'}",
            "--port",
            str(port),
            "--keys",
            str(keys),
            "--no-ui",
            "--no-warm-up",
            "--max-upload-mb",
            "0.05",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
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
        yield url, tmp / "server.log", tmp / "other-kb"
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
    url, *_ = serve
    r = _call(url, method, path, None, **kwargs)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    for wrong in WRONG:
        r = _call(url, method, path, wrong, **kwargs)
        assert r.status_code == 401, (wrong[:30], r.text)
    r = _call(url, method, path, None, headers={"Authorization": f"Basic {KEYS['admin']}"}, **kwargs)
    assert r.status_code == 401


def test_read_key_cannot_write(serve):
    url, *_ = serve
    r = _call(url, "POST", "/v1/kbs/sample/documents", KEYS["reader"], **UPLOAD)
    assert r.status_code == 403 and "may not write" in r.json()["error"]["message"]
    r = _call(url, "DELETE", "/v1/kbs/sample/documents", KEYS["reader"], params={"source": "history.md"})
    assert r.status_code == 403
    r = _call(url, "GET", "/v1/kbs/sample/documents", KEYS["admin"])
    assert any(d["source"].endswith("history.md") for d in r.json()["documents"])  # nothing was deleted
    r = _call(url, "POST", "/v1/retrieve", KEYS["reader"], json={"kb": "sample", "query": "when did the railway open"})
    assert r.status_code == 200 and r.json()["results"]


def test_key_for_another_kb_is_refused_and_the_kb_hidden(serve):
    url, *_ = serve
    token = KEYS["other"]
    for method, path, kwargs in ROUTES[3:]:
        r = _call(url, method, path, token, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
    assert [m["id"] for m in _call(url, "GET", "/v1/models", token).json()["data"]] == ["other"]
    assert [k["name"] for k in _call(url, "GET", "/v1/kbs", token).json()["kbs"]] == ["other"]
    r = _call(url, "POST", "/v1/retrieve", KEYS["reader"], json={"kb": "other", "query": "anything"})
    assert r.status_code == 403


def test_uploads_are_sanitised_and_size_limited(serve):
    url, *_ = serve
    evil = {"files": [("files", ("../../../tmp/evil\x00name.md", b"# Evil\n\nThe depot cat is called Biscuit.\n", "text/markdown"))]}
    r = _call(url, "POST", "/v1/kbs/other/documents", KEYS["other"], **evil)
    assert r.status_code == 200, r.text
    name = r.json()["files"][0]["name"]
    assert "/" not in name and ".." not in name and "\x00" not in name
    big = {"files": [("files", ("big.md", b"a" * 200_000, "text/markdown"))]}
    r = _call(url, "POST", "/v1/kbs/other/documents", KEYS["other"], **big)
    assert r.status_code == 413


def test_cors_is_off_by_default(serve):
    url, *_ = serve
    r = _call(url, "GET", "/v1/models", KEYS["admin"], headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = _call(url, "OPTIONS", "/v1/retrieve", None, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_tokens_never_reach_the_log(serve):
    url, log_path, _ = serve
    for token in [*KEYS.values(), *WRONG[:1]]:
        _call(url, "GET", "/v1/models", token)
    text = log_path.read_text(encoding="utf-8")
    assert "GET /v1/models" in text  # the log is being written
    for token in [*KEYS.values(), WRONG[0]]:
        assert token not in text


def test_tokens_are_compared_in_constant_time_against_every_key(monkeypatch):
    """`KeyRing.lookup` compares with hmac.compare_digest, and against every key whether or not
    one matched, so neither the time per byte nor the number of comparisons tells a token apart."""
    import hmac

    from kbqa.app.server import auth

    ring = auth.KeyRing([auth.ApiKey(name, token, {"*": "r"}) for name, token in KEYS.items()])
    calls, real = [], hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    for token, name in [(KEYS["admin"], "admin"), (KEYS["limited"], "limited"), (WRONG[0], None), (WRONG[1], None)]:
        calls.clear()
        found = ring.lookup(token)
        assert (found.name if found else None) == name
        assert len(calls) == len(KEYS) and all(a == token.encode() for a, _ in calls)
    calls.clear()
    assert ring.login("admin", KEYS["admin"]) and calls  # the UI's login goes the same way
    assert not ring.login("reader", KEYS["admin"])


def test_tokens_never_logged_for_refused_requests_either(serve):
    url, log_path, _ = serve
    for method, path, kwargs in ROUTES:
        for token in [WRONG[0], WRONG[3], KEYS["other"]]:
            _call(url, method, path, token, **kwargs)
        _call(url, method, path, None, headers={"Authorization": f"Basic {KEYS['admin']}", "X-Api-Key": KEYS["reader"]}, **kwargs)
    _call(url, "POST", "/v1/chat/completions", KEYS["reader"], json={"model": "sample", "user": "alice", "messages": [{"role": "user", "content": "hi"}]})
    text = log_path.read_text(encoding="utf-8")
    assert "401" in text and "403" in text  # refusals are in the log
    for token in [*KEYS.values(), WRONG[0], WRONG[3]]:
        assert token not in text


def test_per_key_rate_limit_answers_429_with_retry_after(serve):
    url, *_ = serve
    replies = [_call(url, "GET", "/v1/models", KEYS["limited"]) for _ in range(6)]
    refused = [r for r in replies if r.status_code == 429]
    assert refused and {r.status_code for r in replies} <= {200, 429}
    assert replies[0].status_code == 200  # the first requests are within the burst
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1
        assert "limited" in r.json()["error"]["message"] and "rate limit" in r.json()["error"]["message"]
    others = [_call(url, "GET", "/v1/models", KEYS["reader"]).status_code for _ in range(6)]
    assert others == [200] * 6  # another key's bucket is its own


ESCAPES = [
    "../../../../tmp/escaped.md",
    "/etc/escaped.md",
    "..\\..\\escaped.md",
    "C:\\Windows\\Temp\\escaped.md",
    "sub/../../escaped.md",
    "....//....//escaped.md",
    "esc\x00aped.md",
    "..",
    "../",
    "\\\\server\\share\\escaped.md",
    "..／..／escaped.md",
    "%2e%2e%2fescaped.md",
]


@pytest.mark.parametrize("raw", ESCAPES, ids=[repr(e) for e in ESCAPES])
def test_an_upload_name_never_leaves_the_uploads_folder(raw, serve, tmp_path):
    url, _, other_kb = serve
    before = {p.resolve() for p in other_kb.parent.rglob("*")}
    body = f"# Note\n\nThe {len(raw)} depot cats of {raw!r} are asleep.\n".encode()
    r = _call(url, "POST", "/v1/kbs/other/documents", KEYS["other"], files=[("files", (raw, body, "text/markdown"))])
    assert r.status_code in (200, 422), r.text
    uploads = (other_kb / "uploads").resolve()
    new = {p.resolve() for p in other_kb.parent.rglob("*")} - before
    assert all(p.is_relative_to(other_kb.resolve()) for p in new), new  # nothing written outside the knowledge base
    assert all(p.parent == uploads for p in new if "escaped" in p.name), new
    if r.status_code == 200:
        name = r.json()["files"][0]["name"]
        assert not any(c in name for c in "/\\\x00") and not name.startswith(".") and (uploads / name).is_file()
    for outside in ("/tmp/escaped.md", "/etc/escaped.md", str(other_kb / "escaped.md"), str(other_kb.parent / "escaped.md")):
        assert not __import__("os").path.exists(outside)


def test_cors_preflight_is_refused_on_every_route(serve):
    url, *_ = serve
    for method, path, kwargs in ROUTES:
        r = _call(
            url,
            "OPTIONS",
            path,
            None,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "authorization"},
        )
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (path, dict(r.headers))
        r = _call(url, method, path, KEYS["admin"] if method == "GET" else None, headers={"Origin": "null"}, **({} if method == "GET" else kwargs))
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (path, dict(r.headers))
