"""The REST API (FastAPI): OpenAI-compatible chat, retrieval, documents, health, metrics.

Handlers check the caller's rights and call `QAService`; nothing here touches a store.
Errors are JSON ``{"error": {"message", "type", "code"}, "detail": message}`` so that
both OpenAI clients and plain HTTP clients read them.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from app.server.access import Caller
from app.server.access import need as check_access
from app.server.auth import KeyRing, Principal
from app.server.metrics import Metrics, MetricsMiddleware
from app.server.openai_api import router as openai_router
from app.server.uploads import DEFAULT_MAX_BYTES
from app.service import QAService, UnknownDocument, UnknownKB, sources_payload

log = logging.getLogger("kbqa.server")
MAX_FILES_PER_REQUEST = 20


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = DEFAULT_MAX_BYTES
    ui: bool = True
    ui_path: str = "/ui"
    metrics_dir: str | None = None  # shared by the worker processes of `kbqa serve --workers N`


# ---- request bodies (the OpenAI ones are in app.server.openai_format) --------------------
class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kb: str = Field(min_length=1)
    query: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(None, ge=1, le=50, description="passages to return; default: the server's retrieval.k")
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
        msg = err.get("msg", "")
        if err.get("type") == "extra_forbidden":
            msg = "not supported by this server"
        parts.append(f"{loc or 'body'}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid request"


# ---- the app --------------------------------------------------------------------------
def create_app(service: QAService, keyring: KeyRing | None = None, config: ServerConfig | None = None) -> FastAPI:
    keyring = keyring or KeyRing([])
    config = config or ServerConfig(max_upload_bytes=service.max_upload_bytes)
    metrics = Metrics(config.metrics_dir)
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
        check_access(service, who, kb, write)

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

    app.include_router(openai_router)
    return app
