"""kbqa's document routes: ``GET /v1/kbs`` (the knowledge bases the caller may read),
``GET``, ``POST`` (multipart upload, ingested at once) and ``DELETE`` on
``/v1/kbs/{kb}/documents``.

Thin handlers, as in `app.server.openai_api`: they check the caller's rights
(`app.server.access.need`) and call `QAService`; nothing here touches a store.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from kbqa.app.server.access import Caller, need
from kbqa.app.server.errors import error_response
from kbqa.app.service import QAService

MAX_FILES_PER_REQUEST = 20
router = APIRouter(prefix="/v1", tags=["kbqa"])


def _service(request: Request) -> QAService:
    return request.app.state.service


@router.get("/kbs")
def list_kbs(request: Request, who: Caller) -> dict:
    service = _service(request)
    readable = set(who.readable(service.names()))
    return {"kbs": [dict(s, writable=who.can_write(s["name"])) for s in service.summary() if s["name"] in readable]}


@router.get("/kbs/{kb}/documents")
def list_documents(kb: str, request: Request, who: Caller) -> dict:
    service = _service(request)
    need(service, who, kb)
    return {"kb": kb, "documents": service.documents(kb)}


@router.post("/kbs/{kb}/documents")
def upload_documents(
    kb: str, request: Request, who: Caller, files: Annotated[list[UploadFile], File(description="documents to ingest (multipart field 'files')")]
):
    service = _service(request)
    need(service, who, kb, write=True)
    if len(files) > MAX_FILES_PER_REQUEST:
        raise HTTPException(413, f"files: at most {MAX_FILES_PER_REQUEST} files per request")
    max_bytes = request.app.state.config.max_upload_bytes
    results = []
    for upload in files:
        data = upload.file.read(max_bytes + 1)
        results.append(service.upload(kb, upload.filename or "", data, upload.content_type))
    ok = [r for r in results if r.status not in ("failed", "rejected")]
    body = {"kb": kb, "files": [r.to_dict() for r in results]}
    if ok:
        return body
    first = results[0]
    body_error = error_response(first.http_status, "; ".join(f"{r.name}: {r.reason}" for r in results))
    payload = json.loads(body_error.body)
    payload["files"] = body["files"]
    return JSONResponse(payload, status_code=first.http_status)


@router.delete("/kbs/{kb}/documents")
def delete_document(
    kb: str, request: Request, who: Caller, source: Annotated[str, Query(min_length=1, description="the document's source as listed, or its file name")]
) -> dict:
    service = _service(request)
    need(service, who, kb, write=True)
    return {"kb": kb, "removed": service.delete(kb, source)}
