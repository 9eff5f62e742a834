"""The one object the server talks to: named knowledge bases sharing one loaded LLM.

The Gradio callbacks and the FastAPI routes only call `QAService`; none of them opens a
store or a database. Writes (upload, delete) to a knowledge base are serialised with its
retrievals by a per-knowledge-base lock; generation runs outside that lock.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kbqa.app.kb import KnowledgeBase
from kbqa.app.uploads import DEFAULT_MAX_BYTES, UploadRejected, check_upload
from kbqa.app.settings import Settings
from kbqa.ingest.summary import FileResult
from kbqa.retrieval.answering import CheckedStream, Grounded
from kbqa.retrieval.kbdir import created_at
from kbqa.retrieval.protocols import LLM, Sampling
from kbqa.retrieval.types import Hit

log = logging.getLogger("kbqa.service")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

Message = dict[str, str]


class UnknownKB(KeyError):
    """No knowledge base of that name is open; `known` lists those that are."""

    def __init__(self, name: str, known: Sequence[str]):
        super().__init__(name)
        self.name, self.known = name, list(known)

    def __str__(self) -> str:
        return f"no knowledge base named {self.name!r}; this server holds: {', '.join(self.known) or '(none)'}"


class Busy(RuntimeError):
    """More answers are queued than `max_pending` allows: refuse now (HTTP 503) rather than hang."""


class _Admitted:
    """An answer's token stream that frees its place in the queue exactly once: when it
    ends, fails, is closed, or is dropped unread."""

    def __init__(self, tokens: Iterator[str], release):
        self._tokens = iter(tokens)
        self._release = release
        self._open = True

    def __iter__(self) -> "_Admitted":
        return self

    def __next__(self) -> str:
        try:
            return next(self._tokens)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                getattr(self._tokens, "close", lambda: None)()
            finally:
                self._release()

    __del__ = close


class UnknownDocument(KeyError):
    """Knowledge base `kb` holds no document `source`."""

    def __init__(self, kb: str, source: str):
        super().__init__(source)
        self.kb, self.source = kb, source

    def __str__(self) -> str:
        return f"knowledge base {self.kb!r} holds no document {self.source!r}"


@dataclass
class StreamedAnswer:
    """Sources are known before the first token; `tokens` yields the text; `result` (mode,
    verdict, and the replacement of a generated answer that failed its check) once it ends."""

    sources: list[Hit]
    found: bool
    tokens: Iterator[str]
    checked: CheckedStream | None = None

    @property
    def result(self) -> Grounded | None:
        """The checked answer once the stream has ended (known at once for an extractive one), else None."""
        return getattr(self.checked, "result", None)

    @property
    def final_found(self) -> bool:
        """Whether the answer, once checked, holds an answer (not "not found")."""
        return self.found if self.result is None else self.result.found


@dataclass
class Reply:
    """A whole answer: its text, sources (empty when not found), and the checked result when there is one."""

    text: str
    sources: list[Hit]
    found: bool
    result: Grounded | None = None


@dataclass
class UploadResult:
    """One uploaded file's outcome: `status` added | replaced | unchanged | failed | rejected, and the HTTP status to send."""

    name: str
    status: str  # added | replaced | unchanged | failed | rejected
    chunks: int = 0
    reason: str | None = None
    source: str | None = None
    http_status: int = 200

    def to_dict(self) -> dict:
        """The JSON body: name, status, chunks, and source and reason when set."""
        out = {"name": self.name, "status": self.status, "chunks": self.chunks}
        if self.source:
            out["source"] = self.source
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class _Entry:
    kb: KnowledgeBase
    lock: threading.Lock = field(default_factory=threading.Lock)


def kb_name(path: Path) -> str:
    """A knowledge base's default name: its directory's name, runs of characters outside [A-Za-z0-9_.-] made '-' ("kb" if none left)."""
    name = _NAME.sub("-", path.resolve().name).strip("-.") or "kb"
    return name


