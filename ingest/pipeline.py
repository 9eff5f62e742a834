"""The ingestion pipeline: discover, parse and chunk, embed in batches, store, record.

Each document lands as a unit: its chunks are upserted (stable ids) into the vector
store and the keyword index, then the manifest records it, then chunks of its old
version are deleted. A run starts by deleting chunks the manifest does not know
(left by an interrupted run), so re-running always converges.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from ingest.chunking import chunk_document, content_hash
from ingest.discover import discover
from ingest.errors import LoadError
from ingest.manifest import Manifest
from ingest.summary import FileResult, IngestSummary
from retrieval.protocols import Embedder, VectorStore
from retrieval.types import Chunk


class KeywordIndex(Protocol):
    def add(self, chunks: Sequence[Chunk]) -> None: ...
    def remove(self, ids: Sequence[str]) -> None: ...
    def save(self) -> None: ...
    def ids(self) -> set[str]: ...


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
        batch_chunks: int = 256,
    ):
        self.manifest = manifest
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.keyword_index = keyword_index
        self.progress = progress
        self.batch_chunks = batch_chunks

    # ---- public -----------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path], *, password: str | None = None, prune: bool = False) -> IngestSummary:
        started = time.perf_counter()
        summary = IngestSummary()
        summary.chunks_removed += self.reconcile()
        self._check_chunk_size()
        found = discover(list(paths))
        summary.files.extend(FileResult(p, "failed", reason=r) for p, r in found.problems)
        summary.files.extend(FileResult(p, "skipped", reason=r) for p, r in found.skipped)
        pending = self._parse(found.files, summary, password)
        self._embed_and_store(pending, summary)
        if prune:
            keep = {str(p.resolve()) for p in found.files}
            for raw in paths:
                if Path(raw).is_dir():
                    for record in self.manifest.under(str(Path(raw).resolve())):
                        if record.key not in keep:
                            summary.files.append(self._remove_record(record, summary))
        self._save_keyword_index()
        summary.seconds = time.perf_counter() - started
        return summary

    def remove(self, paths: Sequence[str | Path]) -> IngestSummary:
        started = time.perf_counter()
        summary = IngestSummary()
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
        summary.seconds = time.perf_counter() - started
        return summary

    def reconcile(self) -> int:
        """Delete chunks that the manifest does not list (left by an interrupted run)."""
        known = self.manifest.all_chunk_ids()
        orphans = [i for i in self.store.all_ids() if i not in known]
        if orphans:
            self.store.delete(orphans)
        if self.keyword_index is not None:
            stray = [i for i in self.keyword_index.ids() if i not in known]
            if stray:
                self.keyword_index.remove(stray)
                self.keyword_index.save()
        return len(orphans)

    # ---- steps ------------------------------------------------------------------
    def _check_chunk_size(self) -> None:
        limit = self.embedder.max_tokens - 2  # room for [CLS] and [SEP]
        if self.chunk_tokens > limit:
            raise ValueError(
                f"chunking.chunk_tokens={self.chunk_tokens} exceeds what the embedder {self.embedder.name} "
                f"reads ({limit} tokens); lower it"
            )

    def _parse(self, files: list[Path], summary: IngestSummary, password: str | None) -> list[_Pending]:
        pending: list[_Pending] = []
        bar = tqdm(files, desc="parsing", unit="file", disable=not self.progress or not files)
        for path in bar:
            source = display_path(path)
            key = str(path.resolve())
            try:
                data = path.read_bytes()
            except OSError as exc:
                summary.files.append(FileResult(source, "failed", reason=f"cannot read: {exc.strerror or exc}"))
                continue
            doc_hash = content_hash(data)
            old = self.manifest.get(key)
            if old is not None and old.doc_hash == doc_hash:
                summary.files.append(FileResult(source, "unchanged", chunks=len(old.chunk_ids)))
                continue
            try:
                chunks, pages = chunk_document(
                    path,
                    data,
                    key=key,
                    source=old.source if old else source,
                    count_tokens=self.embedder.count_tokens,
                    chunk_tokens=self.chunk_tokens,
                    overlap_tokens=self.overlap_tokens,
                    password=password,
                )
            except LoadError as exc:
                summary.files.append(FileResult(source, "failed", reason=exc.reason + (f" ({exc.hint})" if exc.hint else "")))
                continue
            except Exception as exc:  # never let one file stop the batch, never hide it
                summary.files.append(FileResult(source, "failed", reason=f"{type(exc).__name__}: {exc}"))
                continue
            status = "replaced" if old else "added"
            result = FileResult(old.source if old else source, status, chunks=len(chunks))
            pending.append(_Pending(result, key, result.path, doc_hash, chunks, pages, len(data), old.chunk_ids if old else []))
        return pending

    def _embed_and_store(self, pending: list[_Pending], summary: IngestSummary) -> None:
        total = sum(len(p.chunks) for p in pending)
        bar = tqdm(total=total, desc="embedding", unit="chunk", disable=not self.progress or total == 0)
        group: list[_Pending] = []
        size = 0
        for item in pending:
            group.append(item)
            size += len(item.chunks)
            if size >= self.batch_chunks:
                self._commit_group(group, summary, bar)
                group, size = [], 0
        if group:
            self._commit_group(group, summary, bar)
        bar.close()

    def _commit_group(self, group: list[_Pending], summary: IngestSummary, bar) -> None:
        texts = [c.text for item in group for c in item.chunks]
        try:
            vectors = self.embedder.embed_documents(texts)
        except Exception as exc:
            for item in group:
                item.result.status, item.result.reason, item.result.chunks = "failed", f"embedding failed: {exc}", 0
                summary.files.append(item.result)
            return
        offset = 0
        for item in group:
            n = len(item.chunks)
            self._commit(item, vectors[offset : offset + n], summary)
            offset += n
            bar.update(n)

    def _commit(self, item: _Pending, vectors, summary: IngestSummary) -> None:
        try:
            self.store.upsert(item.chunks, vectors)
            if self.keyword_index is not None:
                self.keyword_index.add(item.chunks)
            self.manifest.put(item.key, item.source, item.doc_hash, [c.id for c in item.chunks], item.pages, item.size)
            new_ids = {c.id for c in item.chunks}
            stale = [i for i in item.old_ids if i not in new_ids]
            if stale:
                self.store.delete(stale)
                if self.keyword_index is not None:
                    self.keyword_index.remove(stale)
            summary.chunks_added += len(item.chunks)
            summary.chunks_removed += len(stale)
        except Exception as exc:
            item.result.status, item.result.reason, item.result.chunks = "failed", f"storing failed: {type(exc).__name__}: {exc}", 0
        summary.files.append(item.result)

    def _remove_record(self, record, summary: IngestSummary) -> FileResult:
        self.store.delete(record.chunk_ids)
        if self.keyword_index is not None:
            self.keyword_index.remove(record.chunk_ids)
        self.manifest.delete(record.key)
        summary.chunks_removed += len(record.chunk_ids)
        return FileResult(record.source, "removed", chunks=len(record.chunk_ids))

    def _save_keyword_index(self) -> None:
        if self.keyword_index is not None:
            self.keyword_index.save()
