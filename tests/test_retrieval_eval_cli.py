"""`kbqa eval retrieval` on tiny fixtures: exact JSON keys, cached knowledge base reused, bad input named."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import FIXTURES

BEIR = FIXTURES / "beir_tiny"
BEIR_KEYS = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "p50_ms", "p95_ms", "queries"}
SQUAD_KEYS = {"hit@1", "hit@5", "hit@10", "mrr@10", "p50_ms", "p95_ms", "queries"}


def _run(capsys, *args) -> dict:
    from kbqa.app.cli.kbqa_main import main

    assert main(["eval", "retrieval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KBQA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_beir_json_keys_values_and_cache_reuse(cache, capsys):
    out = _run(capsys, "--beir", str(BEIR), "--split", "test", "--mode", "hybrid")
    assert set(out) == BEIR_KEYS
    assert out["queries"] == 5  # q6 has no judgement
    assert out["ndcg@10"] >= 0.8 and out["recall@10"] == 1.0  # eight documents on distinct topics
    assert 0 < out["p50_ms"] <= out["p95_ms"]
    (built,) = (cache / "eval-kb").iterdir()
    stamp = (built / "complete.json").stat().st_mtime_ns
    again = _run(capsys, "--beir", str(BEIR), "--split", "test", "--mode", "bm25")
    assert (built / "complete.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert len(list((cache / "eval-kb").iterdir())) == 1
    assert again["queries"] == 5 and again["mrr@10"] >= 0.8


def test_squad_json_keys(cache, capsys):
    out = _run(capsys, "--squad", str(BEIR / "squad_tiny.json"), "--mode", "hybrid")
    assert set(out) == SQUAD_KEYS
    assert out["queries"] == 4 and out["hit@10"] == 1.0 and out["hit@1"] >= 0.75


def test_bad_beir_folder_names_the_missing_file(tmp_path, cache, capsys):
    from kbqa.app.cli.kbqa_main import main

    broken = tmp_path / "broken"
    shutil.copytree(BEIR, broken)
    (broken / "qrels" / "test.tsv").unlink()
    with pytest.raises(SystemExit) as exc:
        main(["eval", "retrieval", "--beir", str(broken), "--json"])
    assert exc.value.code == 2
    assert "qrels/test.tsv" in capsys.readouterr().err


def test_the_report_names_the_embedder_the_knowledge_base_got(cache, capsys, tmp_path):
    """embedder.backend = auto: a Chinese set is built with e5, and the report says so (not "auto")."""
    from kbqa.app.cli.kbqa_main import main

    texts = ["未满6周岁的儿童乘车免费，须由成年旅客陪同。", "退款在十个工作日内原路退回到原支付账户。", "蓝山站位于海拔八百米的山腰上。"]
    paragraphs = [
        {"context": t, "qas": [{"id": f"z{i}", "question": q, "answers": [{"text": t[:4], "answer_start": 0}]}]}
        for i, (t, q) in enumerate(zip(texts, ["儿童乘车要买票吗？", "退款多久到账？", "蓝山站的海拔是多少？"]))
    ]
    data = tmp_path / "zh_tiny.json"
    data.write_text(json.dumps({"version": "tiny", "data": [{"title": "t", "paragraphs": paragraphs}]}, ensure_ascii=False), encoding="utf-8")
    assert main(["eval", "retrieval", "--squad", str(data), "--mode", "hybrid", "--embedder-backend", "auto"]) == 0
    out = capsys.readouterr().out
    assert "embedder=e5:multilingual-e5-small" in out and "hit@1" in out
