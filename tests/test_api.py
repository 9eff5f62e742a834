"""The REST API through a real uvicorn server, with the official `openai` client and httpx.

Two knowledge bases: "sample" (the session's sample KB, read-only here) and "scratch"
(empty at start, for uploads). Three keys: admin (read-write everywhere), reader (read
"sample"), scratcher (read-write "scratch" only).
"""

from __future__ import annotations

import httpx
import openai
import pytest

from conftest import load_qa
from live_server import running

KEYS = {"admin": "admin-token-123456", "reader": "reader-token-123456", "scratcher": "scratch-token-123456"}
MAX_UPLOAD = 64 * 1024
QA = load_qa()
HISTORY_Q = next(q for q in QA if q["source"] == "history.md")
ZH_Q = next(q for q in QA if q["source"] == "faq_zh.md")


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings, sample_kb_dir):
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.server.auth import KeyRing, parse_keys_env
    from kbqa.app.service import QAService

    scratch = tmp_path_factory.mktemp("scratch-kb") / "kb"
    s = settings.with_overrides({"llm.max_new_tokens": 24})
    service = QAService.open([f"sample={sample_kb_dir}", f"scratch={scratch}"], s, max_upload_bytes=MAX_UPLOAD)
    service.warm_up()
    keyring = KeyRing(parse_keys_env(f"admin:{KEYS['admin']}:rw:*; reader:{KEYS['reader']}:r:sample; scratcher:{KEYS['scratcher']}:rw:scratch"))
    app = build_app(service, keyring, ServerConfig(max_upload_bytes=MAX_UPLOAD, ui=False))
    with running(app) as url:
        yield url


def client(server, who="admin") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEYS.get(who, who), max_retries=0, timeout=600)


def http(server, who: str | None = "admin") -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEYS.get(who, who)}"} if who else {}
    return httpx.Client(base_url=server, headers=headers, timeout=600)


# ---- chat ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain_answer(server):
    return client(server, "reader").chat.completions.create(model="sample", messages=[{"role": "user", "content": HISTORY_Q["query"]}], max_tokens=24)


def test_chat_answers_with_sources(plain_answer):
    message = plain_answer.choices[0].message
    assert message.role == "assistant" and message.content.strip()
    sources = message.model_extra["sources"]
    assert HISTORY_Q["source"] in [s["name"] for s in sources]
    assert {"source", "page", "score", "text", "chunk"} <= set(sources[0])
    assert plain_answer.model_extra["found"] is True
    assert plain_answer.model_extra["sources"] == sources


def test_chat_stream_gives_the_same_answer_token_by_token(server, plain_answer):
    # max_tokens 23, not the server's 24: generated now, not replayed from the answer cache
    stream = client(server, "reader").chat.completions.create(
        model="sample", messages=[{"role": "user", "content": HISTORY_Q["query"]}], max_tokens=23, stream=True
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) > 1
    assert plain_answer.choices[0].message.content.startswith("".join(pieces).strip())  # greedy: 23 tokens of the 24
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert [s["source"] for s in final.model_extra["sources"]] == [s["source"] for s in plain_answer.choices[0].message.model_extra["sources"]]


def test_chat_says_not_found_without_sources(server):
    from kbqa.retrieval.prompts import NOT_FOUND

    reply = client(server).chat.completions.create(
        model="sample", messages=[{"role": "user", "content": "What is the boiling point of liquid nitrogen in Kelvin?"}], max_tokens=24
    )
    assert reply.choices[0].message.content == NOT_FOUND["en"]
    assert reply.choices[0].message.model_extra["sources"] == []
    assert reply.model_extra["found"] is False


def test_chat_multi_turn_and_chinese(server):
    reply = client(server).chat.completions.create(
        model="sample",
        messages=[
            {"role": "system", "content": "ignored: the knowledge base's prompt is used"},
            {"role": "user", "content": HISTORY_Q["query"]},
            {"role": "assistant", "content": HISTORY_Q["response"]},
            {"role": "user", "content": [{"type": "text", "text": ZH_Q["query"]}]},
        ],
        max_tokens=8,
    )
    assert reply.choices[0].message.content.strip()
    assert ZH_Q["source"] in [s["name"] for s in reply.choices[0].message.model_extra["sources"]]


