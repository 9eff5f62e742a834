"""Evaluation file readers, run folders and the `kbqa eval qa|squad|mcq|compare` commands."""

from __future__ import annotations

import json

import pytest

from kbqa.app.cli.kbqa_main import main
from kbqa.eval.datasets import DatasetError, read_mcq_csv, read_qa_jsonl, read_squad
from kbqa.eval.mcq import extract_choice

from tests.conftest import FIXTURES, ROOT

QA = FIXTURES / "eval_general_qa.jsonl"
PREDICTIONS = FIXTURES / "eval_predictions.jsonl"


def test_reads_all_three_qa_formats():
    items = read_qa_jsonl(QA)
    assert [it.question for it in items] == [
        "兰山铁路哪一年通车？",
        "When did the Lanshan Mountain Railway open to the public?",
        "What is the track gauge of the railway?",
        "How many stations does the line have?",
        "Who surveyed the route?",
    ]
    assert items[0].system == "你是一位铁路历史学家" and items[0].references == ["兰山铁路于1911年通车。"]
    assert items[1].source == "history.md" and items[1].keys == ["14 June 1911"]
    assert items[2].system == "You are a railway guide." and items[2].references == ["The line is narrow gauge, 800 mm."]
    assert items[3].references == ["The line has nine stations."]
    assert items[4].references == ["The civil engineer Hollis Wrenfield."] and items[4].id == "5"


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"query": "q?"}', ":2: missing field 'response'"),
        ('{"response": "a"}', ":2: missing field 'query'"),
        ('{"query": "", "response": "a"}', ":2: field 'query' must be a non-empty string"),
        ('{"query": "q", "response": 3}', ":2: field 'response' must be a non-empty string"),
        ('{"messages": [{"role": "user"}], "response": "a"}', ":2: field 'messages[0]'"),
        ('{"messages": [{"role": "assistant", "content": "a"}]}', ":2: field 'messages' must end with a 'user' turn"),
        ("{not json", ":2: not valid JSON"),
        ("[1, 2]", ":2: expected a JSON object"),
    ],
)
def test_malformed_qa_line_names_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "fine?", "response": "yes"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        read_qa_jsonl(path)
    assert f"{path}{message}" in str(err.value)


def test_reads_squad_and_mcq():
    paragraphs, items = read_squad(FIXTURES / "eval_squad_mini.json")
    assert len(paragraphs) == 2 and len(items) == 3
    assert items[0].references == ["14 June 1911"]  # duplicate answers merged
    assert items[2].source == paragraphs[1].id
    mcq = read_mcq_csv(FIXTURES / "eval_mcq.csv")
    assert [(m.id, m.answer) for m in mcq] == [("1", "B"), ("2", "C")]
    assert mcq[1].options["C"] == "1911年"


