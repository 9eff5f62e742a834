"""`kbqa doctor`: check that a knowledge base's manifest, vector store and BM25 index agree,
and repair them.

The invariants: every chunk id the manifest lists is in the vector store and the BM25
index exactly once, and neither holds a chunk the manifest does not list; no chunk id
belongs to two documents; no half-written temporary file is left. Repair runs the same
reconciliation an `ingest` run starts with, under the knowledge base's lock: strays are
deleted, chunks missing from BM25 are re-indexed from the store's text, and a document
whose chunks are missing from the store is dropped from the manifest so that the next
`ingest` of its file adds it again.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbqa.app.kb_damage import discard_embed_cache, quarantine_store, rebuild_manifest, sqlite_damage
from kbqa.app.settings import Settings
from kbqa.ingest.lock import KBLock, KBLockedError
from kbqa.ingest.manifest import Manifest
from kbqa.ingest.pipeline import reconcile
from kbqa.retrieval.bm25 import BM25Index
from kbqa.retrieval.kbdir import KB_FILE, KBLayout, read_record
from kbqa.retrieval.stores import make_store

_SHOW = 5  # ids shown per problem


@dataclass
class DoctorReport:
    documents: int = 0
    chunks: int = 0  # as counted in the vector store
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"documents": self.documents, "chunks": self.chunks, "problems": self.problems}
        if self.repaired:
            out["repaired"] = self.repaired
        return out

    def render(self) -> str:
        lines = [f"repaired: {r}" for r in self.repaired]
        lines += [f"PROBLEM  {p}" for p in self.problems]
        lines.append(f"{self.documents} documents, {self.chunks} chunks: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)"))
        return "\n".join(lines)


class NotAKnowledgeBase(ValueError):
    pass


class StoreUnreachable(RuntimeError):
    """The vector store is on a server that does not answer: repairing now could drop every document."""


def _open_store(kb_path: Path, settings: Settings):
    record = read_record(kb_path)
    if record is None:
        raise NotAKnowledgeBase(f"{kb_path}: not a knowledge base (no {KB_FILE})")
    s = settings.store
    layout = KBLayout(kb_path)
    return make_store(
        record.store_backend,
        kb_path,
        record.dim,
        url=s.chroma_url,
        collection=layout.collection(s.chroma_url),
        faiss_options=s.faiss_options(),
        chroma_ef_search=s.chroma_ef_search,
    )


def _parts(kb_path: Path, settings: Settings):
    layout = KBLayout(kb_path)
    return Manifest(layout.manifest), _open_store(kb_path, settings), BM25Index(layout.bm25)


def damaged_parts(kb_path: Path, settings: Settings) -> dict[str, str]:
    """The parts that cannot be read at all, with why: "manifest", "embed_cache", "store"."""
    layout = KBLayout(kb_path)
    found = {}
    for part, path, table in (("manifest", layout.manifest, "documents"), ("embed_cache", layout.embed_cache, "vectors")):
        reason = sqlite_damage(path, table)
        if reason:
            found[part] = f"{path.name} is damaged ({reason})"
    try:
        store = _open_store(kb_path, settings)
        store.count(), store.all_ids()
    except NotAKnowledgeBase:
        raise
    except Exception as exc:  # whatever the backend's library raises on a damaged file
        backend = read_record(kb_path).store_backend
        if backend == "chroma" and settings.store.chroma_url:  # nothing on this disk to repair
            found["remote_store"] = f"the Chroma server at {settings.store.chroma_url} cannot be read ({type(exc).__name__}: {exc})"
        else:
            found["store"] = f"the vector store ({backend}/) is unreadable ({type(exc).__name__}: {exc})"
    return found


_WHAT_REPAIR_DOES = {
    "manifest": "--repair rebuilds it from the vector store",
    "embed_cache": "--repair deletes it (a disposable cache)",
    "store": "--repair moves it aside; its documents must then be ingested again",
    "remote_store": "check the server (store.chroma_url); --repair changes nothing until it answers",
}


def _damage_report(damage: dict[str, str]) -> DoctorReport:
    return DoctorReport(problems=[f"{why}; {_WHAT_REPAIR_DOES[part]}" for part, why in damage.items()])


def _few(ids) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:_SHOW]) + (f", ... ({len(ids)} in all)" if len(ids) > _SHOW else "")


def check(kb_path: str | Path, settings: Settings | None = None) -> DoctorReport:
    """Read-only: count documents and chunks and list every broken invariant."""
    kb_path = Path(kb_path)
    settings = settings or Settings()
    damage = damaged_parts(kb_path, settings)
    if damage.keys() & {"manifest", "store", "remote_store"}:  # nothing to compare against
        return _damage_report(damage)
    manifest, store, bm25 = _parts(kb_path, settings)
    report = _damage_report(damage)
    try:
        records = manifest.all()
        store_ids = store.all_ids()
        report.documents, report.chunks = len(records), store.count()
        store_set = set(store_ids)
        owners: Counter[str] = Counter()
        for record in records:
            owners.update(record.chunk_ids)
            missing = [i for i in record.chunk_ids if i not in store_set]
            if not record.chunk_ids:
                report.problems.append(f"document {record.source}: no chunks recorded")
            elif missing:
                report.problems.append(f"document {record.source}: {len(missing)} of {len(record.chunk_ids)} chunks missing from the vector store")
        shared = [i for i, n in owners.items() if n > 1]
        if shared:
            report.problems.append(f"{len(shared)} chunk ids belong to more than one document: {_few(shared)}")
        known = set(owners)
        dup_store = [i for i, n in Counter(store_ids).items() if n > 1]
        if dup_store:
            report.problems.append(f"{len(dup_store)} chunk ids stored more than once in the vector store: {_few(dup_store)}")
        orphans = store_set - known
        if orphans:
            report.problems.append(f"{len(orphans)} chunks in the vector store are not in the manifest: {_few(orphans)}")
        if len(store_ids) != report.chunks:
            report.problems.append(f"vector store lists {len(store_ids)} ids but counts {report.chunks} chunks")
        try:
            keyword_ids = bm25.ids()
        except (OSError, ValueError) as exc:
            report.problems.append(f"BM25 index unreadable ({type(exc).__name__}: {exc})")
        else:
            lacking, stray = known - keyword_ids, keyword_ids - known
            if lacking:
                report.problems.append(f"{len(lacking)} chunks in the manifest are missing from the BM25 index: {_few(lacking)}")
            if stray:
                report.problems.append(f"{len(stray)} chunks in the BM25 index are not in the manifest: {_few(stray)}")
        temps = [p for d in (kb_path, KBLayout(kb_path).bm25) if d.is_dir() for p in d.glob(".*.json.*")]
        if temps:
            report.problems.append(f"{len(temps)} half-written temporary files left by an interrupted write: {', '.join(p.name for p in temps)}")
    finally:
        manifest.close()
    return report


def repair(kb_path: str | Path, settings: Settings | None = None) -> DoctorReport:
    """Reconcile under the lock, then check again; the report lists what was repaired."""
    kb_path = Path(kb_path)
    settings = settings or Settings()
    done: list[str] = []
    with KBLock(kb_path, timeout_s=settings.ingest.lock_timeout_s):
        done += _repair_damage(kb_path, settings)
        manifest, store, bm25 = _parts(kb_path, settings)
        try:
            bm25.ids()
        except (OSError, ValueError):
            (KBLayout(kb_path).bm25 / "tokens.json").unlink(missing_ok=True)
            bm25 = BM25Index(KBLayout(kb_path).bm25)
            done.append("removed the unreadable BM25 index (rebuilt from the vector store below)")
        try:
            fixed = reconcile(manifest, store, bm25)
        finally:
            manifest.close()
        if fixed.store_orphans_removed:
            done.append(f"deleted {fixed.store_orphans_removed} stray chunks from the vector store")
        if fixed.keyword_stray_removed:
            done.append(f"deleted {fixed.keyword_stray_removed} stray chunks from the BM25 index")
        if fixed.keyword_missing_added:
            done.append(f"added {fixed.keyword_missing_added} missing chunks to the BM25 index from the vector store")
        for source in fixed.records_dropped:
            done.append(f"dropped {source} from the manifest (chunks missing from the store); ingest it again")
        if fixed.temp_files_removed:
            done.append(f"removed {fixed.temp_files_removed} half-written temporary files")
        kb_temps = list(kb_path.glob(".*.json.*"))
        for tmp in kb_temps:
            tmp.unlink(missing_ok=True)
        if kb_temps:
            done.append(f"removed {len(kb_temps)} half-written temporary files")
    report = check(kb_path, settings)
    report.repaired = done
    return report


def _repair_damage(kb_path: Path, settings: Settings) -> list[str]:
    """Put right the parts that cannot be read (app/kb_damage.py says from what)."""
    damage = damaged_parts(kb_path, settings)
    layout = KBLayout(kb_path)
    done = []
    if "remote_store" in damage:
        raise StoreUnreachable(f"{damage['remote_store']}; nothing was repaired")
    if "embed_cache" in damage:
        done.append(discard_embed_cache(layout))
    if "store" in damage:
        done.append(quarantine_store(layout, read_record(kb_path).store_backend))
        if "manifest" in damage:  # nothing left to rebuild it from: start it empty
            layout.manifest.rename(layout.manifest.with_name(layout.manifest.name + ".damaged"))
            done.append(f"{layout.manifest.name} was damaged too and is kept as {layout.manifest.name}.damaged; ingest every document again")
    elif "manifest" in damage:
        done += rebuild_manifest(layout, _open_store(kb_path, settings))
    return done


def run(kb_path: str | Path, settings: Settings | None = None, *, fix: bool = False) -> DoctorReport:
    kb_path = Path(kb_path)
    settings = settings or Settings()
    if read_record(kb_path) is None:  # before taking the lock, which would create the folder
        raise NotAKnowledgeBase(f"{kb_path}: not a knowledge base (no {KB_FILE})")
    if fix:
        return repair(kb_path, settings)
    lock = KBLock(kb_path, timeout_s=min(5.0, settings.ingest.lock_timeout_s))
    try:
        with lock:
            return check(kb_path, settings)
    except KBLockedError:
        report = check(kb_path, settings)
        report.problems.append(f"an ingest is running (lock held by pid {lock.holder()}); the counts above may be in flux, check again when it ends")
        return report


def dumps(report: DoctorReport) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2)
