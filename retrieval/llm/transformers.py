"""Local models through transformers (CPU or CUDA), with LoRA adapters (peft).

`model` is "smollm2" (the packaged SmolLM2-135M-Instruct) or a local model folder.
The prompt is the tokenizer's own chat template (Qwen, Llama, ChatGLM, SmolLM, ...), or a
plain "Role: text" fallback when the tokenizer has none. Generation stops at the
template's end-of-turn token as well as at EOS and at any configured stop sequence, and
the prompt is trimmed to fit ``max_context_tokens`` (see `retrieval.llm.context`).

Adapters: the base model loads once per (folder, device) and process; adapters are added
to it by name (peft ``load_adapter``) and switched per request (``set_adapter``, or
``disable_adapter`` for the base model), so switching never reloads the base model.
`for_adapter(name)` returns a view of this backend that answers with that adapter.

Precision (``llm.precision``): ``fp32``; ``bf16`` (fast on CUDA and on CPUs with AVX-512
BF16/AMX, slower than fp32 on plain AVX2); ``int8``: dynamic int8 Linear layers on the CPU
(`retrieval.llm.quantize`; on CUDA it means bf16); ``auto`` (default): bf16 on CUDA,
fp32 on CPU. ``bench/llm_quality.py`` measures what each costs in quality, and
``bench/speed_generation.py`` what it gains in speed.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from kbqa.retrieval.device import resolve_device
from kbqa.retrieval.llm.adapters import AdapterRegistry, AdapterSpec, adapter_view
from kbqa.retrieval.llm.context import cut_at_stop, fit_messages, prompt_budget, stream_until_stop
from kbqa.retrieval.packaged import PACKAGED_LLM
from kbqa.retrieval.protocols import DEFAULT_SAMPLING, Sampling

log = logging.getLogger(__name__)
Message = dict[str, str]
PRECISIONS = ("auto", "fp32", "bf16", "int8")
_ENGINES: dict[tuple, "_Engine"] = {}  # (path, device, trust_remote_code, precision) -> engine; once per process
_LOCK = threading.Lock()
BASE_LOADS: Counter = Counter()  # model folder -> times its weights were loaded in this process
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|user|>", "<|observation|>")
_FALLBACK_STOPS = ("\nUser:", "\nSystem:")


class _Engine:
    """A loaded base model with its tokenizer and the adapters added to it so far.

    Generation holds `lock`, because the active adapter is state of the shared model."""

    def __init__(self, model, tokenizer, precision: str = "fp32"):
        self.model = model
        self.tokenizer = tokenizer
        self.precision = precision
        self.lock = threading.RLock()
        self.adapters: dict[str, str] = {}  # peft module name -> folder
        self.stop_ids: list[int] | None = None  # EOS and end-of-turn token ids, found once

    def _add(self, spec: AdapterSpec) -> None:
        known = self.adapters.get(spec.module_name)
        if known is not None:
            if known != spec.path:
                raise ValueError(f"adapter name {spec.name!r} is already used for {known}, not {spec.path}")
            return
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise ImportError("LoRA adapters need peft: pip install 'kbqa[finetune]'") from exc
        if not Path(spec.path, "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter {spec.name!r}: {spec.path} has no adapter_config.json (not a peft adapter folder)")

        def add(model):
            if isinstance(model, PeftModel):
                model.load_adapter(spec.path, adapter_name=spec.module_name)
                return model
            return PeftModel.from_pretrained(model, spec.path, adapter_name=spec.module_name)

        if self.precision == "int8":
            from kbqa.retrieval.llm.quantize import add_through_stand_ins

            self.model = add_through_stand_ins(self.model, add)  # peft wraps fp32 stand-ins; the int8 layers go back
        else:
            self.model = add(self.model)
        self.model.eval()
        self.adapters[spec.module_name] = spec.path

    @contextmanager
    def using(self, spec: AdapterSpec | None):
        """Hold the model with `spec`'s adapter active (None: all adapters disabled)."""
        with self.lock:
            if spec is not None:
                self._add(spec)
                self.model.set_adapter(spec.module_name)
                yield self.model
            elif self.adapters:
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model