def test_bad_squad_and_mcq_errors(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text('{"data": [{"paragraphs": [{"context": "x", "qas": [{"question": "q", "answers": []}]}]}]}', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: field 'answers'"):
        read_squad(bad)
    csv = tmp_path / "m.csv"
    csv.write_text("id,question,A,B,answer\n1,q,x,y,E\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"m.csv:2: field 'answer' must be one of A,B"):
        read_mcq_csv(csv)


def test_extract_choice():
    options = {"A": "600 mm", "B": "800 mm", "C": "1000 mm", "D": "1435 mm"}
    assert extract_choice("B", options) == "B"
    assert extract_choice("The answer is (C).", options) == "C"
    assert extract_choice("答案：D", options) == "D"
    assert extract_choice("It is 800 mm wide", options) == "B"
    assert extract_choice("I am not sure", options) is None


def _run(tmp_path, name, predictions, capsys):
    out = tmp_path / name
    assert main(["eval", "qa", str(QA), "--predictions", str(predictions), "--out", str(out)]) == 0
    return out, capsys.readouterr().out


def test_eval_qa_predictions_end_to_end(tmp_path, capsys):
    out, printed = _run(tmp_path, "a", PREDICTIONS, capsys)
    assert "| Model" in printed and "| Dataset" in printed and "| Subset" in printed and "rouge-l-r" in printed
    payload = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert payload["meta"]["num"] == 5 and payload["meta"]["dataset"] == "general_qa"
    assert payload["outcomes"] == {"correct": 3, "not found": 0, "retrieval miss": 1, "generation miss": 1, "wrong (gold unknown)": 0}
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["outcome"] for r in records] == ["correct", "generation miss", "retrieval miss", "correct", "correct"]
    assert records[0]["scores"]["em"] == 1.0 and records[0]["scores"]["rouge-l-f"] > 0.99
    assert records[1]["gold_rank"] == 1 and records[2]["gold_rank"] == 0 and records[4]["gold_rank"] is None
    # means are the means of the per-item scores
    assert payload["metrics"]["f1"] == pytest.approx(sum(r["scores"]["f1"] for r in records) / 5)
    assert payload["metrics"]["hit@1"] == pytest.approx(1 / 2)  # gold known and retrieval ran for items 2 and 3
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| retrieval miss | 1 |" in report and "| generation miss | 1 |" in report
    assert "What is the track gauge of the railway?" in report
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_compare(tmp_path, capsys):
    a, _ = _run(tmp_path, "a", PREDICTIONS, capsys)
    better = tmp_path / "better.jsonl"
    rows = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines()]
    rows[2]["answer"] = "The line is narrow gauge, 800 mm."
    better.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    b, _ = _run(tmp_path, "b", better, capsys)
    assert main(["eval", "compare", str(a), str(b), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["em"]["delta"] == pytest.approx(1 / 5)
    assert [c["question"] for c in result["changed"]] == ["What is the track gauge of the railway?"]
    assert main(["eval", "compare", str(a), str(b)]) == 0
    assert "B - A" in capsys.readouterr().out


def test_eval_qa_bad_predictions_file(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"question": "x", "text": "no answer field"}\n', encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["eval", "qa", str(QA), "--predictions", str(bad), "--out", str(tmp_path / "o")])
    assert "p.jsonl:1: missing field 'answer'" in capsys.readouterr().err


def test_eval_qa_full_rag_path_on_sample_kb(sample_kb_dir, tmp_path, capsys):
    """Two questions through retrieval and the packaged model (short answers to keep it quick)."""
    out = tmp_path / "rag"
    code = main(
        [
            "eval",
            "qa",
            str(ROOT / "data" / "sample_qa.jsonl"),
            "--kb",
            str(sample_kb_dir),
            "--limit",
            "2",
            "--max-new-tokens",
            "24",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2
    for r in records:
        assert r["answer"].strip() and r["sources"] and r["latency_ms"] > 0
        assert r["gold_source"] == "history.md" and r["gold_rank"] is not None
        assert set(r["scores"]) >= {"em", "f1", "rouge-l-r", "bleu-4", "hit@1"}
    payload = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert payload["meta"]["mode"].startswith("RAG") and payload["meta"]["num"] == 2


def test_perplexity_math_and_text_reader(tmp_path):
    import math

    from kbqa.eval.perplexity import perplexity_from_nll, read_texts

    assert perplexity_from_nll(0.0, 10) == 1.0
    assert perplexity_from_nll(10 * math.log(4), 10) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        perplexity_from_nll(1.0, 0)
    txt = tmp_path / "t.txt"
    txt.write_text("first paragraph\nstill first\n\nsecond\n", encoding="utf-8")
    assert read_texts(txt) == ["first paragraph\nstill first", "second"]
    assert read_texts(QA)[1] == "When did the Lanshan Mountain Railway open to the public?\nIt opened to the public on 14 June 1911."
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "ok"}\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"b.jsonl:2: needs field 'text'"):
        read_texts(bad)


@pytest.mark.slow
def test_perplexity_and_mcq_with_the_packaged_model(tmp_path, capsys):
    """Real model: perplexity of fluent text is lower than of shuffled words; MCQ runs end to end."""
    fluent = tmp_path / "fluent.txt"
    fluent.write_text("The railway opened to the public in 1911 and still runs every day.\n", encoding="utf-8")
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("day every runs still and 1911 in public the to opened railway The.\n", encoding="utf-8")
    scores = []
    for f in (fluent, shuffled):
        assert main(["eval", "perplexity", str(f), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out)["perplexity"])
    assert 1.0 < scores[0] < scores[1]
    assert main(["eval", "mcq", str(FIXTURES / "eval_mcq.csv"), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["meta"]["num"] == 2 and 0.0 <= result["metrics"]["accuracy"] <= 1.0


def test_eval_squad_predictions_by_id(tmp_path, capsys):
    """SQuAD-style file scored from a predictions file (no model): matched by id, best over references."""
    preds = tmp_path / "p.jsonl"
    rows = [
        {"id": "q1", "question": "ignored", "answer": "14 June 1911", "sources": [{"source": "docs/a000-p000.txt"}]},
        {"id": "q2", "question": "ignored", "answer": "Wrenfield", "sources": [{"source": "docs/a000-p001.txt"}]},
        {"id": "q3", "question": "ignored", "answer": "I do not know.", "sources": [{"source": "docs/a000-p001.txt"}]},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "squad"
    assert main(["eval", "squad", str(FIXTURES / "eval_squad_mini.json"), "--predictions", str(preds), "--out", str(out), "--json"]) == 0
    payload = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    m = payload["metrics"]
    assert m["em"] == pytest.approx(1 / 3) and m["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["hit@1"] == pytest.approx(2 / 3)  # q2's gold paragraph a000-p000 was not retrieved
    assert payload["outcomes"] == {"correct": 2, "not found": 0, "retrieval miss": 0, "generation miss": 1, "wrong (gold unknown)": 0}


def test_eval_squad_strips_citations_and_counts_not_found_and_wrong(tmp_path, capsys):
    """Every answer carries citation markers: EM/F1 are computed without them; "not found" on an
    answerable question and wrong answers are rates of their own, in the table and the JSON."""
    from kbqa.retrieval.prompts import NOT_FOUND

    preds = tmp_path / "p.jsonl"
    rows = [
        {"id": "q1", "answer": "14 June 1911 [1]", "sources": [{"source": "docs/a000-p000.txt"}]},
        {"id": "q2", "answer": NOT_FOUND["en"], "sources": []},
        {"id": "q3", "answer": "Cloud Peak [2][3]", "sources": [{"source": "docs/a000-p001.txt"}]},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "squad"
    assert main(["eval", "squad", str(FIXTURES / "eval_squad_mini.json"), "--predictions", str(preds), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not_found" in printed and "wrong" in printed
    payload = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert records[0]["scores"]["em"] == 1.0  # "14 June 1911 [1]" against "14 June 1911"
    assert [r["scores"]["not_found"] for r in records] == [0.0, 1.0, 0.0]
    assert [r["scores"]["wrong"] for r in records] == [0.0, 0.0, 1.0]
    assert payload["metrics"]["not_found"] == pytest.approx(1 / 3) and payload["metrics"]["wrong"] == pytest.approx(1 / 3)
    assert payload["outcomes"]["not found"] == 1


def test_squad_question_with_empty_text_is_skipped(tmp_path, caplog):
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "paragraphs": [
                            {
                                "context": "c",
                                "qas": [{"id": "a", "question": "", "answers": [{"text": "x"}]}, {"id": "b", "question": "q?", "answers": [{"text": "x"}]}],
                            }
                        ]
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    _, items = read_squad(path)
    assert [it.id for it in items] == ["b"]
    assert "skipped 1 question(s) with empty text: data[0].paragraphs[0].qas[0]" in caplog.text
