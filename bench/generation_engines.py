"""transformers fp32 (baseline) beside llama.cpp on the packaged SmolLM2, in one run, on the
same prompts: load time, TTFT at about 300, 1,200 and 2,000 prompt tokens, decode tokens/s
at batch 1 (greedy, `new_tokens` forced), peak RSS of this process after each engine.

    .venv/bin/python -m bench.generation_engines   # writes bench/results/generation.{json,md}
"""

from __future__ import annotations

import json
import os
import resource
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (1, 5, 9)  # SciFact abstracts of ~170 words: ~300, ~1,200, ~2,000 prompt tokens


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _transformers(prompts, new_tokens: int) -> dict:
    import torch

    from kbqa.retrieval.llm.transformers import TransformersLLM

    t = time.perf_counter()
    llm = TransformersLLM("smollm2", device="cpu", precision="fp32")
    model, tok = llm.model, llm.tokenizer
    row: dict = {"load_s": round(time.perf_counter() - t, 2), "threads": torch.get_num_threads()}
    for n, msgs in prompts.items():
        inputs = tok([llm.prompt_text(msgs)], return_tensors="pt", add_special_tokens=False)  # <= 2,000 tokens: untrimmed (8k window)
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=1, do_sample=False)  # warm-up: a cold first call made decode = total - TTFT look near zero
            t = time.perf_counter()
            model.generate(**inputs, max_new_tokens=1, do_sample=False)
            ttft = time.perf_counter() - t
            t = time.perf_counter()
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            total = time.perf_counter() - t
        row[f"prompt_{n}"] = {
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "ttft_s": round(ttft, 2),
            "decode_tokens_per_s": round((new_tokens - 1) / max(total - ttft, 1e-9), 1),
        }
    row["peak_rss_mb"] = _rss_mb()
    return row


def _llama_cpp(prompts, new_tokens: int) -> dict:
    from kbqa.retrieval.llm.llama_cpp import LlamaCppLLM

    t = time.perf_counter()
    llm = LlamaCppLLM("smollm2", max_context_tokens=4096)
    llama = llm.engine
    row: dict = {"load_s": round(time.perf_counter() - t, 2), "threads": llm.n_threads}
    for n, msgs in prompts.items():
        tokens = len(llama.tokenize("".join(m["content"] for m in msgs).encode(), add_bos=False))
        for _ in range(2):  # the second, warm call is timed (as for transformers)
            llama.reset()
            t = time.perf_counter()
            llama.create_chat_completion(messages=msgs, max_tokens=1, temperature=0.0)
            ttft = time.perf_counter() - t
        llama.reset()
        t = time.perf_counter()
        out = llama.create_chat_completion(messages=msgs, max_tokens=new_tokens, temperature=0.0, logit_bias={llama.token_eos(): -100.0})
        total = time.perf_counter() - t
        made = out["usage"]["completion_tokens"]
        row[f"prompt_{n}"] = {
            "prompt_tokens": out["usage"]["prompt_tokens"],
            "content_tokens": tokens,
            "ttft_s": round(ttft, 2),
            "decode_tokens": made,
            "decode_tokens_per_s": round((made - 1) / max(total - ttft, 1e-9), 1),
        }
    row["peak_rss_mb"] = _rss_mb()
    return row


def main(new_tokens: int = 32) -> dict:
    from bench.speed_generation import _prompt_messages

    prompts = {n: _prompt_messages(n) for n in SIZES}
    out = {
        "command": "python -m bench.generation_engines",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "new_tokens": new_tokens,
    }
    out["llama_cpp"] = _llama_cpp(prompts, new_tokens)  # first: its peak RSS is not the transformers one
    out["transformers_fp32"] = _transformers(prompts, new_tokens)
    out["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generation.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Generation engines: `{out['command']}`",
        "",
        f"{out['date']}, {out['cpus']} CPUs, load average before {out['loadavg_before']}, after {out['loadavg_after']}; "
        f"{new_tokens} greedy tokens forced. Peak RSS is this process's after each engine (llama.cpp measured first).",
        "",
        "| engine | load s | prompt tokens | TTFT s | decode tok/s (batch 1) | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for engine in ("transformers_fp32", "llama_cpp"):
        r = out[engine]
        for n in SIZES:
            p = r[f"prompt_{n}"]
            lines.append(f"| {engine} | {r['load_s']} | {p['prompt_tokens']} | {p['ttft_s']} | {p['decode_tokens_per_s']} | {r['peak_rss_mb']} |")
    (RESULTS / "generation.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
