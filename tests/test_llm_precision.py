"""`llm.precision` on the transformers backend: int8 (dynamic int8 Linear layers) is chosen by
the setting, loads the packaged SmolLM2, answers, and keeps LoRA adapters working."""

from __future__ import annotations

import os

import pytest

MESSAGES = [{"role": "user", "content": "When did the Lanshan Mountain Railway open to the public?"}]


@pytest.fixture(scope="module")
def int8_llm():
    from kbqa.app.settings import Settings
    from kbqa.retrieval.llm import make_llm

    s = Settings.load(env={**os.environ, "KBQA_LLM__PRECISION": "int8"})  # as a user sets it
    assert s.llm.precision == "int8"
    return make_llm(s.llm, s.cache_dir)


def test_int8_setting_loads_a_quantized_model_that_answers(int8_llm, settings):
    import torch

    from kbqa.retrieval.llm.quantize import count_int8_linears
    from kbqa.retrieval.packaged import SHIPPED_ADAPTER

    assert int8_llm.precision == "int8" and int8_llm.adapter == SHIPPED_ADAPTER.name  # the default adapter, as with fp32
    text = int8_llm.generate(MESSAGES, max_tokens=8)
    assert isinstance(text, str) and text.strip()
    model = int8_llm.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n_layers = base.config.num_hidden_layers
    assert count_int8_linears(model) == 7 * n_layers + 1  # q, k, v, o, gate, up, down per layer, and lm_head
    plain = [name for name, m in model.named_modules() if type(m) is torch.nn.Linear and ".lora_" not in name]
    assert plain == []  # only LoRA's own small matrices stay fp32
    assert "".join(int8_llm.stream(MESSAGES, max_tokens=8)).strip() == text


def test_default_precision_is_fp32_on_cpu(settings):
    from kbqa.retrieval.llm.transformers import effective_precision

    assert settings.llm.precision == "auto"
    assert effective_precision("auto", "cpu") == "fp32"
    assert effective_precision("auto", "cuda") == "bf16"
    assert effective_precision("int8", "cuda:0") == "bf16"  # dynamic int8 is a CPU path
    assert effective_precision("int8", "cpu") == "int8"


def test_int8_adapter_matches_quantizing_after_peft(int8_llm):
    """Adding the adapter to the int8 model (peft wraps fp32 stand-ins, the int8 layers go
    back) gives exactly what quantizing an fp32 model that already has the adapter gives."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kbqa.retrieval.llm.quantize import quantize_linears

    ref = AutoModelForCausalLM.from_pretrained(int8_llm._path(), dtype=torch.float32, local_files_only=True)
    ref = PeftModel.from_pretrained(ref, int8_llm.adapter_spec.path).eval()
    quantize_linears(ref)
    tok = int8_llm.tokenizer
    inputs = tok([int8_llm.prompt_text(MESSAGES)], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        int8_llm.generate(MESSAGES, max_tokens=1)  # the adapter is added on first use
        ours = int8_llm.model(**inputs).logits
        expected = ref(**inputs).logits
        with int8_llm.model.disable_adapter():
            bare = int8_llm.model(**inputs).logits
    assert torch.equal(ours, expected)
    assert (ours - bare).abs().max() > 1.0  # the adapter is active


def test_unknown_precision_is_refused(settings):
    from kbqa.app.settings import Settings, SettingsError
    from kbqa.retrieval.llm.transformers import TransformersLLM

    with pytest.raises(ValueError, match="llm.precision: unknown precision 'fp8'"):
        TransformersLLM(cache_dir=settings.cache_dir, precision="fp8")
    with pytest.raises(SettingsError, match="precision"):
        Settings.load(env={"KBQA_LLM__PRECISION": "fp16"})
