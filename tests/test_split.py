"""The splitter: sizes in tokens, Chinese and English sentence ends, overlap."""

from __future__ import annotations

import random

import pytest

from kbqa.ingest.clean import clean_text
from kbqa.ingest.split import _CLAUSE, _pieces, split_text


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


# --- one long line (a minified dump, a Chinese text without line breaks) -------------------


def _one_line_english(chars: int) -> str:
    """Numbered records, commas and colons but no sentence end: one 'sentence', a clause per word."""
    stations = ["Lanshan", "Cloudgate", "Pine Terrace", "Summit Ridge", "Tea Market"]
    parts, size, i = [], 0, 0
    while size < chars:
        part = f"record {i} lists {stations[i % 5]} station at {1000 + i * 7 % 900} m, {i % 13 + 2} trains a day: first at {6 + i % 3}:{i % 60:02d}, "
        parts.append(part)
        size += len(part)
        i += 1
    return "".join(parts)


def _one_line_chinese(chars: int, runs: bool = True) -> str:
    """Chinese clauses (，、：) without a sentence end, and (`runs`) now and then 600
    characters without any punctuation, which only a hard cut can split."""
    rng = random.Random(7)
    stations = ["蓝山", "云门", "松台", "岭顶", "茶市"]
    parts, size, i = [], 0, 0
    while size < chars:
        part = f"第{i}条记录：{stations[i % 5]}站海拔{1000 + i * 7 % 900}米，每天{i % 13 + 2}班列车、首班{6 + i % 3}点{i % 60}分，"
        if runs and i % 97 == 0:
            part += "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(600)) + "，"
        parts.append(part)
        size += len(part)
        i += 1
    return "".join(parts)


def _assert_covers_in_order(text: str, chunks: list[str]) -> None:
    """Each chunk is a slice of `text`, in order, starting inside or right after the one
    before (its overlap); the chunks without their overlaps give back the whole text."""
    rebuilt, covered, start = [], 0, -1
    for chunk in chunks:
        at = text.find(chunk, start + 1)
        assert at != -1, f"chunk not found in order: {chunk[:60]!r}"
        assert text[covered:at].strip() == "", f"text lost before {chunk[:60]!r}: {text[covered:at][:60]!r}"
        rebuilt.append(text[covered:at])  # whitespace between chunks
        rebuilt.append(chunk[max(0, covered - at) :])  # the chunk less its overlap
        covered, start = max(covered, at + len(chunk)), at
    assert text[covered:].strip() == ""
    assert "".join(rebuilt) + text[covered:] == text


@pytest.mark.parametrize("make", [_one_line_english, _one_line_chinese], ids=["english", "chinese"])
def test_one_long_line_splits_in_linear_work(embedder, make):
    """Half a megabyte on one line: every chunk within the limit, nothing lost, in order; and the
    work stays linear: about one pass of the tokenizer over the text and a few pieces per chunk
    (counting every clause, as the splitter once did, takes 2 passes and ~40-90 pieces per chunk)."""
    text = clean_text(make(500_000 if make is _one_line_english else 170_000))  # 0.5 MB of UTF-8 each
    assert "\n" not in text
    work = {"calls": 0, "pieces": 0, "chars": 0}

    def count(texts):
        work["calls"] += 1
        work["pieces"] += len(texts)
        work["chars"] += sum(map(len, texts))
        return embedder.count_tokens(texts)

    chunks = split_text(text, count, 200, 32)
    assert max(embedder.count_tokens(chunks)) <= 200
    _assert_covers_in_order(text, chunks)
    assert work["chars"] <= 1.8 * len(text), work
    assert work["pieces"] <= 40 * len(chunks), work
    assert work["calls"] <= 3 * len(chunks), work


def _clause_by_clause(text: str, count, limit: int, overlap: int) -> list[str]:
    """The specification for one long sentence: every clause counted, packed greedily, each
    chunk starting with the previous one's last clauses up to `overlap` tokens."""
    clauses = _pieces(_CLAUSE, text)
    units = list(zip(clauses, count(clauses)))
    assert max(n for _, n in units) <= limit  # no hard cuts in these texts
    chunks, current, size = [], [], 0
    for unit, n in units:
        if current and size + n > limit:
            chunks.append("".join(u for u, _ in current).strip())
            carried, carried_size = [], 0
            for u, m in reversed(current):
                if carried_size + m > overlap or carried_size + m + n > limit:
                    break
                carried.insert(0, (u, m))
                carried_size += m
            current, size = carried, carried_size
        current.append((unit, n))
        size += n
    chunks.append("".join(u for u, _ in current).strip())
    return chunks


@pytest.mark.parametrize("limit,overlap", [(200, 32), (64, 8), (100, 0)])
def test_long_line_chunks_equal_counting_every_clause(embedder, limit, overlap):
    """Spans of clauses are counted instead of every clause; MiniLM's counts add up over
    clauses, so the chunks must be exactly those of counting every clause."""
    for text in (_one_line_english(30_000), _one_line_chinese(12_000, runs=False)):
        text = clean_text(text)
        expected = _clause_by_clause(text, embedder.count_tokens, limit, overlap)
        assert split_text(text, embedder.count_tokens, limit, overlap) == expected
