"""The API's error bodies: ``{"error": {"message", "type", "code"}, "detail": message}``, so
that both OpenAI clients and plain HTTP clients read them."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "code": status}, "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = err.get("msg", "")
        if err.get("type") == "extra_forbidden":
            msg = "not supported by this server"
        parts.append(f"{loc or 'body'}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid request"
