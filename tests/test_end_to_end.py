"""End to end on the bundled sample knowledge base: retrieval cites the right document,
the packaged model's answer holds the key fact, and the CLI speaks JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import load_qa

QA = load_qa()


def _name(source: str) -> str:
    return source.rsplit("/", 1)[-1]


def test_sample_qa_set_is_well_formed():
    assert len(QA) >= 20
    assert {q["source"] for q in QA} >= {"history.md", "stations_guide.pdf", "safety_rules.txt", "faq_zh.md"}


def test_retrieval_puts_the_answering_document_first(sample_kb):
    top1 = [_name(sample_kb.retrieve(q["query"], 5)[0].chunk.source) == q["source"] for q in QA]
    hit5 = [q["source"] in {_name(h.chunk.source) for h in sample_kb.retrieve(q["query"], 5)} for q in QA]
    assert sum(top1) / len(QA) >= 0.8, f"top-1 source accuracy {sum(top1)}/{len(QA)}"
    assert sum(hit5) / len(QA) >= 0.95, f"hit@5 {sum(hit5)}/{len(QA)}"


def test_pdf_citations_point_at_the_page(sample_kb):
    for q in QA:
        if "page" in q:
            hits = sample_kb.retrieve(q["query"], 3)
            assert any(_name(h.chunk.source) == q["source"] and h.chunk.page == q["page"] for h in hits), q["query"]


@pytest.mark.parametrize(
    "query",
    [
        "What is the track gauge of the Lanshan Mountain Railway?",
        "How long does the journey from Lanshan Foot to Cloud Peak Summit take?",
        "At what altitude is Mirror Lake Station?",
    ],
)
def test_answer_holds_the_key_fact_and_cites_its_document(sample_kb, query):
    item = next(q for q in QA if q["query"] == query)
    answer = sample_kb.ask(query)
    assert _name(answer.sources[0].chunk.source) == item["source"]
    assert item["key"].replace(" ", "") in answer.answer.replace(" ", ""), answer.answer
    assert answer.timings["generate_ms"] > 0


def test_stream_yields_text(sample_kb):
    pieces = list(sample_kb.stream("How heavy may the free main bag be?"))
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "20" in "".join(pieces)


def test_cli_ask_json_cites_the_document(sample_kb_dir):
    item = next(q for q in QA if q["key"] == "800 mm")
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "ask", item["query"], "--kb", str(sample_kb_dir), "--json", "--max-new-tokens", "48"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"answer", "found", "answer_mode", "grounded", "unsupported", "evidence", "sources", "timings"}
    assert set(data["timings"]) == {"retrieve_ms", "generate_ms"}
    assert data["answer"].strip()
    assert set(data["sources"][0]) == {"source", "page", "chunk", "score", "text"}
    assert _name(data["sources"][0]["source"]) == "history.md"


def test_cli_retrieve_json_is_a_list(sample_kb_dir):
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "retrieve", "儿童身高不足多少需要陪同", "--kb", str(sample_kb_dir), "--json", "-k", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, list) and len(data) == 3
    assert _name(data[0]["source"]) == "safety_rules.txt"


def test_langchain_retriever(sample_kb):
    from langchain_core.retrievers import BaseRetriever

    retriever = sample_kb.as_langchain_retriever(k=3)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("How long is the Cloudgate Tunnel?")
    assert len(docs) == 3 and _name(docs[0].metadata["source"]) == "history.md"
    assert docs[0].id == docs[0].metadata["id"] and docs[0].id
    bm25 = sample_kb.as_langchain_retriever(k=2, mode="bm25").invoke("Cloudgate Tunnel")
    expected = sample_kb.retrieve("Cloudgate Tunnel", 2, "bm25")
    assert [d.id for d in bm25] == [h.chunk.id for h in expected]


def test_llamaindex_retriever(sample_kb):
    pytest.importorskip("llama_index.core")
    from llama_index.core.retrievers import BaseRetriever

    retriever = sample_kb.as_llamaindex_retriever(k=3)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve("How long is the Cloudgate Tunnel?")
    expected = sample_kb.retrieve("How long is the Cloudgate Tunnel?", 3)
    assert [n.node.node_id for n in nodes] == [h.chunk.id for h in expected]
    assert _name(nodes[0].node.metadata["source"]) == "history.md" and "Cloudgate" in nodes[0].node.get_content()
    assert nodes[0].score == pytest.approx(expected[0].score)
    dense = sample_kb.as_llamaindex_retriever(k=2, mode="dense").retrieve("Cloudgate Tunnel")
    assert [n.node.node_id for n in dense] == [h.chunk.id for h in sample_kb.retrieve("Cloudgate Tunnel", 2, "dense")]


def test_cli_refuses_a_directory_that_is_not_a_kb(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "ask", "anything", "--kb", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "not a knowledge base" in out.stderr


def test_cli_chat_repl_answers_with_sources_and_follow_ups(sample_kb_dir):
    """`kbqa chat` (what `make demo` ends in): streamed answers, numbered sources, multi-turn."""
    out = subprocess.run(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "chat", "--kb", str(sample_kb_dir), "--max-new-tokens", "24"],
        input="How long is the Cloudgate Tunnel?\nAnd when did the railway open?\n\n",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    answers = out.stdout.split("\n> ")
    assert len(answers) >= 3  # the banner, then one block per question
    first_sources = [line for line in answers[1].splitlines() if line.startswith("  [")]
    assert first_sources and "history.md" in first_sources[0]
    assert any(line.startswith("  [1]") for line in answers[2].splitlines())
