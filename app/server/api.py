"""The REST API (FastAPI): OpenAI-compatible chat, retrieval, documents, health, metrics.

Handlers check the caller's rights and call `QAService`; nothing here touches a store.
Errors are JSON ``{"error": {"message", "type", "code"}, "detail": message}`` so that
both OpenAI clients and plain HTTP clients read them.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from app.server.auth import LOCAL, KeyRing, Principal, bearer_token, is_loopback
from app.server.metrics import Metrics, MetricsMiddleware
from app.server.uploads import DEFAULT_MAX_BYTES
from app.service import Busy, QAService, UnknownDocument, UnknownKB, sources_payload
from retrieval.llm.adapters import parse_model_field

log = logging.getLogger("kbqa.server")
MAX_FILES_PER_REQUEST = 20


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = DEFAULT_MAX_BYTES
    ui: bool = True
    ui_path: str = "/ui"


# ---- request bodies -------------------------------------------------------------------
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


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; `model` names a knowledge base. Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, description="the knowledge base to answer from, or 'kb:adapter' to pick a LoRA adapter ('kb:base' for none)")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    n: int | None = Field(None, ge=1, le=1, description="only 1 is supported")


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kb: str = Field(min_length=1)
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=50)
    mode: Literal["dense", "bm25", "hybrid"] | None = None


# ---- errors ---------------------------------------------------------------------------
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error"}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "code": status}, "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


_bearer = HTTPBearer(auto_error=False, description="an API key from the keys file; none in local-only mode")


def principal(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> Principal:
    keyring: KeyRing = request.app.state.keyring
    if not keyring.enabled:
        host = request.client.host if request.client else None
        if not is_loopback(host):
            raise HTTPException(403, "this server runs in local-only mode (no API keys configured); only 127.0.0.1 may call it")
        return LOCAL
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    found = keyring.lookup(token)
    if found is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return found


Caller = Annotated[Principal, Depends(principal)]


# ---- the app --------------------------------------------------------------------------
def create_app(service: QAService, keyring: KeyRing | None = None, config: ServerConfig | None = None) -> FastAPI:
    keyring = keyring or KeyRing([])
    config = config or ServerConfig(max_upload_bytes=service.max_upload_bytes)
    metrics = Metrics()
    app = FastAPI(
        title="kbqa",
        version="0.1.0",
        description="Question answering over your documents: OpenAI-compatible chat with sources, retrieval, document admin.",
    )
    app.state.service, app.state.keyring, app.state.metrics, app.state.config = service, keyring, metrics, config
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, _validation_message(exc))

    @app.exception_handler(UnknownKB)
    async def unknown_kb(request: Request, exc: UnknownKB):
        return _error(404, str(exc))

    @app.exception_handler(UnknownDocument)
    async def unknown_doc(request: Request, exc: UnknownDocument):
        return _error(404, str(exc))


    def need(who: Principal, kb: str, write: bool = False) -> None:
        if write and not who.can_write(kb):
            what = "write to" if who.can_read(kb) else "use"
            raise HTTPException(403, f"key {who.name!r} may not {what} knowledge base {kb!r}")
        if not who.can_read(kb):
            raise HTTPException(403, f"key {who.name!r} may not use knowledge base {kb!r}")
        service.kb(kb)  # 404 for an unknown name, once the caller may know

    # ---- health, metrics, index ---------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return RedirectResponse(config.ui_path + "/" if config.ui else "/docs")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        return {"status": "ok", "knowledge_bases": len(service.names()), "auth": "keys" if keyring.enabled else "local-only"}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def get_metrics(who: Caller):
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    # ---- OpenAI-compatible ----------------------------------------------------------------
    @app.get("/v1/models", tags=["openai"])
    def models(who: Caller) -> dict:
        ids = []
        for kb in who.readable(service.names()):
            ids += [kb] + [f"{kb}:{adapter}" for adapter in service.adapters(kb) if adapter != "base"]
        return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "kbqa", "created": 0} for i in ids]}

    @app.post("/v1/chat/completions", tags=["openai"])
    def chat_completions(body: ChatRequest, who: Caller):
        try:
            kb, adapter = parse_model_field(body.model)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if kb is None:
            raise HTTPException(422, f"model {body.model!r}: name the knowledge base, as 'kb' or 'kb:adapter'")
        need(who, kb)
        try:
            service.check_adapter(kb, adapter)
        except UnknownKB:
            raise
        except (KeyError, ValueError) as exc:
            raise HTTPException(404, f"model {body.model!r}: {exc.args[0]}") from None
        turns = [m for m in body.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise HTTPException(422, "messages: the last user/assistant message must be the user's question")
        question = turns[-1].text().strip()
        if not question:
            raise HTTPException(422, f"messages[{len(body.messages) - 1}].content: the question is empty")
        history = [{"role": m.role, "content": m.text()} for m in turns[:-1]]
        limits = {"max_tokens": body.max_completion_tokens or body.max_tokens, "temperature": body.temperature}
        try:
            answer = service.stream(kb, question, history, adapter=adapter, **limits)
        except Busy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        metrics.answered(kb, answer.found)
        sources = sources_payload(answer.sources)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.stream:
            text = "".join(answer.tokens).strip()
            verdict = _verdict(answer)
            if verdict.get("replacement") is not None:
                text = verdict["replacement"]
                sources = sources if answer.final_found else []
            message = {"role": "assistant", "content": text, "sources": sources}
            return {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "sources": sources,
                "found": answer.final_found,
                **{k: v for k, v in verdict.items() if k != "replacement"},
            }
        return StreamingResponse(_sse(ident, created, body.model, answer, sources), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ---- retrieval ----------------------------------------------------------------------
    @app.post("/v1/retrieve", tags=["kbqa"])
    def retrieve(body: RetrieveRequest, who: Caller) -> dict:
        need(who, body.kb)
        hits, found = service.retrieve(body.kb, body.query, body.k, body.mode)
        return {"kb": body.kb, "query": body.query, "found": found, "results": sources_payload(hits)}

    # ---- documents ----------------------------------------------------------------------
    @app.get("/v1/kbs", tags=["kbqa"])
    def list_kbs(who: Caller) -> dict:
        readable = set(who.readable(service.names()))
        return {"kbs": [dict(s, writable=who.can_write(s["name"])) for s in service.summary() if s["name"] in readable]}

    @app.get("/v1/kbs/{kb}/documents", tags=["kbqa"])
    def list_documents(kb: str, who: Caller) -> dict:
        need(who, kb)
        return {"kb": kb, "documents": service.documents(kb)}

    @app.post("/v1/kbs/{kb}/documents", tags=["kbqa"])
    def upload_documents(kb: str, request: Request, who: Caller, files: Annotated[list[UploadFile], File(description="documents to ingest (multipart field 'files')")]):
        need(who, kb, write=True)
        if len(files) > MAX_FILES_PER_REQUEST:
            raise HTTPException(413, f"files: at most {MAX_FILES_PER_REQUEST} files per request")
        results = []
        for upload in files:
            data = upload.file.read(config.max_upload_bytes + 1)
            results.append(service.upload(kb, upload.filename or "", data, upload.content_type))
        ok = [r for r in results if r.status not in ("failed", "rejected")]
        body = {"kb": kb, "files": [r.to_dict() for r in results]}
        if ok:
            return body
        first = results[0]
        body_error = _error(first.http_status, "; ".join(f"{r.name}: {r.reason}" for r in results))
        payload = json.loads(body_error.body)
        payload["files"] = body["files"]
        return JSONResponse(payload, status_code=first.http_status)

    @app.delete("/v1/kbs/{kb}/documents", tags=["kbqa"])
    def delete_document(kb: str, who: Caller, source: Annotated[str, Query(min_length=1, description="the document's source as listed, or its file name")]) -> dict:
        need(who, kb, write=True)
        return {"kb": kb, "removed": service.delete(kb, source)}

    return app


def _verdict(answer) -> dict[str, Any]:
    """The answer's mode and check, beside `sources`: ``answer_mode``, ``grounded``, ``unsupported``,
    and ``replacement`` (the text that replaces a generated answer that failed its check)."""
    result = answer.result
    if result is None:
        return {}
    return {"answer_mode": result.mode, "grounded": result.grounded, "unsupported": list(result.unsupported),
            "replacement": result.text if result.replaced else None}


def _sse(ident: str, created: int, model: str, answer, sources: list[dict]) -> Iterator[str]:
    def event(delta: dict, finish: str | None = None, **extra: Any) -> str:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        chunk.update(extra)
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        for piece in answer.tokens:
            yield event({"content": piece})
    except Exception as exc:  # the status line is gone: report the failure as an error event
        log.exception("generation failed")
        yield f"data: {json.dumps({'error': {'message': f'generation failed: {type(exc).__name__}: {exc}', 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    verdict = _verdict(answer)
    yield event({}, "stop", sources=sources if answer.final_found else [], found=answer.final_found, **verdict)
    yield "data: [DONE]\n\n"
