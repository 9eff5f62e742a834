"""embedder.backend = auto: the embedder is chosen by the corpus's languages at the first ingest,
recorded in kb.json, reported in the summary, and kept afterwards (app/embedder_choice.py)."""

from __future__ import annotations

import json
import os

from kbqa.app.embedder_choice import chinese_share


def _write(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


ENGLISH = {
    "refunds.md": "# Refunds\n\nRefunds are paid to the original card within ten working days.\n",
    "trains.txt": "The night train to Harbin leaves from platform seven at nine in the evening.\n",
}
CHINESE = {"faq.md": "# 常见问题\n\n未满6周岁的儿童乘车免费，须由成年旅客陪同。\n", "notes.txt": "退款在十个工作日内原路退回。\n"}


def test_chinese_share_of_a_sample(tmp_path):
    assert chinese_share([_write(tmp_path / "en", ENGLISH)]) == 0.0
    assert chinese_share([_write(tmp_path / "zh", CHINESE)]) > 0.9
    assert 0.1 < chinese_share([tmp_path / "en", tmp_path / "zh"]) < 0.9
    assert chinese_share([tmp_path / "missing"]) == 0.0
    os.mkfifo(tmp_path / "zh" / "pipe.txt")  # reading it would block forever: not sampled
    assert chinese_share([tmp_path / "zh"]) > 0.9


def test_auto_picks_e5_for_a_mixed_corpus_and_keeps_it(tmp_path):
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    docs = _write(tmp_path / "docs", {**ENGLISH, **CHINESE})
    auto = Settings.load(env={}, overrides={"embedder.backend": "auto"})
    kb = KnowledgeBase(tmp_path / "kb", auto)
    summary = kb.ingest([docs])
    assert summary.ok
    assert any("multilingual-e5-small" in n and "auto" in n for n in summary.notes), summary.notes
    assert "multilingual-e5-small" in summary.render()
    record = json.loads((tmp_path / "kb" / "kb.json").read_text())
    assert (record["embedder_backend"], record["embedder_model"], record["dim"]) == ("e5", "multilingual-e5-small", 384)
    hits = kb.search("Do small children need a ticket?").hits  # English question, Chinese answer
    assert hits and "6周岁" in hits[0].chunk.text
    again = KnowledgeBase(tmp_path / "kb", auto)  # reopened with auto: keeps e5, chooses nothing
    assert again.settings.embedder.backend == "e5"
    assert not again.ingest([docs]).notes


def test_auto_keeps_minilm_for_english(tmp_path):
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    kb = KnowledgeBase(tmp_path / "kb", Settings.load(env={}, overrides={"embedder.backend": "auto"}))
    summary = kb.ingest([_write(tmp_path / "docs", ENGLISH)])
    assert any("all-MiniLM-L6-v2" in n for n in summary.notes)
    assert json.loads((tmp_path / "kb" / "kb.json").read_text())["embedder_backend"] == "sentence-transformers"
