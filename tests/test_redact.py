"""PII redaction at ingestion (ingest/redact.py): Chinese and English formats, off by default."""

from __future__ import annotations

import pytest

from kbqa.app.kb import KnowledgeBase
from kbqa.ingest.redact import redact


@pytest.mark.parametrize(
    "text,kind",
    [
        ("请联系 zhang.wei@example.com.cn 获取发票", "email"),
        ("Write to j.smith+kb@mail.example.org today.", "email"),
        ("身份证号：110105199003071234，请核对。", "id"),
        ("ID 44030419851231002X on file", "id"),
        ("SSN 123-45-6789 was given", "id"),
        ("手机：13812345678", "phone"),
        ("手机 +86 138-1234-5678 或 0086 13912345678", "phone"),
        ("客服电话：010-62345678 转人工", "phone"),
        ("座机（0571）87654321", "phone"),
        ("Call (555) 123-4567 or 555.987.6543.", "phone"),
        ("UK office +44 20 7946 0958", "phone"),
    ],
)
def test_each_format_is_redacted(text, kind):
    out, counts = redact(text)
    assert counts.get(kind, 0) >= 1, (text, out, counts)
    assert f"[{kind.upper()}]" in out
    digits = sum(ch.isdigit() for ch in out)
    assert "@" not in out and digits <= 3, out


@pytest.mark.parametrize(
    "text",
    [
        "The railway opened on 1931-05-17 and is 23.7 km long.",
        "Train U1 departs at 07:40 and arrives at 09:27.",
        "票价 120 元，儿童半价。全长 23.7 公里，海拔 1,560 米。",
        "Version 2.14.6 of the timetable, page 12 of 40.",
        "ISBN 978-3-16-148410-0",
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    out, counts = redact(text)
    assert out == text and counts == {}


def test_redaction_at_ingestion_is_off_by_default_and_on_when_set(tmp_path, settings):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "support.md").write_text(
        "# Lost property\n\nFor lost luggage call the desk on 13812345678 or write to lost@lanshan-rail.example.\n"
        "失物招领：请致电 0875-6612909，身份证号 110105199003071234 的旅客请到服务台。\n",
        encoding="utf-8",
    )
    plain = KnowledgeBase(tmp_path / "plain", settings)
    plain.ingest([docs])
    plain_text = " ".join(c.text for c in plain.store.get(plain.store.all_ids()))
    assert "13812345678" in plain_text and "lost@lanshan-rail.example" in plain_text

    kb = KnowledgeBase(tmp_path / "redacted", settings.with_overrides({"ingest.redact_pii": True}))
    summary = kb.ingest([docs])
    assert summary.ok and "redacted" in summary.files[0].reason
    stored = " ".join(c.text for c in kb.store.get(kb.store.all_ids()))
    for secret in ("13812345678", "lost@lanshan-rail.example", "0875-6612909", "110105199003071234"):
        assert secret not in stored
    assert "[PHONE]" in stored and "[EMAIL]" in stored and "[ID]" in stored
    bm25_tokens = {t for toks in kb.keyword_index.tokens.values() for t in toks}
    assert "13812345678" not in bm25_tokens
    assert "lost luggage" in stored and "失物招领" in stored  # the rest is kept
