"""One contract for every LLM backend: transformers (the packaged SmolLM2), openai (the
official client against our own `kbqa serve` app on a real uvicorn server on 127.0.0.1),
and vllm (where vLLM can be imported; skipped otherwise).

Through `kbqa serve` the user message is a question answered from the sample knowledge
base, so the conversations are questions about the sample railway.
"""

from __future__ import annotations

import importlib.util

import pytest

from live_server import free_port, running

QUESTIONS = [
    "When did the Lanshan Mountain Railway open to the public?",
    "How much is an adult return ticket for the whole line?",
    "在列车上吸烟会被罚款多少？",
]
CONVERSATIONS = [[{"role": "user", "content": q}] for q in QUESTIONS]
END_MARKERS = ("<|im_end|>", "<|im_start|>", "\nuser\n", "\nassistant\n", "<|endoftext|>")


def _no_vllm_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm; Linux with a CUDA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "vllm needs a CUDA GPU"
    return None


@pytest.fixture(scope="module")
def kbqa_server(settings, sample_kb_dir):
    """Our own `kbqa serve` application (REST API only) on a free port."""
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.service import QAService

    # short prompts (CPU prefill); generative answers: the LLM is what this serves
    s = settings.with_overrides({"retrieval.k": 2, "retrieval.context_neighbors": 0, "answer.mode": "generative", "answer.verify": False})
    service = QAService.open([f"sample={sample_kb_dir}"], s)
    service.warm_up()
    with running(build_app(service, config=ServerConfig(ui=False))) as url:
        yield url


@pytest.fixture(scope="module", params=["transformers", "llama_cpp", "openai", "vllm"])
def backend(request, settings):
    from kbqa.retrieval.llm import make_llm

    name = request.param
    if name == "vllm" and (reason := _no_vllm_reason()):
        pytest.skip(reason)
    if name == "llama_cpp" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install llama-cpp-python)")
    if name == "openai":
        url = request.getfixturevalue("kbqa_server")
        s = settings.llm.model_copy(update={"backend": "openai", "model": "sample", "base_url": f"{url}/v1", "timeout_s": 600.0})
    else:
        update = {"backend": name, "adapter": None} if name == "llama_cpp" else {"backend": name}
        s = settings.llm.model_copy(update=update)
    return make_llm(s, settings.cache_dir)


@pytest.fixture(scope="module")
def tokenizer(settings):
    """The packaged model's tokenizer: the model behind every backend here."""
    from kbqa.retrieval.llm.transformers import TransformersLLM

    return TransformersLLM(cache_dir=settings.cache_dir).tokenizer


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def answers(backend):
    """Each conversation answered once by `generate` (max_tokens=16); the tests compare to these."""
    return [backend.generate(c, max_tokens=16, temperature=0.0) for c in CONVERSATIONS]


