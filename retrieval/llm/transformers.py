"""Local models through transformers (CPU or CUDA), with optional LoRA adapters (peft).

`model` is "smollm2" (the packaged SmolLM2-135M-Instruct) or a local model folder.
Generation stops at the chat template's end-of-turn token as well as at EOS.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from retrieval.device import resolve_device
from retrieval.packaged import PACKAGED_LLM

Message = dict[str, str]
_LOADED: dict[tuple, tuple] = {}  # (path, device, adapter) -> (model, tokenizer); once per process
_LOCK = threading.Lock()
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def _load(path: str, device: str, adapter: str | None):
    key = (path, device, adapter)
    with _LOCK:
        if key not in _LOADED:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(device)
            if adapter:
                try:
                    from peft import PeftModel
                except ImportError as exc:
                    raise ImportError("LoRA adapters need peft: pip install 'kbqa[finetune]'") from exc
                model = PeftModel.from_pretrained(model, adapter)
            model.eval()
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            _LOADED[key] = (model, tokenizer)
        return _LOADED[key]


class TransformersLLM:
    def __init__(self, model: str = PACKAGED_LLM, device: str = "auto", adapter: str | None = None, cache_dir: Path | None = None):
        self.name = model
        self.adapter = adapter
        self._device_setting = device
        self._cache_dir = Path(cache_dir or Path.home() / ".cache" / "kbqa")
        self._pair = None

    def _path(self) -> str:
        if self.name == PACKAGED_LLM:
            from retrieval.llm.model_cache import packaged_model_dir

            return str(packaged_model_dir(self._cache_dir))
        path = Path(self.name).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"llm.model: {self.name!r} is neither the packaged {PACKAGED_LLM!r} nor a local model folder")
        return str(path)

    def warm_up(self) -> None:
        self._loaded()

    def _loaded(self):
        if self._pair is None:
            self._pair = _load(self._path(), resolve_device(self._device_setting), self.adapter)
        return self._pair

    @property
    def tokenizer(self):
        return self._loaded()[1]

    @property
    def model(self):
        return self._loaded()[0]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _stop_ids(self) -> list[int]:
        tok = self.tokenizer
        ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        vocab = tok.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
        return sorted(ids)

    def _prompt(self, messages: Sequence[Message]) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        # fallback for models without a chat template
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def _gen_kwargs(self, max_tokens: int, temperature: float) -> dict:
        kwargs = {"max_new_tokens": max_tokens, "eos_token_id": self._stop_ids(), "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=0.9)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        return self.batch([messages], max_tokens=max_tokens, temperature=temperature)[0]

    def batch(self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        import torch

        model, tok = self._loaded()
        prompts = [self._prompt(m) for m in conversations]
        tok.padding_side = "left"
        inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, **self._gen_kwargs(max_tokens, temperature))
        new = out[:, inputs["input_ids"].shape[1] :]
        return [tok.decode(row, skip_special_tokens=True).strip() for row in new]

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        model, tok = self._loaded()
        inputs = tok([self._prompt(messages)], return_tensors="pt", add_special_tokens=False).to(model.device)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=300)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**inputs, streamer=streamer, **self._gen_kwargs(max_tokens, temperature))
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield piece
        thread.join()
        if errors:
            raise errors[0]
