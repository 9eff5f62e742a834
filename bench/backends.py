"""Serving backends, measured on this machine: one figure per backend that runs here.

    python bench/backends.py            # all parts; writes bench/results/backends_<machine>.{json,md}
    python bench/backends.py llm store  # only some parts

- transformers: the packaged SmolLM2-135M through `TransformersLLM`, greedy, generated
  tokens per second at batch 1 and batch 4; adapter switch time (two tiny LoRA adapters).
- openai: the same questions through our own `kbqa serve` (a separate process, REST API)
  with `OpenAICompatLLM`, against `KnowledgeBase.ask` in this process: identical answers,
  the time to the first streamed token, and the HTTP/JSON/client overhead alone, timed on a
  question the knowledge base cannot answer (retrieval only, no generation).
- chroma: embedded (PersistentClient) against a Chroma server (`chroma run`) on this
  machine: query latency (k=5) over 5,000 vectors of 384 dimensions, and upsert rate.
- vllm: not measured unless vLLM imports and a CUDA GPU is present.
- gpu (only when named; a CUDA machine): multi-LoRA on the transformers backend in bf16,
  on a model of SmolLM2's shape with random weights (inputs: `.gpu-w9/smollm2/` holding
  the packaged model's config and tokenizer files).

Timings are taken on a shared 2-core machine: the load average is recorded beside them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results"
QUESTIONS = [
    "When did the Lanshan Mountain Railway open to the public?",
    "How much is an adult return ticket for the whole line?",
    "How heavy may the free main bag be?",
    "What is the altitude of Lanshan Foot Station?",
]


def _settings():
    from kbqa.app.settings import Settings

    return Settings.load()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def bench_llm(out: dict) -> None:
    from kbqa.retrieval.llm.transformers import TransformersLLM

    s = _settings()
    llm = TransformersLLM(s.llm.model, device="cpu", cache_dir=s.cache_dir)
    llm.warm_up()
    convs = [[{"role": "user", "content": f"Explain in three sentences: {q}"}] for q in QUESTIONS]
    llm.generate(convs[0], max_tokens=8)  # first-call warm-up
    tokens, started = 0, time.perf_counter()
    for c in convs:
        tokens += llm.count_tokens(llm.generate(c, max_tokens=64))
    batch1 = tokens / (time.perf_counter() - started)
    started = time.perf_counter()
    texts = llm.batch(convs, max_tokens=64)
    batch4 = sum(llm.count_tokens(t) for t in texts) / (time.perf_counter() - started)
    out["transformers"] = {
        "model": "SmolLM2-135M-Instruct (packaged), fp32, CPU",
        "tokens_per_s_batch1": round(batch1, 1),
        "tokens_per_s_batch4": round(batch4, 1),
        "loadavg": os.getloadavg(),
    }
    out["transformers"].update(_adapter_switch(llm, convs[0]))
    print("transformers", out["transformers"], flush=True)


def _adapter_switch(llm, conv) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from kbqa.retrieval.llm.model_cache import packaged_model_dir
    from kbqa.retrieval.llm.transformers import TransformersLLM

    s = _settings()
    folder = Path(tempfile.mkdtemp(prefix="kbqa-bench-adapters-"))
    try:
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(packaged_model_dir(s.cache_dir)))
        paths = {}
        for seed, name in enumerate(["a", "b"], start=1):
            torch.manual_seed(seed)
            model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
            model.save_pretrained(folder / name)
            base = model.unload()
            paths[name] = str(folder / name)
        multi = TransformersLLM(s.llm.model, device="cpu", cache_dir=s.cache_dir, adapters=paths)
        started = time.perf_counter()
        multi.for_adapter("a").generate(conv, max_tokens=1)  # first use: adapter a loaded onto the base
        first_load = time.perf_counter() - started
        multi.for_adapter("b").generate(conv, max_tokens=1)
        times = []
        for name in ["a", "b", "base", "a", "b", "base"]:
            started = time.perf_counter()
            multi.for_adapter(name).generate(conv, max_tokens=1)
            times.append(time.perf_counter() - started)
        plain = []
        for _ in range(3):
            started = time.perf_counter()
            llm.generate(conv, max_tokens=1)
            plain.append(time.perf_counter() - started)
        return {
            "adapter_first_load_ms": _ms(first_load),
            "one_token_answer_switching_adapters_ms": _ms(statistics.median(times)),
            "one_token_answer_base_ms": _ms(statistics.median(plain)),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_openai(out: dict) -> None:
    import httpx

    from kbqa.app.kb import KnowledgeBase
    from live_server import free_port
    from kbqa.retrieval.llm.openai_compat import OpenAICompatLLM

    # short prompts (2 passages) so that CPU prefill does not drown the HTTP overhead; no answer cache
    s = _settings().with_overrides({"llm.max_new_tokens": 32, "llm.answer_cache": 0, "retrieval.k": 2, "retrieval.context_neighbors": 0})
    kb_dir = s.cache_dir / "bench-backends" / "sample-kb"
    kb = KnowledgeBase(kb_dir, s)
    if kb.record is None:
        kb.ingest([ROOT / "data" / "sample"])
    port = free_port()
    env = dict(
        os.environ,
        KBQA_LLM__MAX_NEW_TOKENS="32",
        KBQA_LLM__ANSWER_CACHE="0",
        KBQA_RETRIEVAL__K="2",
        KBQA_RETRIEVAL__CONTEXT_NEIGHBORS="0",
        KBQA_CACHE_DIR=str(s.cache_dir),
    )
    log = open(kb_dir.parent / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "serve", "--kb", f"sample={kb_dir}", "--port", str(port), "--no-ui"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kbqa serve did not start: {(kb_dir.parent / 'serve.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        remote = OpenAICompatLLM("sample", base_url=f"{url}/v1", timeout_s=600)
        questions = QUESTIONS[:3]
        messages = [[{"role": "user", "content": q}] for q in questions]
        remote.generate(messages[0], max_tokens=4)
        kb.ask(QUESTIONS[0])
        local_t, remote_t, ttft, same = [], [], [], 0
        for q, m in zip(questions, messages):
            started = time.perf_counter()
            local = kb.ask(q).answer
            local_t.append(time.perf_counter() - started)
            started = time.perf_counter()
            text = remote.generate(m, max_tokens=32)
            remote_t.append(time.perf_counter() - started)
            same += text == local
            started = time.perf_counter()
            stream = remote.stream(m, max_tokens=32)
            next(stream)
            ttft.append(time.perf_counter() - started)
            for _ in stream:
                pass
        # the HTTP + JSON + client overhead alone: a question the knowledge base cannot answer
        # (retrieval only, no generation), alternating in-process and through the server
        unanswerable = "What is the boiling point of liquid nitrogen in kelvin?"
        nf_local, nf_remote = [], []
        for _ in range(10):
            started = time.perf_counter()
            local_nf = kb.ask(unanswerable)
            nf_local.append(time.perf_counter() - started)
            started = time.perf_counter()
            remote_nf = remote.generate([{"role": "user", "content": unanswerable}], max_tokens=32)
            nf_remote.append(time.perf_counter() - started)
        assert not local_nf.found and remote_nf == local_nf.answer, (local_nf, remote_nf)
        out["openai"] = {
            "not_found_in_process_ms_median": _ms(statistics.median(nf_local)),
            "not_found_through_openai_backend_ms_median": _ms(statistics.median(nf_remote)),
            "http_overhead_ms_median": _ms(statistics.median(r - l for r, l in zip(nf_remote, nf_local))),
            "server": "kbqa serve (separate process, REST API), transformers backend behind it",
            "answer_in_process_ms_median": _ms(statistics.median(local_t)),
            "answer_through_openai_backend_ms_median": _ms(statistics.median(remote_t)),
            "time_to_first_streamed_token_ms_median": _ms(statistics.median(ttft)),
            "identical_answers": f"{same}/{len(questions)}",
            "loadavg": os.getloadavg(),
        }
        print("openai", out["openai"], flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def bench_store(out: dict) -> None:
    import numpy as np

    from chroma_server import chroma_server
    from kbqa.retrieval.stores.chroma import ChromaStore
    from kbqa.retrieval.types import Chunk

    rng = np.random.default_rng(0)
    n, dim = 5000, 384
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(f"c{i}", f"text {i}", "doc.md", chunk=i) for i in range(n)]
    queries = vectors[rng.choice(n, 100, replace=False)]
    work = Path(tempfile.mkdtemp(prefix="kbqa-bench-chroma-"))
    try:
        results = {}
        with chroma_server(work / "server") as url:
            for label, store in [("embedded", ChromaStore(work / "embedded", dim)), ("server", ChromaStore(work / "unused", dim, url=url, collection="bench"))]:
                started = time.perf_counter()
                store.upsert(chunks, vectors)
                upsert = time.perf_counter() - started
                lat = []
                for q in queries:
                    started = time.perf_counter()
                    store.query(q, 5)
                    lat.append(time.perf_counter() - started)
                lat.sort()
                results[label] = {
                    "upsert_vectors_per_s": round(n / upsert),
                    "query_ms_p50": _ms(lat[len(lat) // 2]),
                    "query_ms_p95": _ms(lat[int(len(lat) * 0.95)]),
                }
        out["chroma"] = {"vectors": n, "dim": dim, "k": 5, **results, "loadavg": os.getloadavg()}
        print("chroma", out["chroma"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_vllm(out: dict) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        out["vllm"] = {"skipped": "vllm is not installed here (CPU-only machine)"}
        return
    from kbqa.retrieval.llm.vllm import VLLMLLM

    llm = VLLMLLM(_settings().llm.model, cache_dir=_settings().cache_dir)
    convs = [[{"role": "user", "content": f"Explain in three sentences: {q}"}] for q in QUESTIONS] * 8
    llm.batch(convs[:1], max_tokens=8)
    started = time.perf_counter()
    texts = llm.batch(convs, max_tokens=64)
    tokenizer = llm.engine.get_tokenizer()
    tokens = sum(len(tokenizer(t)["input_ids"]) for t in texts)
    out["vllm"] = {"tokens_per_s_batch32": round(tokens / (time.perf_counter() - started), 1)}


def bench_gpu(out: dict, inputs: Path = ROOT / ".gpu-w9" / "smollm2") -> None:
    """On a CUDA machine: the transformers backend with two LoRA adapters on a model of
    SmolLM2-135M's shape with random weights (only config and tokenizer travel; weights do
    not change the arithmetic). Checks the per-request switch and times it, bf16."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from kbqa.retrieval.llm import transformers as backend
    from kbqa.retrieval.llm.transformers import TransformersLLM

    if not torch.cuda.is_available():
        out["gpu"] = {"skipped": "no CUDA device"}
        return
    work = Path(tempfile.mkdtemp(prefix="kbqa-bench-gpu-"))
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(inputs)
    config.quantization_config = None
    base = AutoModelForCausalLM.from_config(config)
    base.save_pretrained(work / "model")
    for f in inputs.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "generation_config")):
            shutil.copy(f, work / "model" / f.name)
    paths = {}
    for seed, name in enumerate(["a", "b"], start=1):
        torch.manual_seed(seed)
        model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False))
        model.save_pretrained(work / name)
        base = model.unload()
        paths[name] = str(work / name)
    del base
    llm = TransformersLLM(str(work / "model"), device="cuda", adapters=paths)
    conv = [{"role": "user", "content": "Explain in three sentences: " + QUESTIONS[0]}]
    answers = {name: llm.for_adapter(name).generate(conv, max_tokens=16) for name in ["base", "a", "b"]}
    again = {name: llm.for_adapter(name).generate(conv, max_tokens=16) for name in ["b", "a", "base"]}
    switch, fixed = [], []
    for name in ["a", "b", "base"] * 4:
        torch.cuda.synchronize()
        started = time.perf_counter()
        llm.for_adapter(name).generate(conv, max_tokens=1)
        torch.cuda.synchronize()
        switch.append(time.perf_counter() - started)
    for _ in range(12):
        started = time.perf_counter()
        llm.for_adapter("a").generate(conv, max_tokens=1)
        torch.cuda.synchronize()
        fixed.append(time.perf_counter() - started)
    batch = [conv] * 32
    llm.for_adapter("a").batch(batch, max_tokens=8)
    torch.cuda.synchronize()
    started = time.perf_counter()
    texts = llm.for_adapter("a").batch(batch, max_tokens=64)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    out["gpu"] = {
        "device": torch.cuda.get_device_name(0),
        "three_adapters_answer_differently": len(set(answers.values())) == 3,
        "same_answer_after_switching_back": answers == again,
        "base_model_loads": backend.BASE_LOADS[str(work / "model")],
        "one_token_answer_switching_adapters_ms": _ms(statistics.median(switch)),
        "one_token_answer_same_adapter_ms": _ms(statistics.median(fixed)),
        "batch32_max64_adapter_a_s": round(elapsed, 2),
        "batch32_answers": len(texts),
    }
    print("gpu", out["gpu"], flush=True)
    shutil.rmtree(work, ignore_errors=True)


