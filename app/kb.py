"""The front door: ``KnowledgeBase(path, settings)``.

Constructing one is cheap; the embedder, stores and model load on first use, once
per process.

    from kbqa.app import KnowledgeBase
    kb = KnowledgeBase("kb-demo")
    kb.ingest(["data/sample"])
    answer = kb.ask("When did the railway open?")
    print(answer.answer, [s.chunk.source for s in answer.sources])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from kbqa.app.answer_service import AnswerService, Prepared
from kbqa.app.answerer import Answerer
from kbqa.app.settings import Settings
from kbqa.ingest.embed_cache import EmbedCache
from kbqa.ingest.lock import KBLock
from kbqa.ingest.manifest import Manifest
from kbqa.ingest.pipeline import Ingestor
from kbqa.ingest.summary import IngestSummary
from kbqa.retrieval.bm25 import BM25Index
from kbqa.app.embedder_choice import ENGLISH, choose_embedder
from kbqa.retrieval.embedders import make_embedder, model_name
from kbqa.retrieval.kbdir import KBLayout, KBRecord, read_record, write_record
from kbqa.retrieval.llm import make_llm
from kbqa.retrieval.answering import CheckedStream
from kbqa.retrieval.protocols import LLM, Embedder, Sampling, VectorStore
from kbqa.retrieval.retriever import Retrieval, Retriever, RetrieverConfig
from kbqa.retrieval.stores import make_store
from kbqa.retrieval.types import Answer, Hit

Message = dict[str, str]


class KnowledgeBase:
    """A knowledge base directory: ingest documents, retrieve chunks, answer questions.

    Parts load on first use; `kb.json`, once written, fixes the embedder, chunking and store backend."""

    def __init__(self, path: str | Path, settings: Settings | None = None, *, llm: LLM | None = None, reader=None):
        self.path = Path(path)
        self.layout = KBLayout(self.path)  # every path of the directory, and its collection name
        self.settings = settings or Settings()
        self._llm = llm
        self._reader = reader  # the extractive reader (retrieval/readers), shared like the LLM
        self._lock = threading.RLock()
        record = read_record(self.path)
        if record is not None:
            # kb.json written before the "use" backend recorded its own model name held embedder.model's
            record = replace(record, embedder_model=model_name(record.embedder_backend, record.embedder_model))
            embedder_set = "embedder" in self.settings.model_fields_set
            if embedder_set and self.settings.embedder.backend != "auto":  # auto: whatever the knowledge base has
                e = self.settings.embedder
                record.check_embedder(e.backend, model_name(e.backend, e.model), self.path)
            self.settings = self.settings.with_overrides(
                {
                    "embedder.backend": record.embedder_backend,
                    "embedder.model": record.embedder_model,
                    "chunking.chunk_tokens": record.chunk_tokens,
                    "chunking.overlap_tokens": record.overlap_tokens,
                    "store.backend": record.store_backend,
                }
            )
        self.record = record

    # ---- parts, loaded on first use ------------------------------------------------
    @cached_property
    def embedder(self) -> Embedder:
        """The embedder (loaded on first use); with backend auto before the first ingest, the English model."""
        s = self.settings.embedder
        backend, model = (s.backend, s.model) if s.backend != "auto" else ENGLISH  # auto, before the first ingest
        return make_embedder(backend, model, device=s.device, batch_size=s.batch_size, precision=s.precision)

    def _choose_embedder(self, paths: Sequence[str | Path]) -> str | None:
        """embedder.backend = auto, first ingest: pick by the corpus's languages (app/embedder_choice.py)."""
        if self.record is not None or self.settings.embedder.backend != "auto":
            return None
        backend, model, why = choose_embedder(paths)
        self.settings = self.settings.with_overrides({"embedder.backend": backend, "embedder.model": model})
        for part in ("embedder", "store", "retriever"):
            self.__dict__.pop(part, None)
        return f"embedder: {model_name(backend, model)} (embedder.backend = auto: {why})"

    @cached_property
    def store(self) -> VectorStore:
        """The vector store of this directory (or its Chroma collection), opened on first use."""
        dim = self.record.dim if self.record else self.embedder.dim
        s = self.settings.store
        return make_store(
            s.backend,
            self.path,
            dim,
            url=s.chroma_url,
            collection=self.layout.collection(s.chroma_url),
            faiss_options=s.faiss_options(),
            chroma_ef_search=s.chroma_ef_search,
        )

    @cached_property
    def keyword_index(self) -> BM25Index:
        """The BM25 index; one built by an older tokenizer is re-tokenized from the stored texts first."""
        index = BM25Index(self.layout.bm25)
        if index.stale:  # built by an older tokenizer: re-tokenize from the stored chunk texts
            index.retokenize(self.store.get)
        return index

    @cached_property
    def manifest(self) -> Manifest:
        """The record of ingested documents (source, hash, chunk ids)."""
        return Manifest(self.layout.manifest)

    @cached_property
    def retriever(self) -> Retriever:
        """Dense, BM25 or hybrid retrieval over the store and BM25 index, per `settings.retrieval`."""
        s = self.settings.retrieval
        return Retriever(self.embedder, self.store, self.keyword_index, config=RetrieverConfig.from_mapping(s.model_dump()))

    @property
    def llm(self) -> LLM:
        """The LLM given to the constructor, else the one `settings.llm` names (made on first use)."""
        with self._lock:
            if self._llm is None:
                self._llm = make_llm(self.settings.llm, self.settings.cache_dir)
            return self._llm

    def warm_up(self, llm: bool = True) -> None:
        """Load the models now (at server start-up) rather than on the first question: the
        reader where answers may be extractive, the LLM where they may be generative."""
        self.embedder.embed_query("warm up")
        if not llm:
            return
        modes = {self.answerer.mode_for(lang) for lang in ("en", "zh")}
        if "extractive" in modes or self.settings.answer.verify:
            self.answerer.reader.warm_up()
        if "generative" in modes and hasattr(self.llm, "warm_up"):
            self.llm.warm_up()

    # ---- ingestion -----------------------------------------------------------------
    def _ingestor(self, progress: bool) -> Ingestor:
        self._ensure_record()
        c, i = self.settings.chunking, self.settings.ingest
        return Ingestor(
            self.manifest,
            self.store,
            self.embedder,
            chunk_tokens=c.chunk_tokens,
            overlap_tokens=c.overlap_tokens,
            keyword_index=self.keyword_index,
            progress=progress,
            batch_chunks=i.batch_chunks,
            lock=KBLock(self.path, timeout_s=i.lock_timeout_s),
            workers=i.workers,
            file_timeout_s=i.file_timeout_s,
            max_file_bytes=int(i.max_file_mb * 2**20),
            redact_pii=i.redact_pii,
            strip_injections=i.strip_injections,
            ocr=i.ocr,
            ocr_dpi=i.ocr_dpi,
            embed_cache=EmbedCache(self.layout.embed_cache) if i.reuse_embeddings else None,
        )

    def _ensure_record(self) -> None:
        if self.record is None:
            e, c = self.settings.embedder, self.settings.chunking
            self.record = KBRecord(
                e.backend,
                model_name(e.backend, e.model),
                self.embedder.dim,
                c.chunk_tokens,
                c.overlap_tokens,
                self.settings.store.backend,
                created=int(time.time()),
            )
            write_record(self.path, self.record)

    def ingest(self, paths: Sequence[str | Path], *, progress: bool = False, password: str | None = None, prune: bool = False) -> IngestSummary:
        """Ingest files and folders (new or changed files only); `password` opens encrypted documents; `prune` also
        removes documents recorded under a given folder that are no longer there. Writes `kb.json` on the first ingest;
        returns each file's result (added, replaced, unchanged, removed, skipped, failed) and the chunk counts."""
        with self._lock:
            chosen = self._choose_embedder(paths)
            summary = self._ingestor(progress).ingest(paths, password=password, prune=prune)
            if chosen:
                summary.notes.append(chosen)
            return summary

    def remove(self, paths: Sequence[str | Path]) -> IngestSummary:
        """Delete the chunks and manifest records of these documents (a folder: every document under it); returns what went."""
        with self._lock:
            return self._ingestor(progress=False).remove(paths)

    def reconcile(self) -> int:
        """Finish what a killed writer left, as every ingest starts by doing (ingest/reconcile.py); returns the stray chunks deleted."""
        if self.record is None:
            return 0
        with self._lock:
            return self._ingestor(progress=False).reconcile()

    def documents(self) -> list[dict]:
        """One dict per ingested document: source, chunks, pages, bytes, ingested_at (Unix time), doc_hash."""
        return [
            {"source": r.source, "chunks": len(r.chunk_ids), "pages": r.pages, "bytes": r.size, "ingested_at": r.ingested_at, "doc_hash": r.doc_hash}
            for r in self.manifest.all()
        ]

    # ---- questions -----------------------------------------------------------------
    def search(self, question: str, k: int | None = None, mode: str | None = None, history: Sequence[Message] | None = None) -> Retrieval:
        """Retrieve chunks; with `history`, a follow-up question is first made standalone."""
        if self.record is None:
            return Retrieval([], False)
        if history and self.settings.retrieval.rewrite:
            from kbqa.retrieval.rewrite import rewrite_query

            question = rewrite_query(question, history)
        return self.retriever.retrieve(question, k or self.settings.retrieval.k, mode)

    def assemble(self, hits: Sequence[Hit]) -> list[Hit]:
        """Retrieved chunks -> the passages the model reads (merged, small-to-big, within the token budget)."""
        from kbqa.retrieval.context import assemble_context, context_budget

        def document_chunk_ids(chunk):
            records = self.manifest.find_by_hash(chunk.doc_hash) if chunk.doc_hash else []
            return next((r.chunk_ids for r in records if r.source == chunk.source), None)

        s = self.settings.llm
        return assemble_context(
            hits,
            budget_tokens=context_budget(s.max_context_tokens, s.max_new_tokens),
            count_tokens=self.embedder.count_tokens,
            document_chunk_ids=document_chunk_ids,
            fetch=self.store.get,
            neighbors=self.settings.retrieval.context_neighbors,
        )

    def retrieve(self, question: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        """The hits of `search` (k defaults to retrieval.k; mode dense | bm25 | hybrid), best first."""
        return self.search(question, k, mode).hits

    def llm_for(self, adapter: str | None = None) -> LLM:
        """The LLM answering with LoRA adapter `adapter`: a name from ``llm.adapters``,
        ``"base"`` (no adapter) or None (the default). Shares the loaded base model."""
        from kbqa.retrieval.llm.adapters import select_adapter

        return select_adapter(self.llm, adapter)

    @cached_property
    def answerer(self) -> Answerer:
        """Answers in the mode the settings choose per language: extractive from the reader, or generative from the LLM checked against the passages."""
        return Answerer(self.settings, self._make_reader)

    def _make_reader(self):
        if self._reader is not None:  # no lock once made: an ingest holds it for minutes
            return self._reader
        with self._lock:
            if self._reader is None:
                from kbqa.retrieval.readers import make_reader

                self._reader = make_reader(self.settings.answer.reader, device=self.settings.llm.device)
            return self._reader

    # ---- answering: thin uses of the one flow (app/answer_service.py) -------------------
    @cached_property
    def answering(self) -> AnswerService:
        """The answering flow and its answer cache."""
        return AnswerService(self)

    def prepare(self, question: str, k: int | None = None, history: Sequence[Message] | None = None) -> Prepared:
        """Retrieve and assemble the passages for `question`, as `ask` does, without answering."""
        return self.answering.prepare(question, k, history)

    def ask(self, question: str, k: int | None = None, history: Sequence[Message] | None = None, *, adapter: str | None = None) -> Answer:
        """Answer `question` from the knowledge base, with its sources and timings (ms); "not found" when retrieval finds nothing.

        `history` makes a follow-up standalone; `adapter` picks a LoRA adapter (see `llm_for`); answers may come from the cache."""
        return self.answering.ask(question, k, history, adapter=adapter)

    def ask_batch(self, questions: Sequence[str], k: int | None = None, *, batch_size: int = 8, on_done=None) -> list[Answer]:
        """`ask` for many questions; generative answers are made `batch_size` at a time (`LLM.batch`).

        Same retrieval, prompts and checks as `ask`; a batch's generation time is shared equally
        by its answers in `timings`. `on_done(n)` is called as answers are made."""
        return self.answering.ask_batch(questions, k, batch_size=batch_size, on_done=on_done)

    def stream(self, question: str, k: int | None = None, history: Sequence[Message] | None = None) -> Iterator[str]:
        """Yield the answer's text as it is generated. Sources: use `stream_with_sources` or `ask`."""
        _, tokens = self.stream_with_sources(question, k, history)
        yield from tokens

    def stream_with_sources(
        self,
        question: str,
        k: int | None = None,
        history: Sequence[Message] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        adapter: str | None = None,
        sampling: Sampling | None = None,
        instructions: str | None = None,
        llm: LLM | None = None,
    ) -> tuple[Retrieval, CheckedStream]:
        """Retrieve now; return the retrieval (sources before the first token) and the text stream.

        The stream's `result` (mode, grounded, unsupported parts, the replacement of an answer
        that failed its check) is set when it ends. Used by the server: one retrieval per
        answer, with per-request generation limits, sampling options, a client's
        `instructions` (added under the grounding rules) and LoRA adapter (see `llm_for`).
        Shares `ask`'s answer cache when those are the defaults: a cached answer comes back at
        once, in word-sized pieces; a stream read to its end is remembered (one closed early is not).
        `llm`: ``llm_for(adapter)`` when the caller has already looked it up (the server does).
        """
        return self.answering.stream(
            question, k, history, max_tokens=max_tokens, temperature=temperature, adapter=adapter, sampling=sampling, instructions=instructions, llm=llm
        )

    def as_langchain_retriever(self, k: int | None = None, mode: str | None = None):
        """A LangChain `BaseRetriever` over this knowledge base (``pip install 'kbqa[langchain]'``)."""
        try:
            from kbqa.app.langchain_adapter import KnowledgeBaseRetriever
        except ImportError as exc:
            raise ImportError(f"the LangChain retriever needs langchain-core: pip install 'kbqa[langchain]' ({exc})") from exc
        return KnowledgeBaseRetriever(kb=self, k=k or self.settings.retrieval.k, mode=mode)

    def as_llamaindex_retriever(self, k: int | None = None, mode: str | None = None):
        """A LlamaIndex retriever over this knowledge base (``pip install 'kbqa[llamaindex]'``)."""
        try:
            from kbqa.app.llamaindex_adapter import KnowledgeBaseLlamaRetriever
        except ImportError as exc:
            raise ImportError(f"the LlamaIndex retriever needs llama-index-core: pip install 'kbqa[llamaindex]' ({exc})") from exc
        return KnowledgeBaseLlamaRetriever(self, k or self.settings.retrieval.k, mode)
