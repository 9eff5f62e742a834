"""Generation speed of the transformers backend (packaged SmolLM2-135M, CPU): time to first
token with a RAG-sized prompt, decoding tokens/s at batch 1 and batched, and the answer
cache's hit latency.

The prompt: a question with five SciFact abstracts as context (about 1,200 tokens, the
size the issue's target names). Decoding is greedy and forced to `new_tokens` tokens
(no early stop), so that every configuration does the same work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _prompt_messages(n_context: int = 5):
    from kbqa.retrieval.prompts import build_messages
    from kbqa.retrieval.types import Chunk, Hit

    lines = (SHARED / "scifact" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:n_context]
    hits = []
    for i, line in enumerate(lines):
        d = json.loads(line)
        words = d["text"].split()[:170]
        hits.append(Hit(Chunk(f"d{i}", " ".join(words), f"{d['_id']}.txt", chunk=0), 0.5))
    return build_messages("What do these studies find about the effect of the treatment?", hits, "en")


def _time_generate(model, inputs, new_tokens: int) -> float:
    import torch

    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return time.perf_counter() - t


def run(quick: bool = False, cache_dir: Path | None = None) -> dict:
    import os

    import torch

    from kbqa.retrieval.llm.transformers import TransformersLLM

    cache_dir = Path(cache_dir or os.environ.get("KBQA_CACHE_DIR") or Path.home() / ".cache" / "kbqa")
    llm = TransformersLLM("smollm2", device="cpu", cache_dir=cache_dir)
    model, tok = llm.model, llm.tokenizer
    messages = _prompt_messages()
    prompt = llm.prompt_text(messages)
    tok.padding_side = "left"
    inputs = tok([prompt], return_tensors="pt", add_special_tokens=False)
    n_prompt = int(inputs["input_ids"].shape[1])
    new_tokens = 32 if quick else 64
    out: dict = {
        "model": "SmolLM2-135M-Instruct (packaged, dequantized, fp32)",
        "prompt_tokens": n_prompt,
        "new_tokens": new_tokens,
        "threads": torch.get_num_threads(),
    }
    _time_generate(model, tok(["Hello"], return_tensors="pt"), 4)  # warm up
    variants = {"fp32": model}
    if not quick:
        try:
            with __import__("warnings").catch_warnings():
                __import__("warnings").simplefilter("ignore")
                from torch.ao.quantization import quantize_dynamic

                variants["int8_dynamic"] = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        except Exception as exc:  # recorded, not fatal
            out["int8_dynamic"] = {"error": f"{type(exc).__name__}: {exc}"}
    for name, m in variants.items():
        ttft = _time_generate(m, inputs, 1)
        total = _time_generate(m, inputs, new_tokens)
        row = {
            "ttft_s": round(ttft, 2),
            "prefill_tokens_per_s": round(n_prompt / ttft, 1),
            "decode_tokens_per_s_batch1": round((new_tokens - 1) / max(total - ttft, 1e-9), 1),
        }
        if name == "fp32":
            batch = 4
            many = tok([prompt] * batch, return_tensors="pt", add_special_tokens=False, padding=True)
            btotal = _time_generate(m, many, new_tokens)
            bttft = _time_generate(m, many, 1)
            row[f"decode_tokens_per_s_batch{batch}"] = round(batch * (new_tokens - 1) / max(btotal - bttft, 1e-9), 1)
            row[f"ttft_s_batch{batch}"] = round(bttft, 2)
            short = tok([llm.prompt_text(_prompt_messages(2))], return_tensors="pt", add_special_tokens=False)
            t2 = _time_generate(m, short, 1)
            row["ttft_s_2_chunks"] = round(t2, 2)
            row["prompt_tokens_2_chunks"] = int(short["input_ids"].shape[1])
        if name != "fp32":
            with torch.inference_mode():
                a = model.generate(**inputs, max_new_tokens=24, do_sample=False)
                b = m.generate(**inputs, max_new_tokens=24, do_sample=False)
            row["greedy_24_tokens_identical_to_fp32"] = bool(torch.equal(a, b))
            row["sample_fp32"] = tok.decode(a[0, n_prompt:], skip_special_tokens=True)
            row["sample_variant"] = tok.decode(b[0, n_prompt:], skip_special_tokens=True)
        out[name] = row
    out["answer_cache"] = answer_cache_latency(llm)
    return out


def answer_cache_latency(llm) -> dict:
    """A repeated question against the bundled sample knowledge base, answered from the cache."""
    import statistics
    import tempfile

    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings

    sample = Path(__file__).resolve().parent.parent / "data" / "sample"
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-cache-") as tmp:
        settings = Settings().with_overrides({"llm.max_new_tokens": 32})
        kb = KnowledgeBase(Path(tmp) / "kb", settings, llm=llm)
        kb.ingest([sample])
        question = "When did the Lanshan Mountain Railway open?"
        t = time.perf_counter()
        first = kb.ask(question)
        first_ms = (time.perf_counter() - t) * 1000
        ms = []
        for _ in range(20):
            t = time.perf_counter()
            again = kb.ask(question)
            ms.append((time.perf_counter() - t) * 1000)
        assert again.answer == first.answer
        return {"first_ask_ms": round(first_ms, 1), "cached_ask_ms_p50": round(statistics.median(ms), 3), "cached_ask_ms_max": round(max(ms), 3)}