class QAService:
    """The knowledge bases a server holds, by name, and the requests on them: questions (at most `max_pending`
    answers under way, else `Busy`), documents, and uploads of at most `max_upload_bytes` bytes each."""

    def __init__(self, kbs: dict[str, KnowledgeBase], settings: Settings, *, max_upload_bytes: int = DEFAULT_MAX_BYTES, max_pending: int = 8):
        if not kbs:
            raise ValueError("QAService needs at least one knowledge base")
        self.settings = settings
        self.max_upload_bytes = max_upload_bytes
        self.max_pending = max_pending
        self._pending = threading.BoundedSemaphore(max_pending)  # answers being generated or waiting to be
        self._kbs = {name: _Entry(kb) for name, kb in kbs.items()}

    @classmethod
    def open(
        cls,
        dirs: Sequence[str | Path],
        settings: Settings,
        *,
        llm: LLM | None = None,
        max_upload_bytes: int = DEFAULT_MAX_BYTES,
        max_pending: int = 8,
    ) -> "QAService":
        """Open each directory as a knowledge base named after it (``name=DIR`` names it);
        all of them share one LLM. A directory without ``kb.json`` starts empty."""
        if llm is None:
            from kbqa.retrieval.llm import make_llm

            llm = make_llm(settings.llm, settings.cache_dir)
        reader = None
        try:
            from kbqa.retrieval.readers import make_reader

            reader = make_reader(settings.answer.reader, device=settings.llm.device)  # shared, loaded on first use
        except FileNotFoundError as exc:
            if settings.answer.mode != "generative":
                raise ValueError(str(exc)) from None
        kbs: dict[str, KnowledgeBase] = {}
        for raw in dirs:
            name, _, path = str(raw).rpartition("=") if "=" in str(raw) else ("", "", str(raw))
            path_obj = Path(path)
            name = name or kb_name(path_obj)
            if name in kbs:
                raise ValueError(f"--kb {raw}: a knowledge base named {name!r} is already open; name it with NAME=DIR")
            if path_obj.exists() and not path_obj.is_dir():
                raise ValueError(f"--kb {raw}: not a directory")
            if not (path_obj / "kb.json").is_file():
                log.warning("%s: no kb.json; starting an empty knowledge base (upload documents in the admin tab)", path_obj)
                path_obj.mkdir(parents=True, exist_ok=True)
            kbs[name] = KnowledgeBase(path_obj, settings, llm=llm, reader=reader)
        return cls(kbs, settings, max_upload_bytes=max_upload_bytes, max_pending=max_pending)

    # ---- knowledge bases ------------------------------------------------------------
    def names(self) -> list[str]:
        """The names of the open knowledge bases."""
        return list(self._kbs)

    def _entry(self, name: str) -> _Entry:
        try:
            return self._kbs[name]
        except KeyError:
            raise UnknownKB(name, self.names()) from None

    def kb(self, name: str) -> KnowledgeBase:
        """The knowledge base named `name`; raises `UnknownKB`."""
        return self._entry(name).kb

    def adapters(self, kb: str) -> list[str]:
        """The LoRA adapters a request may name for `kb` (as ``"kb:adapter"``); "base" is always there."""
        return ["base", *getattr(self.kb(kb).llm, "adapters", [])]

    def check_adapter(self, kb: str, adapter: str | None) -> LLM:
        """The LLM that answers `kb` with LoRA adapter `adapter` (`KnowledgeBase.llm_for`), looked up
        before any work: raises KeyError (unknown name) or ValueError (backend without adapters).
        A request passes it on (`stream`'s `llm`), so it looks the adapter up once."""
        return self.kb(kb).llm_for(adapter)

    def created(self, kb: str) -> int:
        """When knowledge base `kb` was made (Unix time; see `retrieval.kbdir.created_at`)."""
        entry = self._entry(kb)
        return created_at(entry.kb.path, entry.kb.record)

    def embed(self, kb: str, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """`texts` embedded by `kb`'s embedder as documents, and the number of tokens they hold."""
        embedder = self.kb(kb).embedder
        return embedder.embed_documents(list(texts)), sum(embedder.count_tokens(list(texts)))

    def warm_up(self) -> None:
        """Load every knowledge base's embedder now, and the shared reader and LLM once (through the first)."""
        for n, entry in enumerate(self._kbs.values()):
            entry.kb.warm_up(llm=n == 0)  # the LLM is shared: load it once

    def summary(self) -> list[dict]:
        """One dict per knowledge base: name, path, documents (how many)."""
        return [{"name": name, "path": str(e.kb.path), "documents": len(e.kb.documents())} for name, e in self._kbs.items()]

    # ---- questions ------------------------------------------------------------------
    def retrieve(self, kb: str, query: str, k: int | None = None, mode: str | None = None) -> tuple[list[Hit], bool]:
        """`KnowledgeBase.search` on `kb`: (hits best first, whether found); raises `UnknownKB`."""
        entry = self._entry(kb)
        with entry.lock:
            result = entry.kb.search(query, k, mode)
        return result.hits, result.found

    def stream(
        self,
        kb: str,
        question: str,
        history: Sequence[Message] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        adapter: str | None = None,
        sampling: Sampling | None = None,
        instructions: str | None = None,
        llm: LLM | None = None,
    ) -> StreamedAnswer:
        """Retrieve, then stream the answer (see `KnowledgeBase.stream_with_sources`); raises
        `Busy` when `max_pending` answers are already under way. `llm`: `check_adapter`'s, when
        the caller has it (else looked up from `adapter`)."""
        entry = self._entry(kb)
        if not self._pending.acquire(blocking=False):
            raise Busy(f"{self.max_pending} answers are already being generated or queued; try again shortly")
        try:
            with entry.lock:
                result, tokens = entry.kb.stream_with_sources(
                    question,
                    history=list(history or []),
                    max_tokens=max_tokens,
                    temperature=temperature,
                    adapter=adapter,
                    sampling=sampling,
                    instructions=instructions,
                    llm=llm,
                )
        except BaseException:
            self._pending.release()
            raise
        known = getattr(tokens, "result", None)  # an extractive answer is known before streaming
        found = result.found and (known is None or known.found)
        return StreamedAnswer(result.hits if found else [], found, _Admitted(tokens, self._pending.release), tokens)

    def chat(self, kb: str, question: str, history: Sequence[Message] | None = None, **limits) -> Reply:
        """`stream` read to its end: the checked answer's text and sources; `limits` are `stream`'s keyword options."""
        answer = self.stream(kb, question, history, **limits)
        text = "".join(answer.tokens).strip()
        final = answer.result
        if final is not None:
            return Reply(final.text, answer.sources if final.found else [], final.found, final)
        return Reply(text, answer.sources, answer.found)

    # ---- documents ------------------------------------------------------------------
    def documents(self, kb: str) -> list[dict]:
        """`KnowledgeBase.documents` of `kb`, each with its file `name`, sorted by source; raises `UnknownKB`."""
        entry = self._entry(kb)
        docs = entry.kb.documents()
        for doc in docs:
            doc["name"] = Path(doc["source"]).name
        return sorted(docs, key=lambda d: d["source"])

    def upload(self, kb: str, filename: str, data: bytes, content_type: str | None = None) -> UploadResult:
        """Check, save under ``<kb>/uploads/`` and ingest with the usual pipeline."""
        entry = self._entry(kb)
        try:
            name = check_upload(filename, data, content_type, self.max_upload_bytes)
        except UploadRejected as exc:
            return UploadResult(exc.name, "rejected", reason=exc.reason, http_status=exc.status)
        folder = entry.kb.layout.uploads
        target = folder / name
        with entry.lock:
            folder.mkdir(parents=True, exist_ok=True)
            backup = target.read_bytes() if target.is_file() else None
            tmp = folder / f".{name}.part"
            tmp.write_bytes(data)
            os.replace(tmp, target)
            try:
                summary = entry.kb.ingest([target])
            except Exception as exc:  # reported, and the previous file restored
                summary = None
                failure = FileResult(name, "failed", reason=f"{type(exc).__name__}: {exc}")
            results = summary.files if summary else [failure]
            result = results[0] if results else FileResult(name, "failed", reason="nothing was ingested")
            if result.status == "failed":
                if backup is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(backup)
                return UploadResult(name, "failed", reason=result.reason, http_status=422)
        return UploadResult(name, result.status, chunks=result.chunks, source=result.path)

    def delete(self, kb: str, source: str) -> dict:
        """Remove one document (its exact source, or its file name when that is unique)."""
        entry = self._entry(kb)
        with entry.lock:
            docs = entry.kb.documents()
            match = [d for d in docs if d["source"] == source]
            if not match:
                match = [d for d in docs if Path(d["source"]).name == source]
            if len(match) != 1:
                raise UnknownDocument(kb, source)
            doc = match[0]
            summary = entry.kb.remove([doc["source"]])
            failed = [f for f in summary.files if f.status == "failed"]
            if failed:
                raise RuntimeError(f"{doc['source']}: {failed[0].reason}")
            uploaded = (entry.kb.layout.uploads / Path(doc["source"]).name).resolve()
            if uploaded.is_file() and str(uploaded) == str(Path(doc["source"]).resolve()):
                uploaded.unlink()
        return {"source": doc["source"], "chunks_removed": summary.chunks_removed}

    # ---- the chat UI's source viewer --------------------------------------------------
    def source_document(self, kb: str, source: str, chunk: int, *, before: int = 1, after: int = 8) -> dict:
        """A cited document of `kb`, for showing a passage in place: ``{"source", "path" (its
        file, None when gone), "chunks" (chunks `chunk - before` .. `chunk + after`, in order)}``.

        `source` must be one of `kb`'s documents (its citation path): raises `UnknownDocument`
        otherwise, so that no other file is ever opened. The caller checks the user's rights."""
        entry = self._entry(kb)
        if entry.kb.record is None:
            raise UnknownDocument(kb, source)
        with entry.lock:
            record = entry.kb.manifest.find_by_source(source)
            if record is None:
                raise UnknownDocument(kb, source)
            lo = max(0, int(chunk) - before)
            chunks = entry.kb.store.get(record.chunk_ids[lo : max(lo, int(chunk) + after + 1)])
        path = Path(record.key)
        return {"source": record.source, "path": path if path.is_file() else None, "chunks": sorted(chunks, key=lambda c: c.chunk)}


def sources_payload(hits: Sequence[Hit]) -> list[dict]:
    """Sources as the API returns them: file, page, chunk, score and the cited passage."""
    out = []
    for n, hit in enumerate(hits, start=1):
        src = hit.as_source()
        src["n"] = n
        src["name"] = Path(src["source"]).name
        out.append(src)
    return out