class TestLLMContract:
    def test_is_an_llm(self, backend):
        from kbqa.retrieval.protocols import LLM

        assert isinstance(backend, LLM) and backend.name

    def test_generate_returns_text(self, answers):
        assert all(isinstance(text, str) and text.strip() for text in answers)
        assert len(set(answers)) > 1  # different questions get different answers (a RAG server may say "not found" twice)

    def test_stream_joins_to_generate_at_temperature_0(self, backend, answers):
        pieces = list(backend.stream(CONVERSATIONS[1], max_tokens=16, temperature=0.0))
        assert pieces and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces).strip() == answers[1]

    def test_batch_answers_each_conversation_in_order(self, backend, answers):
        assert backend.batch(CONVERSATIONS, max_tokens=16) == answers
        assert backend.batch([], max_tokens=16) == []

    def test_max_tokens_is_respected(self, backend, tokenizer, answers):
        short = backend.generate(CONVERSATIONS[0], max_tokens=5)
        assert 0 < _count(tokenizer, short) <= 5 + 1  # +1: re-tokenising decoded text may split differently
        assert answers[0].startswith(short) and len(answers[0]) > len(short)

    def test_sampling_stop_sequence_ends_the_text_before_it(self, backend, answers):
        from kbqa.retrieval.protocols import Sampling

        words = answers[0].split()
        stop = " " + words[len(words) // 2]
        expected = answers[0][: answers[0].index(stop)].strip()
        assert backend.generate(CONVERSATIONS[0], max_tokens=16, sampling=Sampling(stop=(stop,))) == expected
        assert "".join(backend.stream(CONVERSATIONS[0], max_tokens=16, sampling=Sampling(stop=(stop,)))).strip() == expected

    def test_sampling_seed_repeats_a_sampled_answer(self, backend):
        from kbqa.retrieval.protocols import Sampling

        if type(backend).__name__ == "LlamaCppLLM":
            pytest.xfail("issue #18: a seeded sampled answer does not repeat through llama-cpp-python yet")

        seeded = Sampling(top_p=0.95, seed=5)
        first, again = (backend.generate(CONVERSATIONS[1], max_tokens=12, temperature=1.5, sampling=seeded) for _ in range(2))
        assert first == again

    def test_stops_at_end_of_turn(self, backend, tokenizer):
        limit = 200
        text = backend.generate(CONVERSATIONS[0], max_tokens=limit)
        assert not any(marker in text for marker in END_MARKERS), text
        assert _count(tokenizer, text) < limit - 10, "ran to max_tokens instead of stopping at the end of its turn"


# ---- backend specifics ----------------------------------------------------------------
def test_openai_backend_names_an_unreachable_server():
    from kbqa.retrieval.llm.openai_compat import LLMServerError, OpenAICompatLLM

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    llm = OpenAICompatLLM("any", base_url=url, timeout_s=5, max_retries=0)
    with pytest.raises(LLMServerError, match="cannot connect"):
        llm.generate(CONVERSATIONS[0], max_tokens=4)
    with pytest.raises(LLMServerError, match="cannot connect"):
        list(llm.stream(CONVERSATIONS[0], max_tokens=4))


def test_openai_backend_reports_http_errors(kbqa_server):
    from kbqa.retrieval.llm.openai_compat import LLMServerError, OpenAICompatLLM

    llm = OpenAICompatLLM("no-such-kb", base_url=f"{kbqa_server}/v1", max_retries=0)
    with pytest.raises(LLMServerError, match=r"HTTP 404 for model 'no-such-kb'.*no knowledge base named"):
        llm.generate(CONVERSATIONS[0], max_tokens=4)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_names_the_install_command(settings):
    from kbqa.retrieval.llm import make_llm

    llm = make_llm(settings.llm.model_copy(update={"backend": "vllm"}), settings.cache_dir)  # cheap: nothing imported yet
    with pytest.raises(ImportError, match="pip install vllm"):
        llm.generate(CONVERSATIONS[0], max_tokens=4)


def test_prompt_is_trimmed_to_the_context_window(settings):
    from kbqa.retrieval.llm.transformers import TransformersLLM

    llm = TransformersLLM(cache_dir=settings.cache_dir, max_context_tokens=300)
    context = " ".join(f"Block {i}: the railway has {i} stations and {i * 3} bridges." for i in range(400))
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "an old question " * 50},
        {"role": "assistant", "content": "an old answer " * 50},
        {"role": "user", "content": f"Context:\n{context}\n\nQuestion: How many tunnels are there?"},
    ]
    prompt = llm.prompt_text(messages, max_tokens=40)
    assert llm.count_tokens(prompt) <= 300 - 40
    assert "Answer briefly." in prompt and "How many tunnels are there?" in prompt and "Block 0:" in prompt
    assert "an old question" not in prompt  # older turns go first
    assert llm.generate(messages, max_tokens=8).strip()
    with pytest.raises(ValueError, match="does not fit in a context window of 300"):
        llm.generate(messages, max_tokens=300)


