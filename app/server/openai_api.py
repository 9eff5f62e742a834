"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/models/{id}``, ``/v1/chat/completions``
and ``/v1/embeddings``. A model id names a knowledge base (``kb`` or ``kb:adapter``).

Thin handlers: they check the caller's rights, call `QAService`, and shape the reply with
`app.server.openai_format`. A client's system and developer messages are added under the
grounding rules; `stop` and `max_tokens` end the answer (``finish_reason`` ``stop`` or
``length``); `temperature`, `top_p` and `seed` reach the LLM (an extractive answer is a
quote and does not depend on them); `usage` counts tokens with the model's tokenizer.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from kbqa.app.server import openai_format as fmt
from kbqa.app.server.access import Caller, need
from kbqa.app.service import Busy, QAService, UnknownKB, sources_payload
from kbqa.retrieval.llm.adapters import parse_model_field
from kbqa.retrieval.protocols import LLM

log = logging.getLogger("kbqa.server")
router = APIRouter(prefix="/v1", tags=["openai"])


def _service(request: Request) -> QAService:
    return request.app.state.service


def _model_ids(service: QAService, who) -> list[str]:
    ids = []
    for kb in who.readable(service.names()):
        ids += [kb] + [f"{kb}:{adapter}" for adapter in service.adapters(kb) if adapter != "base"]
    return ids


@router.get("/models")
def models(request: Request, who: Caller) -> dict:
    service = _service(request)
    return {"object": "list", "data": [fmt.model_card(i, service.created(i.split(":")[0])) for i in _model_ids(service, who)]}


@router.get("/models/{model_id}")
def model(model_id: str, request: Request, who: Caller) -> dict:
    service = _service(request)
    if model_id not in _model_ids(service, who):
        raise HTTPException(404, f"model {model_id!r}: no such knowledge base or adapter for this key")
    return fmt.model_card(model_id, service.created(model_id.split(":")[0]))


def _kb_and_adapter(service: QAService, who, model_field: str) -> tuple[str, str | None, LLM]:
    """The knowledge base, the adapter and the LLM (looked up once for the request) that `model_field` names."""
    try:
        kb, adapter = parse_model_field(model_field)
    except ValueError as exc:
        raise HTTPException(422, f"model: {exc}") from None
    if kb is None:
        raise HTTPException(422, f"model {model_field!r}: name the knowledge base, as 'kb' or 'kb:adapter'")
    need(service, who, kb)
    try:
        llm = service.check_adapter(kb, adapter)
    except UnknownKB:
        raise
    except (KeyError, ValueError) as exc:
        raise HTTPException(404, f"model {model_field!r}: {exc.args[0]}") from None
    return kb, adapter, llm


def _question(body: fmt.ChatRequest) -> tuple[str, list[dict]]:
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise HTTPException(422, "messages: the last user/assistant message must be the user's question")
    question = turns[-1].text().strip()
    if not question:
        raise HTTPException(422, f"messages[{len(body.messages) - 1}].content: the question is empty")
    return question, [{"role": m.role, "content": m.text()} for m in turns[:-1]]


@router.post("/chat/completions")
def chat_completions(body: fmt.ChatRequest, request: Request, who: Caller):
    service = _service(request)
    kb, adapter, llm = _kb_and_adapter(service, who, body.model)
    question, history = _question(body)
    if body.user:
        log.info("chat request for %s from user %r", kb, body.user)
    try:
        answer = service.stream(
            kb,
            question,
            history,
            adapter=adapter,
            max_tokens=body.limit,
            temperature=body.temperature,
            sampling=body.sampling(),
            instructions=body.instructions(),
            llm=llm,
        )
    except Busy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    request.app.state.metrics.answered(kb, answer.found)
    count = fmt.token_counter(llm)
    # a quote is cut here; a generated answer (cached or not) was limited by the LLM and is sent whole
    quote = answer.result is not None and answer.result.mode == "extractive"
    text = fmt.Limited(answer.tokens, count, body.stop or (), body.limit, cut=quote)
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(ident, created, body.model, answer, text, count, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        for _ in text:
            pass
    except Exception as exc:  # the LLM failed (a backend timed out or dropped the stream): a clean 502, nothing cached
        log.exception("generation failed")
        raise HTTPException(502, f"generation failed: {type(exc).__name__}: {exc}") from None
    finally:
        _settle(answer, text)
    extra, content = _verdict(answer, text)
    used = fmt.usage(_prompt_tokens(answer, count), count(content))
    return fmt.completion(ident, created, body.model, content, text.finish_reason if content == text.text.strip() else "stop", extra, used)


def _settle(answer, text: fmt.Limited) -> None:
    """Stop generating (a stop sequence or max_tokens may have ended the text early), free the
    queue place, and check what was sent when the stream did not end by itself."""
    close = getattr(answer.tokens, "close", None)
    if close is not None:
        close()
    if answer.checked is not None:
        answer.checked.finish(text.text)


def _prompt_tokens(answer, count: fmt.Counter) -> int:
    return sum(count(t) for t in getattr(answer.checked, "prompt", []))


def _verdict(answer, text: fmt.Limited) -> tuple[dict, str]:
    """(the fields beside `sources`: sources, found, answer_mode, grounded, unsupported; the
    text to send, which is the replacement of a generated answer that failed its check)."""
    result = answer.result
    sources = sources_payload(answer.sources) if answer.final_found else []
    extra = {"sources": sources, "found": answer.final_found}
    if result is None:
        return extra, text.text.strip()
    extra.update(answer_mode=result.mode, grounded=result.grounded, unsupported=list(result.unsupported))
    return extra, result.text if result.replaced else text.text.strip()


def _events(ident: str, created: int, model: str, answer, text: fmt.Limited, count: fmt.Counter, include_usage: bool) -> Iterator[str]:
    def event(payload: dict) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield event(fmt.chunk(ident, created, model, {"role": "assistant", "content": ""}, **({"usage": None} if include_usage else {})))
    try:
        for piece in text:
            yield event(fmt.chunk(ident, created, model, {"content": piece}, **({"usage": None} if include_usage else {})))
    except Exception as exc:  # the status line is gone: report the failure as an error event
        log.exception("generation failed")
        yield event({"error": {"message": f"generation failed: {type(exc).__name__}: {exc}", "type": "server_error"}})
        yield "data: [DONE]\n\n"
        return
    finally:
        _settle(answer, text)
    extra, content = _verdict(answer, text)
    if content != text.text.strip():
        extra["replacement"] = content  # a generated answer failed its check: this text replaces it
    yield event(fmt.chunk(ident, created, model, {}, text.finish_reason, **extra))
    if include_usage:
        yield event(fmt.chunk(ident, created, model, None, usage=fmt.usage(_prompt_tokens(answer, count), count(text.text))))
    yield "data: [DONE]\n\n"


@router.post("/embeddings")
def embeddings(body: fmt.EmbeddingRequest, request: Request, who: Caller) -> dict:
    service = _service(request)
    kb, adapter = parse_model_field(body.model)
    if kb is None or adapter is not None:
        raise HTTPException(422, f"model {body.model!r}: name the knowledge base whose embedder to use")
    need(service, who, kb)
    vectors, tokens = service.embed(kb, body.input)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise HTTPException(422, f"dimensions: this knowledge base's embedder gives {vectors.shape[1]} dimensions, not {body.dimensions}")
    return fmt.embeddings(body.model, vectors, body.encoding_format, tokens)
