"""What the routes take from a request: the service, its current snapshot, the caller's key.

The gate (`serving.gate`) has already authenticated the request and refused it without a valid
key; these read its result. `API_KEY` declares the header with FastAPI's own security class, so
OpenAPI documents the scheme on every route that depends on a caller. All are ``async``: a
plain function dependency would be run in the thread pool on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from serving.contract import ApiError, ready_snapshot
from serving.service import Service
from serving.settings import ApiKey
from serving.snapshot import Snapshot

API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="an API key (`python -m serving.keys`); the server stores only its SHA-256",
    auto_error=False,  # the gate answers a missing or unknown key, before any route
)


async def service(request: Request) -> Service:
    return request.app.state.service


async def snapshot(request: Request) -> Snapshot:
    """The current snapshot, or 503 while none with a champion is loaded."""
    return ready_snapshot(request.app.state.service)


async def caller(request: Request, _header: Annotated[str | None, Security(API_KEY)]) -> ApiKey:
    """The key the gate admitted."""
    return request.scope["state"]["api_key"]


async def optional_caller(request: Request) -> ApiKey | None:
    """The valid key a public request carries, if any (readiness adds its detail for one)."""
    return request.scope.get("state", {}).get("api_key")


async def admin(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
    if not key.admin:
        raise ApiError(403, "forbidden", "this endpoint needs an admin API key")
    return key


ServiceDep = Annotated[Service, Depends(service)]
SnapshotDep = Annotated[Snapshot, Depends(snapshot)]
CallerDep = Annotated[ApiKey, Depends(caller)]
OptionalCallerDep = Annotated[ApiKey | None, Depends(optional_caller)]
AdminDep = Annotated[ApiKey, Depends(admin)]
KEYED = [Depends(caller)]  # a router's dependencies: every route needs a key
