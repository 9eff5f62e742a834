"""Reconciliation: bring the vector store and the keyword index into agreement with the
manifest, the source of truth, after a run that was interrupted (ingest/pipeline.py's
docstring says why this makes a killed run safe). Each run starts with it; `kbqa doctor
--repair` (app/doctor.py) runs it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kbqa.ingest.manifest import Manifest
from kbqa.retrieval.protocols import VectorStore
from kbqa.retrieval.types import Chunk


class KeywordIndex(Protocol):
    def add(self, chunks: Sequence[Chunk]) -> None: ...
    def remove(self, ids: Sequence[str]) -> None: ...
    def save(self) -> None: ...
    def ids(self) -> set[str]: ...


@dataclass
class Reconciliation:
    store_orphans_removed: int = 0
    keyword_stray_removed: int = 0
    keyword_missing_added: int = 0
    records_dropped: list[str] = field(default_factory=list)  # sources whose chunks were missing from the store
    temp_files_removed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.store_orphans_removed or self.keyword_stray_removed or self.keyword_missing_added or self.records_dropped or self.temp_files_removed)


def reconcile(manifest: Manifest, store: VectorStore, keyword_index: KeywordIndex | None = None) -> Reconciliation:
    """Bring vector store and keyword index into agreement with the manifest. Call under the lock."""
    out = Reconciliation()
    store_ids = set(store.all_ids())
    known: set[str] = set()
    for record in manifest.all():
        ids = set(record.chunk_ids)
        if not ids <= store_ids:  # cannot be rebuilt without re-parsing: forget it, so it is ingested again
            manifest.delete(record.key)
            out.records_dropped.append(record.source)
            continue
        known |= ids
    orphans = [i for i in store_ids if i not in known]
    if orphans:
        store.delete(orphans)
        out.store_orphans_removed = len(orphans)
    if keyword_index is not None:
        have = keyword_index.ids()
        stray = [i for i in have if i not in known]
        if stray:
            keyword_index.remove(stray)
            out.keyword_stray_removed = len(stray)
        missing = sorted(known - have)
        if missing:
            keyword_index.add(store.get(missing))
            out.keyword_missing_added = len(missing)
        directory = getattr(keyword_index, "directory", None)
        if directory is not None and Path(directory).is_dir():
            for tmp in Path(directory).glob(".*.json.*"):  # a write interrupted before its rename
                tmp.unlink(missing_ok=True)
                out.temp_files_removed += 1
        if stray or missing:
            keyword_index.save()
    return out
