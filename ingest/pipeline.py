"""The ingestion pipeline: discover, parse (in worker processes) and chunk, embed in
batches, store, record.

Crash safety. One writer at a time holds the knowledge base's lock. Each document
lands as a unit: its chunks are upserted (stable ids) into the vector store, then
the manifest records it (one SQLite transaction), then chunks of its old version are
deleted; the BM25 index follows in memory and is saved now and then and at the end.
The embedding cache (ingest/embed_cache.py) records the vectors of chunks that landed
and is pruned to the live chunks at the end of a run; it is only an optimisation, so
losing any of it costs embedding time, never correctness.
A run starts by reconciling the three (ingest/reconcile.py): chunks the manifest does not know are
deleted from the store and BM25, chunks it knows but BM25 lacks are added back from
the store's text, and a document whose chunks are missing from the store is dropped
from the manifest so that it is ingested again. So a run killed at any point
(SIGKILL included) is finished by the next one, every chunk present exactly once.
The crash tests kill the process at the `crash_point`s below (test-only, ingest/crash_hooks.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from kbqa.ingest.chunking import chunk_pages, content_hash
from kbqa.ingest.config import IngestSettings
from kbqa.ingest.crash_hooks import CRASH_ENV, crash_before_keyword_save, crash_point  # noqa: F401  (CRASH_ENV: its old home)
from kbqa.ingest.discover import discover
from kbqa.ingest.embed_cache import EmbedCache, embedder_identity, text_key
from kbqa.ingest.errors import LoadError
from kbqa.ingest.lock import KBLock
from kbqa.ingest.manifest import DocumentRecord, Manifest
from kbqa.ingest.reconcile import KeywordIndex, Reconciliation, reconcile  # noqa: F401  (imported from here: app/doctor.py)
from kbqa.ingest.summary import FileResult, IngestSummary, page_notes
from kbqa.ingest.workers import ParsePool, ParseTask, read_stable
from kbqa.retrieval.protocols import Embedder, VectorStore
from kbqa.retrieval.types import Chunk

log = logging.getLogger("kbqa.ingest")


@dataclass
class _Planned:
    path: Path
    key: str
    source: str
    old: DocumentRecord | None


@dataclass
class _Pending:
    result: FileResult
    key: str
    source: str
    doc_hash: str
    chunks: list[Chunk]
    pages: int
    size: int
    old_ids: list[str]


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


_DEFAULTS = IngestSettings()  # the settings' defaults (ingest/config.py), declared there only


class Ingestor:
    def __init__(
        self,
        manifest: Manifest,
        store: VectorStore,
        embedder: Embedder,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        keyword_index: KeywordIndex | None = None,
        progress: bool = True,
        batch_chunks: int = _DEFAULTS.batch_chunks,
        lock: KBLock | None = None,
        workers: int = _DEFAULTS.workers,
        file_timeout_s: float = _DEFAULTS.file_timeout_s,
        max_file_bytes: int | None = None,
        redact_pii: bool = _DEFAULTS.redact_pii,
        strip_injections: bool = _DEFAULTS.strip_injections,
        ocr: str = _DEFAULTS.ocr,
        ocr_dpi: int = _DEFAULTS.ocr_dpi,
        keyword_save_every_s: float = 30.0,
        embed_cache: EmbedCache | None = None,
    ):
        self.manifest = manifest
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.keyword_index = keyword_index
        self.progress = progress
        self.batch_chunks = batch_chunks
        self.lock = lock
        self.workers = workers
        self.file_timeout_s = file_timeout_s
        self.max_file_bytes = max_file_bytes
        self.redact_pii = redact_pii
        self.strip_injections = strip_injections
        self.ocr, self.ocr_dpi = ocr, ocr_dpi
        self.keyword_save_every_s = keyword_save_every_s
        self._last_keyword_save = time.monotonic()
        self.embed_cache = embed_cache

    def _locked(self):
        from contextlib import nullcontext

        return self.lock if self.lock is not None else nullcontext()

    # ---- public -----------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path], *, password: str | None = None, prune: bool = False) -> IngestSummary:
        with self._locked():
            started = time.perf_counter()
            summary = IngestSummary()
            summary.chunks_removed += self.reconcile()
            self._check_chunk_size()
            found = discover(list(paths))
            summary.files.extend(FileResult(p, "failed", reason=r) for p, r in found.problems)
            summary.files.extend(FileResult(p, "skipped", reason=r) for p, r in found.skipped)
            planned = self._plan(found.files, summary)
            self._parse_embed_store(planned, summary, password)
            if prune:
                keep = {str(p.resolve()) for p in found.files}
                for raw in paths:
                    if Path(raw).is_dir():
                        for record in self.manifest.under(str(Path(raw).resolve())):
                            if record.key not in keep:
                                summary.files.append(self._remove_record(record, summary))
            self._save_keyword_index()
            self._prune_embed_cache()
            summary.seconds = time.perf_counter() - started
            return summary

    def remove(self, paths: Sequence[str | Path]) -> IngestSummary:
        with self._locked():
            started = time.perf_counter()
            summary = IngestSummary()
            summary.chunks_removed += self.reconcile()
            for raw in paths:
                path = Path(raw)
                records = []
                record = self.manifest.get(str(path.resolve())) or self.manifest.find_by_source(str(raw))
                if record:
                    records.append(record)
                elif path.is_dir():
                    records.extend(self.manifest.under(str(path.resolve())))
                if not records:
                    summary.files.append(FileResult(str(raw), "failed", reason="not in the knowledge base"))
                for record in records:
                    summary.files.append(self._remove_record(record, summary))
            self._save_keyword_index()
            self._prune_embed_cache()
            summary.seconds = time.perf_counter() - started
            return summary

    def reconcile(self) -> int:
        """Repair what an interrupted run left; returns how many stray chunks were deleted from the store."""
        with self._locked():
            return reconcile(self.manifest, self.store, self.keyword_index).store_orphans_removed

    # ---- steps ------------------------------------------------------------------
    def _check_chunk_size(self) -> None:
        limit = self.embedder.max_tokens - 2  # room for [CLS] and [SEP]
        if self.chunk_tokens > limit:
            raise ValueError(f"chunking.chunk_tokens={self.chunk_tokens} exceeds what the embedder {self.embedder.name} reads ({limit} tokens); lower it")

    def _plan(self, files: list[Path], summary: IngestSummary) -> list[_Planned]:
        """Hash every file: unchanged ones and duplicates (same bytes under another name) are not parsed."""
        hashed: list[tuple[Path, str, str, str, bool]] = []  # path, key, source, hash, empty
        for path in files:
            source = display_path(path)
            try:
                data = read_stable(path, self.max_file_bytes)
            except LoadError as exc:
                summary.files.append(FileResult(source, "failed", reason=exc.reason + (f" ({exc.hint})" if exc.hint else "")))
                continue
            except FileNotFoundError:
                summary.files.append(FileResult(source, "failed", reason="file vanished during ingestion (no such file)"))
                continue
            except OSError as exc:
                summary.files.append(FileResult(source, "failed", reason=f"cannot read: {exc.strerror or exc}"))
                continue
            hashed.append((path, str(path.resolve()), source, content_hash(data), not data))
        now = {key: doc_hash for _, key, _, doc_hash, _ in hashed}
        planned: list[_Planned] = []
        first_by_hash: dict[str, str] = {}
        for path, key, source, doc_hash, empty in hashed:
            old = self.manifest.get(key)
            if old is not None and old.doc_hash == doc_hash:
                summary.files.append(FileResult(old.source, "unchanged", chunks=len(old.chunk_ids)))
                first_by_hash.setdefault(doc_hash, old.source)
                continue
            original = None if empty else first_by_hash.get(doc_hash) or self._indexed_copy(doc_hash, key, now)
            if original is not None:
                if old is not None:  # this file's old version is gone; it now repeats another file
                    self._remove_record(old, summary)
                summary.files.append(FileResult(source, "skipped", reason=f"duplicate of {original} (same content; not indexed twice)"))
                continue
            if not empty:
                first_by_hash[doc_hash] = old.source if old else source
            planned.append(_Planned(path, key, old.source if old else source, old))
        return planned

    def _indexed_copy(self, doc_hash: str, key: str, now: dict[str, str]) -> str | None:
        """The source of an indexed document with these bytes under another name that still holds them."""
        for record in self.manifest.find_by_hash(doc_hash):
            if record.key != key and now.get(record.key, doc_hash) == doc_hash and Path(record.key).is_file():
                return record.source
        return None

    def _parse_embed_store(self, planned: list[_Planned], summary: IngestSummary, password: str | None) -> None:
        by_path = {str(p.path): p for p in planned}
        tasks = [ParseTask(str(p.path), password, self.redact_pii, self.max_file_bytes, self.strip_injections, self.ocr, self.ocr_dpi) for p in planned]
        pool = ParsePool(self.workers, self.file_timeout_s, ahead=max(2, 2 * self.workers))
        parse_bar = tqdm(total=len(tasks), desc="parsing", unit="file", disable=None if self.progress and tasks else True, position=0)
        embed_bar = tqdm(total=0, desc="embedding", unit="chunk", disable=None if self.progress and tasks else True, position=1)
        group: list[_Pending] = []
        size = 0
        try:
            for parsed in pool.map(tasks):
                parse_bar.update(1)
                crash_point("parsed")
                item = by_path[parsed.task.path]
                pending = self._chunk(item, parsed, summary)
                if pending is None:
                    continue
                embed_bar.total += len(pending.chunks)
                embed_bar.refresh()
                group.append(pending)
                size += len(pending.chunks)
                if size >= self.batch_chunks:
                    self._commit_group(group, summary, embed_bar)
                    group, size = [], 0
            if group:
                self._commit_group(group, summary, embed_bar)
        finally:
            parse_bar.close()
            embed_bar.close()

    def _chunk(self, item: _Planned, parsed, summary: IngestSummary) -> _Pending | None:
        if parsed.error:
            summary.files.append(FileResult(item.source, "failed", reason=parsed.error))
            return None
        if item.old is not None and item.old.doc_hash == parsed.doc_hash:  # changed back since planning
            summary.files.append(FileResult(item.source, "unchanged", chunks=len(item.old.chunk_ids)))
            return None
        try:
            chunks = chunk_pages(
                item.path,
                parsed.pages,
                key=item.key,
                source=item.source,
                doc_hash=parsed.doc_hash,
                count_tokens=self.embedder.count_tokens,
                chunk_tokens=self.chunk_tokens,
                overlap_tokens=self.overlap_tokens,
                clean=False,
            )
        except LoadError as exc:
            summary.files.append(FileResult(item.source, "failed", reason=exc.reason + (f" ({exc.hint})" if exc.hint else "")))
            return None
        except Exception as exc:  # never let one file stop the batch, never hide it
            summary.files.append(FileResult(item.source, "failed", reason=f"{type(exc).__name__}: {exc}"))
            return None
        notes = page_notes(parsed.pages)
        if parsed.redactions:
            notes.append("redacted " + ", ".join(f"{n} {kind}" for kind, n in sorted(parsed.redactions.items())))
        result = FileResult(
            item.source,
            "replaced" if item.old else "added",
            chunks=len(chunks),
            reason="; ".join(notes) or None,
            ocr_pages=sum(1 for p in parsed.pages if p.ocr),
        )
        return _Pending(result, item.key, item.source, parsed.doc_hash, chunks, len(parsed.pages), parsed.size, item.old.chunk_ids if item.old else [])

    def _commit_group(self, group: list[_Pending], summary: IngestSummary, bar) -> None:
        texts = [c.text for item in group for c in item.chunks]
        try:
            vectors, keys = self._embed(texts, summary)
        except Exception as exc:
            for item in group:
                item.result.status, item.result.reason, item.result.chunks = "failed", f"embedding failed: {exc}", 0
                summary.files.append(item.result)
            return
        offset = 0
        landed: list[tuple[str, bytes, object]] = []
        for item in group:
            n = len(item.chunks)
            if self._commit(item, vectors[offset : offset + n], summary) and keys is not None:
                landed.extend((c.id, keys[offset + j], vectors[offset + j]) for j, c in enumerate(item.chunks))
            offset += n
            bar.update(n)
        if landed and self.embed_cache is not None:
            self.embed_cache.put(landed)
        if time.monotonic() - self._last_keyword_save >= self.keyword_save_every_s:
            self._save_keyword_index()

    def _embed(self, texts: list[str], summary: IngestSummary):
        """Vectors for `texts` in order, and their cache keys (None when not caching): cached
        vectors are reused, the other distinct texts embedded in one call."""
        identity = embedder_identity(self.embedder) if self.embed_cache is not None else None
        if identity is None:
            vectors = self.embedder.embed_documents(texts)
            summary.chunks_embedded += len(texts)
            return vectors, None
        import numpy as np

        keys = [text_key(identity, t) for t in texts]
        dim = self.embedder.dim
        found = self.embed_cache.lookup(keys, dim)
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in found:
                missing.setdefault(key, text)
        if missing:
            fresh = self.embedder.embed_documents(list(missing.values()))
            found.update(zip(missing.keys(), fresh))
        summary.chunks_embedded += len(missing)
        summary.chunks_reused += len(texts) - len(missing)
        vectors = np.stack([found[k] for k in keys]).astype(np.float32, copy=False) if keys else np.zeros((0, dim), dtype=np.float32)
        return vectors, keys

    def _prune_embed_cache(self) -> None:
        """Keep only the vectors of chunks the knowledge base holds; end the cache's run."""
        if self.embed_cache is None:
            return
        try:
            self.embed_cache.prune(self.manifest.all_chunk_ids())
        finally:
            self.embed_cache.end_run()

    def _commit(self, item: _Pending, vectors, summary: IngestSummary) -> bool:
        """Store one document's chunks; True when they landed."""
        try:
            self.store.upsert(item.chunks, vectors)
            crash_point("after_upsert")
            self.manifest.put(item.key, item.source, item.doc_hash, [c.id for c in item.chunks], item.pages, item.size)
            crash_point("after_manifest")
            new_ids = {c.id for c in item.chunks}
            stale = [i for i in item.old_ids if i not in new_ids]
            if stale:
                self.store.delete(stale)
            if self.keyword_index is not None:
                self.keyword_index.add(item.chunks)
                if stale:
                    self.keyword_index.remove(stale)
            summary.chunks_added += len(item.chunks)
            summary.chunks_removed += len(stale)
        except Exception as exc:
            item.result.status, item.result.reason, item.result.chunks = "failed", f"storing failed: {type(exc).__name__}: {exc}", 0
            summary.files.append(item.result)
            self._undo_upsert(item)
            return False
        summary.files.append(item.result)
        return True

    def _undo_upsert(self, item: _Pending) -> None:
        """After a failed commit (a full disk, say) take back the chunks it may have stored, unless
        the manifest recorded them; what cannot be taken back now the next run's reconciliation deletes."""
        try:
            recorded = self.manifest.get(item.key)
            keep = set(item.old_ids) | set(recorded.chunk_ids if recorded else ())
            fresh = [c.id for c in item.chunks if c.id not in keep]
            if fresh:
                self.store.delete(fresh)
        except Exception as exc:  # the disk may still be full: reconciliation finishes the job
            log.warning("%s: could not take back the chunks of a failed commit (%s)", item.source, exc)

    def _remove_record(self, record: DocumentRecord, summary: IngestSummary) -> FileResult:
        # manifest first: a crash after it leaves only orphans, which the next run deletes
        self.manifest.delete(record.key)
        crash_point("after_manifest_delete")
        self.store.delete(record.chunk_ids)
        if self.keyword_index is not None:
            self.keyword_index.remove(record.chunk_ids)
        summary.chunks_removed += len(record.chunk_ids)
        return FileResult(record.source, "removed", chunks=len(record.chunk_ids))

    def _save_keyword_index(self) -> None:
        if self.keyword_index is None:
            return
        crash_before_keyword_save(self.keyword_index)
        self.keyword_index.save()
        self._last_keyword_save = time.monotonic()
