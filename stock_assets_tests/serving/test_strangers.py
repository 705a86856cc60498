"""Nothing for strangers, on real uvicorn servers: each refusal is checked on the server with
its hot paths (the package's `api`) and on one serving every path through FastAPI's router
(`STOCK_API_HOT_PATHS=0`, with /metrics on an internal port).

Without a valid key an answer names neither the data nor the models, readiness is a status,
refusals are limited per client address, and every refusal is the same JSON shape (a foreign
CORS preflight and a 405 with its ``Allow`` included); HEAD answers wherever GET does.
"""

from __future__ import annotations

import time

import httpx
import pytest

from stock_assets.resources.broker import free_port
from stock_assets_tests.serving.conftest import ADMIN, ORIGIN, READER, key_settings, running

pytestmark = pytest.mark.timeout(900)
TOLD = ("x-data-date", "x-model-version", "x-challenger-version")
LATEST = "/v1/predictions/latest?tickers=AAPL"  # a hot path on the `api` server


@pytest.fixture(scope="module")
def framework(delivered, tmp_path_factory):
    """The same state behind FastAPI's stack only, metrics on their own port."""
    metrics_port = free_port()
    env = {**delivered.env, **key_settings(), "STOCK_API_HOT_PATHS": "0"}
    env |= {"STOCK_API_METRICS_PORT": str(metrics_port), "STOCK_API_POLL_SECONDS": "2"}
    for server in running(env, tmp_path_factory.mktemp("framework") / "api.log"):
        server.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        yield server


@pytest.fixture(params=["hot", "framework"])
def server(request):
    return request.getfixturevalue("api" if request.param == "hot" else "framework")


def told(answer: httpx.Response) -> set[str]:
    return {h for h in TOLD if h in answer.headers}


def wait_for_anonymous_tokens() -> None:
    """Let the address bucket (5/s, burst 10) refill for the tests that follow."""
    time.sleep(2.5)


def test_readiness_is_a_status_for_strangers_and_the_detail_for_a_key(server):
    with server.client(None) as anonymous, server.client(READER) as reader:
        public, detail = anonymous.get("/health/ready"), reader.get("/health/ready")
        wrong = anonymous.get("/health/ready", headers={"X-API-Key": "sk_wrong"})
        live = anonymous.get("/health/live")
    assert public.status_code == 200 and public.json() == {"ready": True}
    assert wrong.json() == {"ready": True}
    assert told(public) == told(wrong) == told(live) == set()
    body = detail.json()
    assert body["ready"] and body["champion"]["version"] == "1" and body["last_error"] is None
    assert body["table_versions"]["gold/predictions"] is not None
    assert told(detail) == {"x-data-date", "x-model-version", "x-challenger-version"}


@pytest.mark.parametrize("path", [LATEST, "/v1/tickers", "/v1/admin/rollout"])
def test_refusals_name_neither_data_nor_models(server, path):
    with server.client(None) as anonymous, server.client("sk_wrong") as stranger:
        missing, unknown = anonymous.get(path), stranger.get(path)
    with server.client(READER) as reader:
        answer = reader.get(path)
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_api_key")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_api_key")
    assert told(missing) == told(unknown) == set()
    if path == "/v1/admin/rollout":  # a valid key, but not an admin's
        assert (answer.status_code, answer.json()["error"]) == (403, "forbidden")
        assert told(answer) == set()
    else:
        assert answer.status_code == 200 and answer.headers["x-data-date"] == "2010-07-30"
    wait_for_anonymous_tokens()


def test_requests_without_a_valid_key_are_limited_per_address(server):
    with server.client(None) as anonymous, server.client(READER) as reader:
        answers = [anonymous.get(LATEST) for _ in range(20)]
        keyed = reader.get(LATEST)  # a valid key has its own bucket
    codes = [a.status_code for a in answers]
    assert codes[0] == 401 and 429 in codes, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert told(refused) == set()
    assert keyed.status_code == 200
    text = httpx.get(getattr(server, "metrics_url", f"{server.url}/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("stock_api_rate_limited_total{"))
    assert 'client="anonymous"' in text and float(line.split()[-1]) >= 1
    assert "key_id" not in text and "reader" not in text  # no key ids in any label
    wait_for_anonymous_tokens()


def test_metrics_on_an_internal_port_leave_the_api_port(framework):
    with framework.client(None) as anonymous, framework.client(READER) as reader:
        stranger, keyed = anonymous.get("/metrics"), reader.get("/metrics")
    assert stranger.status_code == 401 and keyed.status_code == 404
    internal = httpx.get(framework.metrics_url)
    assert internal.status_code == 200
    assert "stock_api_requests_total" in internal.text
    assert 'stock_api_model_alias_version{role="champion"} 1.0' in internal.text
    wait_for_anonymous_tokens()


def test_an_audit_that_finds_nothing_answers_a_fixed_message(server):
    with server.client(READER) as reader:
        answer = reader.get("/v1/audit/AAPL/2010-01-04")
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "not_found",
        "message": "no stored champion prediction for AAPL on 2010-01-04",
    }


def test_a_foreign_preflight_is_refused_in_json(server):
    with server.client(None) as anonymous:
        answer = anonymous.options(
            "/v1/predictions/latest",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        allowed = anonymous.options(
            "/v1/predictions/latest",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
        )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "cors_refused", "message": "Disallowed CORS origin"}
    assert "access-control-allow-origin" not in answer.headers
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("path", [LATEST, "/v1/tickers", "/v1/predictions/AAPL/history"])
def test_head_answers_as_get_without_the_body(server, path):
    with server.client(READER) as reader:
        get, head = reader.get(path), reader.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers["x-data-date"] == get.headers["x-data-date"]
    with server.client(None) as anonymous:
        assert anonymous.head("/health/live").status_code == 200
        assert anonymous.head(LATEST).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/predictions/latest", "GET, HEAD"),
        ("PUT", "/v1/predictions/on-demand", "POST"),
        ("PATCH", "/v1/admin/rollout", "GET, HEAD, PUT"),
    ],
)
def test_method_not_allowed_names_the_allowed_methods(server, method, path, allow):
    with server.client(ADMIN) as admin:
        answer = admin.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert answer.json()["error"] == "method_not_allowed"
