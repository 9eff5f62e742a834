"""Local GGUF models through llama.cpp (``llama-cpp-python``), on the CPU.

`model` is "smollm2" (the packaged SmolLM2-135M-Instruct Q4_1 GGUF, read in place) or a
path to a ``.gguf`` file. The prompt is the GGUF's own chat template (llama.cpp applies it
in ``create_chat_completion``); generation stops at the template's end-of-turn token (the
GGUF's EOS/EOT) and at any configured or per-request stop sequence.

LoRA adapters: llama.cpp needs GGUF LoRA files, and the peft adapters of this project are
not converted. So when an adapter is configured, `make_llm` falls back to the transformers
backend and logs why (see `retrieval.llm.factory`). This backend itself runs the base model.

No logits-processor hook is offered: no grounded answer mode in this project uses one today.
`batch` answers the conversations one after another (llama.cpp decodes one sequence here).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from kbqa.retrieval.llm.context import cut_at_stop, fit_messages, prompt_budget, stream_until_stop
from kbqa.retrieval.packaged import PACKAGED_LLM
from kbqa.retrieval.protocols import DEFAULT_SAMPLING, Sampling

log = logging.getLogger(__name__)
Message = dict[str, str]
INSTALL = "pip install llama-cpp-python"
_MODELS: dict[tuple, object] = {}  # (path, n_ctx) -> llama_cpp.Llama; once per process
_LOCK = threading.Lock()
_PER_MESSAGE = 6  # template tokens around each message (role markers, end-of-turn)


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def gguf_path(model: str) -> str:
    if model == PACKAGED_LLM:
        from kbqa.retrieval.packaged import smollm2_gguf

        return str(smollm2_gguf())
    path = Path(model).expanduser()
    if not (path.is_file() and path.suffix == ".gguf"):
        raise FileNotFoundError(f"llm.model: the llama_cpp backend needs {PACKAGED_LLM!r} or a .gguf file, not {model!r}")
    return str(path)


class LlamaCppLLM:
    def __init__(self, model: str = PACKAGED_LLM, *, stop: Sequence[str] = (), max_context_tokens: int | None = None, n_threads: int | None = None):
        self.name = model
        self.adapter = None
        self.stop = tuple(stop)
        self.max_context_tokens = max_context_tokens
        self.n_threads = n_threads or os.cpu_count() or 1
        self._llm = None
        self._lock = threading.Lock()

    def _loaded(self):
        if self._llm is None:
            try:
                import llama_cpp
            except ImportError as exc:
                raise ImportError(f"llm.backend = 'llama_cpp' needs llama-cpp-python: {INSTALL}") from exc
            path = gguf_path(self.name)
            n_ctx = self.max_context_tokens or 2048
            with _LOCK:
                key = (path, n_ctx, self.n_threads)
                if key not in _MODELS:
                    _MODELS[key] = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=self.n_threads, n_batch=512, verbose=False)
                self._llm = _MODELS[key]
        return self._llm

    def warm_up(self) -> None:
        self._loaded()

    @property
    def engine(self):
        """The loaded ``llama_cpp.Llama`` (loaded now if need be; shared by the views of one model
        file, context size and thread count), for measurements that drive it directly
        (bench/generation_engines.py)."""
        return self._loaded()

    @property
    def adapters(self) -> list[str]:
        return []

    def for_adapter(self, name: str | None) -> "LlamaCppLLM":
        if name in (None, "base"):
            return self
        raise KeyError(f"adapter {name!r}: the llama_cpp backend runs no adapters (use llm.backend = 'transformers')")

    def count_tokens(self, text: str) -> int:
        return len(self._loaded().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _fit(self, messages: Sequence[Message], max_tokens: int) -> list[Message]:
        budget = prompt_budget(self.max_context_tokens, max_tokens, self._loaded().n_ctx())
        return fit_messages(messages, lambda msgs: sum(self.count_tokens(m["content"]) + _PER_MESSAGE for m in msgs) + 2, budget)

    def _stops(self, sampling: Sampling) -> list[str]:
        return list(self.stop) + [s for s in sampling.stop if s and s not in self.stop]

    def _kwargs(self, messages, max_tokens: int, temperature: float, sampling: Sampling) -> dict:
        kwargs = dict(messages=self._fit(messages, max_tokens), max_tokens=max_tokens, temperature=temperature, stop=self._stops(sampling) or None)
        if temperature > 0:
            kwargs["top_p"] = 0.9 if sampling.top_p is None else sampling.top_p
            if sampling.seed is not None:  # set_seed too: the seed argument alone does not repeat an answer
                kwargs["seed"] = sampling.seed
                self._loaded().set_seed(sampling.seed)
        return kwargs

    def generate(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> str:
        sampling = sampling or DEFAULT_SAMPLING
        llm = self._loaded()
        with self._lock:
            out = llm.create_chat_completion(**self._kwargs(messages, max_tokens, temperature, sampling))
        text = out["choices"][0]["message"]["content"] or ""
        return cut_at_stop(text, self._stops(sampling)).strip()

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None
    ) -> list[str]:
        return [self.generate(c, max_tokens=max_tokens, temperature=temperature, sampling=sampling) for c in conversations]

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> Iterator[str]:
        sampling = sampling or DEFAULT_SAMPLING
        llm = self._loaded()
        with self._lock:  # closing this generator ends generation at the next token
            chunks = llm.create_chat_completion(stream=True, **self._kwargs(messages, max_tokens, temperature, sampling))
            pieces = (c["choices"][0]["delta"].get("content") or "" for c in chunks)
            first = True
            for piece in stream_until_stop(pieces, self._stops(sampling)):
                if first:
                    piece = piece.lstrip()
                    first = not piece
                if piece:
                    yield piece
