"""vLLM in-process (`vllm.LLM` with `SamplingParams`), for a GPU server.

vLLM is imported only when this backend is selected. `model` is "smollm2" (the packaged
model's cached folder) or a local model folder. vLLM applies the tokenizer's chat
template itself (`LLM.chat`). Adapters go per request as a `LoRARequest`, so one engine
serves every registered adapter (``enable_lora`` is on when adapters are registered).
The offline engine has no token stream: `stream` yields the whole answer as one piece;
for token streaming run `vllm serve` and use the `openai` backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from kbqa.retrieval.llm.adapters import AdapterRegistry, adapter_view
from kbqa.retrieval.llm.context import fit_messages, prompt_budget
from kbqa.retrieval.packaged import PACKAGED_LLM
from kbqa.retrieval.protocols import DEFAULT_SAMPLING, Sampling

Message = dict[str, str]
_ENGINES: dict[tuple, object] = {}
_LOCK = threading.Lock()


def _import_vllm():
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise ImportError("the vllm LLM backend needs vLLM (Linux with a CUDA GPU): pip install vllm") from exc
    return vllm, LoRARequest


class VLLMLLM:
    def __init__(
        self,
        model: str = PACKAGED_LLM,
        adapter: str | None = None,
        *,
        adapters: Mapping[str, str] | None = None,
        stop: Sequence[str] = (),
        max_context_tokens: int | None = None,
        cache_dir: Path | None = None,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.85,
        trust_remote_code: bool = False,
    ):
        self.name = model
        self.registry = AdapterRegistry(adapters, default=adapter)
        self.adapter_spec = self.registry.default
        self.adapter = self.adapter_spec.name if self.adapter_spec else None
        self.stop = tuple(stop)
        self.max_context_tokens = max_context_tokens
        self.max_lora_rank = max_lora_rank
        self.gpu_memory_utilization = gpu_memory_utilization
        self.trust_remote_code = trust_remote_code
        self._cache_dir = Path(cache_dir or Path.home() / ".cache" / "kbqa")

    def _path(self) -> str:
        from kbqa.retrieval.llm.model_cache import local_model_path

        return local_model_path(self.name, self._cache_dir)

    @property
    def engine(self):
        vllm, _ = _import_vllm()
        path = self._path()
        lora = bool(self.registry.names()) or self.registry.default is not None
        key = (path, lora, self.max_context_tokens)
        with _LOCK:
            if key not in _ENGINES:
                kwargs = dict(
                    model=path,
                    gpu_memory_utilization=self.gpu_memory_utilization,
                    trust_remote_code=self.trust_remote_code,
                    max_model_len=self.max_context_tokens,
                )
                if lora:
                    kwargs.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=len(self.registry.names()) + 1)
                _ENGINES[key] = vllm.LLM(**kwargs)
            return _ENGINES[key]

    def warm_up(self) -> None:
        self.engine

    def for_adapter(self, name: str | None) -> "VLLMLLM":
        return adapter_view(self, name)

    @property
    def adapters(self) -> list[str]:
        return self.registry.names()

    def _lora_request(self):
        if self.adapter_spec is None:
            return None
        _, LoRARequest = _import_vllm()
        spec = self.adapter_spec
        return LoRARequest(spec.name, self.registry.int_id(spec), spec.path)

    def _params(self, max_tokens: int, temperature: float, sampling: Sampling | None = None):
        vllm, _ = _import_vllm()
        sampling = sampling or DEFAULT_SAMPLING
        stops = list(dict.fromkeys([*self.stop, *sampling.stop]))
        extra = {k: v for k, v in (("top_p", sampling.top_p), ("seed", sampling.seed)) if v is not None}
        return vllm.SamplingParams(max_tokens=max_tokens, temperature=temperature, stop=stops or None, **extra)

    def _fit(self, messages: Sequence[Message], max_tokens: int) -> list[Message]:
        tokenizer = self.engine.get_tokenizer()

        def count(msgs: list[Message]) -> int:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        return fit_messages(messages, count, prompt_budget(self.max_context_tokens, max_tokens))

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None
    ) -> list[str]:
        if not conversations:
            return []
        fitted = [self._fit(m, max_tokens) for m in conversations]
        outputs = self.engine.chat(fitted, self._params(max_tokens, temperature, sampling), lora_request=self._lora_request(), use_tqdm=False)
        return [out.outputs[0].text.strip() for out in outputs]

    def generate(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> str:
        return self.batch([messages], max_tokens=max_tokens, temperature=temperature, sampling=sampling)[0]

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> Iterator[str]:
        yield self.generate(messages, max_tokens=max_tokens, temperature=temperature, sampling=sampling)
