"""The fast lane for the hot endpoints (latest and on-demand predictions).

Profiled under load on 2 cores, FastAPI's own layers around an endpoint (error and telemetry
middleware, body limit, exit stack, router matching, the request wrapper) took more CPU than
the rest of a latest-prediction answer, and at 2,000 requests/s that queueing set the p99. So
`StockApi` hands requests whose method and path name a lane to that lane: the same gate (key,
bucket, metrics), the same CORS middleware when configured, the same handler and the app's own
exception handlers, without the framework layers. Everything else, and these paths reached any
other way, goes through FastAPI, whose routes of the same paths serve the same handlers and
document them in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import Response

Handler = Callable[[Request], Awaitable[Response]]


class LaneRoute(NamedTuple):
    """Stands in for the route in the scope: the gate labels metrics with ``route.path``."""

    path: str


class StockApi(FastAPI):
    """FastAPI with ``lanes``: ``(method, path) -> ASGI app`` served before the framework."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lanes: dict[tuple[str, str], Callable] = {}

    def add_lane(self, method: str, path: str, handler: Handler, wrap: Callable) -> None:
        """``wrap(asgi_app)`` puts the same middleware around the lane as around the app."""
        self.lanes[(method, path)] = wrap(_endpoint(self, path, handler))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            lane = self.lanes.get((scope["method"], scope["path"]))
            if lane is not None:
                await lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _endpoint(app: FastAPI, path: str, handler: Handler):
    route = LaneRoute(path)

    async def endpoint(scope, receive, send) -> None:
        scope["route"], scope["app"] = route, app
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as error:
            respond = _exception_handler(app, error)
            if respond is None:
                raise  # uvicorn answers 500 and logs it, as FastAPI's error middleware would
            response = await respond(request, error)
        await response(scope, receive, send)

    return endpoint


def _exception_handler(app: FastAPI, error: Exception):
    for kind in type(error).__mro__:
        handler = app.exception_handlers.get(kind)
        if handler is not None:
            return handler
    return None
