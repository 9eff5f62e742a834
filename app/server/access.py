"""Who is calling, and may they use this knowledge base: the bearer key (or loopback in
local-only mode) as a FastAPI dependency, and the read/write check every route makes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kbqa.app.server.auth import LOCAL, KeyRing, Principal, bearer_token, is_loopback
from kbqa.app.server.rate_limit import retry_after

_bearer = HTTPBearer(auto_error=False, description="an API key from the keys file; none in local-only mode")


def principal(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> Principal:
    keyring: KeyRing = request.app.state.keyring
    if not keyring.enabled:
        host = request.client.host if request.client else None
        if not is_loopback(host):
            raise HTTPException(403, "this server runs in local-only mode (no API keys configured); only 127.0.0.1 may call it")
        _within_rate(request, LOCAL)
        return LOCAL
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    found = keyring.lookup(token)
    if found is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    _within_rate(request, found)
    return found


def _within_rate(request: Request, who: Principal) -> None:
    """429 with Retry-After once `who` has used up its requests (app/server/rate_limit.py)."""
    limiter = getattr(request.app.state, "limiter", None)
    wait = limiter.wait_s(who.name, who.rate_limit) if limiter is not None else 0.0
    if wait:
        rate = who.rate_limit if who.rate_limit is not None else limiter.per_minute
        raise HTTPException(
            429,
            f"key {who.name!r}: rate limit of {rate:g} requests a minute reached; retry in {retry_after(wait)} s",
            headers={"Retry-After": retry_after(wait)},
        )


Caller = Annotated[Principal, Depends(principal)]


def need(service, who: Principal, kb: str, write: bool = False) -> None:
    """403 unless `who` may read (or write) `kb`; then 404 for an unknown name."""
    if write and not who.can_write(kb):
        what = "write to" if who.can_read(kb) else "use"
        raise HTTPException(403, f"key {who.name!r} may not {what} knowledge base {kb!r}")
    if not who.can_read(kb):
        raise HTTPException(403, f"key {who.name!r} may not use knowledge base {kb!r}")
    service.kb(kb)  # 404 for an unknown name, once the caller may know
