"""Answer modes and the check of generated answers: pure logic, with a stand-in reader
where the reader's choice is not what is tested (the real reader: tests/test_reader.py)."""

from __future__ import annotations

import pytest

from kbqa.retrieval.answering import CheckedStream, Grounded, checked_answer, choose_mode, evidence_sentence, extractive_answer, model_languages
from kbqa.retrieval.citations import cited_numbers, strip_citations
from kbqa.retrieval.prompts import NOT_FOUND
from kbqa.retrieval.readers.span import Span
from kbqa.retrieval.types import Chunk, Hit
from kbqa.retrieval.verify import facts, sentences, verify_answer

FAQ = "儿童票：未满6周岁的儿童免票，但不单独占用座位。6周岁至13周岁的儿童购买儿童票。"
HISTORY = "The Cloudgate Tunnel is 1,146 m long. It was completed in 1909 under the engineer Hollis Wrenfield."


def hits(*texts):
    return [Hit(Chunk(f"c{i}", t, f"doc{i}.md"), 0.9) for i, t in enumerate(texts)]


# ---- choosing the mode ----------------------------------------------------------------
def test_auto_is_extractive_for_the_packaged_model_in_both_languages():
    langs = model_languages(None, "smollm2")
    assert langs == ["en"]
    assert choose_mode("auto", "smollm2", langs, "en") == "extractive"
    assert choose_mode("auto", "smollm2", langs, "zh") == "extractive"


def test_auto_is_generative_for_a_capable_model_unless_it_lacks_the_language():
    assert choose_mode("auto", "openai:qwen2.5-7b", None, "zh") == "generative"
    assert choose_mode("auto", "/models/llama", ["en"], "en") == "generative"
    assert choose_mode("auto", "/models/llama", ["en"], "zh") == "extractive"
    assert choose_mode("generative", "smollm2", ["en"], "zh") == "generative"
    with pytest.raises(ValueError, match="answer.mode"):
        choose_mode("creative", "smollm2", None, "en")


# ---- citations ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, stripped",
    [
        ("eight [1]", "eight"),
        ("eight [1][2].", "eight."),
        ("答案是六岁【1】。", "答案是六岁。"),
        ("Denver Broncos [1, 2]", "Denver Broncos"),
        ("no marker", "no marker"),
        ("in 1909 [3] and 1911 [4]", "in 1909 and 1911"),
    ],
)
def test_strip_citations(text, stripped):
    assert strip_citations(text) == stripped


def test_cited_numbers_in_order():
    assert cited_numbers("a [2] b [1][2] c 【3】") == [2, 1, 3]


# ---- verification ------------------------------------------------------------------------
def test_a_forged_number_is_caught():
    verdict = verify_answer("1. 可以免费改签一次，须在原车次发车前23000元 [1]", [FAQ])
    assert not verdict.grounded
    assert any("23000" in u for u in verdict.unsupported)


def test_a_citation_of_a_block_that_does_not_exist_is_caught():
    verdict = verify_answer("The tunnel is 1,146 m long [3].", [FAQ, HISTORY])
    assert not verdict.grounded and verdict.unsupported == ["[3]: no such block (there are 2)"]


def test_a_number_must_be_in_the_block_it_cites_not_just_anywhere():
    assert verify_answer("It is 1,146 m long [2].", [FAQ, HISTORY]).grounded
    assert not verify_answer("It is 1,146 m long [1].", [FAQ, HISTORY]).grounded


def test_supported_answers_pass_and_decimals_are_not_sentence_ends():
    assert verify_answer("未满6周岁的儿童免票 [1]。", [FAQ]).grounded
    assert verify_answer("Hollis Wrenfield completed it in 1909 [1].", [HISTORY]).grounded
    assert verify_answer("The line is 3.2 km long [1].", ["The whole line is 3.2 km long."]).grounded
    assert sentences("It is 3.2 km. [1] It opened in 1911 [1].") == ["It is 3.2 km. [1]", "It opened in 1911 [1]."]


def test_invented_names_and_dates_are_caught():
    assert not verify_answer("Robert Stephenson completed it [1].", [HISTORY]).grounded
    assert not verify_answer("It was completed in 1910 [1].", [HISTORY]).grounded
    assert "Robert Stephenson" in facts("It was built by Robert Stephenson in 1909.")


# ---- extractive answers and the replacement of failed ones ---------------------------
class StandInReader:
    """Returns the spans it is given; the real reader is tested in tests/test_reader.py."""

    threshold = 0.0

    def __init__(self, spans):
        self.spans = spans
        self.asked = []

    def read(self, question, passages):
        self.asked.append((question, list(passages)))
        return self.spans

    def confidence(self, question, passages, spans, lang):
        return spans[0].score


def test_extractive_answer_quotes_its_block_and_cites_it():
    start = HISTORY.index("1,146 m")
    reader = StandInReader([Span(1, start, start + 7, "1,146 m", 3.0)])
    answer = extractive_answer(reader, "How long is the Cloudgate Tunnel?", hits(FAQ, HISTORY), "en", threshold=0.0)
    assert answer == Grounded("1,146 m [2]", "extractive", evidence="The Cloudgate Tunnel is 1,146 m long.")
    sentence = extractive_answer(reader, "q", hits(FAQ, HISTORY), "en", threshold=0.0, style="sentence")
    assert sentence.text == "The Cloudgate Tunnel is 1,146 m long. [2]"


def test_extractive_answer_below_the_threshold_is_not_found():
    reader = StandInReader([Span(0, 0, 3, "儿童票", -1.5)])
    answer = extractive_answer(reader, "秘鲁的首都是哪里？", hits(FAQ), "zh", threshold=0.0)
    assert (answer.text, answer.found, answer.mode) == (NOT_FOUND["zh"], False, "extractive")


def test_evidence_sentence():
    start = FAQ.index("未满6周岁")
    assert evidence_sentence(FAQ, start, start + 5) == "儿童票：未满6周岁的儿童免票，但不单独占用座位。"


def test_a_failed_generation_is_replaced_by_the_quote_or_not_found():
    quote = Grounded("未满6周岁 [1]", "extractive", evidence="…")
    replaced = checked_answer("可以免费改签一次，须在原车次发车前23000元 [1]", hits(FAQ), "zh", lambda: quote)
    assert replaced.replaced and not replaced.grounded and replaced.text == "未满6周岁 [1]" and replaced.mode == "generative"
    withheld = checked_answer("It opened in 1910 [1].", hits(HISTORY), "en", None)
    assert withheld.text == NOT_FOUND["en"] and not withheld.found and not withheld.grounded
    kept = checked_answer("It was completed in 1909 [1].", hits(HISTORY), "en", None)
    assert kept.grounded and not kept.replaced and kept.text == "It was completed in 1909 [1]."


def test_checked_stream_gives_the_verdict_when_it_ends():
    stream = CheckedStream(iter(["It opened ", "in 1910 [1]."]), lambda text: checked_answer(text, hits(HISTORY), "en", None))
    assert stream.result is None
    assert "".join(stream) == "It opened in 1910 [1]."
    assert stream.result is not None and not stream.result.grounded and stream.result.replaced


def test_checked_stream_of_a_finished_answer_streams_it_in_pieces():
    stream = CheckedStream(done=Grounded("未满6周岁的儿童免票 [1]", "extractive"))
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == "未满6周岁的儿童免票 [1]"
    assert stream.result.mode == "extractive"
