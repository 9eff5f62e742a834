"""The rerank stage (retrieval.rerank): the Reranker contract, run against the cross-encoder
backend with a small CrossEncoder folder built here offline (the packaged MiniLM with a fresh
one-label head, seeded), its errors, the factory and settings, and the retriever's wiring on the
sample knowledge base (candidates in, top k out, "found" unchanged, off = unchanged)."""

from __future__ import annotations

import builtins
import json

import pytest

from kbqa.retrieval.protocols import Reranker
from kbqa.retrieval.rerankers import make_reranker
from kbqa.retrieval.retriever import Retriever, RetrieverConfig
from kbqa.retrieval.types import Chunk, Hit
from tests.conftest import load_qa
from tests.test_retrieval_kb import OFF_TOPIC

TEXTS = [
    "The Lanshan Mountain Railway opened to the public on 14 June 1911.",
    "Dogs travel free of charge if they are kept on a lead.",
    "The line is narrow gauge, 800 mm, and climbs 620 metres.",
    "Season tickets are sold at every staffed station.",
    "蓝山铁路于1911年6月14日通车。",
    "",
]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    """A CrossEncoder folder as sentence-transformers saves one: MiniLM plus an untrained head."""
    import torch
    from sentence_transformers import CrossEncoder

    from kbqa.retrieval.packaged import minilm_dir

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cross-encoder") / "minilm-ce"
    CrossEncoder(str(minilm_dir()), num_labels=1, device="cpu", local_files_only=True).save(str(path))
    return path


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir):
    return make_reranker(str(cross_encoder_dir), device="cpu")


def _hits(texts=TEXTS):
    return [Hit(Chunk(id=f"c{i}", text=t, source="doc.md", chunk=i), 1.0 - i / 10) for i, t in enumerate(texts)]


# ---- the contract ---------------------------------------------------------------------


def test_is_a_reranker_with_a_name(reranker, cross_encoder_dir):
    assert isinstance(reranker, Reranker)
    assert isinstance(reranker.name, str) and cross_encoder_dir.name in reranker.name


@pytest.mark.parametrize("k", [1, 3, len(TEXTS), len(TEXTS) + 4])
def test_returns_the_best_k_of_the_given_hits_with_its_own_scores(reranker, k):
    query = "When did the railway open?"
    hits = _hits()
    out = reranker.rerank(query, hits, k)
    assert len(out) == min(k, len(hits))
    assert len({h.chunk.id for h in out}) == len(out)
    by_id = {h.chunk.id: h.chunk for h in hits}
    assert all(by_id[h.chunk.id] == h.chunk for h in out)  # the chunks themselves, unchanged
    scores = [h.score for h in out]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)
    # each score is the model's for (query, that chunk's text), whatever came with the hit
    own = dict(zip([h.chunk.id for h in hits], reranker.scores(query, [h.chunk.text for h in hits])))
    assert scores == pytest.approx([own[h.chunk.id] for h in out], abs=1e-5)
    dropped = [own[i] for i in own if i not in {h.chunk.id for h in out}]
    assert all(s <= scores[-1] + 1e-6 for s in dropped)


def test_each_pair_is_scored_on_its_own_so_input_order_does_not_matter(reranker):
    query = "How wide is the track?"
    forward = reranker.rerank(query, _hits(), len(TEXTS))
    backward = reranker.rerank(query, list(reversed(_hits())), len(TEXTS))
    assert [h.score for h in forward] == pytest.approx([h.score for h in backward], abs=1e-5)
    assert sorted(h.chunk.id for h in forward) == sorted(h.chunk.id for h in backward)
    assert len({round(h.score, 6) for h in forward}) > 1  # the model tells the texts apart


def test_nothing_in_nothing_out(reranker):
    assert reranker.rerank("anything", [], 5) == []
    assert reranker.rerank("anything", _hits(), 0) == []


# ---- errors, factory, settings ----------------------------------------------------------


def test_off_means_no_reranker():
    for spec in (None, "none", "None", "", "off"):
        assert make_reranker(spec) is None


def test_a_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-reranker"
    with pytest.raises(ValueError, match=str(missing)):
        make_reranker(str(missing))


def test_a_bi_encoder_folder_is_refused():
    """The packaged MiniLM has no classification head: a CrossEncoder would rank with random weights."""
    from kbqa.retrieval.packaged import minilm_dir

    with pytest.raises(ValueError, match="not a cross-encoder"):
        make_reranker(str(minilm_dir()))


