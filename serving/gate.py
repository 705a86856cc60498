"""Authentication, rate limits, the request body limit and request metrics, as one pure ASGI
middleware.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs every request through an extra task
and memory stream) because this runs on every request: a header scan, one SHA-256 and a dict
lookup for the key, a token bucket, and two Prometheus updates. Health, metrics and the OpenAPI
documents are public; everything else needs ``X-API-Key``.

Nothing is told to strangers: only answers to a valid key name the data date and the model
versions (headers), a request without a valid key is limited per client address, and HEAD is
answered as GET without the body wherever GET is.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Mapping

import orjson

from serving.settings import ApiKey

PUBLIC = frozenset(
    {"/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/redoc"}
)
BODIES = frozenset({"POST", "PUT", "PATCH"})
UNTOLD = frozenset({401, 403})  # refusals of a caller who may not know the data or the models


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


class AddressBuckets:
    """One bucket per client address for requests without a valid key, at most ``size``
    addresses (the least recently seen is dropped: a bounded table, whatever the sender)."""

    def __init__(self, rate: float, burst: int, size: int = 10_000) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, address: str, now: float) -> float:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket.take(now)


class Gate:
    """The middleware: ``service`` provides ``keys``, ``buckets`` (per key), ``anonymous`` (per
    address), ``metrics``, ``settings`` (the body limit, the metrics port) and ``snapshot``
    (whose ``headers`` name the data date and model versions)."""

    def __init__(self, app, service) -> None:
        self.app = app
        self.service = service
        moved = {"/metrics"} if service.settings.metrics_port else set()
        self.public = PUBLIC - moved  # /metrics on its own port needs a key (404) here

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        service = self.service
        extra = service.snapshot.headers
        status = 500
        head = scope["method"] == "HEAD"
        if head:  # HEAD is GET without the body, on every GET route
            scope = {**scope, "method": "GET"}
        key = None

        async def send_with_headers(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if key is not None and status not in UNTOLD:
                    message["headers"] = [*message.get("headers", ()), *extra]
            elif head and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            if scope["path"] in self.public:
                key = self.identify(scope, service)  # optional: /health/ready's detail
            else:
                refusal = self.admit(scope, service)
                if refusal is not None:
                    status = refusal[0]
                    await _reply(send_with_headers, *refusal)
                    return
                key = scope["state"]["api_key"]
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
    def identify(scope, service) -> ApiKey | None:
        """The valid key a request carries, if any (no bucket taken, nothing refused)."""
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = service.keys.get(hashlib.sha256(value).digest())
                if key is not None:
                    _state(scope)["api_key"] = key
                return key
        return None

    @staticmethod
    def admit(scope, service) -> tuple | None:
        """None when the request may go on, else (status, code, message, headers)."""
        secret = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                secret = value
                break
        key: ApiKey | None = None
        if secret:
            key = service.keys.get(hashlib.sha256(secret).digest())
        now = time.monotonic()
        if key is None:  # limited per address, so refusals cannot be had at any rate
            client = scope.get("client")
            wait = service.anonymous.take(client[0] if client else "", now)
            if wait:
                service.metrics.rate_limited.labels("anonymous").inc()
                return _limited_answer(wait, "too many requests without a valid API key")
            reason = "unknown_key" if secret else "missing_key"
            service.metrics.rejected.labels(reason).inc()
            if secret:
                return 401, "invalid_api_key", "this API key is not known", ()
            return 401, "missing_api_key", "send your API key in the X-API-Key header", ()
        wait = service.buckets[key.key_id].take(now)
        if wait:
            service.metrics.rate_limited.labels("key").inc()
            message = f"rate limit of {key.rate_per_s:g}/s (burst {key.burst}) exceeded"
            return _limited_answer(wait, message)
        _state(scope)["api_key"] = key
        return None


def _state(scope) -> dict:
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    return state


def _limited_answer(wait: float, message: str) -> tuple:
    retry = str(max(1, math.ceil(wait))).encode()
    return 429, "rate_limited", message, ((b"retry-after", retry),)


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
