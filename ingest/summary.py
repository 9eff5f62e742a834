"""What one ingest run did, per file and in total; text for people, JSON for programs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("added", "unchanged", "replaced", "removed", "failed", "skipped")


@dataclass
class FileResult:
    path: str
    status: str  # one of STATUSES
    chunks: int = 0
    reason: str | None = None  # why it failed or was skipped; for an indexed file, notes (pages OCR'd or left out, redactions)
    ocr_pages: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "status": self.status, "chunks": self.chunks}
        if self.reason:
            out["reason"] = self.reason
        if self.ocr_pages:
            out["ocr_pages"] = self.ocr_pages
        return out


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def page_notes(pages) -> list[str]:
    """What the summary line says about a document's pages: how many were OCR'd or repaired, which were left out and why."""
    notes = []
    if ocr := [p.page for p in pages if p.ocr]:
        notes.append(f"{len(ocr)} of {len(pages)} pages OCR'd")
    if fixed := [p.page for p in pages if getattr(p, "repaired", False)]:
        notes.append(f"text layer repaired on {len(fixed)} of {len(pages)} pages (spaced letters joined, stray digits dropped)")
    problems: dict[str, list[int]] = {}
    for p in pages:
        if p.problem:
            problems.setdefault(p.problem, []).append(p.page or 0)
    notes += [f"page{'s' if len(ns) > 1 else ''} {_ranges(ns)} left out: {why}" for why, ns in problems.items()]
    notes += [p.note for p in pages if getattr(p, "note", None)]
    return notes


@dataclass
class IngestSummary:
    files: list[FileResult] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0  # chunk texts that went through the embedder
    chunks_reused: int = 0  # chunks whose vector came from the embedding cache (ingest/embed_cache.py)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # about the run as a whole (the embedder chosen for a new knowledge base)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {status: self.count(status) for status in STATUSES}
        out.update(
            chunks_added=self.chunks_added,
            chunks_removed=self.chunks_removed,
            chunks_embedded=self.chunks_embedded,
            chunks_reused=self.chunks_reused,
            seconds=round(self.seconds, 2),
            notes=list(self.notes),
            files=[f.to_dict() for f in self.files],
        )
        return out

    def failures(self) -> list[str]:
        """One "PATH: reason" line per file that failed."""
        return [f"{f.path}: {f.reason}" for f in self.files if f.status == "failed"]

    def render(self, *, with_failures: bool = True) -> str:
        """The summary for people; `with_failures=False` leaves out the FAILED lines (the CLI prints them on stderr)."""
        lines = []
        for f in self.files:
            if f.status == "failed":
                if with_failures:
                    lines.append(f"FAILED   {f.path}: {f.reason}")
            elif f.status == "skipped":
                lines.append(f"skipped  {f.path}: {f.reason}")
            elif f.reason:
                lines.append(f"{f.status:<8} {f.path}: {f.reason}")
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES if self.count(s) or s in ("added", "failed"))
        lines.append(f"files: {counts}")
        vectors = f" ({self.chunks_embedded} embedded, {self.chunks_reused} reused)" if self.chunks_embedded or self.chunks_reused else ""
        lines.extend(self.notes)
        lines.append(f"chunks: {self.chunks_added} added, {self.chunks_removed} removed{vectors}; {self.seconds:.1f} s")
        return "\n".join(lines)
