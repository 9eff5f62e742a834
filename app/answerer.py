"""From retrieved blocks to a grounded answer, in the mode the settings choose.

One object per knowledge base, used by `ask`, `ask_batch` and `stream_with_sources`:
extractive answers come from the reader, generative ones from the LLM and are checked
against their cited blocks (replaced by the reader's quote, or "not found", when they fail).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from kbqa.retrieval.answering import CheckedStream, Grounded, checked_answer, choose_mode, extractive_answer, model_languages, not_found
from kbqa.retrieval.prompts import build_messages
from kbqa.retrieval.protocols import LLM, Sampling
from kbqa.retrieval.types import Answer, Hit


class Answerer:
    def __init__(self, settings, reader: Callable[[], object]):
        self.settings = settings  # the whole Settings: answer and llm sections
        self._reader = reader  # returns the (shared, lazily made) reader

    @property
    def reader(self):
        return self._reader()

    def mode_for(self, lang: str) -> str:
        a, m = self.settings.answer, self.settings.llm
        model = m.model if m.backend in ("transformers", "llama_cpp", "auto") else f"{m.backend}:{m.model}"  # only the local one is the packaged model
        return choose_mode(a.mode, model, model_languages(a.model_languages, model), lang)

    def threshold(self, lang: str) -> float:
        t = self.settings.answer.reader_threshold
        return self.reader.threshold_for(lang) if t is None else t

    def extract(self, question: str, hits: Sequence[Hit], lang: str) -> Grounded:
        return extractive_answer(self.reader, question, hits, lang, threshold=self.threshold(lang), style=self.settings.answer.extractive_style)

    def check(self, text: str, question: str, hits: Sequence[Hit], lang: str) -> Grounded:
        if not self.settings.answer.verify:
            return Grounded(text.strip(), "generative")
        return checked_answer(text, hits, lang, lambda: self.extract(question, hits, lang))

    def answer(self, llm: LLM, question: str, hits: Sequence[Hit], lang: str) -> tuple[Grounded, float]:
        """(the answer, milliseconds spent making it)."""
        started = time.perf_counter()
        if self.mode_for(lang) == "extractive":
            result = self.extract(question, hits, lang)
        else:
            s = self.settings.llm
            text = llm.generate(build_messages(question, hits, lang), max_tokens=s.max_new_tokens, temperature=s.temperature)
            result = self.check(text, question, hits, lang)
        return result, (time.perf_counter() - started) * 1000

    def answer_many(self, llm: LLM, jobs: Sequence[tuple[str, Sequence[Hit], str]], batch_size: int) -> list[tuple[Grounded, float]]:
        """`answer` for (question, hits, lang) jobs, the generative ones `batch_size` at a time."""
        out: list[tuple[Grounded, float] | None] = [None] * len(jobs)
        generative = []
        for i, (question, hits, lang) in enumerate(jobs):
            if self.mode_for(lang) == "extractive":
                out[i] = self.answer(llm, question, hits, lang)
            else:
                generative.append(i)
        s = self.settings.llm
        for start in range(0, len(generative), max(1, batch_size)):
            group = generative[start : start + max(1, batch_size)]
            started = time.perf_counter()
            texts = llm.batch([build_messages(jobs[i][0], jobs[i][1], jobs[i][2]) for i in group], max_tokens=s.max_new_tokens, temperature=s.temperature)
            checked = [self.check(t, *jobs[i]) for t, i in zip(texts, group)]
            each_ms = (time.perf_counter() - started) * 1000 / len(group)
            for i, result in zip(group, checked):
                out[i] = (result, each_ms)
        return [o for o in out if o is not None]

    def stream(
        self,
        llm: LLM,
        question: str,
        hits: Sequence[Hit],
        lang: str,
        *,
        max_tokens: int,
        temperature: float,
        sampling: Sampling | None = None,
        instructions: str | None = None,
    ) -> CheckedStream:
        """The answer as a `CheckedStream`; its `prompt` holds the texts the answer was made from
        (the messages sent to the LLM, or the question and the blocks the reader read)."""
        if self.mode_for(lang) == "extractive":
            stream = CheckedStream(done=self.extract(question, hits, lang))
            stream.prompt = [question, *(h.chunk.text for h in hits)]
            return stream
        messages = build_messages(question, hits, lang, instructions)
        tokens = llm.stream(messages, max_tokens=max_tokens, temperature=temperature, sampling=sampling)
        stream = CheckedStream(tokens, lambda text: self.check(text, question, hits, lang))
        stream.prompt = [m["content"] for m in messages]
        return stream

    def not_found(self, lang: str) -> Grounded:
        return not_found(lang, self.mode_for(lang))


def to_answer(result: Grounded, hits: Sequence[Hit], timings: dict[str, float]) -> Answer:
    return Answer(
        result.text,
        list(hits) if result.found else [],
        timings,
        found=result.found,
        mode=result.mode,
        grounded=result.grounded,
        unsupported=list(result.unsupported),
        evidence=result.evidence,
    )
