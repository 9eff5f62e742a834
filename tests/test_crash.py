"""Crash safety: `ingest` killed with SIGKILL at several points, then run again.

After the next run every chunk is present exactly once (the store holds exactly the
ids a clean ingest of the same files produces) and manifest, vector store and BM25
index (read back from disk) agree; `kbqa doctor` finds nothing to repair.
The kill comes from a test-only hook (``KBQATEST_CRASH_AT=POINT:N`` in ingest/crash_hooks.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from kbqa.app.doctor import check
from kbqa.app.kb import KnowledgeBase
from kbqa.ingest.lock import KBLock, KBLockedError
from kbqa.ingest.manifest import Manifest
from kbqa.retrieval.bm25 import BM25Index
from tests.conftest import ROOT, SAMPLE

DOCS = ["history.md", "faq_zh.md", "timetable_and_fares.html", "safety_rules.txt", "stations_guide.pdf"]


@pytest.fixture(scope="module")
def crash_docs(tmp_path_factory):
    target = tmp_path_factory.mktemp("crash") / "docs"
    target.mkdir()
    for name in DOCS:
        shutil.copy(SAMPLE / name, target / name)
    return target


@pytest.fixture(scope="module")
def reference_ids(crash_docs, settings, tmp_path_factory):
    """The chunk ids a clean, uninterrupted ingest of the same files produces."""
    kb = KnowledgeBase(tmp_path_factory.mktemp("reference") / "kb", settings)
    summary = kb.ingest([crash_docs])
    assert summary.ok, summary.render()
    ids = kb.store.all_ids()
    assert len(ids) == len(set(ids)) == summary.chunks_added
    return set(ids)


def _ingest_cli(docs, kb, crash_at=None, extra_env=None, remove=False):
    env = dict(os.environ, KBQA_INGEST__BATCH_CHUNKS="8", HF_HUB_OFFLINE="1")
    env.pop("KBQATEST_CRASH_AT", None)
    if crash_at:
        env["KBQATEST_CRASH_AT"] = crash_at
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "kbqa.app.cli.ingest_main", str(docs), "--kb", str(kb), "--json", "--no-progress"]
    if remove:
        cmd.insert(3, "--remove")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def _assert_consistent(kb_path, expected_ids, settings):
    """The invariants, read back from disk by fresh objects."""
    kb = KnowledgeBase(kb_path, settings)
    manifest = Manifest(kb_path / "manifest.sqlite")
    manifest_ids = [i for r in manifest.all() for i in r.chunk_ids]
    manifest.close()
    store_ids = kb.store.all_ids()
    bm25_ids = BM25Index(kb_path / "bm25").ids()
    assert len(manifest_ids) == len(set(manifest_ids)), "a chunk id recorded twice in the manifest"
    assert len(store_ids) == len(set(store_ids)) == kb.store.count()
    assert set(manifest_ids) == set(store_ids) == bm25_ids == expected_ids
    report = check(kb_path, settings)
    assert report.ok, report.problems
    assert report.chunks == len(expected_ids)
    return report


def _killed(result):
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-2000:])


CRASH_POINTS = [
    pytest.param("parsed:2", marks=pytest.mark.slow),  # while files are being parsed, before anything is stored
    "after_upsert:2",  # a document's chunks in the store, not yet in the manifest
    "keyword_save:1",  # everything stored, the BM25 file being written (a torn temp file left)
    pytest.param("after_manifest:3", marks=pytest.mark.slow),  # recorded, BM25 not yet updated
    pytest.param("after_upsert:4", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_killed_ingest_is_finished_by_the_next_run(crash_at, crash_docs, reference_ids, tmp_path, settings):
    kb = tmp_path / "kb"
    _killed(_ingest_cli(crash_docs, kb, crash_at))
    if crash_at.startswith("keyword_save"):
        assert list((kb / "bm25").glob(".tokens.json.*")), "the hook should leave a torn temp file"
        assert check(kb, settings).problems  # the doctor sees the damage before the next run
    summary = KnowledgeBase(kb, settings).ingest([crash_docs])
    assert summary.ok, summary.render()
    _assert_consistent(kb, reference_ids, settings)
    again = KnowledgeBase(kb, settings).ingest([crash_docs])
    assert again.chunks_added == 0 and again.count("unchanged") == len(DOCS)


def test_killed_replacement_and_doctor_repair(crash_docs, reference_ids, tmp_path, settings):
    """A changed document's re-ingest killed after its new version is recorded: `kbqa doctor --repair`
    (instead of another ingest) removes the old version's chunks and brings BM25 up to date."""
    docs = tmp_path / "docs"
    shutil.copytree(crash_docs, docs)
    kb = tmp_path / "kb"
    first = KnowledgeBase(kb, settings).ingest([docs])
    assert first.ok
    target = docs / "history.md"
    target.write_text(target.read_text(encoding="utf-8") + "\n\nIn 2026 the trust repainted the coaches violet.\n", encoding="utf-8")
    _killed(_ingest_cli(docs, kb, "after_manifest:1"))
    before = check(kb, settings)
    assert any("not in the manifest" in p for p in before.problems), before.problems
    doctor = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "doctor", "--kb", str(kb), "--repair", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert doctor.returncode == 0, doctor.stderr
    out = json.loads(doctor.stdout)
    assert out["problems"] == [] and out["repaired"] and out["documents"] == len(DOCS)
    reference = KnowledgeBase(tmp_path / "ref", settings)
    reference.ingest([docs])
    _assert_consistent(kb, set(reference.store.all_ids()), settings)
    kb_obj = KnowledgeBase(kb, settings)
    assert any("violet" in h.chunk.text for h in kb_obj.retrieve("what colour were the coaches repainted in 2026", 5))


