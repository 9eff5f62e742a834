"""Reuse of embeddings for unchanged chunks (ingest/embed_cache.py, Ingestor._embed).

On real parts (packaged MiniLM, Chroma on disk), with a thin wrapper around the real
embedder that records which texts reach it; the cache's own logic on plain vectors.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from kbqa.app.kb import KnowledgeBase
from kbqa.app.settings import Settings
from kbqa.ingest.embed_cache import CACHE_FILE, EmbedCache, embedder_identity, text_key
from tests.conftest import ROOT, SAMPLE

OLD = "Wrenfield walked the mountain for eleven months"
NEW = "Wrenfield walked the mountain for twelve long months"


class Recording:
    """The real embedder, recording the texts it is asked to embed (optionally under another identity)."""

    def __init__(self, inner, identity: str | None = None):
        self.inner = inner
        self.seen: list[str] = []
        self._identity = identity

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def identity(self):
        return self._identity or self.inner.identity

    def embed_documents(self, texts):
        self.seen.extend(texts)
        return self.inner.embed_documents(texts)


@pytest.fixture()
def docs(tmp_path):
    target = tmp_path / "docs"
    target.mkdir()
    for name in ("history.md", "safety_rules.txt"):
        shutil.copy(SAMPLE / name, target / name)
    return target


def _kb(path, embedder, **ingest):
    ingest.setdefault("workers", 0)  # parse inline: no parser process to start per run
    settings = Settings.load(env={}, overrides={f"ingest.{k}": v for k, v in ingest.items()})
    kb = KnowledgeBase(path, settings)
    kb.embedder = embedder  # the cached_property's slot: every part of the kb uses this one
    return kb


def _texts(kb, source_suffix):
    record = next(r for r in kb.manifest.all() if r.source.endswith(source_suffix))
    return record.chunk_ids, [c.text for c in kb.store.get(record.chunk_ids)]


def _edit(path):
    text = path.read_text(encoding="utf-8")
    assert OLD in text
    path.write_text(text.replace(OLD, NEW), encoding="utf-8")


def test_changed_paragraph_embeds_only_its_chunks_and_reused_vectors_equal_fresh(tmp_path, docs, embedder):
    rec = Recording(embedder)
    kb = _kb(tmp_path / "kb", rec)
    first = kb.ingest([docs])
    assert first.ok and first.chunks_embedded == first.chunks_added == len(rec.seen) and first.chunks_reused == 0
    _, old_texts = _texts(kb, "history.md")

    _edit(docs / "history.md")
    rec.seen.clear()
    summary = kb.ingest([docs])
    assert summary.ok and summary.count("replaced") == 1 and summary.count("unchanged") == 1
    ids, new_texts = _texts(kb, "history.md")
    changed = [t for t in new_texts if t not in old_texts]
    assert 0 < len(changed) < len(new_texts)  # the edit touches some chunks, not all
    assert sorted(rec.seen) == sorted(changed)  # only the changed texts reached the embedder, once each
    assert summary.chunks_embedded == len(changed) and summary.chunks_reused == len(new_texts) - len(changed)
    assert f"({len(changed)} embedded, {summary.chunks_reused} reused)" in summary.render()
    assert summary.to_dict()["chunks_reused"] == summary.chunks_reused

    stored = kb.store.collection.get(ids=ids, include=["embeddings", "documents"])
    by_id = dict(zip(stored["ids"], np.asarray(stored["embeddings"], dtype=np.float32)))
    fresh = embedder.embed_documents(new_texts)
    for chunk_id, text, vector in zip(ids, new_texts, fresh):
        assert np.allclose(by_id[chunk_id], vector, atol=1e-5), text[:60]

    # the cache holds exactly the live chunks (old version's refs pruned at the end of the run)
    cache = EmbedCache(tmp_path / "kb" / CACHE_FILE)
    refs, vectors = cache.counts()
    assert refs == kb.store.count() and vectors <= refs
    cache.close()


def test_another_embedder_identity_never_reuses(tmp_path, docs, embedder):
    kb = _kb(tmp_path / "kb", Recording(embedder))
    kb.ingest([docs / "history.md"])
    _edit(docs / "history.md")
    other = Recording(embedder, identity=embedder.identity + "|another precision")
    kb.embedder = other
    summary = kb.ingest([docs / "history.md"])
    assert summary.ok and summary.chunks_reused == 0
    assert summary.chunks_embedded == summary.chunks_added == len(other.seen) > 0


def test_identity_names_what_changes_vectors():
    from kbqa.retrieval.embedders import make_embedder

    fp32 = make_embedder("sentence-transformers", "all-MiniLM-L6-v2", device="cpu", precision="fp32")
    int8 = make_embedder("sentence-transformers", "all-MiniLM-L6-v2", device="cpu", precision="int8")
    auto = make_embedder("sentence-transformers", "all-MiniLM-L6-v2", device="cpu")
    assert fp32.identity != int8.identity
    assert auto.identity == fp32.identity  # auto means fp32 on the CPU: the same vectors
    assert "all-MiniLM-L6-v2" in fp32.identity and fp32._model is None  # naming it loads nothing
    assert text_key(fp32.identity, "a") != text_key(int8.identity, "a") != text_key(fp32.identity, "b")
    assert embedder_identity(object()) is None  # an embedder that does not say is not cached


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, docs, embedder, caplog):
    kb = _kb(tmp_path / "kb", Recording(embedder))
    kb.ingest([docs])
    (tmp_path / "kb" / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    _edit(docs / "history.md")
    rec = Recording(embedder)
    kb.embedder = rec
    with caplog.at_level(logging.WARNING, logger="kbqa.ingest.embed_cache"):
        summary = kb.ingest([docs])
    assert summary.ok and summary.count("replaced") == 1
    assert summary.chunks_reused == 0 and summary.chunks_embedded == len(rec.seen) == summary.chunks_added
    assert any("unreadable" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    cache = EmbedCache(tmp_path / "kb" / CACHE_FILE)
    assert cache.counts()[0] == summary.chunks_added  # rebuilt, holding the chunks written since
    cache.close()


def test_removal_prunes_the_cache(tmp_path, docs, embedder):
    kb = _kb(tmp_path / "kb", Recording(embedder))
    kb.ingest([docs])
    cache = EmbedCache(tmp_path / "kb" / CACHE_FILE)
    before_refs, before_vectors = cache.counts()
    history_ids, _ = _texts(kb, "history.md")
    cache.close()
    kb.remove([docs / "history.md"])
    refs, vectors = cache.counts()
    assert refs == before_refs - len(history_ids) == kb.store.count()
    assert vectors < before_vectors
    live = {row[0] for row in cache._open().execute("SELECT chunk_id FROM refs")}
    assert live == set(kb.store.all_ids())
    cache.close()


def test_reuse_off_embeds_everything_and_writes_no_cache(tmp_path, docs, embedder):
    rec = Recording(embedder)
    kb = _kb(tmp_path / "kb", rec, reuse_embeddings=False)
    kb.ingest([docs / "history.md"])
    _edit(docs / "history.md")
    rec.seen.clear()
    summary = kb.ingest([docs / "history.md"])
    assert summary.chunks_reused == 0 and summary.chunks_embedded == summary.chunks_added == len(rec.seen)
    assert not (tmp_path / "kb" / CACHE_FILE).exists()


@pytest.mark.slow  # a subprocess loads MiniLM and Chroma again (about a minute); `make test-slow`
def test_run_killed_between_store_and_cache_is_finished_by_the_next(tmp_path, docs, embedder):
    """SIGKILL after a changed document's chunks went into the store, before its vectors
    were cached: the next run reconciles, reuses what the cache holds and ends consistent."""
    kb_path = tmp_path / "kb"
    kb = _kb(kb_path, Recording(embedder))
    kb.ingest([docs])
    _edit(docs / "history.md")
    with (docs / "safety_rules.txt").open("a", encoding="utf-8") as handle:
        handle.write("\nRule 99: passengers may not feed the summit goats.\n")
    env = dict(os.environ, KBQA_INGEST__BATCH_CHUNKS="1", KBQA_INGEST__WORKERS="0", KBQATEST_CRASH_AT="after_upsert:2")
    killed = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.ingest_main", str(docs), "--kb", str(kb_path), "--json", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    rec = Recording(embedder)
    kb = _kb(kb_path, rec)
    summary = kb.ingest([docs])
    assert summary.ok and summary.count("unchanged") == 1 and summary.count("replaced") == 1  # history landed before the kill
    assert 0 < summary.chunks_embedded == len(rec.seen) and summary.chunks_reused > 0
    ids = set(kb.store.all_ids())
    cache = EmbedCache(kb_path / CACHE_FILE)
    assert {row[0] for row in cache._open().execute("SELECT chunk_id FROM refs")} == ids == kb.manifest.all_chunk_ids()
    cache.close()
    stored = kb.store.collection.get(ids=sorted(ids), include=["embeddings", "documents"])
    fresh = embedder.embed_documents(stored["documents"])
    assert np.allclose(np.asarray(stored["embeddings"], dtype=np.float32), fresh, atol=1e-5)


# ---- the cache on its own (pure logic, plain vectors) ---------------------------------


def _vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_cache_round_trip_dimension_check_and_prune(tmp_path, caplog):
    cache = EmbedCache(tmp_path / CACHE_FILE)
    keys = [text_key("fake/1", t) for t in ("alpha", "beta", "gamma")]
    cache.put([("c1", keys[0], _vec(1)), ("c2", keys[1], _vec(2)), ("c3", keys[1], _vec(2))])
    found = cache.lookup(keys, 8)
    assert set(found) == set(keys[:2]) and np.array_equal(found[keys[0]], _vec(1))
    with caplog.at_level(logging.WARNING, logger="kbqa.ingest.embed_cache"):
        assert cache.lookup(keys, 16) == {}  # stored with dimension 8: never handed out as 16
    assert "did not have dimension 16" in caplog.text
    assert cache.prune({"c1", "c3"}) == 1 and cache.counts() == (2, 2)  # beta still referred to by c3
    assert cache.prune({"c1"}) == 1 and cache.counts() == (1, 1)
    cache.end_run()


def test_cache_of_another_schema_version_is_rebuilt(tmp_path):
    path = tmp_path / CACHE_FILE
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE vectors (key TEXT)")
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    cache = EmbedCache(path)
    key = text_key("fake/1", "alpha")
    cache.put([("c1", key, _vec(1))])
    assert cache.rebuilt == 1 and np.array_equal(cache.lookup([key], 8)[key], _vec(1))
    cache.end_run()


def test_unopenable_cache_is_turned_off_for_the_run(tmp_path, caplog):
    (tmp_path / CACHE_FILE).mkdir()  # a directory where the file should be: cannot be opened, must not be deleted
    cache = EmbedCache(tmp_path / CACHE_FILE)
    with caplog.at_level(logging.WARNING, logger="kbqa.ingest.embed_cache"):
        assert cache.lookup([text_key("fake/1", "a")], 8) == {}
    cache.put([("c1", text_key("fake/1", "a"), _vec(1))])  # quietly skipped: already off
    assert cache.disabled and "turned off" in caplog.text and (tmp_path / CACHE_FILE).is_dir()
    cache.end_run()
    assert cache.disabled is None
