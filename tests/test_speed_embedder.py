"""The fast embedding path gives the same vectors as sentence-transformers' own `encode`."""

from __future__ import annotations

import numpy as np
import pytest

from kbqa.retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder, length_batches

TEXTS = [
    "The Lanshan Mountain Railway opened in 1931.",
    "兰山铁路于1931年通车，全长四十二公里。",
    "short",
    "A much longer passage about tunnels, bridges and the switchbacks that climb the ridge. " * 12,
    "",
    "Tickets can be bought at the station.",
]


def test_length_batches_groups_similar_lengths_and_respects_limits():
    lengths = [5, 100, 3, 50, 7, 100]
    batches = length_batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) <= 2 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)
    assert batches[0] == [1, 5]  # the two longest together
    budgeted = length_batches([10, 10, 10, 200], batch_size=8, token_budget=300)
    assert budgeted == [[3], [0, 1, 2]]  # a batch's padded size stays within the budget


def test_vectors_match_sentence_transformers_encode(embedder):
    ours = embedder.embed_documents(TEXTS)
    reference = embedder.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True, batch_size=2)
    assert ours.shape == (len(TEXTS), embedder.dim) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_sliced_pipelined_path_gives_the_same_vectors(embedder):
    sliced = SentenceTransformerEmbedder(embedder.name, device="cpu", batch_size=2)
    sliced.slice_texts = 2  # three slices, the next tokenized while this one encodes
    assert np.abs(sliced.embed_documents(TEXTS) - embedder.embed_documents(TEXTS)).max() < 1e-5


def test_query_equals_document_embedding(embedder):
    assert np.allclose(embedder.embed_query(TEXTS[0]), embedder.embed_documents([TEXTS[0]])[0], atol=1e-6)


def test_count_tokens_matches_the_tokenizer_without_truncation(embedder):
    """count_tokens goes straight to the Rust tokenizer: the same counts as the transformers
    call, never cut at the model's 256 tokens."""
    texts = TEXTS + ["x" * 3000, "a, b: c、d，e " * 300, "🚂 ｆｕｌｌ ｗｉｄｔｈ\u200b"]
    expected = [len(ids) for ids in embedder.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]]
    assert embedder.count_tokens(texts) == expected
    assert max(expected) > embedder.max_tokens
    assert embedder.count_tokens([]) == []


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="embedder.precision"):
        SentenceTransformerEmbedder(precision="fp8")


def test_int8_precision_stays_close_to_fp32(embedder):
    int8 = SentenceTransformerEmbedder(embedder.name, device="cpu", precision="int8")
    assert int8.effective_precision == "int8"
    a, b = embedder.embed_documents(TEXTS), int8.embed_documents(TEXTS)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > 0.8 and cosine.mean() > 0.9  # close, not equal: quantized weights
    assert not np.allclose(a, b, atol=1e-4)
