"""The small public methods the backends give the benchmarks, so that bench/ reads no private
attribute (issue 24; tests/test_architecture.py checks bench/): the embedder's `token_ids`, the
BM25 index's `load_tokens` and `build`, the FAISS store's `index_info` and `wanted_kind`, the
transformers LLM's `prompt_text` and its `generation_kwargs` hook, llama.cpp's `engine`.

Real backends on small inputs: the packaged MiniLM and SmolLM2, FAISS on random vectors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from kbqa.retrieval.types import Chunk

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "When did the railway open?"}]


def test_token_ids_are_what_the_embedder_reads(embedder):
    long = "railway " * 2000
    ids = embedder.token_ids(["The railway opened in 1931.", long])
    tok = embedder.tokenizer
    assert ids == tok(["The railway opened in 1931.", long], truncation=True, max_length=embedder.max_tokens)["input_ids"]
    assert ids[0][0] == tok.cls_token_id and ids[0][-1] == tok.sep_token_id  # special tokens included
    assert len(ids[1]) == embedder.max_tokens  # truncated to the model's window


def test_bm25_load_tokens_equals_adding_the_texts(tmp_path):
    from kbqa.retrieval.bm25 import BM25Index
    from kbqa.retrieval.tokenize import bm25_tokens

    chunks = [Chunk(f"c{i}", text, "a.txt", chunk=i) for i, text in enumerate(["the railway opened in 1931", "green tea is steamed", "the railway climbs"])]
    added = BM25Index(tmp_path / "added")
    added.add(chunks)
    loaded = BM25Index(tmp_path / "loaded")
    loaded.load_tokens({c.id: bm25_tokens(c.text) for c in chunks})
    loaded.build()
    assert loaded.search("railway", 5) == added.search("railway", 5) and len(loaded.search("railway", 5)) == 2
    loaded.save()
    assert BM25Index(tmp_path / "loaded").tokens == added.tokens  # written as `add` would have


def test_faiss_index_info_and_wanted_kind(tmp_path):
    from kbqa.retrieval.stores.faiss import FaissStore

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    chunks = [Chunk(f"c{i}", f"chunk {i}", "a.txt", chunk=i) for i in range(400)]
    ivf = FaissStore(tmp_path / "ivf", 8, index="ivf", nlist=4, nprobe=2, device="cpu")
    assert ivf.index_info() == {"kind": None, "vectors": 0, "dead": 0, "gpu_search": None}
    ivf.upsert(chunks, vectors)
    ivf.query(vectors[0], 5)
    assert ivf.index_info() == {"kind": "ivf", "vectors": 400, "dead": 0, "gpu_search": None, "nlist": 4, "nprobe": 2, "trained_on": 400}
    flat = FaissStore(tmp_path / "flat", 8, flat_max=300, device="cpu")
    flat.upsert(chunks[:10], vectors[:10])
    flat.query(vectors[0], 3)
    flat.upsert(chunks[:1], vectors[1:2])  # a replaced row stays in the index as a dead label
    assert flat.index_info() == {"kind": "flat", "vectors": 11, "dead": 1, "gpu_search": None}
    assert [flat.wanted_kind(n) for n in (10, 299, 300)] == ["flat", "flat", "ivf"]
    assert ivf.wanted_kind(0) == "flat" and ivf.wanted_kind(5) == "ivf"
    ivf.close()
    flat.close()


@pytest.fixture(scope="module")
def smollm2(settings):
    from kbqa.retrieval.llm.transformers import TransformersLLM

    return TransformersLLM(cache_dir=settings.cache_dir, device="cpu", precision="fp32")


def test_prompt_text_is_the_chat_template_applied(smollm2):
    expected = smollm2.tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert smollm2.prompt_text(MESSAGES) == expected
    assert expected.rstrip().endswith("assistant")  # the assistant's turn is open


def test_a_subclass_adds_generate_options_through_the_hook(settings, smollm2):
    from transformers import LogitsProcessor, LogitsProcessorList

    from kbqa.retrieval.llm.transformers import TransformersLLM
    from kbqa.retrieval.protocols import DEFAULT_SAMPLING

    class Count(LogitsProcessor):
        steps = 0

        def __call__(self, input_ids, scores):
            Count.steps += 1
            return scores

    class Hooked(TransformersLLM):  # as bench/finetune_abstain_probe.py extends it
        def generation_kwargs(self, max_tokens, temperature, sampling=DEFAULT_SAMPLING):
            return {**super().generation_kwargs(max_tokens, temperature, sampling), "logits_processor": LogitsProcessorList([Count()])}

    base = smollm2.generation_kwargs(4, 0.0)
    assert base["max_new_tokens"] == 4 and base["do_sample"] is False and base["eos_token_id"]
    hooked = Hooked(cache_dir=settings.cache_dir, device="cpu", precision="fp32")
    hooked.generate(MESSAGES, max_tokens=3)
    assert 1 <= Count.steps <= 3  # the subclass's option reached model.generate


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llama_cpp_engine_is_the_loaded_model():
    import llama_cpp

    from kbqa.retrieval.llm.llama_cpp import LlamaCppLLM

    llm = LlamaCppLLM(max_context_tokens=512, n_threads=1)
    engine = llm.engine
    assert isinstance(engine, llama_cpp.Llama) and engine is llm.engine and engine.n_ctx() == 512
    assert llm.count_tokens("When did the railway open?") == len(engine.tokenize("When did the railway open?".encode(), add_bos=False, special=True))
