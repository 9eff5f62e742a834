"""A knowledge base's one answering flow, used by `ask`, `ask_batch` and `stream_with_sources`.

Every request goes the same way:

    resolve the LLM (and its LoRA adapter) once
    -> answer cache: a hit returns at once (app/answer_cache.py)
    -> prepare: retrieve, assemble the passages, detect the language -> `Prepared`
    -> not found: the "not found" answer in the language's mode
    -> answer: extractive (the reader's quote) or generative (build the messages, generate,
       verify against the cited blocks) -- `Answerer` (app/answerer.py)
    -> answer cache: store it
    -> `Answer` (or, streaming, the retrieval and a `CheckedStream` whose end stores it)

`ask_batch` generates `batch_size` answers at a time and, as before, neither reads nor
fills the cache. Not-found answers are never cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kbqa.app.answer_cache import AnswerCache, cache_key, manifest_state
from kbqa.app.answerer import Answerer, to_answer
from kbqa.retrieval.answering import CheckedStream, Grounded
from kbqa.retrieval.lang import detect_language
from kbqa.retrieval.protocols import LLM, Sampling
from kbqa.retrieval.retriever import Retrieval
from kbqa.retrieval.types import Answer, Hit

if TYPE_CHECKING:
    from kbqa.app.kb import KnowledgeBase

Message = dict[str, str]


@dataclass(frozen=True)
class Prepared:
    """A question retrieved and ready to answer: what `ask` and the stream answer from."""

    question: str
    retrieval: Retrieval  # when found: the assembled passages (neighbours merged, within the token budget)
    lang: str  # the question's language ("en", "zh", ...): it picks the mode and the prompt
    retrieve_ms: float  # retrieval and assembly

    @property
    def found(self) -> bool:
        """Whether retrieval found passages to answer from."""
        return self.retrieval.found

    @property
    def hits(self) -> list[Hit]:
        """The assembled passages, best first (empty when not found)."""
        return self.retrieval.hits

    def timings(self, generate_ms: float = 0.0) -> dict[str, float]:
        """The answer's timings in milliseconds: retrieve_ms and `generate_ms`."""
        return {"retrieve_ms": self.retrieve_ms, "generate_ms": generate_ms}


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class AnswerService:
    """The answering of one `KnowledgeBase`: it reads the knowledge base's parts (retrieval,
    context assembly, LLM, reader, manifest) and owns its answer cache."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self.cache = AnswerCache(kb.settings.llm.answer_cache)

    @property
    def answerer(self) -> Answerer:
        """The knowledge base's `Answerer`."""
        return self.kb.answerer

    # ---- the steps ----------------------------------------------------------------
    def prepare(self, question: str, k: int | None = None, history: Sequence[Message] | None = None) -> Prepared:
        """Retrieve (a follow-up made standalone first), assemble the passages, detect the language."""
        started = time.perf_counter()
        result = self.kb.search(question, k, history=history)
        if result.found:
            result = Retrieval(self.kb.assemble(result.hits), True)
        retrieve_ms = _ms_since(started)
        return Prepared(question, result, detect_language(question), retrieve_ms)

    def not_found(self, prepared: Prepared) -> Answer:
        """The "not found" answer in the question's language, with no sources."""
        return to_answer(self.answerer.not_found(prepared.lang), [], prepared.timings())

    def cache_key(self, question: str, k: int | None, history, adapter: str | None, llm: LLM) -> str | None:
        """The answer cache's key, or None where an answer must not be reused (see app/answer_cache.py)."""
        s = self.kb.settings
        if history or self.kb.record is None or s.llm.temperature > 0 or s.llm.answer_cache <= 0:
            return None
        parts = {
            "retrieval": s.retrieval.model_dump(),
            "llm": s.llm.model_dump(),
            "answer": s.answer.model_dump(),
            "adapter": adapter,
            "model": [type(llm).__name__, getattr(llm, "name", None), getattr(llm, "adapter", None)],
        }
        return cache_key(question, k or s.retrieval.k, parts, manifest_state(self.kb.manifest.conn))

    def _cached(self, key: str | None) -> Answer | None:
        return None if key is None else self.cache.get(key)

    def _store(self, key: str | None, answer: Answer) -> Answer:
        if key is not None:
            self.cache.put(key, answer)
        return answer

    # ---- the requests -------------------------------------------------------------
    def ask(self, question: str, k: int | None = None, history: Sequence[Message] | None = None, *, adapter: str | None = None) -> Answer:
        """`KnowledgeBase.ask`: a cached answer (timings: cache_ms) when allowed, else prepare and answer, and cache it."""
        llm = self.kb.llm_for(adapter)  # once for the request: the cache key and the answer use this one
        started = time.perf_counter()
        key = self.cache_key(question, k, history, adapter, llm)
        if (cached := self._cached(key)) is not None:
            return replace(cached, timings={"retrieve_ms": 0.0, "generate_ms": 0.0, "cache_ms": _ms_since(started)})
        prepared = self.prepare(question, k, history)
        if not prepared.found:
            return self.not_found(prepared)
        grounded, generate_ms = self.answerer.answer(llm, question, prepared.hits, prepared.lang)
        return self._store(key, to_answer(grounded, prepared.hits, prepared.timings(generate_ms)))

    def ask_batch(self, questions: Sequence[str], k: int | None = None, *, batch_size: int = 8, on_done: Callable[[int], object] | None = None) -> list[Answer]:
        """`ask` for many questions (no history, the default adapter, no cache); generative answers
        are made `batch_size` at a time (`LLM.batch`) and share their batch's generation time equally."""
        llm = self.kb.llm_for(None)
        prepared = [self.prepare(q, k) for q in questions]
        answers = {i: self.not_found(p) for i, p in enumerate(prepared) if not p.found}
        if on_done and answers:
            on_done(len(answers))
        todo = [i for i, p in enumerate(prepared) if p.found]
        step = max(1, batch_size)
        for start in range(0, len(todo), step):
            group = todo[start : start + step]
            jobs = [(prepared[i].question, prepared[i].hits, prepared[i].lang) for i in group]
            for i, (grounded, ms) in zip(group, self.answerer.answer_many(llm, jobs, batch_size)):
                answers[i] = to_answer(grounded, prepared[i].hits, prepared[i].timings(ms))
            if on_done:
                on_done(len(group))
        return [answers[i] for i in range(len(questions))]

    def stream(
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
        """The retrieval now and the answer's `CheckedStream` (see `KnowledgeBase.stream_with_sources`).
        The cache is shared with `ask` when the generation options are the defaults. `llm`:
        ``kb.llm_for(adapter)`` already looked up by the caller (else looked up here)."""
        llm = self.kb.llm_for(adapter) if llm is None else llm
        s = self.kb.settings.llm
        key = None
        defaults = (sampling is None or sampling.is_default) and not (instructions and instructions.strip())
        if defaults and max_tokens in (None, s.max_new_tokens) and temperature in (None, s.temperature):
            key = self.cache_key(question, k, history, adapter, llm)
        if (cached := self._cached(key)) is not None:
            return Retrieval(cached.sources, cached.found), _replay(question, cached)
        prepared = self.prepare(question, k, history)
        if not prepared.found:
            return prepared.retrieval, CheckedStream(done=self.answerer.not_found(prepared.lang))
        stream = self.answerer.stream(
            llm,
            question,
            prepared.hits,
            prepared.lang,
            max_tokens=max_tokens or s.max_new_tokens,
            temperature=s.temperature if temperature is None else temperature,
            sampling=sampling,
            instructions=instructions,
        )
        if key is not None:
            stream = self._remembered(stream, key, prepared)
        return prepared.retrieval, stream

    def _remembered(self, stream: CheckedStream, key: str, prepared: Prepared) -> CheckedStream:
        """Pass `stream` on; put the whole (checked) answer in the cache once it ends (not when closed early)."""
        started = time.perf_counter()

        def pieces() -> Iterator[str]:
            try:
                yield from stream
            finally:
                stream.close()  # a stream closed early stops its generation
            if stream.result is not None:
                self._store(key, to_answer(stream.result, prepared.hits, prepared.timings(_ms_since(started))))

        outer = CheckedStream(pieces(), lambda text: stream.result or stream.finish(text))
        outer.prompt = stream.prompt
        return outer


def _replay(question: str, cached: Answer) -> CheckedStream:
    """A cached answer as a finished stream, sent in word-sized pieces."""
    done = Grounded(cached.answer, cached.mode, cached.found, cached.grounded, list(cached.unsupported), cached.evidence)
    replay = CheckedStream(done=done)
    replay.prompt = [question, *(h.chunk.text for h in cached.sources)]
    return replay
