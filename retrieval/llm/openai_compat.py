"""Any OpenAI-compatible chat-completions server: `vllm serve`, llama.cpp's server,
Ollama, a hosted API, or our own `kbqa serve`.

Uses the official `openai` client (imported on first use) with its timeout and retries
(connection errors, 408/409/429 and 5xx are retried with exponential back-off). Streaming
reads the server-sent events. `batch` sends the conversations concurrently, so a server
with continuous batching (vLLM) batches them itself.

Adapters are served by the server: `for_adapter(name)` sends `name` as the `model`
(`vllm serve --enable-lora --lora-modules name=path` registers adapters as model names).
The server's tokenizer is not known here, so the prompt is trimmed to
``max_context_tokens`` with an estimate (`context.approx_tokens`); the server still rejects a prompt that is too long.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from kbqa.retrieval.llm.context import approx_tokens, fit_messages, prompt_budget
from kbqa.retrieval.protocols import DEFAULT_SAMPLING, Sampling

Message = dict[str, str]
_MAX_PARALLEL = 8


class LLMServerError(RuntimeError):
    """The OpenAI-compatible server could not be reached or refused the request."""


class OpenAICompatLLM:
    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        *,
        max_retries: int = 2,
        stop: Sequence[str] = (),
        max_context_tokens: int | None = None,
        adapter: str | None = None,
    ):
        if timeout_s <= 0:
            raise ValueError(f"llm.timeout_s must be positive, not {timeout_s}")
        self.base_name = model
        self.name = adapter or model
        self.base_url = base_url
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.stop = tuple(stop)
        self.max_context_tokens = max_context_tokens
        self._client = None

    @property
    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise ImportError("the openai LLM backend needs the openai client: pip install openai (or 'kbqa[server]')") from exc
            # local servers need no key, but the client insists on one
            key = self.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
            self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=self.max_retries)
        return self._client

    def for_adapter(self, name: str | None) -> "OpenAICompatLLM":
        """A view that asks the server for model `name` ("base" or None = the configured model)."""
        view = copy.copy(self)
        view.name = self.base_name if name in (None, "base") else name
        self.client  # build the client once so that views share its connection pool
        view._client = self._client
        return view

    def _request(self, messages: Sequence[Message], max_tokens: int, temperature: float, stream: bool, sampling: Sampling | None = None) -> dict:
        sampling = sampling or DEFAULT_SAMPLING
        budget = prompt_budget(self.max_context_tokens, max_tokens)
        request = {
            "model": self.name,
            "messages": fit_messages(messages, approx_tokens, budget),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        stops = list(dict.fromkeys([*sampling.stop, *self.stop]))
        if stops:
            request["stop"] = stops[:4]  # the OpenAI API takes at most 4 (the request's own first)
        if sampling.top_p is not None:
            request["top_p"] = sampling.top_p
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        return request

    def _call(self, request: dict):
        import openai

        where = self.base_url or "the OpenAI API"
        try:
            return self.client.chat.completions.create(**request)
        except openai.APITimeoutError as exc:
            raise LLMServerError(f"llm.base_url {where}: no answer within llm.timeout_s={self.timeout_s}s ({exc})") from exc
        except openai.APIConnectionError as exc:
            raise LLMServerError(f"llm.base_url {where}: cannot connect ({exc})") from exc
        except openai.APIStatusError as exc:
            raise LLMServerError(f"llm.base_url {where}: HTTP {exc.status_code} for model {self.name!r}: {exc.message}") from exc

    def generate(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> str:
        response = self._call(self._request(messages, max_tokens, temperature, stream=False, sampling=sampling))
        if not response.choices:
            raise LLMServerError(f"llm.base_url {self.base_url}: the response has no choices")
        return (response.choices[0].message.content or "").strip()

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None) -> Iterator[str]:
        import openai

        import httpx

        events = self._call(self._request(messages, max_tokens, temperature, stream=True, sampling=sampling))
        finished = False
        try:
            for event in events:
                if event.choices:
                    finished = finished or bool(event.choices[0].finish_reason)
                    piece = event.choices[0].delta.content
                    if piece:
                        yield piece
        except (openai.APITimeoutError, httpx.TimeoutException) as exc:  # the server went quiet mid-stream
            raise LLMServerError(f"llm.base_url {self.base_url}: the stream stalled for more than llm.timeout_s={self.timeout_s}s ({exc})") from exc
        except (openai.APIError, httpx.HTTPError) as exc:  # e.g. the connection dropped mid-stream
            raise LLMServerError(f"llm.base_url {self.base_url}: the stream broke off ({type(exc).__name__}: {exc})") from exc
        finally:
            events.close()
        if not finished:  # closed without a last chunk: the answer may be cut short, so it is no answer
            raise LLMServerError(f"llm.base_url {self.base_url}: the stream ended without a finish_reason (connection closed early?)")

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, sampling: Sampling | None = None
    ) -> list[str]:
        if not conversations:
            return []
        workers = min(_MAX_PARALLEL, len(conversations))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda m: self.generate(m, max_tokens=max_tokens, temperature=temperature, sampling=sampling), conversations))