PARTS = {"llm": bench_llm, "openai": bench_openai, "store": bench_store, "vllm": bench_vllm, "gpu": bench_gpu}
DEFAULT = ["llm", "openai", "store", "vllm"]


def write(out: dict) -> None:
    """Merge this run's parts into the results file (each part keeps its own date and load)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / ("backends_gpu" if "gpu" in out else "backends_cpu")
    if stem.with_suffix(".json").is_file():
        out = {**json.loads(stem.with_suffix(".json").read_text()), **out}
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# Serving backends",
        "",
        f"Machine: {out['machine']}. Command: `{out['command']}`. Date: {out['date']}.",
        "A dedicated GPU machine." if "gpu" in out else "Shared machine: timings are under contention (load average beside each).",
        "",
        "| backend | figure | value |",
        "| --- | --- | --- |",
    ]
    for backend, figures in out.items():
        if not isinstance(figures, dict):
            continue
        for key, value in figures.items():
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    lines.append(f"| {backend} | {key} {k2} | {v2} |")
            elif key == "loadavg":
                lines.append(f"| {backend} | load average (1, 5, 15 min) | {', '.join(f'{x:.1f}' for x in value)} |")
            else:
                lines.append(f"| {backend} | {key} | {value} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


def main(argv: list[str]) -> int:
    from kbqa.app.env import offline

    offline()  # as every kbqa entry point: offline, and no tokenizer thread pool fighting torch's threads
    names = argv or DEFAULT
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "command": "python bench/backends.py " + " ".join(argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    for name in names:
        PARTS[name](out)
        key = {"llm": "transformers", "store": "chroma"}.get(name, name)
        if isinstance(out.get(key), dict):
            out[key]["measured"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + f" by `{out['command']}`"
        write(out)  # after each part, so that a long run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
