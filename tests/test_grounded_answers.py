"""Grounded answers on the sample knowledge base, with the shipped reader: the extractive
default in both languages, "not found", and generated answers that fail their check (a
stand-in LLM forges them) being replaced, in `ask`, streaming, the CLI and the REST API."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from live_server import running
from kbqa.retrieval.prompts import NOT_FOUND

FORGED = "1. 可以免费改签一次，须在原车次发车前23000元 [1]"


class ForgingLLM:
    """Answers every question with the same text (a forged number, or a citation of a block that is not there)."""

    name = "forging"

    def __init__(self, text: str):
        self.text = text

    def generate(self, messages, *, max_tokens=256, temperature=0.0, sampling=None):
        return self.text

    def stream(self, messages, *, max_tokens=256, temperature=0.0, sampling=None):
        yield from (self.text[:10], self.text[10:])

    def batch(self, conversations, *, max_tokens=256, temperature=0.0, sampling=None):
        return [self.text for _ in conversations]


def _name(hit) -> str:
    return hit.chunk.source.rsplit("/", 1)[-1]


def test_extractive_default_answers_the_children_question_from_the_faq(sample_kb):
    answer = sample_kb.ask("多大的儿童可以免票？")
    assert answer.mode == "extractive" and answer.found and answer.grounded
    assert "6周岁" in answer.answer, answer.answer
    cited = int(answer.answer.rsplit("[", 1)[1].rstrip("]"))
    assert _name(answer.sources[cited - 1]) == "faq_zh.md"
    assert answer.evidence and "免票" in answer.evidence
    assert answer.answer.split(" [")[0] in answer.sources[cited - 1].chunk.text  # a quote, by construction


def test_extractive_default_says_not_found_for_the_capital_of_peru(sample_kb):
    answer = sample_kb.ask("What is the capital of Peru?")
    assert answer.answer == NOT_FOUND["en"] and not answer.found and answer.sources == []


@pytest.mark.parametrize(
    "query, key",
    [
        ("What is the track gauge of the Lanshan Mountain Railway?", "800"),
        ("How long is the Cloudgate Tunnel?", "1,146"),
    ],
)
def test_extractive_answers_in_english_hold_the_key_fact(sample_kb, sample_kb_dir, settings, query, key):
    from kbqa.app.kb import KnowledgeBase

    # its own answer cache, so that other tests asking the same question on `sample_kb` are not answered from it
    kb = KnowledgeBase(sample_kb_dir, settings, reader=sample_kb.answerer.reader)
    answer = kb.ask(query)
    assert answer.mode == "extractive" and key in answer.answer, answer.answer


def _generative(sample_kb_dir, settings, text):
    from kbqa.app.kb import KnowledgeBase

    return KnowledgeBase(sample_kb_dir, settings.with_overrides({"answer.mode": "generative"}), llm=ForgingLLM(text))


def test_a_forged_number_is_replaced_by_the_supporting_quote(sample_kb_dir, settings):
    kb = _generative(sample_kb_dir, settings, FORGED)
    answer = kb.ask("多大的儿童可以免票？")
    assert answer.mode == "generative" and not answer.grounded
    assert any("23000" in u for u in answer.unsupported)
    assert "23000" not in answer.answer and "6周岁" in answer.answer
    assert answer.to_dict()["grounded"] is False and answer.to_dict()["answer_mode"] == "generative"


def test_a_citation_of_a_missing_block_is_caught_and_unanswerable_is_withheld(sample_kb_dir, settings):
    kb = _generative(sample_kb_dir, settings, "The railway opened in 1911 [9].")
    answer = kb.ask("Who was the first stationmaster of Mirror Lake Station, and what was his salary?")
    assert not answer.grounded and any("[9]: no such block" in u for u in answer.unsupported)
    if not answer.found:
        assert answer.answer == NOT_FOUND["en"] and answer.sources == []


def test_a_supported_generation_is_kept(sample_kb_dir, settings):
    kb = _generative(sample_kb_dir, settings, "未满6周岁的儿童免票 [1]。")
    answer = kb.ask("多大的儿童可以免票？")
    assert answer.grounded and answer.answer == "未满6周岁的儿童免票 [1]。"


def test_streaming_carries_the_verdict_at_the_end(sample_kb_dir, settings):
    kb = _generative(sample_kb_dir, settings, FORGED)
    result, stream = kb.stream_with_sources("多大的儿童可以免票？", max_tokens=99)
    assert result.found and stream.result is None
    assert "".join(stream) == FORGED
    assert stream.result is not None and not stream.result.grounded and stream.result.replaced and "6周岁" in stream.result.text


def test_ask_json_shows_the_mode_and_the_verdict(sample_kb_dir):
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "ask", "多大的儿童可以免票？", "--kb", str(sample_kb_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    payload = json.loads(out.stdout)
    assert payload["answer_mode"] == "extractive" and payload["grounded"] is True and payload["found"] is True
    assert "6周岁" in payload["answer"] and payload["evidence"]


@pytest.fixture(scope="module")
def forged_server(sample_kb_dir, settings):
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.server.auth import KeyRing
    from kbqa.app.service import QAService

    s = settings.with_overrides({"answer.mode": "generative"})
    service = QAService.open([f"sample={sample_kb_dir}"], s, llm=ForgingLLM(FORGED))
    with running(build_app(service, KeyRing([]), ServerConfig(ui=False))) as url:
        yield url


def test_api_reports_mode_and_verdict_beside_sources(forged_server):
    body = {"model": "sample", "messages": [{"role": "user", "content": "多大的儿童可以免票？"}]}
    with httpx.Client(base_url=forged_server, timeout=600) as h:
        reply = h.post("/v1/chat/completions", json=body).json()
        assert reply["answer_mode"] == "generative" and reply["grounded"] is False
        assert any("23000" in u for u in reply["unsupported"])
        content = reply["choices"][0]["message"]["content"]
        assert "23000" not in content and "6周岁" in content and reply["sources"]
        # another max_tokens: generated now, not the checked answer the cache holds from the request above
        with h.stream("POST", "/v1/chat/completions", json=body | {"stream": True, "max_tokens": 99}) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    final = events[-1]
    assert streamed == FORGED  # streamed as generated, then the verdict comes with the final event
    assert final["grounded"] is False and final["answer_mode"] == "generative"
    assert "6周岁" in final["replacement"] and final["sources"]
