"""The fast lanes answer exactly what FastAPI's routes of the same paths answer: bodies,
statuses, error shapes (an oversized body included), gate and CORS headers, the metrics label."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import QueryParams

from serving.api import create_app
from serving.contract import query_items
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


def test_lanes_answer_as_the_framework_routes_do(app_client):
    app, client = app_client
    assert set(app.lanes) == {
        ("GET", "/v1/predictions/latest"),
        ("POST", "/v1/predictions/on-demand"),
    }
    through_lanes = answers(client)
    lanes, app.lanes = app.lanes, {}
    try:
        through_routes = answers(client)
    finally:
        app.lanes = lanes
    statuses = [200, 200, 404, 422, 422, 401, 401, 200, 404, 422, 422, 413]
    assert [a[0] for a in through_lanes] == statuses
    for lane, route, request in zip(through_lanes, through_routes, REQUESTS, strict=True):
        assert lane[0] == route[0], request
        assert lane[2] == route[2], request  # gate, CORS and model headers alike
        if lane[0] == 200:
            assert lane[1] == route[1], request
        else:  # same error code; FastAPI and pydantic may word a 422 in its own order
            assert lane[1]["error"] == route[1]["error"], request
    assert through_lanes[0][2]["access-control-allow-origin"] == ORIGIN


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
    lanes, app.lanes = app.lanes, {}
    try:
        assert send() == (413, "body_too_large")
    finally:
        app.lanes = lanes


def test_lane_requests_are_counted_under_their_route(app_client):
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
