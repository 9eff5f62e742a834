"""Ingestion on real parts: packaged MiniLM, Chroma PersistentClient under tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kbqa.app.kb import KnowledgeBase
from kbqa.app.settings import Settings
from kbqa.retrieval.kbdir import EmbedderMismatchError
from tests.conftest import SAMPLE


def test_reingest_adds_nothing_and_counts_agree(tmp_path, docs_dir, settings):
    kb = KnowledgeBase(tmp_path / "kb", settings)
    first = kb.ingest([docs_dir])
    assert first.ok and first.count("added") == 7 and first.chunks_added > 20
    second = kb.ingest([docs_dir])
    assert second.chunks_added == 0 and second.count("unchanged") == 7
    assert kb.store.count() == first.chunks_added
    assert kb.keyword_index.ids() == set(kb.store.all_ids())


def test_changed_file_is_replaced_and_removed_file_removed(tmp_path, docs_dir, settings):
    kb = KnowledgeBase(tmp_path / "kb", settings)
    kb.ingest([docs_dir])
    before = kb.store.count()
    doc = docs_dir / "history.md"
    doc.write_text(doc.read_text(encoding="utf-8") + "\n\nIn 2026 the trust painted every coach violet-green.\n", encoding="utf-8")
    summary = kb.ingest([docs_dir])
    assert summary.count("replaced") == 1 and summary.count("unchanged") == 6
    assert summary.chunks_removed > 0 and summary.chunks_added > 0
    assert kb.store.count() == before - summary.chunks_removed + summary.chunks_added
    assert any("violet-green" in h.chunk.text for h in kb.retrieve("what colour were the coaches painted in 2026", 5))
    history_chunks = [d for d in kb.documents() if d["source"].endswith("history.md")][0]["chunks"]
    removed = kb.remove([doc])
    assert removed.count("removed") == 1 and removed.chunks_removed == history_chunks
    assert all(not h.chunk.source.endswith("history.md") for h in kb.retrieve("Hollis Wrenfield surveyed the route", 10))
    assert kb.keyword_index.ids() == set(kb.store.all_ids())


def test_bad_input_is_reported_and_the_rest_lands(tmp_path, settings):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Tea\n\nThe Lanshan tea harvest starts on 3 April each year.\n", encoding="utf-8")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "truncated.pdf").write_bytes((SAMPLE / "stations_guide.pdf").read_bytes()[:2000])
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (docs / "gbk.txt").write_bytes("山顶茶园每年四月三日开始采茶。".encode("gbk"))
    (docs / "notes.xyz").write_text("unsupported")
    empty_dir = tmp_path / "nothing-here"
    empty_dir.mkdir()
    kb = KnowledgeBase(tmp_path / "kb", settings)
    summary = kb.ingest([docs, empty_dir, tmp_path / "unsupported.xyz"])
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in summary.files}
    assert by_name["good.md"].status == "added"
    assert by_name["gbk.txt"].status == "added"
    assert by_name["empty.txt"].status == "failed" and "empty file" in by_name["empty.txt"].reason
    assert by_name["truncated.pdf"].status == "failed" and "PDF" in by_name["truncated.pdf"].reason
    assert by_name["binary.txt"].status == "failed" and "binary" in by_name["binary.txt"].reason
    assert by_name["notes.xyz"].status == "skipped" and "unsupported" in by_name["notes.xyz"].reason
    assert by_name["nothing-here"].status == "failed" and "no supported documents" in by_name["nothing-here"].reason
    assert by_name["unsupported.xyz"].status == "failed" and "no such file" in by_name["unsupported.xyz"].reason
    assert not summary.ok
    hits = kb.retrieve("采茶", 3)
    assert hits and hits[0].chunk.source.endswith("gbk.txt")


def test_knowledge_base_refuses_another_embedder(tmp_path, docs_dir, settings):
    KnowledgeBase(tmp_path / "kb", settings).ingest([docs_dir / "history.md"])
    other = Settings.load(env={}, overrides={"embedder.backend": "use", "embedder.model": "use-multilingual-v3"})
    with pytest.raises(EmbedderMismatchError, match="built with embedder sentence-transformers:all-MiniLM-L6-v2"):
        KnowledgeBase(tmp_path / "kb", other)


def test_interrupted_run_leaves_no_duplicates(tmp_path, docs_dir, settings):
    """Chunks written to the store but not recorded in the manifest are cleaned up by the next run."""
    kb = KnowledgeBase(tmp_path / "kb", settings)
    kb.ingest([docs_dir / "history.md"])
    record = kb.manifest.all()[0]
    kb.manifest.delete(record.key)  # as if the process died between store write and manifest write
    summary = kb.ingest([docs_dir / "history.md"])
    assert summary.count("added") == 1
    assert kb.store.count() == len(record.chunk_ids) == summary.chunks_added


def test_cli_json_twice_and_exit_codes(tmp_path):
    kb = tmp_path / "kb"
    cmd = [sys.executable, "-m", "kbqa.app.cli.ingest_main", str(SAMPLE / "history.md"), str(SAMPLE / "faq_zh.md"), "--kb", str(kb), "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["chunks_added"] > 0
    second = subprocess.run(cmd + [str(tmp_path / "missing.pdf")], capture_output=True, text=True, timeout=300)
    out = json.loads(second.stdout)
    assert out["chunks_added"] == 0 and out["unchanged"] == 2 and out["failed"] == 1
    assert second.returncode == 1
    assert any(f["status"] == "failed" and "missing.pdf" in f["path"] for f in out["files"])