def test_model_without_chat_template_uses_the_fallback(settings, tmp_path):
    """A local model folder whose tokenizer has no chat template (e.g. a base model)."""
    import json
    import shutil

    from kbqa.retrieval.llm.model_cache import packaged_model_dir
    from kbqa.retrieval.llm.transformers import TransformersLLM

    source = packaged_model_dir(settings.cache_dir)
    folder = tmp_path / "no-template"
    folder.mkdir()
    for f in source.iterdir():
        if f.name == "chat_template.jinja":
            continue
        if f.name == "tokenizer_config.json":
            config = json.loads(f.read_text())
            config.pop("chat_template", None)
            (folder / f.name).write_text(json.dumps(config))
        elif f.suffix == ".safetensors":
            (folder / f.name).symlink_to(f)
        else:
            shutil.copy(f, folder / f.name)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
    plain = TransformersLLM(str(folder), device="cpu")
    assert plain.prompt_text(messages) == "System: Be brief.\n\nUser: What is the capital of France?\n\nAssistant:"
    full = plain.generate(messages, max_tokens=32)
    assert full and "\nUser:" not in full  # the fallback's turn marker stops it
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[len(words) // 2]
    stopped = TransformersLLM(str(folder), device="cpu", stop=[stop])
    expected = full[: full.index(stop)].strip()
    assert stopped.generate(messages, max_tokens=32) == expected
    assert "".join(stopped.stream(messages, max_tokens=32)).strip() == expected


# ---- pure logic: trimming and stop sequences --------------------------------------------
def _words(msgs) -> int:
    return sum(len(m["content"].split()) + 1 for m in msgs)


def test_fit_messages_drops_old_turns_then_shortens_the_longest():
    from kbqa.retrieval.llm.context import ELLIPSIS, fit_messages

    msgs = [
        {"role": "system", "content": "sys prompt"},
        {"role": "user", "content": "old " * 10},
        {"role": "assistant", "content": "reply " * 10},
        {"role": "user", "content": "ctx " * 40 + "QUESTION?"},
    ]
    assert fit_messages(msgs, _words, 1000) == msgs
    fitted = fit_messages(msgs, _words, 30)
    assert [m["role"] for m in fitted] == ["system", "user"] and _words(fitted) <= 30
    assert fitted[1]["content"].startswith("ctx") and fitted[1]["content"].endswith("QUESTION?")
    assert ELLIPSIS in fitted[1]["content"]
    with pytest.raises(ValueError, match="does not fit"):
        fit_messages(msgs, lambda m: 10 * len(m), 5)


def test_stop_sequences_in_text_and_streams():
    from kbqa.retrieval.llm.context import cut_at_stop, prompt_budget, stream_until_stop

    assert cut_at_stop("answer\nUser: more", ["\nUser:", "zz"]) == "answer"
    assert cut_at_stop("answer", ["\nUser:"]) == "answer"
    pieces = ["The ans", "wer\nUs", "er: next", " turn"]
    assert "".join(stream_until_stop(pieces, ["\nUser:"])) == "The answer"
    assert "".join(stream_until_stop(pieces, [])) == "".join(pieces)
    assert "".join(stream_until_stop(["abc", "def"], ["zzzz"])) == "abcdef"
    assert prompt_budget(2048, 256, 8192) == 1792 and prompt_budget(None, 10) is None
    with pytest.raises(ValueError, match="max_tokens=300"):
        prompt_budget(300, 300)


def test_openai_backend_trims_with_an_estimate_and_sends_stops():
    from kbqa.retrieval.llm.context import approx_tokens
    from kbqa.retrieval.llm.openai_compat import OpenAICompatLLM

    llm = OpenAICompatLLM("m", base_url="http://127.0.0.1:9/v1", max_context_tokens=300, stop=["\nUser:"])
    long = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "word " * 2000 + "Question?"}]
    request = llm._request(long, max_tokens=50, temperature=0.0, stream=False)
    assert approx_tokens(request["messages"]) <= 250 and request["messages"][1]["content"].endswith("Question?")
    assert request["stop"] == ["\nUser:"] and request["max_tokens"] == 50 and request["model"] == "m"
    from kbqa.retrieval.protocols import Sampling

    sampled = llm._request(long[:1], 5, 0.7, False, Sampling(top_p=0.5, seed=3, stop=("END",)))
    assert sampled["stop"] == ["END", "\nUser:"] and sampled["top_p"] == 0.5 and sampled["seed"] == 3
    assert llm.for_adapter("legal")._request(long[:1], 5, 0.0, False)["model"] == "legal"
    assert llm.for_adapter("base").name == "m"
    assert approx_tokens([{"role": "user", "content": "四个汉字"}]) == 4 + 8
