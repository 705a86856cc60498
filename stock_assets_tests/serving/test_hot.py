"""The hot paths (`serving.hot.HotPaths`, the last of the app's one middleware list) answer
exactly what FastAPI's routes of the same paths answer: bodies, statuses, error bodies (the
same pydantic models, so the same 422 ``detail``; an oversized body included), gate and CORS
headers, the metrics label."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import QueryParams

from serving.api import create_app
from serving.contract import JsonCors, query_items
from serving.gate import Gate
from serving.hot import HotPaths
from serving.settings import Settings
from stock_assets_tests.serving.conftest import LIMITED, ORIGIN, READER, key_settings

pytestmark = pytest.mark.timeout(900)

REQUESTS = [
    ("GET", "/v1/predictions/latest", {"tickers": "AAPL,adi"}, None, READER),
    ("GET", "/v1/predictions/latest", {"tickers": "AAPL", "role": "challenger"}, None, READER),
    ("GET", "/v1/predictions/latest", {"tickers": "NOSUCH"}, None, READER),
    ("GET", "/v1/predictions/latest", {"tickers": "A$B"}, None, READER),
    ("GET", "/v1/predictions/latest", {"role": "nobody"}, None, READER),
    ("GET", "/v1/predictions/latest", {}, None, None),
    ("GET", "/v1/predictions/latest", {}, None, "sk_unknown"),
    ("POST", "/v1/predictions/on-demand", None, {"tickers": ["AAPL"]}, READER),
    ("POST", "/v1/predictions/on-demand", None, {"tickers": ["NOSUCH"]}, READER),
    ("POST", "/v1/predictions/on-demand", None, {"tickers": "AAPL", "source": "x"}, READER),
    ("POST", "/v1/predictions/on-demand", None, {"wrong": 1}, READER),
    ("POST", "/v1/predictions/on-demand", None, {"tickers": ["AAPL"] * 20_000}, READER),
]
VARYING = {"date", "content-length"}  # the length follows from the body, compared itself


@pytest.fixture(scope="module")
def app_client(delivered):
    env = {**delivered.env, **key_settings(), "STOCK_API_POLL_SECONDS": "60"}
    with pytest.MonkeyPatch.context() as patch:  # the lake and registry settings are read
        for name, value in env.items():  # from the environment when the snapshot loads
            patch.setenv(name, value)
        app = create_app(Settings.from_env())
        yield from serve(app)


def serve(app):
    with TestClient(app) as client:
        deadline = time.monotonic() + 240
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the app did not become ready"
            time.sleep(0.5)
        yield app, client


def hot_paths(app) -> HotPaths:
    """The built stack's hot-path layer (walked from the outermost)."""
    layer = app.middleware_stack
    while not isinstance(layer, HotPaths):
        layer = layer.app
    return layer


def through_routes(app, run):
    """``run()`` with the hot paths emptied: every request goes to FastAPI's router."""
    hot = hot_paths(app)
    paths, hot.paths = hot.paths, {}
    try:
        return run()
    finally:
        hot.paths = paths


def answers(client) -> list[tuple]:
    out = []
    for method, path, params, body, secret in REQUESTS:
        headers = {"Origin": ORIGIN, **({"X-API-Key": secret} if secret else {})}
        reply = client.request(method, path, params=params, json=body, headers=headers)
        kept = {k: v for k, v in reply.headers.items() if k not in VARYING}
        payload = reply.json()
        for item in payload.get("items", []):
            item.pop("age_seconds", None)  # the online row's age at the time of the request
        out.append((reply.status_code, payload, kept))
    return out


def test_one_middleware_list_cors_then_gate_then_hot_paths(app_client):
    app, _ = app_client
    assert [m.cls for m in app.user_middleware] == [JsonCors, Gate, HotPaths]
    assert set(hot_paths(app).paths) == {
        ("GET", "/v1/predictions/latest"),
        ("POST", "/v1/predictions/on-demand"),
    }


def test_hot_paths_answer_as_the_framework_routes_do(app_client):
    app, client = app_client
    hot = answers(client)
    routed = through_routes(app, lambda: answers(client))
    statuses = [200, 200, 404, 422, 422, 401, 401, 200, 404, 422, 422, 413]
    assert [a[0] for a in hot] == statuses
    for fast, route, request in zip(hot, routed, REQUESTS, strict=True):
        assert fast[0] == route[0], request
        assert fast[2] == route[2], request  # gate, CORS and model headers alike
        assert fast[1] == route[1], request  # bodies, 422 detail included
        if fast[0] == 422:
            assert fast[1]["detail"] and all(d["loc"] for d in fast[1]["detail"]), request
    assert hot[0][2]["access-control-allow-origin"] == ORIGIN
    assert hot[4][1]["detail"][0]["loc"] == ["query", "role"]


def test_undecodable_bodies_answer_as_the_routes_do(app_client):
    app, client = app_client
    headers = {"X-API-Key": READER, "Content-Type": "application/json"}

    def send() -> list[tuple]:
        replies = [
            client.post("/v1/predictions/on-demand", content=body, headers=headers)
            for body in (b"", b'{"tickers": ["AAPL"', b"[1]", b"\xff\x0b\xde-")
        ]
        return [(r.status_code, r.json()) for r in replies]

    hot = send()
    assert hot == through_routes(app, send)
    assert [status for status, _ in hot] == [422, 422, 422, 422]
    kinds = [body["detail"][0]["type"] for _, body in hot]
    assert kinds == ["missing", "json_invalid", "model_attributes_type", "json_invalid"]


def test_a_chunked_body_over_the_limit_is_refused_on_both_paths(app_client):
    app, client = app_client
    chunk = b'{"tickers": [' + b'"AAPL",' * 5_000 + b'"AAPL"]}'  # ~35 KB a time, no length

    def send() -> tuple:
        reply = client.post(
            "/v1/predictions/on-demand",
            content=iter([chunk[:20_000], chunk[20_000:], b" " * 40_000]),
            headers={"X-API-Key": READER, "Content-Type": "application/json"},
        )
        return reply.status_code, reply.json()["error"]

    assert send() == (413, "body_too_large")
    assert through_routes(app, send) == (413, "body_too_large")


def test_hot_requests_are_counted_under_their_route(app_client):
    app, client = app_client
    metric = 'stock_api_requests_total{route="/v1/predictions/latest",status="200"}'

    def count() -> float:
        text = client.get("/metrics").text
        line = next((x for x in text.splitlines() if x.startswith(metric)), f"{metric} 0")
        return float(line.rsplit(" ", 1)[1])

    before = count()
    for _ in range(3):
        reply = client.get("/v1/predictions/latest?tickers=AAPL", headers={"X-API-Key": READER})
        assert reply.status_code == 200
    assert count() == before + 3
    limited = [
        client.get("/v1/predictions/latest?tickers=AAPL", headers={"X-API-Key": LIMITED})
        for _ in range(4)
    ]
    assert limited[-1].status_code == 429 and limited[-1].headers["retry-after"]


@pytest.mark.parametrize(
    "raw",
    [b"tickers=AAPL,ADI&role=champion", b"tickers=a%20b&x=", b"a&b=1&&c=2=3", b"tickers=A+B", b""],
)
def test_the_hot_query_parser_reads_what_starlette_reads(raw):
    assert query_items(raw) == QueryParams(raw).multi_items()
