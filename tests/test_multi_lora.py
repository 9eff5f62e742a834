"""Multi-LoRA on the transformers backend: two tiny random adapters on the packaged SmolLM2.

Each request picks an adapter by name; the answer must match what an independently loaded
peft model with that single adapter generates, and switching must never reload the base.
"""

from __future__ import annotations

import pytest

MESSAGES = [{"role": "user", "content": "Name one colour of the sky."}]
MAX_TOKENS = 10


def _make_adapters(model_dir, targets: dict) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))  # shapes only, no weights read
    for seed, target in enumerate(targets.values(), start=1):
        torch.manual_seed(seed)
        # init_lora_weights=False: B is random too, so the adapter changes the output at once
        config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        peft_model = get_peft_model(base, config)
        peft_model.save_pretrained(target)
        base = peft_model.unload()


@pytest.fixture(scope="module")
def lora_setup(tmp_path_factory, settings):
    from kbqa.retrieval.llm.model_cache import packaged_model_dir

    model_dir = packaged_model_dir(settings.cache_dir)
    root = tmp_path_factory.mktemp("adapters")
    adapters = {"alpha": str(root / "alpha"), "beta": str(root / "beta")}
    _make_adapters(model_dir, adapters)
    return model_dir, adapters


def _reference(model_dir, adapter_dir) -> str:
    """The same request through a separately loaded base model with one peft adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter_dir).eval()
    prompt = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = tok([prompt], return_tensors="pt", add_special_tokens=False)
    ends = sorted({tok.eos_token_id, *tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])})
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False, eos_token_id=ends, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_requests_pick_their_adapter_without_reloading_the_base(lora_setup, settings, monkeypatch):
    import transformers

    from kbqa.retrieval.llm import transformers as backend
    from kbqa.retrieval.llm.transformers import TransformersLLM

    model_dir, adapters = lora_setup
    llm = TransformersLLM("smollm2", device="cpu", cache_dir=settings.cache_dir, adapters=adapters)
    base_first = llm.generate(MESSAGES, max_tokens=MAX_TOKENS)  # loads the base (or reuses this process's copy)
    loads_before = backend.BASE_LOADS[str(model_dir)]
    base_module = llm.model.get_base_model() if hasattr(llm.model, "get_base_model") else llm.model

    calls = []
    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: calls.append(a) or real(*a, **k))

    alpha = llm.for_adapter("alpha").generate(MESSAGES, max_tokens=MAX_TOKENS)
    beta = llm.for_adapter("beta").generate(MESSAGES, max_tokens=MAX_TOKENS)
    alpha_again = llm.for_adapter("alpha").generate(MESSAGES, max_tokens=MAX_TOKENS)
    base_again = llm.for_adapter("base").generate(MESSAGES, max_tokens=MAX_TOKENS)
    default = llm.generate(MESSAGES, max_tokens=MAX_TOKENS)  # no default adapter configured: the base
    beta_stream = "".join(llm.for_adapter("beta").stream(MESSAGES, max_tokens=MAX_TOKENS)).strip()
    beta_batch = llm.for_adapter("beta").batch([MESSAGES, MESSAGES], max_tokens=MAX_TOKENS)

    assert calls == [], "switching adapters loaded model weights again"
    assert backend.BASE_LOADS[str(model_dir)] == loads_before
    assert llm.model.get_base_model() is base_module  # the same base weights, adapters added on top
    assert len({base_first, alpha, beta}) == 3, (base_first, alpha, beta)
    assert alpha_again == alpha and base_again == base_first and default == base_first
    assert beta_stream == beta and beta_batch == [beta, beta]

    monkeypatch.undo()
    assert _reference(model_dir, adapters["beta"]) == beta  # and alpha != beta != base, above


def test_default_adapter_and_unknown_names(lora_setup, settings):
    from kbqa.retrieval.llm.transformers import TransformersLLM

    _, adapters = lora_setup
    llm = TransformersLLM("smollm2", device="cpu", cache_dir=settings.cache_dir, adapters=adapters, adapter="beta")
    assert llm.adapter == "beta" and llm.adapters == ["alpha", "beta"]
    assert llm.for_adapter(None).adapter == "beta" and llm.for_adapter("base").adapter is None
    with pytest.raises(KeyError, match="unknown adapter 'gamma'.*alpha, beta"):
        llm.for_adapter("gamma")
    with pytest.raises(FileNotFoundError, match="llm.adapters.bad"):
        TransformersLLM("smollm2", adapters={"bad": "/nonexistent/adapter"})


def test_settings_route_adapters_to_the_backend(lora_setup, tmp_path):
    from kbqa.app.settings import Settings
    from kbqa.retrieval.llm import make_llm

    _, adapters = lora_setup
    config = tmp_path / "kbqa.toml"
    config.write_text(f'[llm]\nadapter = "alpha"\n[llm.adapters]\nalpha = "{adapters["alpha"]}"\nbeta = "{adapters["beta"]}"\n')
    s = Settings.load(config, env={})
    llm = make_llm(s.llm, s.cache_dir)
    assert llm.adapters == ["alpha", "beta"] and llm.adapter == "alpha"
    env = {"KBQA_LLM__ADAPTERS__GAMMA": adapters["beta"], "KBQA_LLM__ADAPTER": "base"}
    assert make_llm(Settings.load(env=env).llm, s.cache_dir).adapters == ["gamma"]


def test_api_model_field_picks_knowledge_base_and_adapter(lora_setup, settings, sample_kb_dir):
    """`kbqa serve`: model "sample:alpha" answers from the sample KB with adapter alpha."""
    import httpx
    import openai

    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.service import QAService
    from live_server import running

    _, adapters = lora_setup
    s = settings.with_overrides(
        {
            "llm.adapters": adapters,
            "llm.adapter": "base",
            "llm.max_new_tokens": MAX_TOKENS,
            "retrieval.k": 2,
            "retrieval.context_neighbors": 0,
            "answer.mode": "generative",
            "answer.verify": False,
        }
    )
    service = QAService.open([f"sample={sample_kb_dir}"], s)
    kb = service.kb("sample")
    question = "When did the Lanshan Mountain Railway open to the public?"
    expected = {name: kb.ask(question, adapter=name).answer for name in ("alpha", "beta", "base")}
    assert len(set(expected.values())) == 3, expected
    with running(build_app(service, config=ServerConfig(ui=False))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0, timeout=600)
        ids = [m.id for m in client.models.list().data]
        assert ids == ["sample", "sample:alpha", "sample:beta"]
        for model, name in [("sample:alpha", "alpha"), ("sample:beta", "beta"), ("sample", "base"), ("sample:base", "base")]:
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], max_tokens=MAX_TOKENS)
            assert reply.choices[0].message.content == expected[name], model
        with httpx.Client(base_url=url, timeout=60) as http:
            bad = http.post("/v1/chat/completions", json={"model": "sample:gamma", "messages": [{"role": "user", "content": question}]})
            assert bad.status_code == 404 and "unknown adapter 'gamma'" in bad.json()["error"]["message"]
            bad = http.post("/v1/chat/completions", json={"model": "nokb:alpha", "messages": [{"role": "user", "content": question}]})
            assert bad.status_code in (403, 404) and "nokb" in bad.json()["error"]["message"]
