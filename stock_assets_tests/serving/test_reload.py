"""The API follows the pipeline without a restart: a new champion alias, a new version of
gold/predictions and a new rollout file each reach the running process within a few polls.

These tests write to the registry and the lake, so they run their own server on a private copy
of the delivered state."""

from __future__ import annotations

import datetime as dt
import json
import time

import polars as pl
import pytest

from stock_assets import tables
from stock_assets.lake import Lake
from stock_assets.models.registry import ModelRegistry
from stock_assets_tests.serving.conftest import copy_state, key_settings, running

pytestmark = pytest.mark.timeout(900)
NEWEST = dt.date(2010, 7, 30)


@pytest.fixture(scope="module")
def state(delivered, tmp_path_factory):
    root = tmp_path_factory.mktemp("reload") / "state"
    env = copy_state(delivered, root)
    rollout = root / "rollout.json"
    env |= key_settings() | {
        "STOCK_API_POLL_SECONDS": "0.5",
        "STOCK_API_ROLLOUT_FILE": str(rollout),
    }
    return root, env, rollout


@pytest.fixture(scope="module")
def server(state, tmp_path_factory):
    _, env, _ = state
    yield from running(env, tmp_path_factory.mktemp("reload-log") / "api.log")


def eventually(check, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "the running API did not pick the change up"
        time.sleep(0.25)


def on_demand(server) -> dict:
    with server.client() as client:
        answer = client.post("/v1/predictions/on-demand", json={"tickers": ["AAPL"]})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_rollout_file_moves_the_challenger_share(server, state):
    _, _, rollout = state
    assert on_demand(server)["model"]["role"] == "champion"
    rollout.write_text(json.dumps({"challenger_share": 100}))
    served = eventually(lambda: (b := on_demand(server))["model"]["role"] == "challenger" and b)
    assert served["model"]["version"] == "2"
    assert served["assignment"]["challenger_share"] == 100
    rollout.write_text(json.dumps({"challenger_share": 0}))
    eventually(lambda: on_demand(server)["model"]["role"] == "champion")


def test_a_new_champion_alias_is_served_without_restart(server, state, delivered):
    _, env, _ = state
    with server.client() as client:  # readiness's detail answers a key
        pid = client.get("/health/live").json()["pid"]
        assert client.get("/health/ready").json()["champion"]["version"] == "1"
    registry = ModelRegistry(tracking_uri=env["STOCK_MLFLOW_TRACKING_URI"])
    registry.set_alias("champion", "2")

    def champion_two():
        with server.client() as client:
            return client.get("/health/ready").json()["champion"]["version"] == "2"

    eventually(champion_two)
    served = on_demand(server)
    assert served["model"] == {"role": "champion", "name": registry.model_name, "version": "2"}
    # version 2 is July's refit: its stored (shadow) score of the same session, same features
    shadow = delivered.lake.read_dates(tables.GOLD_PREDICTIONS, NEWEST, NEWEST).filter(
        (pl.col("role") == "challenger") & (pl.col("ticker") == "AAPL")
    )
    assert served["items"][0]["prediction"] == pytest.approx(shadow["prediction"][0], abs=1e-12)
    with server.client(None) as client:
        assert client.get("/health/live").json()["pid"] == pid


def test_a_new_predictions_version_is_served_without_restart(server, state):
    root, env, _ = state
    lake = Lake(env["STOCK_LAKE_ROOT"])
    before = lake.version(tables.GOLD_PREDICTIONS)
    with server.client() as client:
        pid = client.get("/health/live").json()["pid"]
        old = client.get("/v1/predictions/latest", params={"tickers": "AAPL"}).json()
    assert old["predictions_table_version"] == before
    day = lake.read_dates(tables.GOLD_PREDICTIONS, NEWEST, NEWEST)
    shifted = day.with_columns(
        (pl.col(c) + 0.25).alias(c) for c in ("prediction", "lower", "upper")
    )
    after = lake.overwrite_dates(tables.GOLD_PREDICTIONS, shifted, NEWEST, NEWEST)
    assert after > before

    def reloaded():
        with server.client() as client:
            body = client.get("/v1/predictions/latest", params={"tickers": "AAPL"}).json()
        return body["predictions_table_version"] == after and body

    new = eventually(reloaded)
    assert new["items"][0]["prediction"] == pytest.approx(old["items"][0]["prediction"] + 0.25)
    assert new["data_date"] == "2010-07-30"
    with server.client() as client:
        assert client.get("/health/ready").json()["table_versions"]["gold/predictions"] == after
        assert client.get("/health/live").json()["pid"] == pid
