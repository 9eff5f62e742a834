"""The answer cache: repeated identical questions are answered without the model, and any
change to the question, settings or knowledge base's content misses the cache."""

from __future__ import annotations

import pytest

from kbqa.app.answer_cache import AnswerCache, cache_key


class CountingLLM:
    """A fake model (unit test of the cache's logic): answers with a call counter."""

    name = "counting"

    def __init__(self):
        self.calls = 0

    def generate(self, messages, *, max_tokens=256, temperature=0.0, sampling=None):
        self.calls += 1
        return f"answer {self.calls}"

    def stream(self, messages, *, max_tokens=256, temperature=0.0, sampling=None):
        yield self.generate(messages)

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, sampling=None):
        return [self.generate(m) for m in conversations]


def test_lru_evicts_oldest_and_returns_copies():
    cache = AnswerCache(max_entries=2)
    cache.put("a", {"x": [1]})
    cache.put("b", 2)
    assert cache.get("a") == {"x": [1]}  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("c") == 3
    got = cache.get("a")
    got["x"].append(2)
    assert cache.get("a") == {"x": [1]}  # callers cannot change what is cached
    off = AnswerCache(max_entries=0)
    off.put("a", 1)
    assert off.get("a") is None


def test_key_depends_on_every_part():
    base = cache_key("When did it open?", 5, {"llm": {"model": "m"}}, (1, 2.0, 3))
    assert base == cache_key("  When did it open?\n", 5, {"llm": {"model": "m"}}, (1, 2.0, 3))
    assert base != cache_key("When did it close?", 5, {"llm": {"model": "m"}}, (1, 2.0, 3))
    assert base != cache_key("When did it open?", 6, {"llm": {"model": "m"}}, (1, 2.0, 3))
    assert base != cache_key("When did it open?", 5, {"llm": {"model": "n"}}, (1, 2.0, 3))
    assert base != cache_key("When did it open?", 5, {"llm": {"model": "m"}}, (1, 2.5, 3))


@pytest.fixture()
def small_kb(tmp_path, settings):
    from kbqa.app.kb import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "railway.md").write_text(
        "# Lanshan Mountain Railway\n\nThe Lanshan Mountain Railway opened in 1931 and climbs 42 kilometres to the summit.\n",
        encoding="utf-8",
    )
    llm = CountingLLM()
    kb = KnowledgeBase(tmp_path / "kb", settings.with_overrides({"retrieval.min_score": -1.0, "answer.mode": "generative", "answer.verify": False}), llm=llm)
    assert kb.ingest([docs]).ok
    return kb, llm, docs


def test_repeated_question_is_answered_from_cache(small_kb):
    kb, llm, _ = small_kb
    first = kb.ask("When did the Lanshan Mountain Railway open?")
    again = kb.ask("When did the Lanshan Mountain Railway open?")
    assert llm.calls == 1
    assert again.answer == first.answer == "answer 1"
    assert [h.chunk.id for h in again.sources] == [h.chunk.id for h in first.sources]
    assert "cache_ms" in again.timings and "cache_ms" not in first.timings
    kb.ask("When did the Lanshan Mountain Railway open?", k=2)  # another k: a new answer
    kb.ask("When did the Lanshan Mountain Railway open?", history=[{"role": "user", "content": "hi"}])
    assert llm.calls == 3


def test_changed_knowledge_base_misses_the_cache(small_kb):
    kb, llm, docs = small_kb
    kb.ask("How long is the railway?")
    (docs / "railway.md").write_text("# Lanshan Mountain Railway\n\nThe line is 45 kilometres long since 1990.\n", encoding="utf-8")
    assert kb.ingest([docs]).ok
    kb.ask("How long is the railway?")
    assert llm.calls == 2


def test_sampling_is_never_cached(small_kb):
    kb, llm, _ = small_kb
    kb.settings = kb.settings.with_overrides({"llm.temperature": 0.7})
    kb.ask("How long is the railway?")
    kb.ask("How long is the railway?")
    assert llm.calls == 2


def test_streamed_answers_share_the_cache(small_kb):
    kb, llm, _ = small_kb
    q = "When did the Lanshan Mountain Railway open?"
    first, tokens = kb.stream_with_sources(q)
    assert "".join(tokens) == "answer 1"
    again, tokens = kb.stream_with_sources(q)
    assert list(tokens) == ["answer ", "1"] and llm.calls == 1  # from the cache, in word-sized pieces
    assert [h.chunk.id for h in again.hits] == [h.chunk.id for h in first.hits] and again.found
    assert kb.ask(q).answer == "answer 1" and llm.calls == 1  # ask and stream share it
    _, tokens = kb.stream_with_sources(q, max_tokens=7)  # per-request limits: not the cached answer
    assert "".join(tokens) == "answer 2"


def test_a_stream_closed_early_is_not_cached(small_kb):
    kb, llm, _ = small_kb
    q = "How long is the railway?"
    _, tokens = kb.stream_with_sources(q)
    next(tokens)
    tokens.close()  # the client went away
    _, tokens = kb.stream_with_sources(q)
    assert "".join(tokens) == "answer 2" and llm.calls == 2
