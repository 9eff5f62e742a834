"""The OpenAI wire format, as pure functions: request bodies, limits on the answer's text,
`usage`, chat completion objects and stream chunks, embeddings.

The routes (`app.server.openai_api`) call these; nothing here touches a knowledge base.
Every field of the OpenAI chat request is either applied or rejected with a 422 that names
it: a field at its neutral value (``n: 1``, ``presence_penalty: 0``, ``tools: []``,
``response_format: {"type": "text"}``) is accepted, any other value of it is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from kbqa.retrieval.llm.context import approx_tokens, stream_until_stop
from kbqa.retrieval.protocols import Sampling

Counter = Callable[[str], int]
MAX_STOPS = 4
MAX_EMBED_INPUTS = 2048


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


# fields accepted only at the values that change nothing here
NEUTRAL: dict[str, tuple] = {
    "n": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "parallel_tool_calls": (None, False, True),
    "response_format": (None, {"type": "text"}),
}


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; `model` names a knowledge base. Unknown fields are
    refused (422), and so are supported fields at values this server cannot honour."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="the knowledge base to answer from, or 'kb:adapter' to pick a LoRA adapter ('kb:base' for none)")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOPS} sequences; the answer ends before the first")
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    n: int | None = Field(None, description="only 1 is supported")
    user: str | None = Field(None, description="the end user's id, written to the server log")
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        if any(not s for s in stops):
            raise ValueError("a stop sequence may not be empty")
        return stops

    @field_validator(*NEUTRAL)
    @classmethod
    def _neutral(cls, value, info: ValidationInfo):
        allowed = NEUTRAL[info.field_name]
        if value not in allowed:
            raise ValueError(f"{value!r} is not supported by this server (only {', '.join(map(repr, allowed[1:]))})")
        return value

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def sampling(self) -> Sampling:
        return Sampling(top_p=self.top_p, seed=self.seed, stop=tuple(self.stop or ()))

    def instructions(self) -> str | None:
        """The client's system and developer messages, in order (added under the grounding rules)."""
        parts = [m.text().strip() for m in self.messages if m.role in ("system", "developer")]
        return "\n\n".join(p for p in parts if p) or None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="the knowledge base whose embedder to use")
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("no input to embed")
        if len(texts) > MAX_EMBED_INPUTS:
            raise ValueError(f"at most {MAX_EMBED_INPUTS} inputs per request")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"item {i} is not a string (token arrays are not supported: send the text)")
            if not text.strip():
                raise ValueError(f"item {i} is empty")
        return texts


# ---- the answer's text ----------------------------------------------------------------------
def token_counter(llm) -> Counter:
    """Count tokens with the model's own tokenizer, or estimate them (`approx_tokens`) for a
    backend that has none here (an OpenAI-compatible server)."""
    count = getattr(llm, "count_tokens", None)
    if callable(count):
        return count
    return lambda text: max(0, approx_tokens([{"content": text}]) - 8)


def cut_to_tokens(text: str, limit: int, count: Counter) -> str:
    """The longest prefix of `text` within `limit` tokens (binary search on characters)."""
    if count(text) <= limit:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


@dataclass
class Limited:
    """The answer's pieces ended before the first `stop` sequence and within `limit` tokens.
    Iterate it; then `text` is what was sent and `finish_reason` is ``stop`` or ``length``.

    With `cut` False (a generated answer: the LLM was already given `limit` and the stops) the
    text is passed through whole, since decoding and counting again may differ by a token, and
    `limit` only decides the finish reason."""

    pieces: Iterable[str]
    count: Counter
    stop: Sequence[str] = ()
    limit: int | None = None
    cut: bool = True
    text: str = ""
    finish_reason: str = "stop"
    _parts: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        for piece in stream_until_stop(self.pieces, self.stop):
            if self.cut and self.limit is not None:
                whole = "".join(self._parts) + piece
                if self.count(whole) >= self.limit:
                    kept = cut_to_tokens(whole, self.limit, self.count)[len(self.text) :]
                    self._emit(kept)
                    if kept:
                        yield kept
                    self.finish_reason = "length"
                    return
            self._emit(piece)
            yield piece
        if not self.cut and self.limit is not None and self.count(self.text) >= self.limit:
            self.finish_reason = "length"

    def _emit(self, piece: str) -> None:
        self._parts.append(piece)
        self.text = "".join(self._parts)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


# ---- response objects ------------------------------------------------------------------------
def completion(ident: str, created: int, model: str, text: str, finish: str, extra: dict, used: dict) -> dict:
    """A ``chat.completion``; `extra` (sources, found, answer_mode, grounded, unsupported)
    goes beside the OpenAI fields, and `sources` inside the message too."""
    message = {"role": "assistant", "content": text, "sources": extra.get("sources", [])}
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": used,
        **extra,
    }


def chunk(ident: str, created: int, model: str, delta: dict | None, finish: str | None = None, **extra: Any) -> dict:
    """A ``chat.completion.chunk``; `delta` None gives the usage-only chunk (no choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}


def embeddings(model: str, vectors: np.ndarray, encoding: str, tokens: int) -> dict:
    """The ``list`` of ``embedding`` objects; base64 is the little-endian float32 bytes."""

    def encode(v: np.ndarray):
        if encoding == "base64":
            return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
        return [float(x) for x in v]

    data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_card(ident: str, created: int) -> dict:
    return {"id": ident, "object": "model", "created": created, "owned_by": "kbqa"}
