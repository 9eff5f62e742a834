"""The one answering flow (app/answer_service.py): `prepare`'s `Prepared`, not found, the LLM
resolved once per request, and `ask`, `ask_batch` and the stream answering alike.

Real embedder and retrieval over a two-document knowledge base; the LLM is a fake that
records what it is sent, so the prompts can be compared."""

from __future__ import annotations

import pytest

from kbqa.app.answer_service import Prepared
from kbqa.app.evaluation import rag_prompts
from kbqa.eval.datasets import QAItem
from kbqa.retrieval.prompts import build_messages

OPENED = "When did the Lanshan Mountain Railway open?"
LENGTH = "How long is the Lanshan Mountain Railway?"
NONSENSE = "zqxv plorkh wibbleflump quandrix?"


class RecordingLLM:
    """A fake model: answers "answer <n>" and keeps every conversation it was sent."""

    name = "recording"

    def __init__(self):
        self.sent: list[list[dict]] = []

    def generate(self, messages, *, max_tokens=256, temperature=0.0, sampling=None):
        self.sent.append(messages)
        return f"answer {len(self.sent)}"

    def stream(self, messages, *, max_tokens=256, temperature=0.0, sampling=None):
        yield self.generate(messages)

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, sampling=None):
        return [self.generate(m) for m in conversations]

    def for_adapter(self, name):  # no adapters really: the same model under a request's adapter name
        return self


@pytest.fixture(scope="module")
def railway_docs(tmp_path_factory):
    docs = tmp_path_factory.mktemp("railway-docs")
    (docs / "railway.md").write_text(
        "# Lanshan Mountain Railway\n\nThe Lanshan Mountain Railway opened in 1931 and climbs 42 kilometres to the summit.\n",
        encoding="utf-8",
    )
    (docs / "tea.md").write_text("# Tea\n\nGreen tea is steamed or pan-fired soon after picking.\n", encoding="utf-8")
    return docs


def make_kb(tmp_path, settings, docs, **overrides):
    from kbqa.app.kb import KnowledgeBase

    llm = RecordingLLM()
    s = settings.with_overrides({"answer.mode": "generative", "answer.verify": False, **overrides})
    kb = KnowledgeBase(tmp_path / "kb", s, llm=llm)
    if docs is not None:
        assert kb.ingest([docs]).ok
    return kb, llm


def count_llm_for(kb, monkeypatch) -> list:
    calls = []
    real = kb.llm_for

    def llm_for(adapter=None):
        calls.append(adapter)
        return real(adapter)

    monkeypatch.setattr(kb, "llm_for", llm_for)
    return calls


def test_prepare_returns_the_assembled_retrieval(tmp_path, settings, railway_docs):
    kb, llm = make_kb(tmp_path, settings, railway_docs, **{"retrieval.min_score": -1.0})
    p = kb.prepare(OPENED)
    assert isinstance(p, Prepared)
    assert p.question == OPENED and p.lang == "en" and p.found and p.retrieve_ms >= 0
    assert p.hits is p.retrieval.hits and "1931" in p.hits[0].chunk.text
    assert p.hits == kb.assemble(kb.search(OPENED).hits)  # the passages the model reads, not the raw hits
    assert p.timings(7.0) == {"retrieve_ms": p.retrieve_ms, "generate_ms": 7.0}
    assert llm.sent == []  # preparing answers nothing


def test_rag_prompts_are_the_prompts_ask_batch_sends(tmp_path, settings, railway_docs):
    kb, llm = make_kb(tmp_path, settings, railway_docs, **{"retrieval.min_score": -1.0})
    items = [QAItem(OPENED, ["1931"], id="a"), QAItem(LENGTH, ["42 kilometres"], id="b")]
    prompts = rag_prompts(kb, items, progress=False)
    answers = kb.ask_batch([it.question for it in items], batch_size=2)
    assert [p["messages"] for p in prompts] == llm.sent
    assert [a.answer for a in answers] == ["answer 1", "answer 2"]
    assert prompts[0]["messages"] == build_messages(OPENED, kb.prepare(OPENED).hits, "en")


def test_ask_batch_answers_as_ask_does(tmp_path, settings, railway_docs):
    kb, llm = make_kb(tmp_path, settings, railway_docs, **{"retrieval.min_score": -1.0, "llm.answer_cache": 0})
    batch = kb.ask_batch([OPENED, LENGTH], batch_size=1)
    one = [kb.ask(OPENED), kb.ask(LENGTH)]
    assert llm.sent[:2] == llm.sent[2:]  # the same prompts
    for a, b in zip(batch, one):
        assert (a.found, a.mode, a.grounded) == (b.found, b.mode, b.grounded)
        assert [h.chunk.id for h in a.sources] == [h.chunk.id for h in b.sources]
        assert set(a.timings) == set(b.timings) == {"retrieve_ms", "generate_ms"}


