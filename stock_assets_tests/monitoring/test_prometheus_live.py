"""A real Prometheus scraping the real API on the delivered state, its rules firing through a
real Alertmanager to a local webhook receiver, and the Grafana dashboard's queries answered
from what was scraped.

The pipeline has no exporter of its own: its state reaches Prometheus as the API's gauges
(`stock_api_table_version` of every table the snapshot reads, `stock_api_data_date_seconds`),
checked here against the delivered Delta tables. The rules run as in monitoring.yaml with
every `for` set to 0s: the expressions are proven on live series here, the durations by the
promtool unit tests.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import polars as pl
import pytest
from deltalake import DeltaTable

from stock_assets.resources.broker import free_port
from stock_assets_tests.deployment.conftest import find
from stock_assets_tests.deployment.test_env_and_monitoring import CLUSTER_METRICS, metrics_in
from stock_assets_tests.monitoring.support import alertmanager, prometheus, rule_groups, write_rules
from stock_assets_tests.serving.conftest import key_settings, running

pytestmark = pytest.mark.timeout(240)


def wait_for(what: str, probe, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s} s")
        time.sleep(0.5)


def query(prom: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def dashboard_queries() -> list[tuple[str, str]]:
    config_map = find("ConfigMap", "stock-platform-dashboard")
    dashboard = json.loads(config_map["data"]["stock-platform.json"])
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


@pytest.fixture(scope="module")
def api(delivered, tmp_path_factory):
    """The API on the delivered state, its metrics on their internal port (as deployed)."""
    port = free_port()
    env = {
        **delivered.env, **key_settings(), "STOCK_API_METRICS_PORT": str(port),
        "STOCK_API_WORKERS": "1",
    }  # fmt: skip
    log = tmp_path_factory.mktemp("monitored-api") / "api.log"
    for server in running(env, log):
        yield server, f"127.0.0.1:{port}"


@pytest.fixture
def prom(api, http_receiver, tmp_path):
    """Alertmanager posting to the local receiver, and Prometheus scraping the API with the
    rules of monitoring.yaml (every `for` 0s); yields Prometheus's URL."""
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    rules = write_rules(tmp_path, groups)
    with (
        alertmanager(tmp_path, f"{http_receiver.url}/alertmanager") as am,
        prometheus(tmp_path, {"stock-api": api[1]}, rules, am) as url,
    ):
        wait_for("scrape", lambda: query(url, 'up{job="stock-api"} == 1'))
        yield url


def test_stale_data_fires_through_alertmanager_to_the_webhook(api, prom, http_receiver):
    # the delivered sessions are years old: the newest predicted session is days behind now
    def posted():
        names = set()
        for request in http_receiver.requests:
            alerts = request.json()["alerts"]
            names |= {a["labels"]["alertname"] for a in alerts if a["status"] == "firing"}
        return names >= expected and names

    expected = {"StockDataVeryStale"}
    if 2 <= (dt.datetime.now(dt.UTC).isoweekday() % 7) <= 6:  # Tuesday to Saturday (UTC)
        expected.add("StockDataStale")
    names = wait_for("alert at the webhook", posted)
    assert "StockDataFreshnessMissing" not in names  # the data date is exported
    request = next(r for r in http_receiver.requests if "StockDataVeryStale" in r.body.decode())
    assert request.path == "/alertmanager"
    body = request.json()
    (alert,) = [a for a in body["alerts"] if a["labels"]["alertname"] == "StockDataVeryStale"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["status"] == "firing"
    assert "The newest predicted session is" in alert["annotations"]["summary"]
    # the same alert as Prometheus sees it
    (firing,) = query(prom, 'ALERTS{alertname="StockDataVeryStale", alertstate="firing"}')
    assert firing["value"][1] == "1"


def test_the_pipeline_state_scraped_is_the_lake_state(api, prom, delivered):
    lake = Path(delivered.env["STOCK_LAKE_ROOT"])
    versions = {
        r["metric"]["table"]: float(r["value"][1])
        for r in wait_for("table versions", lambda: query(prom, "stock_api_table_version"))
    }
    assert versions.get("gold/predictions", -1) >= 0, versions
    for table, version in versions.items():
        if version >= 0:  # -1: a table the snapshot found not written
            assert DeltaTable(str(lake / table)).version() == version, table
    (date,) = query(prom, 'stock_api_data_date_seconds{job="stock-api"}')
    newest = pl.read_delta(str(lake / "gold" / "predictions")).get_column("date").max()
    midnight = dt.datetime.combine(newest, dt.time(), dt.UTC).timestamp()
    assert float(date["value"][1]) == midnight


def test_every_dashboard_query_names_scraped_series_and_answers(api, prom):
    server, _ = api
    with server.client() as client:  # traffic for the request series
        for _ in range(5):
            answer = client.get("/v1/predictions/latest", params={"tickers": "AAPL"})
            assert answer.status_code == 200
    recorded = {r["record"] for g in rule_groups()["groups"] for r in g["rules"] if "record" in r}

    def names():
        answer = httpx.get(f"{prom}/api/v1/label/__name__/values", timeout=10).json()
        have = set(answer["data"])
        return have >= recorded and "stock_api_requests_total" in have and have

    scraped = wait_for("recorded series", names)
    for title, expr in dashboard_queries():
        series = metrics_in(expr)
        cluster = series & CLUSTER_METRICS  # kube-state-metrics and cAdvisor, in the cluster
        assert series - cluster <= scraped, (title, series - cluster - scraped)
        if not cluster:
            # every query on the API's own series answers with data
            wait_for(f"an answer to {title!r}", lambda e=expr: query(prom, e))
