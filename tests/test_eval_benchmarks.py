"""One SQuAD/CMRC reader (issue #24): `kbqa eval squad` and `kbqa eval retrieval --squad` read
a file through `eval.datasets.read_squad`, with the same paragraph ids and the same errors,
and the evaluation knowledge bases of both are built by one cached builder."""

from __future__ import annotations

import json

import pytest

from kbqa.eval.benchmarks import BenchmarkError, load_squad
from kbqa.eval.datasets import DatasetError, read_squad
from tests.conftest import FIXTURES

CMRC = FIXTURES / "cmrc_mini.json"
SQUAD = FIXTURES / "eval_squad_mini.json"
TINY = FIXTURES / "beir_tiny" / "squad_tiny.json"


def test_paragraph_ids_are_the_files_own_else_article_and_position():
    paragraphs, items = read_squad(SQUAD)
    assert [p.id for p in paragraphs] == ["a000-p000", "a000-p001"]
    assert [(it.id, it.source) for it in items] == [("q1", "a000-p000"), ("q2", "a000-p000"), ("q3", "a000-p001")]
    paragraphs, items = read_squad(CMRC)
    assert [p.id for p in paragraphs] == ["TRIAL_7", "a001-p000"]  # CMRC's own id; the second article has none
    assert [(it.id, it.source) for it in items] == [("TRIAL_7_QUERY_0", "TRIAL_7"), ("a001-p000-q0", "a001-p000")]
    assert items[0].question == "兰山铁路何时通车？"  # stripped for answering


def test_the_retrieval_benchmark_reads_through_the_same_reader():
    paragraphs, _ = read_squad(CMRC)
    bench = load_squad(CMRC)
    assert bench.docs == [(p.id, p.context) for p in paragraphs]
    # every question counts for retrieval (as the shipped CMRC figures: 1,002 with two empty ones), as written
    assert bench.queries == {"TRIAL_7_QUERY_0": "兰山铁路何时通车？ ", "TRIAL_7_QUERY_1": "", "a001-p000-q0": "What is the gauge of the line?"}
    assert bench.qrels == {"TRIAL_7_QUERY_0": {"TRIAL_7": 1.0}, "TRIAL_7_QUERY_1": {"TRIAL_7": 1.0}, "a001-p000-q0": {"a001-p000": 1.0}}
    assert bench.name == "squad:cmrc_mini.json" and bench.metrics == ("hit@1", "hit@5", "hit@10", "mrr@10")
    assert len(bench.fingerprint) == 64