def test_a_missing_extra_names_the_install_command(cross_encoder_dir, tmp_path, monkeypatch):
    from kbqa.retrieval.rerankers import cross_encoder

    real_import = builtins.__import__

    def no_sentence_transformers(name, *args, **kwargs):
        if name.startswith("sentence_transformers"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    copy = tmp_path / "ce"  # another path: not the model loaded (and cached) above
    copy.mkdir()
    (copy / "config.json").write_text((cross_encoder_dir / "config.json").read_text())
    monkeypatch.setattr(builtins, "__import__", no_sentence_transformers)
    with pytest.raises(ImportError, match="pip install"):
        cross_encoder.CrossEncoderReranker(copy, device="cpu").rerank("q", _hits(), 2)


def test_settings_default_off_and_reach_the_retriever(settings):
    from kbqa.app.settings import Settings
    from kbqa.retrieval.retriever import RetrieverConfig

    assert settings.retrieval.rerank == "none" and settings.retrieval.rerank_candidates == 30
    changed = Settings(retrieval={"rerank": "/models/ce", "rerank_candidates": 40})
    config = RetrieverConfig.from_mapping(changed.retrieval.model_dump())
    assert (config.rerank, config.rerank_candidates) == ("/models/ce", 40)
    with pytest.raises(Exception):
        Settings(retrieval={"rerank_candidates": 0})


# ---- the retriever ------------------------------------------------------------------------


class _LongestFirst:
    """A reranker whose order is easy to state: longest text first (ties: first-stage order)."""

    name = "longest-first"

    def __init__(self):
        self.seen: list[int] = []

    def rerank(self, query, hits, k):
        self.seen.append(len(hits))
        ranked = sorted(enumerate(hits), key=lambda p: (-len(p[1].chunk.text), p[0]))
        return [Hit(h.chunk, float(len(h.chunk.text))) for _, h in ranked[:k]]


def _questions():
    return [item["query"] for item in load_qa()] + OFF_TOPIC


def _retriever(kb, **kwargs):
    return Retriever(kb.embedder, kb.store, kb.keyword_index, config=kb.retriever.config, **kwargs)


def test_off_by_default_leaves_retrieval_unchanged(sample_kb):
    plain = sample_kb.retriever
    assert plain.reranker is None
    explicit = _retriever(sample_kb, reranker=None)
    for q in _questions()[::4]:
        a, b = plain.retrieve(q, 5), explicit.retrieve(q, 5)
        assert [(h.chunk.id, h.score) for h in a.hits] == [(h.chunk.id, h.score) for h in b.hits]
        assert a.found == b.found


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_rerank_reorders_the_candidates_keeps_k_and_not_found_stays(sample_kb, mode):
    fake = _LongestFirst()
    reranked, plain = _retriever(sample_kb, reranker=fake), sample_kb.retriever
    candidates = reranked.config.rerank_candidates
    reordered = 0
    for q in _questions():
        first, top = plain.retrieve(q, candidates, mode), plain.retrieve(q, 5, mode)
        got = reranked.retrieve(q, 5, mode)
        assert len(got.hits) == min(5, len(first.hits))
        expected = sorted(enumerate(first.hits), key=lambda p: (-len(p[1].chunk.text), p[0]))[:5]
        assert [h.chunk.id for h in got.hits] == [h.chunk.id for _, h in expected]
        assert [h.score for h in got.hits] == [float(len(h.chunk.text)) for h in got.hits]
        assert got.found == top.found  # abstention is the first stage's
        reordered += [h.chunk.id for h in got.hits] != [h.chunk.id for h in top.hits]
    assert fake.seen and all(n <= candidates for n in fake.seen) and max(fake.seen) > 5
    assert reordered > 0


def test_cross_encoder_in_the_retriever(sample_kb, reranker):
    retriever = _retriever(sample_kb, reranker=reranker)
    for q in _questions()[::5]:
        first = sample_kb.retriever.retrieve(q, retriever.config.rerank_candidates)
        got = retriever.retrieve(q, 5)
        assert got.found == sample_kb.retriever.retrieve(q, 5).found
        assert len(got.hits) == 5 and {h.chunk.id for h in got.hits} <= {h.chunk.id for h in first.hits}
        assert [h.score for h in got.hits] == sorted((h.score for h in got.hits), reverse=True)


def test_the_setting_builds_the_reranker(sample_kb, cross_encoder_dir):
    config = RetrieverConfig.from_mapping({**sample_kb.settings.retrieval.model_dump(), "rerank": str(cross_encoder_dir)})
    retriever = Retriever(sample_kb.embedder, sample_kb.store, sample_kb.keyword_index, config=config)
    assert retriever.reranker is not None and cross_encoder_dir.name in retriever.reranker.name
    assert json.loads((cross_encoder_dir / "config.json").read_text())["architectures"][0].endswith("ForSequenceClassification")
