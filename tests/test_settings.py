"""One typed settings object: defaults < file < environment < overrides."""

from __future__ import annotations

import pytest

from kbqa.app.settings import Settings, SettingsError


def test_layers(tmp_path):
    cfg = tmp_path / "kbqa.toml"
    cfg.write_text('[retrieval]\nk = 7\nmode = "bm25"\n[llm]\nmax_new_tokens = 99\n')
    env = {"KBQA_RETRIEVAL__K": "9", "KBQA_LLM__MODEL": "/models/x"}
    s = Settings.load(cfg, env=env, overrides={"retrieval.mode": "dense"})
    assert s.retrieval.k == 9  # env beats file
    assert s.retrieval.mode == "dense"  # override beats file
    assert s.llm.max_new_tokens == 99  # file beats default
    assert s.llm.model == "/models/x"
    assert s.chunking.chunk_tokens == 200  # default


def test_bad_value_names_the_field():
    with pytest.raises(SettingsError, match=r"retrieval\.mode"):
        Settings.load(env={"KBQA_RETRIEVAL__MODE": "magic"})


def test_unknown_field_rejected():
    with pytest.raises(SettingsError, match=r"retrieval\.kk"):
        Settings.load(env={"KBQA_RETRIEVAL__KK": "3"})


def test_missing_config_file(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        Settings.load(tmp_path / "nope.toml", env={})


def test_other_kbqa_variables_are_not_settings():
    s = Settings.load(env={"KBQA_SERVE_WORKER_SPEC": "{}", "KBQA_LLM__MAX_NEW_TOKENS": "12"})
    assert s.llm.max_new_tokens == 12


def test_auto_adapter_is_the_shipped_one_only_for_the_packaged_model():
    from kbqa.retrieval.packaged import SHIPPED_ADAPTER, resolve_adapter

    assert Settings().llm.adapter == "auto"
    assert resolve_adapter("auto", "smollm2", "transformers") == str(SHIPPED_ADAPTER)
    assert (SHIPPED_ADAPTER / "adapter_config.json").is_file()
    assert resolve_adapter("auto", "/models/qwen", "transformers") is None
    assert resolve_adapter("auto", "smollm2", "openai") is None
    assert resolve_adapter("base", "smollm2", "transformers") == "base"


def test_lists_and_tables_from_the_environment():
    s = Settings.load(env={"KBQA_LLM__STOP": '["</s>", "\\nUser:"]', "KBQA_RETRIEVAL__K": "8"})
    assert s.llm.stop == ["</s>", "\nUser:"] and s.retrieval.k == 8
    with pytest.raises(SettingsError, match="KBQA_LLM__STOP: not valid JSON"):
        Settings.load(env={"KBQA_LLM__STOP": "[oops"})


def test_retrieval_k_from_the_environment_reaches_the_retrieve_route(sample_kb_dir):
    import httpx

    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.service import QAService
    from live_server import running

    settings = Settings.load(env={"KBQA_RETRIEVAL__K": "2"})
    service = QAService.open([f"sample={sample_kb_dir}"], settings)
    with running(build_app(service, config=ServerConfig(ui=False))) as url:
        default = httpx.post(f"{url}/v1/retrieve", json={"kb": "sample", "query": "Cloudgate Tunnel"}, timeout=300).json()
        asked = httpx.post(f"{url}/v1/retrieve", json={"kb": "sample", "query": "Cloudgate Tunnel", "k": 4}, timeout=300).json()
    assert len(default["results"]) == 2 and len(asked["results"]) == 4