def effective_precision(precision: str, device: str) -> str:
    """`llm.precision` on `device`: fp32, bf16 or int8."""
    if precision not in PRECISIONS:
        raise ValueError(f"llm.precision: unknown precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
    cuda = device.startswith("cuda")
    if precision == "auto":
        return "bf16" if cuda else "fp32"
    if precision == "int8" and cuda:
        log.warning("llm.precision int8 is a CPU path (dynamic int8 Linear layers); using bf16 on %s", device)
        return "bf16"
    return precision


def _load(path: str, device: str, trust_remote_code: bool = False, precision: str = "fp32") -> _Engine:
    key = (path, device, trust_remote_code, precision)
    with _LOCK:
        if key not in _ENGINES:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True, trust_remote_code=trust_remote_code).to(device)
            BASE_LOADS[path] += 1
            model.eval()
            if precision == "int8":
                from kbqa.retrieval.llm.quantize import quantize_linears

                quantize_linears(model)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            _ENGINES[key] = _Engine(model, tokenizer, precision)
        return _ENGINES[key]


class TransformersLLM:
    def __init__(
        self,
        model: str = PACKAGED_LLM,
        device: str = "auto",
        adapter: str | None = None,
        cache_dir: Path | None = None,
        *,
        adapters: Mapping[str, str] | None = None,
        stop: Sequence[str] = (),
        max_context_tokens: int | None = None,
        trust_remote_code: bool = False,
        precision: str = "auto",
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"llm.precision: unknown precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
        self.name = model
        self.precision = precision
        self.registry = AdapterRegistry(adapters, default=adapter)
        self.adapter_spec = self.registry.default  # None = the base model
        self.adapter = self.adapter_spec.name if self.adapter_spec else None
        self.stop = tuple(stop)
        self.max_context_tokens = max_context_tokens
        self.trust_remote_code = trust_remote_code
        self._device_setting = device
        self._cache_dir = Path(cache_dir or Path.home() / ".cache" / "kbqa")
        self._engine: _Engine | None = None

    def _path(self) -> str:
        from kbqa.retrieval.llm.model_cache import local_model_path

        return local_model_path(self.name, self._cache_dir)

    def warm_up(self) -> None:
        with self._loaded().using(self.adapter_spec):
            pass

    def _loaded(self) -> _Engine:
        if self._engine is None:
            device = resolve_device(self._device_setting)
            precision = effective_precision(self.precision, device)
            self._engine = _load(self._path(), device, self.trust_remote_code, precision)
        return self._engine

    @property
    def engine(self) -> _Engine:
        """The loaded model and tokenizer (loaded now if need be; shared by this model's adapter
        views), for measurements that drive the model directly (perplexity)."""
        return self._loaded()

    def for_adapter(self, name: str | None) -> "TransformersLLM":
        """A view answering with adapter `name` ("base" = none, None = the default); shares the loaded model."""
        return adapter_view(self, name)

    @property
    def adapters(self) -> list[str]:
        return self.registry.names()

    @property
    def tokenizer(self):
        return self._loaded().tokenizer

    @property
    def model(self):
        return self._loaded().model

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the model's tokenizer (loaded alone when the model is not loaded yet)."""
        tok = self._engine.tokenizer if self._engine is not None else self._tokenizer_only()
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def _tokenizer_only(self):
        if getattr(self, "_bare_tokenizer", None) is None:
            from transformers import AutoTokenizer

            self._bare_tokenizer = AutoTokenizer.from_pretrained(self._path(), local_files_only=True, trust_remote_code=self.trust_remote_code)
        return self._bare_tokenizer

    def _has_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _stops(self, sampling: Sampling = DEFAULT_SAMPLING) -> tuple[str, ...]:
        own = self.stop if self._has_template() else self.stop + _FALLBACK_STOPS
        return own + tuple(s for s in sampling.stop if s and s not in own)

    def _stop_ids(self) -> list[int]:
        engine = self._loaded()
        if engine.stop_ids is None:
            engine.stop_ids = self._find_stop_ids()
        return engine.stop_ids

    def _find_stop_ids(self) -> list[int]:
        tok = self.tokenizer
        ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        vocab = tok.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
        return sorted(ids)

    def _render(self, messages: Sequence[Message]) -> str:
        tok = self.tokenizer
        if self._has_template():
            return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        # fallback for models without a chat template
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def prompt_text(self, messages: Sequence[Message], max_tokens: int = 0) -> str:
        """The text the model reads for `messages`: the chat template applied (with the
        assistant's turn opened), the conversation trimmed so that it plus `max_tokens` fits
        the context window (`llm.max_context_tokens`, the model's own limit)."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        budget = prompt_budget(self.max_context_tokens, max_tokens, limit)
        fitted = fit_messages(messages, lambda msgs: self.count_tokens(self._render(msgs)), budget)
        return self._render(fitted)

    def generation_kwargs(self, max_tokens: int, temperature: float, sampling: Sampling = DEFAULT_SAMPLING) -> dict:
        """The keyword arguments of ``model.generate`` for these limits and sampling options (stop
        tokens and strings, greedy or sampled). The hook for a subclass that adds its own, e.g.
        a ``logits_processor`` (bench/finetune_abstain_probe.py)."""
        kwargs = {"max_new_tokens": max_tokens, "eos_token_id": self._stop_ids(), "pad_token_id": self.tokenizer.pad_token_id}
        if stops := self._stops(sampling):
            kwargs.update(stop_strings=list(stops), tokenizer=self.tokenizer)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=0.9 if sampling.top_p is None else sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> str:
        return self.batch([messages], max_tokens=max_tokens, temperature=temperature, sampling=sampling)[0]

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None
    ) -> list[str]:
        if not conversations:
            return []
        import torch

        sampling = sampling or DEFAULT_SAMPLING
        engine = self._loaded()
        tok = engine.tokenizer
        prompts = [self.prompt_text(m, max_tokens) for m in conversations]
        tok.padding_side = "left"
        with engine.using(self.adapter_spec) as model:
            inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            _seed(sampling)
            with torch.inference_mode():
                out = model.generate(**inputs, **self.generation_kwargs(max_tokens, temperature, sampling))
        new = out[:, inputs["input_ids"].shape[1] :]
        return [cut_at_stop(tok.decode(row, skip_special_tokens=True), self._stops(sampling)).strip() for row in new]

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        sampling = sampling or DEFAULT_SAMPLING
        engine = self._loaded()
        tok = engine.tokenizer
        prompt = self.prompt_text(messages, max_tokens)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=300)
        errors: list[BaseException] = []
        kwargs = self.generation_kwargs(max_tokens, temperature, sampling)
        cancelled = threading.Event()  # set when the consumer stops reading (Stop button, closed client)
        kwargs["stopping_criteria"] = _cancel_criteria(cancelled)

        def run() -> None:
            try:
                with engine.using(self.adapter_spec) as model:
                    inputs = tok([prompt], return_tensors="pt", add_special_tokens=False).to(model.device)
                    _seed(sampling)
                    with torch.inference_mode():
                        model.generate(**inputs, streamer=streamer, **kwargs)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield from (p for p in stream_until_stop(streamer, self._stops(sampling)) if p)
        finally:
            cancelled.set()  # also on GeneratorExit: generation ends at the next token
        thread.join()
        if errors:
            raise errors[0]


def _seed(sampling: Sampling) -> None:
    """Seed torch's generator for this request (called with the model's lock held, so that
    one request's seed gives the same sampled answer each time)."""
    if sampling.seed is not None:
        import torch

        torch.manual_seed(sampling.seed)


def _cancel_criteria(cancelled: threading.Event):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Cancelled()])