@pytest.mark.slow
def test_killed_remove_leaves_no_orphans(crash_docs, tmp_path, settings):
    docs = tmp_path / "docs"
    shutil.copytree(crash_docs, docs)
    kb_path = tmp_path / "kb"
    KnowledgeBase(kb_path, settings).ingest([docs])
    _killed(_ingest_cli(docs / "history.md", kb_path, "after_manifest_delete:1", remove=True))
    assert check(kb_path, settings).problems  # orphans of the removed document
    (docs / "history.md").unlink()
    reference = KnowledgeBase(tmp_path / "ref", settings)
    reference.ingest([docs])
    summary = KnowledgeBase(kb_path, settings).ingest([docs])
    assert summary.chunks_added == 0
    _assert_consistent(kb_path, set(reference.store.all_ids()), settings)


def test_second_writer_waits_for_the_lock_then_runs(tmp_path, settings):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The Lanshan ferry leaves at nine.\n", encoding="utf-8")
    kb_path = tmp_path / "kb"
    holder = KBLock(kb_path)
    holder.acquire()
    waiting = threading.Event()

    import logging

    handler = logging.Handler()
    handler.emit = lambda record: waiting.set() if "locked by another process" in record.getMessage() else None
    logging.getLogger("kbqa.ingest.lock").addHandler(handler)
    try:

        def release():
            waiting.wait(300)
            holder.release()

        t = threading.Thread(target=release)
        t.start()
        summary = KnowledgeBase(kb_path, settings).ingest([docs])
        t.join()
    finally:
        logging.getLogger("kbqa.ingest.lock").removeHandler(handler)
    assert waiting.is_set()
    assert summary.ok and summary.count("added") == 1


def test_second_writer_gives_up_with_a_clear_error(tmp_path, settings):
    kb_path = tmp_path / "kb"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The Lanshan ferry leaves at nine.\n", encoding="utf-8")
    KnowledgeBase(kb_path, settings).ingest([docs])
    with KBLock(kb_path):
        impatient = settings.with_overrides({"ingest.lock_timeout_s": 0.3})
        with pytest.raises(KBLockedError, match=rf"being modified by another process \(pid {os.getpid()}\)"):
            KnowledgeBase(kb_path, impatient).ingest([docs])
        result = _ingest_cli(docs, kb_path, extra_env={"KBQA_INGEST__LOCK_TIMEOUT_S": "0.5"})
        assert result.returncode == 2
        assert "being modified by another process" in result.stderr and "ingest.lock_timeout_s" in result.stderr
    assert KnowledgeBase(kb_path, settings).ingest([docs]).count("unchanged") == 1
