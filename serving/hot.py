"""The hot paths (latest and on-demand predictions) as one middleware inside the gate and CORS.

Profiled under load on 2 cores, FastAPI's per-request layers around an endpoint (dependency
resolution, the request wrapper, the exit stack, router matching) took more CPU than the rest of
a latest-prediction answer, and at 2,000 requests/s that queueing set the p99. `HotPaths` sits
last in the app's middleware list, so a hot request has passed the same CORS, gate (key, bucket,
body limit, metrics) and FastAPI's outer error layers as any other; it is then answered by its
handler through Starlette's public `ExceptionMiddleware` with the app's own handlers. Every
other request goes on to FastAPI's router, whose routes of the same paths run the same code
with the same pydantic models and document them in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware

Handler = Callable[[Request], Awaitable[Response]]


class HotPaths:
    """``paths``: ``(method, path) -> handler``; each must also be a route of ``router`` (that
    route goes in the scope, as FastAPI's router puts it there: the gate labels metrics by it).
    ``handlers``: the app's exception handlers."""

    def __init__(
        self,
        app,
        router: APIRouter,
        paths: Mapping[tuple[str, str], Handler],
        handlers: Mapping,
    ) -> None:
        self.app = app
        self.paths = {
            (method, path): (_route(router, method, path), ExceptionMiddleware(_asgi(h), handlers))
            for (method, path), h in paths.items()
        }

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            hot = self.paths.get((scope["method"], scope["path"]))
            if hot is not None:
                scope["route"] = hot[0]
                await hot[1](scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route(router: APIRouter, method: str, path: str) -> APIRoute:
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            return route
    raise LookupError(f"{method} {path}: a hot path needs a route of its own (OpenAPI)")


def _asgi(handler: Handler):
    async def endpoint(scope, receive, send) -> None:
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)

    return endpoint
