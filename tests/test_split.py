"""The splitter: sizes in tokens, Chinese and English sentence ends, overlap."""
from __future__ import annotations

from ingest.split import split_text


def count_chars(texts):
    return [len(t) for t in texts]


def test_chunks_never_exceed_limit_in_real_tokens(embedder):
    text = " ".join(f"Sentence number {i} talks about the railway and its {i * 3} tunnels." for i in range(200))
    text += "蓝山铁路始建于1911年。" * 100
    chunks = split_text(text, embedder.count_tokens, 64, 8)
    assert len(chunks) > 10
    assert max(embedder.count_tokens(chunks)) <= 64 + 2  # joins may add a token at a boundary


def test_chinese_split_on_chinese_punctuation():
    text = "第一句话。第二句话！第三句话？第四句话；第五句话。"
    chunks = split_text(text, count_chars, 10, 0)
    assert chunks == ["第一句话。第二句话！", "第三句话？第四句话；", "第五句话。"]


def test_overlap_carries_previous_sentence():
    text = "One two. Three four. Five six. Seven eight."
    chunks = split_text(text, lambda xs: [len(x.split()) for x in xs], 4, 2)
    assert chunks[0] == "One two. Three four."
    assert chunks[1].startswith("Three four.")


def test_long_unbroken_text_is_hard_split():
    chunks = split_text("x" * 1000, count_chars, 100, 0)
    assert all(len(c) <= 100 for c in chunks)
    assert "".join(chunks) == "x" * 1000


def test_empty_text():
    assert split_text("   \n ", count_chars, 10, 2) == []
