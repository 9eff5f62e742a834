"""The REST API (FastAPI): OpenAI-compatible chat, retrieval, documents, health, metrics.

Handlers check the caller's rights and call `QAService`; nothing here touches a store.
Errors are JSON ``{"error": {"message", "type", "code"}, "detail": message}`` so that
both OpenAI clients and plain HTTP clients read them (app/server/errors.py). The document
routes are in app/server/documents_api.py, the OpenAI ones in app/server/openai_api.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from kbqa.app.server.access import Caller, need
from kbqa.app.server.auth import KeyRing
from kbqa.app.server.documents_api import MAX_FILES_PER_REQUEST  # noqa: F401  (its old home)
from kbqa.app.server.documents_api import router as documents_router
from kbqa.app.server.errors import error_response, validation_message
from kbqa.app.server.metrics import Metrics, MetricsMiddleware
from kbqa.app.server.openai_api import router as openai_router
from kbqa.app.server.rate_limit import RateLimiter
from kbqa.app.uploads import DEFAULT_MAX_BYTES
from kbqa.app.service import QAService, UnknownDocument, UnknownKB, sources_payload

log = logging.getLogger("kbqa.server")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = DEFAULT_MAX_BYTES
    ui: bool = True
    ui_path: str = "/ui"
    metrics_dir: str | None = None  # shared by the worker processes of `kbqa serve --workers N`
    rate_limit: float = 0.0  # requests a minute per key (0: none; a key's own rate_limit overrides it)


# ---- request bodies (the OpenAI ones are in app.server.openai_format) --------------------
class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kb: str = Field(min_length=1)
    query: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(None, ge=1, le=50, description="passages to return; default: the server's retrieval.k")
    mode: Literal["dense", "bm25", "hybrid"] | None = None


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
    app.state.limiter = RateLimiter(config.rate_limit)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, validation_message(exc))

    @app.exception_handler(UnknownKB)
    async def unknown_kb(request: Request, exc: UnknownKB):
        return error_response(404, str(exc))

    @app.exception_handler(UnknownDocument)
    async def unknown_doc(request: Request, exc: UnknownDocument):
        return error_response(404, str(exc))

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
        need(service, who, body.kb)
        hits, found = service.retrieve(body.kb, body.query, body.k, body.mode)
        return {"kb": body.kb, "query": body.query, "found": found, "results": sources_payload(hits)}

    app.include_router(documents_router)  # /v1/kbs, /v1/kbs/{kb}/documents (app/server/documents_api.py)
    app.include_router(openai_router)
    return app
