"""The API's contract around the endpoints: error shapes and handlers, the parameters read by
hand on the hot path, ticker validation, the OpenAPI security scheme, and audit serialisation.
Kept apart from `serving.api` so the routes read as a list of endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import parse_qsl

import orjson
import polars as pl
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from serving import schemas as s
from serving.gate import PUBLIC, BodyTooLarge

JSON = "application/json"
TickerPath = Annotated[str, Path(pattern=s.TICKER_PATTERN, description="e.g. AAPL")]
ERRORS = {
    401: {"model": s.Error, "description": "missing or unknown API key"},
    404: {"model": s.Error, "description": "unknown ticker, or nothing stored for it"},
    413: {"model": s.Error, "description": "request body over STOCK_API_MAX_BODY_BYTES"},
    422: {"model": s.Error, "description": "invalid parameters"},
    429: {
        "model": s.Error,
        "description": "rate limit exceeded",
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
    },
    503: {"model": s.Error, "description": "no snapshot loaded yet"},
}

LATEST_PARAMETERS = [
    {
        "name": "tickers",
        "in": "query",
        "required": False,
        "description": "comma-separated tickers (at most STOCK_API_MAX_TICKERS); all when omitted",
        "schema": {"type": "string", "maxLength": 2000},
    },
    {
        "name": "role",
        "in": "query",
        "required": False,
        "description": "whose stored predictions: the champion's or the challenger's (shadow)",
        "schema": {"type": "string", "enum": ["champion", "challenger"], "default": "champion"},
    },
]


class ApiError(Exception):
    """An answer other than 200, as ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type=JSON)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return json_response({"error": error.code, "message": error.message}, error.status)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, error: BodyTooLarge):
        return json_response({"error": "body_too_large", "message": str(error)}, 413)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        detail = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
        message = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail)
        return json_response(
            {"error": "validation_error", "message": message, "detail": detail}, 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if isinstance(error.__cause__, BodyTooLarge):  # FastAPI wraps what reading the body raised
            return await too_large(request, error.__cause__)
        if error.status_code == 400:  # a body FastAPI could not decode: invalid input too
            message = f"body: {error.detail}"
            return json_response({"error": "validation_error", "message": message}, 422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        headers = dict(error.headers or {})
        if error.status_code == 405:  # Starlette names the first matching route's methods only
            headers["Allow"] = allowed_methods(request)
        body = {"error": code, "message": str(error.detail)}
        return json_response(body, error.status_code, headers or None)


def allowed_methods(request: Request) -> str:
    """Every method some route of this path answers; HEAD wherever GET (the gate serves it)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


class JsonCors(CORSMiddleware):
    """Starlette's CORS middleware, with a refused preflight answered as every other refusal:
    ``{"error", "message"}`` in JSON (Starlette's own answer is plain text)."""

    def preflight_response(self, request_headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code == 200:
            return answer
        headers = {
            k: v for k, v in answer.headers.items() if k not in ("content-length", "content-type")
        }
        body = {"error": "cors_refused", "message": answer.body.decode()}
        return json_response(body, answer.status_code, headers)


def tickers_of(raw: list[str] | str, service, snapshot) -> list[str]:
    """Upper-cased, de-duplicated tickers; 422 when malformed or too many, 404 when unknown."""
    items = raw.split(",") if isinstance(raw, str) else raw
    names = list(dict.fromkeys(t.strip().upper() for t in items if t.strip()))
    if not names:
        raise ApiError(422, "validation_error", "tickers: give at least one ticker")
    if len(names) > service.settings.max_tickers:
        limit = service.settings.max_tickers
        raise ApiError(422, "validation_error", f"tickers: at most {limit} per request")
    bad = [t for t in names if not s.re_ticker.match(t)]
    if bad:
        raise ApiError(422, "validation_error", f"tickers: malformed {', '.join(bad[:5])}")
    unknown = [t for t in names if t not in snapshot.tickers]
    if unknown:
        raise ApiError(404, "unknown_ticker", f"no predictions for {', '.join(unknown[:10])}")
    return names


def query_items(raw: bytes) -> list[tuple[str, str]]:
    """The query string's pairs, as Starlette's ``QueryParams`` reads them; a plain split when
    nothing is escaped (the usual request: a quarter of the hot path's CPU went to parsing)."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    return [(name, value) for name, _, value in (p.partition("=") for p in text.split("&") if p)]


def latest_query(query_string: bytes) -> tuple[str | None, str]:
    """``tickers`` and ``role`` from the query string, validated as LATEST_PARAMETERS says."""
    tickers, role = None, "champion"
    for name, value in query_items(query_string):
        if name == "tickers":
            if len(value) > 2000:
                raise ApiError(422, "validation_error", "tickers: at most 2000 characters")
            tickers = value if tickers is None else f"{tickers},{value}"
        elif name == "role":
            if value not in ("champion", "challenger"):
                raise ApiError(422, "validation_error", "role: champion or challenger")
            role = value
    return tickers, role


def on_demand_payload(body: bytes) -> s.OnDemandRequest:
    """The on-demand request body, validated as FastAPI would (same 422 on failure)."""
    try:
        return s.OnDemandRequest.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


def ready_snapshot(service):
    """The current snapshot, or 503 while none with a champion is loaded."""
    snapshot = service.snapshot
    if not snapshot.ready:
        raise ApiError(503, "not_ready", "no snapshot with a champion and predictions loaded yet")
    return snapshot


def check_range(start: dt.date | None, end: dt.date | None) -> None:
    """422 for an empty range (start after end)."""
    if start and end and start > end:
        raise ApiError(422, "validation_error", f"start {start} is after end {end}")


def chain_json(chain) -> dict:
    """A `PredictionChain` as JSON-ready dicts (binary Kafka payloads left out)."""

    def rows(frame: pl.DataFrame) -> list[dict]:
        keep = [c for c, t in frame.schema.items() if t != pl.Binary]
        return frame.select(keep).to_dicts()

    features = rows(chain.features)
    return {
        "summary": chain.summary(),
        "prediction": chain.prediction,
        "model": chain.model,
        "features": features[0] if features else None,
        "adjusted_bars": rows(chain.adjusted_bars),
        "silver_bars": rows(chain.silver_bars),
        "bronze_bars": rows(chain.bronze_bars),
        "kafka": rows(chain.kafka),
    }


def openapi_with_keys(app: FastAPI) -> dict:
    """The generated schema plus the API-key scheme on every non-public operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schema["info"]["description"] = app.description
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path == "/health/ready":  # open; a key adds the detail
                operation["security"] = [{}, {"ApiKey": []}]
            elif path not in PUBLIC:
                operation["security"] = [{"ApiKey": []}]
    app.openapi_schema = schema
    return schema
