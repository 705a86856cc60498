"""The API's contract around the endpoints: error shapes and their handlers (one 422 shape,
with ``detail``, whichever path raised it), the hot paths' query and body parsing with the same
pydantic models as the routes, ticker validation, and audit serialisation. Kept apart from the
routers so they read as lists of endpoints."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Annotated
from urllib.parse import parse_qsl

import orjson
import polars as pl
from fastapi import Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from serving import schemas as s
from serving.gate import BodyTooLarge

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


class ApiError(Exception):
    """An answer other than 200, as ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type=JSON)


async def api_error(request: Request, error: ApiError) -> Response:
    return json_response({"error": error.code, "message": error.message}, error.status)


async def too_large(request: Request, error: BodyTooLarge) -> Response:
    return json_response({"error": "body_too_large", "message": str(error)}, 413)


async def invalid(request: Request, error: RequestValidationError) -> Response:
    return validation_answer(error.errors())


def validation_answer(errors) -> Response:
    """The one 422: ``{"error": "validation_error", "message", "detail": [{loc, msg, type}]}``."""
    detail = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
    ]
    message = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail)
    return json_response({"error": "validation_error", "message": message, "detail": detail}, 422)


async def http_error(request: Request, error: StarletteHTTPException) -> Response:
    if isinstance(error.__cause__, BodyTooLarge):  # FastAPI wraps what reading the body raised
        return await too_large(request, error.__cause__)
    if error.status_code == 400:  # a body FastAPI could not decode: invalid input too
        return validation_answer([{"loc": ("body",), "msg": error.detail, "type": "json_invalid"}])
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    headers = dict(error.headers or {})
    if error.status_code == 405:  # Starlette names the first matching route's methods only
        headers["Allow"] = allowed_methods(request)
    body = {"error": code, "message": str(error.detail)}
    return json_response(body, error.status_code, headers or None)


HANDLERS = {
    ApiError: api_error,
    BodyTooLarge: too_large,
    RequestValidationError: invalid,
    StarletteHTTPException: http_error,
}


def invalid_input(loc: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 found after the framework's own validation (ticker lists, date ranges)."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


def allowed_methods(request: Request) -> str:
    """Every method some route of this path answers; HEAD wherever GET (the gate serves it)."""
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _routes(routes):
    """The routes, those of included routers (no prefixes here) in place of the router."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from _routes(included.routes) if included is not None else (route,)


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


def tickers_of(raw: list[str] | str, service, snapshot, loc=("query", "tickers")) -> list[str]:
    """Upper-cased, de-duplicated tickers; 422 when malformed or too many, 404 when unknown."""
    items = raw.split(",") if isinstance(raw, str) else raw
    names = list(dict.fromkeys(t.strip().upper() for t in items if t.strip()))
    if not names:
        raise invalid_input(loc, "give at least one ticker")
    if len(names) > service.settings.max_tickers:
        raise invalid_input(loc, f"at most {service.settings.max_tickers} per request")
    bad = [t for t in names if not s.re_ticker.match(t)]
    if bad:
        raise invalid_input(loc, f"malformed {', '.join(bad[:5])}")
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


def latest_query(query_string: bytes) -> s.LatestQuery:
    """The latest route's query model from the raw query string (the last of a repeated name,
    as FastAPI reads it), with FastAPI's 422 on failure."""
    return _validated(s.LatestQuery.model_validate, dict(query_items(query_string)), "query")


def on_demand_payload(body: bytes) -> s.OnDemandRequest:
    """The on-demand request body, decoded and validated as FastAPI does (its 422s, word for
    word: pydantic's python-mode messages after a stdlib JSON decode)."""
    if not body:
        error = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([error])
    try:
        raw = json.loads(body)
    except json.JSONDecodeError as e:
        error = {"type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error"}
        raise RequestValidationError([{**error, "input": {}, "ctx": {"error": e.msg}}]) from None
    except ValueError:  # not UTF-8 (or another encoding JSON allows): FastAPI's 400, our 422
        raise StarletteHTTPException(400, "There was an error parsing the body") from None
    validate = functools.partial(s.OnDemandRequest.model_validate, from_attributes=True)
    return _validated(validate, raw, "body")  # from_attributes: as FastAPI validates a body


def _validated(validate, raw, where: str):
    try:
        return validate(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": (where, *e["loc"])} for e in error.errors(include_url=False)]
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
        raise invalid_input(("query", "start"), f"{start} is after end {end}")


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