def test_not_found_without_the_model(tmp_path, settings):
    kb, llm = make_kb(tmp_path, settings, None)  # nothing ingested: nothing can be found
    p = kb.prepare(OPENED)
    assert not p.found and p.hits == []
    answer = kb.ask(OPENED)
    assert not answer.found and answer.sources == [] and answer.timings["generate_ms"] == 0.0
    done = []
    batch = kb.ask_batch([OPENED, "铁路什么时候开通的？"], on_done=done.append)
    assert [a.found for a in batch] == [False, False] and sum(done) == 2
    assert batch[0].answer == answer.answer and batch[1].answer != answer.answer  # each in its question's language
    retrieval, stream = kb.stream_with_sources(OPENED)
    assert not retrieval.found and "".join(stream) == answer.answer and stream.result.found is False
    assert llm.sent == []


def test_a_batch_mixes_found_and_not_found_in_order(tmp_path, settings, railway_docs):
    kb, llm = make_kb(tmp_path, settings, railway_docs)  # the embedder's own relevance floor
    assert kb.prepare(OPENED).found and not kb.prepare(NONSENSE).found
    done = []
    batch = kb.ask_batch([NONSENSE, OPENED, NONSENSE], batch_size=4, on_done=done.append)
    assert [a.found for a in batch] == [False, True, False] and sum(done) == 3
    assert batch[1].answer == "answer 1" and len(llm.sent) == 1


def test_the_llm_is_resolved_once_per_request(tmp_path, settings, railway_docs, monkeypatch):
    kb, llm = make_kb(tmp_path, settings, railway_docs, **{"retrieval.min_score": -1.0})
    calls = count_llm_for(kb, monkeypatch)
    kb.ask(OPENED)
    assert calls == [None]
    kb.ask(OPENED)  # a cache hit: resolved for its key, once
    assert calls == [None, None]
    _, stream = kb.stream_with_sources(LENGTH, adapter="base")
    "".join(stream)
    assert calls == [None, None, "base"]
    kb.ask_batch([OPENED, LENGTH])
    assert calls == [None, None, "base", None]
    assert len(llm.sent) == 4  # ask, the stream, the batch's two; the repeated ask came from the cache


def test_ask_and_the_stream_share_the_cache_and_ask_batch_does_not(tmp_path, settings, railway_docs):
    kb, llm = make_kb(tmp_path, settings, railway_docs, **{"retrieval.min_score": -1.0})
    _, stream = kb.stream_with_sources(OPENED)
    streamed = "".join(stream)
    asked = kb.ask(OPENED)
    assert asked.answer == streamed == "answer 1" and "cache_ms" in asked.timings
    retrieval, replay = kb.stream_with_sources(OPENED)
    assert "".join(replay) == "answer 1" and [h.chunk.id for h in retrieval.hits] == [h.chunk.id for h in asked.sources]
    assert len(llm.sent) == 1
    kb.ask_batch([OPENED])  # neither reads nor fills the cache
    assert len(llm.sent) == 2 and kb.answering.cache.hits == 2


def test_a_chat_completion_resolves_the_llm_once(tmp_path, settings, railway_docs, monkeypatch):
    """One /v1/chat/completions request (a real server): the adapter check, the answer and the
    token counter share one `llm_for` lookup, streamed or not, with or without an adapter."""
    import httpx

    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.service import QAService
    from live_server import running

    kb, llm = make_kb(tmp_path, settings, railway_docs, **{"retrieval.min_score": -1.0, "llm.answer_cache": 0})
    calls = count_llm_for(kb, monkeypatch)
    ask = {"messages": [{"role": "user", "content": OPENED}]}
    with running(build_app(QAService({"kb": kb}, kb.settings), config=ServerConfig(ui=False))) as url, httpx.Client(base_url=url, timeout=600) as h:
        reply = h.post("/v1/chat/completions", json={"model": "kb", **ask})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "answer 1" and reply.json()["usage"]["completion_tokens"] > 0
        assert calls == [None]
        with h.stream("POST", "/v1/chat/completions", json={"model": "kb:base", "stream": True, **ask}) as r:
            assert r.status_code == 200 and "[DONE]" in r.read().decode()
        assert calls == [None, "base"]
    assert len(llm.sent) == 2
