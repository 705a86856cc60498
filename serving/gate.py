"""Authentication, per-key rate limits, the request body limit and request metrics, as one pure
ASGI middleware.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs every request through an extra task
and memory stream) because this runs on every request: a header scan, one SHA-256 and a dict
lookup for the key, a token bucket, and two Prometheus updates. Health, metrics and the OpenAPI
documents are public; everything else needs ``X-API-Key``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.settings import ApiKey

PUBLIC = frozenset(
    {"/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/redoc"}
)
BODIES = frozenset({"POST", "PUT", "PATCH"})
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BodyTooLarge(Exception):
    """Raised while a body is read, once it passes the limit (the app answers 413)."""


class TokenBucket:
    """``rate`` tokens a second up to ``capacity``; a request takes one."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate, self.capacity = rate, float(capacity)
        self.tokens, self.stamp = float(capacity), time.monotonic()

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "stock_api_requests", "HTTP requests by route template and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "stock_api_request_duration_seconds", "Time in the service per request, by route",
            ["route"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.model_requests = Counter(
            "stock_api_model_requests",
            "Requests answered with a model's predictions: kind stored (gold/predictions) or "
            "on_demand (Feast online features scored now), by role and registered version",
            ["kind", "role", "version"], registry=r,
        )  # fmt: skip
        self.realised_rank_ic = Gauge(
            "stock_api_model_realised_rank_ic",
            "Mean daily rank IC of each role and version's stored predictions (index members) "
            "against the realised forward return, over sessions whose outcome is known",
            ["role", "version"], registry=r,
        )  # fmt: skip
        self.realised_days = Gauge(
            "stock_api_model_realised_days", "Sessions behind stock_api_model_realised_rank_ic",
            ["role", "version"], registry=r,
        )  # fmt: skip
        self.alias_version = Gauge(
            "stock_api_model_alias_version", "Registered version each alias resolved to",
            ["role"], registry=r,
        )  # fmt: skip
        self.table_version = Gauge(
            "stock_api_table_version", "Delta version of each table the snapshot reads",
            ["table"], registry=r,
        )  # fmt: skip
        self.data_date = Gauge(
            "stock_api_data_date_seconds", "Newest predicted session (epoch seconds)", registry=r
        )
        self.loads = Counter(
            "stock_api_snapshot_loads", "Snapshot polls by result (swapped, unchanged, error)",
            ["result"], registry=r,
        )  # fmt: skip
        self.challenger_share = Gauge(
            "stock_api_challenger_share_percent", "Share of API keys routed to the challenger",
            registry=r,
        )  # fmt: skip
        self.online_rows = Gauge(
            "stock_api_online_cache_rows", "Online feature rows cached for on-demand predictions",
            registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "stock_api_rejected", "Requests refused before routing, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "stock_api_rate_limited", "Requests answered 429, by key id", ["key_id"], registry=r
        )
        self._children: dict = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def model_request(self, kind: str, role: str, version: str) -> None:
        child = self._children.get((kind, role, version))
        if child is None:
            child = self._children[(kind, role, version)] = self.model_requests.labels(
                kind, role, version
            )
        child.inc()


class Gate:
    """The middleware: ``service`` provides ``keys``, ``buckets``, ``metrics``, ``settings``
    (the body limit) and ``snapshot`` (whose ``headers`` name the data date and model versions
    on every response)."""

    def __init__(self, app, service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        service = self.service
        extra = service.snapshot.headers
        status = 500

        async def send_with_headers(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            if scope["path"] not in PUBLIC:
                refusal = self.admit(scope, service)
                if refusal is not None:
                    status = refusal[0]
                    await _reply(send_with_headers, *refusal)
                    return
            if scope["method"] in BODIES:
                limit = service.settings.max_body_bytes
                if _declared_length(scope) > limit:
                    status = 413
                    message = f"request body over {limit} bytes"
                    await _reply(send_with_headers, 413, "body_too_large", message)
                    return
                receive = _limited(receive, limit)
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unrouted"
            service.metrics.observe(label, status, time.perf_counter() - started)

    @staticmethod
    def admit(scope, service) -> tuple | None:
        """None when the request may go on, else (status, code, message, headers)."""
        secret = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                secret = value
                break
        if not secret:
            service.metrics.rejected.labels("missing_key").inc()
            return 401, "missing_api_key", "send your API key in the X-API-Key header", ()
        key: ApiKey | None = service.keys.get(hashlib.sha256(secret).digest())
        if key is None:
            service.metrics.rejected.labels("unknown_key").inc()
            return 401, "invalid_api_key", "this API key is not known", ()
        wait = service.buckets[key.key_id].take(time.monotonic())
        if wait:
            service.metrics.rate_limited.labels(key.key_id).inc()
            retry = str(max(1, math.ceil(wait))).encode()
            message = f"rate limit of {key.rate_per_s:g}/s (burst {key.burst}) exceeded"
            return 429, "rate_limited", message, ((b"retry-after", retry),)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["api_key"] = key
        return None


def _declared_length(scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _limited(receive, limit: int):
    """``receive`` that raises `BodyTooLarge` once more than ``limit`` body bytes arrived
    (a chunked body declares no length)."""
    seen = 0

    async def limited():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        return message

    return limited


async def _reply(send, status: int, code: str, message: str, headers=()) -> None:
    body = orjson.dumps({"error": code, "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def key_table(keys) -> Mapping[bytes, ApiKey]:
    """Digest bytes -> key, for the one dict lookup per request."""
    return {bytes.fromhex(k.digest): k for k in keys}