def test_answering_skips_the_empty_question_and_says_so(caplog):
    _, items = read_squad(CMRC)
    assert "TRIAL_7_QUERY_1" not in [it.id for it in items]
    assert "skipped 1 question(s) with empty text: data[0].paragraphs[0].qas[1]" in caplog.text


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"version": 1}', "expected a SQuAD-style object with a 'data' list"),
        ('{"data": [{"title": "t"}]}', "data[0]: missing field 'paragraphs'"),
        ('{"data": [{"paragraphs": [{"context": "", "qas": []}]}]}', "data[0].paragraphs[0]: field 'context' must be a non-empty string"),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"question": 3, "answers": []}]}]}]}',
            "data[0].paragraphs[0].qas[0]: field 'question' must be a non-empty string",
        ),
    ],
)
def test_both_commands_name_the_same_defect(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as answering:
        read_squad(path)
    with pytest.raises(DatasetError) as retrieval:
        load_squad(path)
    assert str(answering.value) == str(retrieval.value)
    assert str(answering.value).startswith(f"{path}: ") and message in str(answering.value)


def test_errors_only_the_answering_reader_raises(tmp_path):
    no_answer = tmp_path / "s.json"
    no_answer.write_text('{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "q", "question": "q?", "answers": []}]}]}]}', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: field 'answers' has no answer text"):
        read_squad(no_answer)
    assert load_squad(no_answer).qrels == {"q": {"a000-p000": 1.0}}  # retrieval needs only the paragraph
    empty = tmp_path / "e.json"
    empty.write_text('{"data": [{"paragraphs": [{"context": "x", "qas": []}]}]}', encoding="utf-8")
    with pytest.raises(BenchmarkError, match="no paragraphs with questions"):
        load_squad(empty)
    with pytest.raises(DatasetError, match="no such file|No such file"):
        load_squad(tmp_path / "missing.json")


def test_retrieval_cli_reports_a_reader_error_as_a_usage_error(tmp_path, capsys):
    from kbqa.app.cli.kbqa_main import main

    path = tmp_path / "bad.json"
    path.write_text('{"data": [{"title": "t"}]}', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["eval", "retrieval", "--squad", str(path), "--json"])
    assert exc.value.code == 2
    assert f"{path}: data[0]: missing field 'paragraphs'" in capsys.readouterr().err


def test_one_cached_builder_for_both_layouts(tmp_path, monkeypatch):
    from kbqa.app.evaluation import EVAL_KB_MARKER, build_eval_kb, eval_kb_root, squad_kb
    from kbqa.app.settings import Settings

    monkeypatch.setenv("KBQA_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings.load()
    bench = load_squad(TINY)
    kb, stems = build_eval_kb(bench, settings, progress=False)
    root = eval_kb_root(bench, settings)
    assert stems == {f"d{n:06d}": doc_id for n, (doc_id, _) in enumerate(bench.docs)}
    assert sorted(p.name for p in (root / "docs").iterdir()) == [f"d{n:06d}.txt" for n in range(4)]
    marker = json.loads((root / EVAL_KB_MARKER).read_text(encoding="utf-8"))
    assert marker["benchmark"] == "squad:squad_tiny.json" and marker["documents"] == 4
    stamp = (root / EVAL_KB_MARKER).stat().st_mtime_ns
    build_eval_kb(bench, settings, progress=False)
    assert (root / EVAL_KB_MARKER).stat().st_mtime_ns == stamp  # reused, not rebuilt

    paragraphs, _ = read_squad(TINY)
    answering = squad_kb(TINY, paragraphs, settings, progress=False)
    by_id = answering.path.parent
    assert by_id != root and by_id.parent == root.parent  # same file, other layout: not the same cache, in the one cache folder
    assert sorted(p.stem for p in (by_id / "docs").iterdir()) == sorted(p.id for p in paragraphs)
    assert (by_id / "docs" / f"{paragraphs[0].id}.txt").read_text(encoding="utf-8") == paragraphs[0].context + "\n"
    assert (by_id / EVAL_KB_MARKER).is_file()
    hit = answering.search("What dance do honeybees perform?", 1, "bm25").hits[0]
    assert hit.chunk.source.endswith(f"{paragraphs[0].id}.txt")  # sources cite the paragraph id
    assert len(kb.search("What dance do honeybees perform?", 1, "bm25").hits) == 1


def test_squad_kb_caches_each_choice_of_paragraphs_apart(tmp_path, monkeypatch):
    """Two subsets of one file (other articles, another split) are two knowledge bases, not one
    cache hit: the key holds the paragraphs chosen, not the file alone."""
    from kbqa.app.evaluation import squad_kb
    from kbqa.app.settings import Settings

    monkeypatch.setenv("KBQA_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings.load()
    paragraphs, _ = read_squad(TINY)
    first = squad_kb(TINY, paragraphs[:2], settings, progress=False)
    rest = squad_kb(TINY, paragraphs[2:], settings, progress=False)
    assert first.path != rest.path
    assert sorted(p.stem for p in (rest.path.parent / "docs").iterdir()) == sorted(p.id for p in paragraphs[2:])
    assert squad_kb(TINY, paragraphs[:2], settings, progress=False).path == first.path  # the same choice: reused
