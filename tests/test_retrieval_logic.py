"""Pure logic of retrieval: fusion, metrics (values by hand), query rewriting, context assembly."""

from __future__ import annotations

import math
import re

import pytest

from kbqa.eval.retrieval_metrics import dedupe, evaluate_rankings, hit_at_k, mrr_at_k, ndcg_at_k, percentile, recall_at_k
from kbqa.retrieval.context import assemble_context, join_overlapping
from kbqa.retrieval.fusion import dense_weight, mmr, peakedness, rrf_fuse, weighted_fuse
from kbqa.retrieval.jsonl import iter_jsonl
from kbqa.retrieval.rewrite import is_follow_up, rewrite_query
from kbqa.retrieval.types import Chunk, Hit

# ---- fusion -------------------------------------------------------------------------


def test_rrf_by_hand():
    fused = dict(rrf_fuse([["a", "b"], ["b", "c"]], k=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert [i for i, _ in rrf_fuse([["a", "b"], ["b", "c"]])][0] == "b"


def test_weighted_fuse_by_hand_and_missing_candidates_take_the_lists_floor():
    dense = [("a", 0.8), ("b", 0.6)]
    sparse = [("b", 0.9), ("c", 0.5)]
    fused = dict(weighted_fuse(dense, sparse, 0.5))
    assert fused["b"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.9)
    assert fused["a"] == pytest.approx(0.5 * 0.8 + 0.5 * 0.5)  # a missing from sparse: sparse's lowest score
    assert fused["c"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.5)
    assert [i for i, _ in weighted_fuse(dense, sparse, 0.5)] == ["b", "a", "c"]
    assert [i for i, _ in weighted_fuse(dense, sparse, 1.0)][0] == "a"  # dense alone
    assert all(0.0 <= s <= 1.0 for _, s in weighted_fuse([("x", 1.7)], [("x", -0.2)], 0.5))
    with pytest.raises(ValueError):
        weighted_fuse(dense, sparse, 1.5)


def test_fusion_never_worse_than_the_strong_part_when_the_other_is_noise():
    """A weak-language dense list that ranks the answer last must not bury BM25's first place."""
    sparse = [("gold", 0.6), ("x", 0.3), ("y", 0.2)]
    dense = [("y", 0.81), ("x", 0.80), ("z", 0.80), ("v", 0.79), ("gold", 0.79)]  # flat, wrong: an English model on Chinese text
    w = dense_weight(0.5, language_supported=False, weak_language_weight=0.1, dense_scores=[s for _, s in dense], sparse_scores=[s for _, s in sparse])
    assert w == 0.1
    assert weighted_fuse(dense, sparse, w)[0][0] == "gold"
    assert rrf_fuse([[i for i, _ in dense], [i for i, _ in sparse]])[0][0] != "gold"  # naive RRF loses it


def test_dense_weight_rules():
    assert dense_weight(0.5, language_supported=True, weak_language_weight=0.1, dense_scores=[0.5], sparse_scores=[0.4]) == 0.5
    assert dense_weight(0.5, language_supported=True, weak_language_weight=0.1, dense_scores=[0.5], sparse_scores=[]) == 1.0
    assert dense_weight(0.5, language_supported=True, weak_language_weight=0.1, dense_scores=[], sparse_scores=[0.4]) == 0.0
    # adapt: towards the more peaked list
    peaked_dense, flat_sparse = [0.9, 0.1, 0.1], [0.5, 0.5, 0.5]
    w = dense_weight(0.5, language_supported=True, weak_language_weight=0.1, dense_scores=peaked_dense, sparse_scores=flat_sparse, adapt=0.5)
    assert w > 0.5


def test_peakedness():
    assert peakedness([1.0, 0.5, 0.5]) == pytest.approx(0.5)
    assert peakedness([0.4, 0.4]) == 0.0
    assert peakedness([0.7]) == 1.0
    assert peakedness([]) == 0.0


def test_mmr_prefers_diverse_candidates():
    cands = [("a", 0.9), ("a2", 0.89), ("b", 0.7)]
    same = {frozenset({"a", "a2"})}
    sim = lambda x, y: 1.0 if frozenset({x, y}) in same else 0.0  # noqa: E731
    assert [i for i, _ in mmr(cands, sim, 2, lambda_=0.5)] == ["a", "b"]
    assert [i for i, _ in mmr(cands, sim, 2, lambda_=1.0)] == ["a", "a2"]


# ---- metrics, by hand -----------------------------------------------------------------


def test_metrics_by_hand():
    ranking = ["x", "a", "b"]
    rel = {"a": 1, "b": 2}
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranking, rel, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranking, rel, 1) == 0.0
    assert recall_at_k(ranking, rel, 2) == 0.5
    assert recall_at_k(ranking, {"a", "b"}, 3) == 1.0
    assert mrr_at_k(ranking, rel, 10) == 0.5
    assert mrr_at_k(ranking, rel, 1) == 0.0
    assert hit_at_k(ranking, "a", 1) == 0.0 and hit_at_k(ranking, "a", 2) == 1.0
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # grade 0 is not relevant
    assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_evaluate_rankings_means_and_per_item():
    means, per = evaluate_rankings({"q1": ["a", "a", "b"], "q2": ["z"]}, {"q1": {"b": 1}, "q2": {"y": 1}, "q3": {"y": 1}}, ("mrr@10", "hit@1"))
    assert per["q1"] == {"mrr@10": 0.5, "hit@1": 0.0}  # duplicate "a" collapsed: b is second
    assert per["q3"] == {"mrr@10": 0.0, "hit@1": 0.0}  # a query with no ranking counts as zero
    assert means["mrr@10"] == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_rankings({}, {}, ("map@10",))


def test_percentile():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert percentile([], 50) == 0.0


# ---- rewriting ------------------------------------------------------------------------

HISTORY = [
    {"role": "user", "content": "What time does the first upward train leave Lanshan Foot?"},
    {"role": "assistant", "content": "At 07:40."},
]


def test_follow_up_gains_the_previous_questions_terms():
    q = rewrite_query("And how long does it take?", HISTORY)
    assert q.startswith("And how long does it take?")
    assert "lanshan" in q and "train" in q


def test_standalone_question_and_empty_history_unchanged():
    q = "How much is an adult return ticket for the whole line?"
    assert rewrite_query(q, HISTORY) == q
    assert rewrite_query("And how long does it take?", None) == "And how long does it take?"
    assert not is_follow_up(q)
    assert is_follow_up("What about it?")


def test_chinese_follow_up_and_chains():
    history = [{"role": "user", "content": "目前承担客运任务的是什么型号的机车？"}, {"role": "assistant", "content": "LS-7型。"}]
    q = rewrite_query("它的最高时速是多少？", history)
    assert q.startswith("它的最高时速是多少？") and "机车" in q
    chain = history + [{"role": "user", "content": "它有几台？"}, {"role": "assistant", "content": "6台。"}]
    assert "机车" in rewrite_query("那它呢？", chain)  # the topic survives two follow-ups


# ---- context assembly -----------------------------------------------------------------


def _chunk(i: int, text: str, source="doc.md", page=None, doc_hash="h") -> Chunk:
    return Chunk(id=f"{source}-{page}-{i}", text=text, source=source, page=page, chunk=i, doc_hash=doc_hash)


def _words(texts):
    return [len(t.split()) for t in texts]


def test_join_overlapping_removes_the_shared_part():
    assert join_overlapping(["alpha beta gamma delta", "gamma delta epsilon"]) == "alpha beta gamma delta epsilon"
    assert join_overlapping(["one two", "three four"]) == "one two\nthree four"


def test_adjacent_hits_merge_and_duplicates_go():
    a, b = _chunk(0, "the railway opened in 1911 with steam"), _chunk(1, "with steam engines from Switzerland")
    copy = _chunk(0, "the railway opened in 1911 with steam", source="copy.md", doc_hash="h2")
    out = assemble_context([Hit(a, 0.9), Hit(copy, 0.85), Hit(b, 0.8)], budget_tokens=100, count_tokens=_words)
    assert len(out) == 1
    assert out[0].chunk.text == "the railway opened in 1911 with steam engines from Switzerland"
    assert out[0].chunk.source == "doc.md" and out[0].chunk.chunk == 0 and out[0].score == 0.9


def test_budget_keeps_best_first_and_cuts_the_best_if_alone_too_long():
    hits = [Hit(_chunk(0, "w " * 30, source="a.md"), 0.9), Hit(_chunk(5, "v " * 30, source="b.md"), 0.8), Hit(_chunk(9, "u " * 10, source="c.md"), 0.7)]
    out = assemble_context(hits, budget_tokens=45, count_tokens=_words)
    assert [h.chunk.source for h in out] == ["a.md", "c.md"]  # b does not fit, c does
    out = assemble_context(hits[:1], budget_tokens=10, count_tokens=_words)
    assert len(out) == 1 and _words([out[0].chunk.text])[0] <= 10
    with pytest.raises(ValueError):
        assemble_context(hits, budget_tokens=0, count_tokens=_words)


def test_small_to_big_adds_neighbours_on_the_same_page_only():
    doc = [_chunk(i, f"part{i} text", page=1 if i < 3 else 2) for i in range(5)]
    ids = [c.id for c in doc]
    by_id = {c.id: c for c in doc}
    fetch = lambda wanted: [by_id[i] for i in wanted if i in by_id]  # noqa: E731
    out = assemble_context([Hit(doc[1], 0.9)], budget_tokens=100, count_tokens=_words, document_chunk_ids=lambda c: ids, fetch=fetch, neighbors=1)
    assert out[0].chunk.text == "part0 text\npart1 text\npart2 text" and out[0].chunk.page == 1
    out = assemble_context([Hit(doc[2], 0.9)], budget_tokens=100, count_tokens=_words, document_chunk_ids=lambda c: ids, fetch=fetch, neighbors=1)
    assert "part3" not in out[0].chunk.text  # page 2 stays out of a page-1 citation
    out = assemble_context([Hit(doc[1], 0.9)], budget_tokens=3, count_tokens=_words, document_chunk_ids=lambda c: ids, fetch=fetch, neighbors=1)
    assert out[0].chunk.text == "part1 text"  # no room to grow


def test_jsonl_reader_skips_bom_and_blank_lines_and_names_the_bad_line(tmp_path):
    class MyError(ValueError):
        pass

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n  \n[2]\n')
    assert list(iter_jsonl(path, MyError)) == [(1, f"{path}:1", {"a": 1}), (4, f"{path}:4", [2])]
    path.write_text('{"a": 1}\n\n{"a": \n', encoding="utf-8")
    with pytest.raises(MyError, match=re.escape(f"{path}:3: not valid JSON")):
        list(iter_jsonl(path, MyError))
