"""The cross-lingual question set (data/crosslingual_qa.jsonl): Chinese questions answered only by
the English sample documents and English questions answered only by the Chinese ones. Its shape,
its keys against the documents' text, and a retrieval floor for the embedder that carries meaning
across the two languages (bench/crosslingual.py measures every embedder and mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE

CASES = [json.loads(line) for line in (ROOT / "data" / "crosslingual_qa.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
ZH_DOCS = {"faq_zh.md", "rolling_stock_zh.docx", "safety_rules.txt"}


def _document_text(name: str) -> str:
    from kbqa.ingest.loaders import load_document

    path = SAMPLE / name
    return "\n".join(page.text for page in load_document(path, path.read_bytes(), ocr="never"))


def test_the_set_is_well_formed_and_crosses_languages():
    from kbqa.retrieval.lang import detect_language

    english_docs = {p.name for p in SAMPLE.iterdir()} - ZH_DOCS
    assert all(set(c) == {"query", "lang", "source", "key", "response"} for c in CASES)
    assert all(c["query"].strip() and c["key"].strip() and c["response"].strip() for c in CASES)
    assert len({c["query"] for c in CASES}) == len(CASES)
    for lang, docs in (("zh", english_docs), ("en", ZH_DOCS)):
        mine = [c for c in CASES if c["lang"] == lang]
        assert len(mine) >= 20, lang
        assert {c["source"] for c in mine} <= docs, lang  # the answer sits in a document of the other language
        assert [c["query"] for c in mine if detect_language(c["query"]) != lang] == []
        assert [c["response"] for c in mine if detect_language(c["response"]) != lang] == []


def test_every_key_occurs_in_its_source_document():
    texts = {name: _document_text(name) for name in {c["source"] for c in CASES}}
    assert [(c["source"], c["key"]) for c in CASES if c["key"] not in texts[c["source"]]] == []


@pytest.fixture(scope="module")
def use_sample_kb(tmp_path_factory):
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    kb = KnowledgeBase(tmp_path_factory.mktemp("use-xl") / "kb", Settings.load(env={}, overrides={"embedder.backend": "use"}))
    assert kb.ingest([SAMPLE], progress=False).ok
    return kb


def test_use_dense_retrieval_finds_the_other_language_passage(use_sample_kb):
    """USE v3 dense measured 0.72 (zh->en) and 0.82 (en->zh) at hit@5; multilingual-e5-small
    found almost none (its own-language chunks outrank the right passage, bench/results/crosslingual.md),
    so it has no floor here."""

    def hit(case):
        hits = use_sample_kb.search(case["query"], 5, "dense").hits
        return any(Path(h.chunk.source).name == case["source"] and case["key"] in h.chunk.text for h in hits)

    for lang in ("zh", "en"):
        mine = [c for c in CASES if c["lang"] == lang]
        rate = sum(hit(c) for c in mine) / len(mine)
        assert rate >= 0.6, f"{lang}: hit@5 {rate:.2f}"