def test_models_lists_readable_knowledge_bases(server):
    assert [m.id for m in client(server, "reader").models.list()] == ["sample"]
    assert sorted(m.id for m in client(server, "admin").models.list()) == ["sample", "scratch"]


# ---- retrieval, health, metrics, schema ----------------------------------------------------
def test_retrieve_returns_scored_chunks(server):
    with http(server, "reader") as h:
        r = h.post("/v1/retrieve", json={"kb": "sample", "query": ZH_Q["query"], "k": 3, "mode": "bm25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["found"] and len(body["results"]) == 3
    assert body["results"][0]["name"] == ZH_Q["source"]
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_healthz_openapi_and_metrics(server):
    with http(server, None) as h:
        assert h.get("/healthz").json()["status"] == "ok"
        paths = h.get("/openapi.json").json()["paths"]
        assert {"/v1/chat/completions", "/v1/retrieve", "/v1/kbs/{kb}/documents", "/healthz", "/metrics"} <= set(paths)
        assert h.get("/metrics").status_code == 401
    with http(server, "reader") as h:
        h.get("/v1/kbs/sample/documents")
        text = h.get("/metrics").text
    assert 'kbqa_http_requests_total{method="GET",route="/v1/kbs/{kb}/documents",status="200"}' in text
    assert "kbqa_http_request_duration_seconds_bucket" in text


# ---- access control --------------------------------------------------------------------
def test_missing_or_wrong_key_is_401(server):
    with pytest.raises(openai.AuthenticationError):
        client(server, "not-a-key-at-all").models.list()
    with http(server, None) as h:
        r = h.post("/v1/retrieve", json={"kb": "sample", "query": "tunnels"})
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "who, method, path, kwargs",
    [
        ("reader", "POST", "/v1/kbs/sample/documents", {"files": {"files": ("a.md", b"# A\n\nsome text", "text/markdown")}}),
        ("reader", "DELETE", "/v1/kbs/sample/documents", {"params": {"source": "history.md"}}),
        ("reader", "GET", "/v1/kbs/scratch/documents", {}),
        ("scratcher", "POST", "/v1/retrieve", {"json": {"kb": "sample", "query": "tunnels"}}),
        ("scratcher", "POST", "/v1/kbs/sample/documents", {"files": {"files": ("a.md", b"# A\n\nsome text", "text/markdown")}}),
    ],
)
def test_rights_are_enforced_403(server, who, method, path, kwargs):
    with http(server, who) as h:
        r = h.request(method, path, **kwargs)
    assert r.status_code == 403, r.text
    assert who in r.json()["error"]["message"]


def test_openai_client_sees_403_for_another_kb(server):
    with pytest.raises(openai.PermissionDeniedError):
        client(server, "scratcher").chat.completions.create(model="sample", messages=[{"role": "user", "content": "hi"}])


def test_unknown_kb_is_404(server):
    with pytest.raises(openai.NotFoundError, match="no knowledge base named 'nope'"):
        client(server).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


# ---- bad requests ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, mentions",
    [
        ({"model": "sample"}, "messages: Field required"),
        ({"model": "sample", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "sample", "messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature: Input should be less than or equal to 2"),
        ({"model": "sample", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"model": "sample", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "must be the user's question"),
        ({"model": "sample", "messages": [{"role": "user", "content": "   "}]}, "the question is empty"),
        ({"model": "sample", "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n: 2 is not supported by this server"),
    ],
)
def test_bad_chat_requests_are_422_with_a_clear_message(server, body, mentions):
    with http(server) as h:
        r = h.post("/v1/chat/completions", json=body)
    assert r.status_code == 422
    assert mentions in r.json()["error"]["message"]


def test_openai_client_sees_422(server):
    with pytest.raises(openai.UnprocessableEntityError, match="temperature"):
        client(server).chat.completions.create(model="sample", messages=[{"role": "user", "content": "hi"}], temperature=3.5)


def test_bad_retrieve_is_422(server):
    with http(server) as h:
        r = h.post("/v1/retrieve", json={"kb": "sample", "query": "x", "k": 0, "mode": "fuzzy"})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "k: Input should be greater than or equal to 1" in message and "mode: Input should be" in message


# ---- documents ---------------------------------------------------------------------------
NEW_DOC = b"# The Emberfall Ferry\n\nThe Emberfall ferry crosses Lake Quillon every ninety minutes. Its captain is Odalys Penhallow.\n"


def test_upload_list_retrieve_delete(server, tmp_path_factory):
    with http(server, "scratcher") as h:
        r = h.post("/v1/kbs/scratch/documents", files={"files": ("../../etc/ferry notes.md", NEW_DOC, "text/markdown")})
        assert r.status_code == 200, r.text
        (result,) = r.json()["files"]
        assert result["name"] == "ferry notes.md" and result["status"] == "added" and result["chunks"] >= 1
        assert "/uploads/ferry notes.md" in result["source"]

        docs = h.get("/v1/kbs/scratch/documents").json()["documents"]
        assert [d["name"] for d in docs] == ["ferry notes.md"]
        assert docs[0]["chunks"] == result["chunks"] and docs[0]["ingested_at"] > 0

        found = h.post("/v1/retrieve", json={"kb": "scratch", "query": "Who is the captain of the Emberfall ferry?", "k": 1}).json()
        assert found["found"] and "Odalys Penhallow" in found["results"][0]["text"]

        r = h.delete("/v1/kbs/scratch/documents", params={"source": "ferry notes.md"})
        assert r.status_code == 200, r.text
        assert r.json()["removed"]["chunks_removed"] == result["chunks"]
        assert h.get("/v1/kbs/scratch/documents").json()["documents"] == []
        assert h.delete("/v1/kbs/scratch/documents", params={"source": "ferry notes.md"}).status_code == 404


@pytest.mark.parametrize(
    "name, data, content_type, status, mentions",
    [
        ("tool.exe", b"MZ\x90\x00", "application/octet-stream", 415, "unsupported file type '.exe'"),
        ("report.pdf", b"just some text, not a PDF", "application/pdf", 415, "does not look like a PDF"),
        ("notes.txt", b"\x00\x01\x02binary", "text/plain", 415, "content is binary"),
        ("photo.md", b"# hi", "image/png", 415, "not a document type"),
        ("big.txt", b"a" * (MAX_UPLOAD + 1), "text/plain", 413, "the limit is"),
        ("empty.md", b"", "text/markdown", 422, "file is empty"),
        ("...", b"text", "text/plain", 422, "file name is empty"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(server, name, data, content_type, status, mentions):
    with http(server, "scratcher") as h:
        r = h.post("/v1/kbs/scratch/documents", files={"files": (name, data, content_type)})
    assert r.status_code == status, r.text
    assert mentions in r.json()["error"]["message"]
    assert r.json()["files"][0]["status"] == "rejected"


def test_upload_without_files_is_422(server):
    with http(server, "scratcher") as h:
        r = h.post("/v1/kbs/scratch/documents", data={"nothing": "here"})
    assert r.status_code == 422 and "files: Field required" in r.json()["error"]["message"]


# ---- pure parts (no server) ----------------------------------------------------------
@pytest.mark.parametrize(
    "raw, safe",
    [
        ("../../etc/passwd.md", "passwd.md"),
        ("..\\..\\windows\\notes.TXT", "notes.txt"),
        (".hidden.md", "hidden.md"),
        ("a/b/c/报告 2024.md", "报告 2024.md"),
        ("evil\x00name;rm -rf.md", "evilname_rm -rf.md"),
    ],
)
def test_safe_name_strips_paths_and_unsafe_characters(raw, safe):
    from kbqa.app.uploads import safe_name

    assert safe_name(raw) == safe


def test_keys_parsing_errors_name_the_problem(tmp_path):
    from kbqa.app.server.auth import KeysError, load_keyring, parse_keys_env

    with pytest.raises(KeysError, match="rights must be 'r' or 'rw'"):
        parse_keys_env("bob:long-enough-token:admin:sample")
    with pytest.raises(KeysError, match="at least 8 characters"):
        parse_keys_env("bob:short:r:sample")
    with pytest.raises(KeysError, match="expected name:token:rights"):
        parse_keys_env("bob:long-enough-token")
    bad = tmp_path / "keys.toml"
    bad.write_text('[[key]]\nname = "x"\ntoken = "long-enough-token"\n', encoding="utf-8")
    with pytest.raises(KeysError, match="needs kbs"):
        load_keyring(bad, env={})
    with pytest.raises(KeysError, match="duplicate key names"):
        load_keyring(None, env={"KB_API_KEYS": "a:token-one-xx:r:*;a:token-two-xx:r:*"})


def test_keyring_lookup_and_rights():
    from kbqa.app.server.auth import KeyRing, parse_keys_env

    ring = KeyRing(parse_keys_env("ann:token-ann-xx:rw:docs;bob:token-bob-xx:r:*"))
    ann, bob = ring.lookup("token-ann-xx"), ring.lookup("token-bob-xx")
    assert ring.lookup("token-ann-x") is None and ring.lookup("") is None
    assert ann.can_write("docs") and not ann.can_read("other")
    assert bob.can_read("anything") and not bob.can_write("docs")
    assert ring.login("ann", "token-ann-xx") and not ring.login("bob", "token-ann-xx")


def test_without_keys_the_server_stays_on_loopback():
    from kbqa.app.cli.serve_cmd import choose_host
    from kbqa.app.server.auth import is_loopback

    assert choose_host("0.0.0.0", keys_enabled=False) == "127.0.0.1"
    assert choose_host(None, keys_enabled=False) == "127.0.0.1"
    assert choose_host("0.0.0.0", keys_enabled=True) == "0.0.0.0"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("10.1.2.3") and not is_loopback(None)


def test_metrics_render_prometheus_text():
    from kbqa.app.server.metrics import Metrics

    m = Metrics()
    m.observe("POST", "/v1/retrieve", 200, 0.03)
    m.observe("POST", "/v1/retrieve", 200, 3.0)
    m.answered("docs", False)
    text = m.render()
    assert 'kbqa_http_requests_total{method="POST",route="/v1/retrieve",status="200"} 2' in text
    assert 'kbqa_http_request_duration_seconds_bucket{method="POST",route="/v1/retrieve",le="0.05"} 1' in text
    assert 'kbqa_http_request_duration_seconds_bucket{method="POST",route="/v1/retrieve",le="+Inf"} 2' in text
    assert 'kbqa_answers_total{kb="docs",found="false"} 1' in text


def test_metrics_of_worker_processes_add_up(tmp_path):
    from kbqa.app.server.metrics import Metrics

    one, two = Metrics(tmp_path, worker="1"), Metrics(tmp_path, worker="2")  # as two `--workers` processes
    one.observe("POST", "/v1/retrieve", 200, 0.03)
    two.observe("POST", "/v1/retrieve", 200, 3.0)
    two.observe("GET", "/healthz", 200, 0.001)
    two.answered("docs", True)
    for m in (one, two):  # whichever worker answers /metrics gives the totals
        text = m.render()
        assert 'kbqa_http_requests_total{method="POST",route="/v1/retrieve",status="200"} 2' in text
        assert 'kbqa_http_request_duration_seconds_bucket{method="POST",route="/v1/retrieve",le="0.05"} 1' in text
        assert 'kbqa_http_requests_total{method="GET",route="/healthz",status="200"} 1' in text
        assert 'kbqa_answers_total{kb="docs",found="true"} 1' in text
    (tmp_path / "metrics-3.json").write_text("{not json", encoding="utf-8")  # a worker caught mid-write
    assert 'route="/v1/retrieve",status="200"} 2' in one.render()


def test_each_serve_worker_takes_the_max_pending_limit(tmp_path, monkeypatch):
    import json
    from dataclasses import asdict

    from kbqa.app.server import ServerConfig
    from kbqa.app.server.worker_app import SPEC_ENV, create_app_from_env

    spec = {
        "kbs": [str(tmp_path / "kb")],
        "settings": {},
        "keys": None,
        "config": asdict(ServerConfig(ui=False, metrics_dir=str(tmp_path))),
        "warm_up": False,
        "max_pending": 3,
    }
    monkeypatch.setenv(SPEC_ENV, json.dumps(spec))
    app = create_app_from_env()
    assert app.state.service.max_pending == 3
    assert app.state.metrics._shared == tmp_path
