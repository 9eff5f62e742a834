"""Faults, each with real processes (issue 22, item 2):

- `kbqa serve` killed with SIGKILL while an upload is being ingested (the crash hook of
  ingest/crash_hooks.py kills the server itself at a chosen point): the restarted server
  reconciles, so no half document is left, and the retried upload gives exactly one copy.
- A full disk during ingest: a real one (a small tmpfs this test mounts; it is skipped where
  mounting is not allowed) and a simulated ENOSPC at the point between the vector store and
  the manifest (``KBQATEST_FAIL_AT``). The failure names the file and the reason, the
  knowledge base keeps its earlier state, `kbqa doctor` is clean, and after space is freed the
  next run completes.
- Damaged files (manifest, BM25 index, embedding cache, vector store): `kbqa doctor` names
  the part; `--repair` rebuilds it from the others or names what to ingest again.
- The `openai` LLM backend against a server that drops the connection mid-stream or goes
  quiet past the timeout: a clean error, no partial answer cached, the next request works.
  With the answer queue full of held answers, retrieval is still served.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from kbqa.app.doctor import check, run
from kbqa.app.kb import KnowledgeBase
from tests.conftest import ROOT, SAMPLE
from tests.misbehaving_llm import misbehaving_llm
from tests.serve_process import kbqa_serve

QUESTION = "When did the Lanshan Mountain Railway open?"


def _doctor(kb, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "doctor", "--kb", str(kb), "--json", *extra], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return result.returncode, json.loads(result.stdout)


def _ingest(paths, kb, env=None, timeout_s=300):
    """Run the ingest CLI. Past `timeout_s` it is sent SIGABRT (faulthandler is on), so that
    the failure shows where every thread of the stuck process was waiting."""
    import os

    full = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONFAULTHANDLER="1")
    full.update(env or {})
    args = [sys.executable, "-m", "kbqa.app.cli.ingest_main", *map(str, paths), "--kb", str(kb), "--json", "--no-progress"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=full) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"ingest of {[str(p) for p in paths]} still running after {timeout_s} s; its threads:\n{err[-6000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _upload(url, name, data):
    return httpx.post(f"{url}/v1/kbs/kb/documents", files=[("files", (name, data, "text/markdown"))], timeout=600)


# ---- the server killed mid-upload ---------------------------------------------------
# where the kill comes, and what the restarted server then holds: before the manifest the half
# document is deleted (the retry adds it); after it the document is whole (the retry finds it unchanged)
KILLS = [
    ("after_upsert:1", ["safety_rules.txt"], "added"),
    pytest.param("keyword_save:1", ["history.md", "safety_rules.txt"], "unchanged", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("crash_at,after_restart,retried", KILLS)
def test_server_killed_mid_upload_then_retry_gives_one_copy(crash_at, after_restart, retried, tmp_path, settings):
    kb = tmp_path / "kb"
    assert KnowledgeBase(kb, settings).ingest([SAMPLE / "safety_rules.txt"]).ok  # the earlier state
    data = (SAMPLE / "history.md").read_bytes()
    with kbqa_serve([f"kb={kb}"], tmp_path / "first.log", env={"KBQATEST_CRASH_AT": crash_at}) as served:
        with pytest.raises(httpx.TransportError):  # the server dies under the request: the connection drops
            _upload(served.url, "history.md", data)
        assert served.proc.wait(60) == -signal.SIGKILL
    assert check(kb, settings).problems, "the kill should have left a half-written document"
    with kbqa_serve([f"kb={kb}"], tmp_path / "second.log") as served:
        code, report = _doctor(kb)  # reconciled at start-up, before any upload
        assert code == 0 and report["problems"] == [] and report["documents"] == len(after_restart), report
        listed = httpx.get(f"{served.url}/v1/kbs/kb/documents", timeout=60).json()["documents"]
        assert sorted(d["name"] for d in listed) == after_restart
        retry = _upload(served.url, "history.md", data)
        assert retry.status_code == 200 and retry.json()["files"][0]["status"] == retried, retry.text
        again = _upload(served.url, "history.md", data)
        assert again.json()["files"][0]["status"] == "unchanged"
        listed = httpx.get(f"{served.url}/v1/kbs/kb/documents", timeout=60).json()["documents"]
    assert sorted(d["name"] for d in listed) == ["history.md", "safety_rules.txt"]
    reference = KnowledgeBase(tmp_path / "ref", settings)
    reference.ingest([SAMPLE / "safety_rules.txt", SAMPLE / "history.md"])
    code, report = _doctor(kb)
    assert code == 0 and report["problems"] == []
    assert report["chunks"] == reference.store.count() == sum(d["chunks"] for d in listed)


def test_server_sigkilled_from_outside_while_parsing_an_upload(tmp_path, settings):
    """The kill comes from outside while the upload's parser is still at work (it hangs on purpose,
    ``KBQATEST_PARSE_HANG``): the parser process dies with the server, the lock is free, and the
    restarted server takes the retried upload once."""
    import os
    import time

    kb = tmp_path / "kb"
    assert KnowledgeBase(kb, settings).ingest([SAMPLE / "safety_rules.txt"]).ok
    data = (SAMPLE / "history.md").read_bytes()
    with kbqa_serve([f"kb={kb}"], tmp_path / "first.log", env={"KBQATEST_PARSE_HANG": "history.md"}) as served:
        failed = []
        upload = threading.Thread(target=lambda: failed.append(pytest.raises(httpx.TransportError, _upload, served.url, "history.md", data)))
        upload.start()
        while not (kb / "uploads" / "history.md").is_file():  # saved: its ingest has begun (bounded by pytest's timeout)
            time.sleep(0.1)
        time.sleep(1.0)  # into the parser
        os.kill(served.proc.pid, signal.SIGKILL)
        assert served.proc.wait(60) == -signal.SIGKILL
        upload.join(60)
        assert failed  # the client saw the connection drop
    with kbqa_serve([f"kb={kb}"], tmp_path / "second.log", env={"KBQA_INGEST__LOCK_TIMEOUT_S": "20"}) as served:
        retry = _upload(served.url, "history.md", data)
        assert retry.status_code == 200 and retry.json()["files"][0]["status"] == "added", retry.text
        listed = httpx.get(f"{served.url}/v1/kbs/kb/documents", timeout=60).json()["documents"]
    assert sorted(d["name"] for d in listed) == ["history.md", "safety_rules.txt"]
    code, report = _doctor(kb)
    assert code == 0 and report["problems"] == [] and report["documents"] == 2


# ---- a full disk --------------------------------------------------------------------
def _big_doc(path, lines=700):
    import random

    rng = random.Random(7)
    words = ["rail", "cloud", "peak", "fare", "ticket", "train", "station", "luggage", "winter", "铁路", "车站"]
    path.write_text("\n".join(" ".join(rng.choice(words) + str(rng.randint(0, 99999)) for _ in range(12)) for _ in range(lines)), encoding="utf-8")
    return path


def _fill(mount, leave_bytes):
    filler = mount / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    with open(filler, "r+b") as out:
        out.truncate(max(0, size - leave_bytes))
    return filler


@pytest.fixture()
def small_tmpfs(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); the simulated ENOSPC test covers this")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow  # in CI's full run (not alone, not with its file) the second ingest has hung idle: see the issue note
def test_disk_full_during_ingest_on_a_small_tmpfs(small_tmpfs, tmp_path, settings):
    kb = small_tmpfs / "kb"
    first = _ingest([SAMPLE / "history.md"], kb)
    assert first.returncode == 0, first.stderr
    before = check(kb, settings)
    assert before.ok and before.documents == 1
    big = _big_doc(tmp_path / "big.md")
    filler = _fill(small_tmpfs, leave_bytes=96 * 1024)
    failed = _ingest([big], kb)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "big.md" in failed.stderr and ("disk is full" in failed.stderr or "No space left" in failed.stderr), failed.stderr
    after = check(kb, settings)  # the disk still full
    assert after.ok, after.problems
    assert (after.documents, after.chunks) == (before.documents, before.chunks)
    filler.unlink()
    done = _ingest([big], kb)
    assert done.returncode == 0, done.stderr
    final = check(kb, settings)
    assert final.ok and final.documents == 2 and final.chunks > before.chunks


def test_simulated_enospc_between_store_and_manifest(tmp_path, settings):
    """ENOSPC after the chunks reached the vector store, before the manifest: the chunks are taken
    back at once, so doctor is clean without a repair."""
    kb = tmp_path / "kb"
    assert _ingest([SAMPLE / "history.md"], kb).returncode == 0
    before = check(kb, settings)
    failed = _ingest([SAMPLE / "safety_rules.txt"], kb, env={"KBQATEST_FAIL_AT": "after_upsert"})
    assert failed.returncode == 1
    assert "safety_rules.txt" in failed.stderr and "No space left on device" in failed.stderr, failed.stderr
    after = check(kb, settings)
    assert after.ok, after.problems
    assert (after.documents, after.chunks) == (before.documents, before.chunks)
    assert _ingest([SAMPLE / "safety_rules.txt"], kb).returncode == 0
    assert check(kb, settings).documents == 2


# ---- damage on disk -----------------------------------------------------------------
@pytest.fixture(scope="module")
def built_kb(tmp_path_factory, settings):
    kb = tmp_path_factory.mktemp("damage") / "kb"
    assert KnowledgeBase(kb, settings).ingest([SAMPLE / "history.md", SAMPLE / "faq_zh.md"]).ok
    return kb


def _garble(path, n=4096):
    with open(path, "r+b") as f:
        f.write(b"\x13garbage, not this file's format" * (n // 32))


DAMAGE = {
    "manifest": (lambda kb: _garble(kb / "manifest.sqlite"), "manifest.sqlite is damaged", "rebuilt manifest.sqlite from the vector store"),
    "bm25": (lambda kb: (kb / "bm25" / "tokens.json").write_text('{"ids": [', encoding="utf-8"), "BM25 index unreadable", "BM25 index"),
    "embed_cache": (lambda kb: _garble(kb / "embed_cache.sqlite"), "embed_cache.sqlite is damaged", "deleted the damaged embedding cache"),
}


@pytest.mark.parametrize("part", list(DAMAGE))
def test_doctor_names_and_rebuilds_a_damaged_part(part, built_kb, tmp_path, settings):
    kb = tmp_path / "kb"
    shutil.copytree(built_kb, kb)
    healthy = check(kb, settings)
    damage, named, repaired = DAMAGE[part]
    damage(kb)
    report = run(kb, settings)
    assert any(named in p for p in report.problems), report.problems
    fixed = run(kb, settings, fix=True)
    assert fixed.ok, fixed.problems
    assert any(repaired in r for r in fixed.repaired), fixed.repaired
    assert (fixed.documents, fixed.chunks) == (healthy.documents, healthy.chunks)
    hits = KnowledgeBase(kb, settings).retrieve("when did the railway open", 3)
    assert hits and any("history" in h.chunk.source for h in hits)
    assert _ingest([SAMPLE / "history.md", SAMPLE / "faq_zh.md"], kb).returncode == 0  # and ingest works on it again
    assert check(kb, settings).ok


@pytest.mark.parametrize("backend,damaged", [("chroma", "chroma/chroma.sqlite3"), ("faiss", "faiss/store.sqlite")])
def test_damaged_vector_store_is_named_and_its_documents_listed_for_reingest(backend, damaged, tmp_path):
    kb = tmp_path / "kb"
    docs = [SAMPLE / "history.md", SAMPLE / "faq_zh.md"]
    assert _ingest(docs, kb, env={"KBQA_STORE__BACKEND": backend}).returncode == 0
    _garble(kb / damaged)
    code, report = _doctor(kb)
    assert code == 1 and any(f"vector store ({backend}/) is unreadable" in p for p in report["problems"]), report
    code, fixed = _doctor(kb, "--repair")
    assert code == 0 and fixed["problems"] == [] and fixed["documents"] == 0, fixed
    text = " ".join(fixed["repaired"])
    assert f"moved the damaged vector store {backend}/ aside" in text and (kb / f"{backend}.damaged").is_dir()
    assert "history.md" in text and "faq_zh.md" in text and "ingest it again" in text
    assert _ingest(docs, kb).returncode == 0  # the backend comes from kb.json
    code, report = _doctor(kb)
    assert code == 0 and report["documents"] == 2
    assert (kb / backend).is_dir()


def test_unreachable_chroma_server_is_named_and_repair_drops_nothing(built_kb, tmp_path):
    """A store on a Chroma server that does not answer is not damage on this disk: `--repair`
    refuses (exit 1) and the manifest keeps every document."""
    import os

    from tests.live_server import free_port

    kb = tmp_path / "kb"
    shutil.copytree(built_kb, kb)
    env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_STORE__CHROMA_URL=f"http://127.0.0.1:{free_port()}")
    for extra in ([], ["--repair"]):
        result = subprocess.run(
            [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "doctor", "--kb", str(kb), "--json", *extra],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=env,
        )
        assert result.returncode == 1, (result.stdout, result.stderr[-2000:])
        assert "Chroma server at http://127.0.0.1:" in result.stdout + result.stderr
    code, report = _doctor(kb)  # the local store again: nothing was dropped
    assert code == 0 and report["documents"] == 2


# ---- the LLM backend misbehaves -----------------------------------------------------
@pytest.fixture(scope="module")
def generative(tmp_path_factory, sample_kb_dir):
    tmp = tmp_path_factory.mktemp("llm-faults")
    env = {
        "KBQA_ANSWER__MODE": "generative",
        "KBQA_ANSWER__VERIFY": "false",
        "KBQA_LLM__BACKEND": "openai",
        "KBQA_LLM__MODEL": "m",
        "KBQA_LLM__ADAPTER": "base",
        "KBQA_LLM__TIMEOUT_S": "2",
        "KBQA_LLM__MAX_RETRIES": "0",
    }
    with misbehaving_llm() as llm:
        env["KBQA_LLM__BASE_URL"] = llm.url
        with kbqa_serve([f"sample={sample_kb_dir}"], tmp / "server.log", env=env, args=("--max-pending", "2")) as served:
            yield served, llm


def _chat(url, question, stream=False):
    body = {"model": "sample", "messages": [{"role": "user", "content": question}], "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def _events(response):
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


def test_stream_dropped_mid_answer_is_an_error_event_and_not_cached(generative):
    served, llm = generative
    question = "How long does the journey to Cloud Peak Summit take?"
    llm.mode, start = "drop", llm.requests
    r = _chat(served.url, question, stream=True)
    events = _events(r)
    assert r.status_code == 200 and events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert "error" in last and "broke off" in last["error"]["message"], last
    assert not any(json.loads(e).get("choices", [{}])[0].get("finish_reason") for e in events[:-2])
    llm.mode = "ok"
    r = _chat(served.url, question)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("The Lanshan Mountain Railway opened in 1898")
    assert llm.requests == start + 2  # asked again: the broken answer was not cached
    again = _chat(served.url, question)
    assert again.json()["choices"][0]["message"]["content"] == r.json()["choices"][0]["message"]["content"]
    assert llm.requests == start + 2  # the whole answer was


def test_backend_silent_past_the_timeout_is_a_clean_502_and_the_next_request_works(generative):
    served, llm = generative
    question = "What does a return ticket cost?"
    llm.mode, start = "stall", llm.requests
    r = _chat(served.url, question)
    assert r.status_code == 502 and "llm.timeout_s" in r.json()["error"]["message"], r.text
    llm.mode = "drop"
    r = _chat(served.url, question)
    assert r.status_code == 502 and "broke off" in r.json()["error"]["message"], r.text
    llm.mode = "ok"
    r = _chat(served.url, question, stream=True)
    assert r.status_code == 200 and not any('"error"' in e for e in _events(r)), r.text
    assert llm.requests == start + 3


def test_retrieval_is_served_while_the_answer_queue_is_full(generative):
    """Two answers held open by the backend fill the queue (--max-pending 2): a third chat gets
    503 with Retry-After at once, while retrieval and the document list are answered."""
    served, llm = generative
    llm.mode, llm.release = "hold", threading.Event()
    start = llm.requests
    results = []
    held = [
        threading.Thread(target=lambda q=q: results.append(_chat(served.url, q, stream=True)))
        for q in ("Can I bring my dog on the train?", "Who surveyed the route?")
    ]
    for t in held:
        t.start()
    try:
        while llm.requests < start + 2:  # both answers being generated (bounded by pytest's timeout)
            threading.Event().wait(0.1)
        busy = _chat(served.url, "Which stations do upward trains call at?")
        assert busy.status_code == 503 and busy.headers.get("retry-after"), busy.text
        r = httpx.post(f"{served.url}/v1/retrieve", json={"kb": "sample", "query": "luggage limit"}, timeout=60)
        assert r.status_code == 200 and r.json()["results"]
        assert httpx.get(f"{served.url}/v1/kbs/sample/documents", timeout=60).status_code == 200
        assert all(t.is_alive() for t in held)  # the held answers were still open meanwhile
    finally:
        llm.release.set()
        for t in held:
            t.join(120)
        llm.mode = "ok"
    assert [r.status_code for r in results] == [200, 200]
