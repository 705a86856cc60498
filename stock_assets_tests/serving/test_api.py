"""The API over HTTP against the delivered state: what it answers is what the lake stores, the
on-demand path is the registered booster on the Feast online row, and the gate holds."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import polars as pl
import pytest

from serving import schemas
from stock_assets import tables
from stock_assets.config import REPO_ROOT
from stock_assets.feast.feature_store import online_features, open_store
from stock_assets.models.audit import prediction_chain
from stock_assets.models.walk_forward import predict
from stock_assets.outputs import RETURN_COLUMNS
from stock_assets_tests.serving.conftest import AB_KEYS, ADMIN, LIMITED, ORIGIN

pytestmark = pytest.mark.timeout(900)  # the first test waits for the delivered state and the API
NEWEST = dt.date(2010, 7, 30)
SOME = ["AAPL", "ADI", "AIG", "AMGN"]  # four of the delivered state's names


def stored(delivered, day=NEWEST, role="champion") -> pl.DataFrame:
    rows = delivered.lake.read_dates(tables.GOLD_PREDICTIONS, day, day)
    return rows.filter(pl.col("role") == role).sort("ticker")


def test_ready_names_the_models_and_the_data_it_serves(api, delivered):
    with api.client() as client:  # the detail answers a key (tests/serving/test_strangers.py)
        live, ready = client.get("/health/live"), client.get("/health/ready")
    assert live.status_code == 200 and live.json()["status"] == "live"
    body = schemas.Ready.model_validate(ready.json())
    assert body.ready and body.reasons == []
    assert body.data_date == NEWEST
    assert (body.champion.version, body.challenger.version) == ("1", "2")
    for table in (tables.GOLD_PREDICTIONS, tables.GOLD_SIGNALS, tables.GOLD_DAILY_FEATURES):
        assert body.table_versions[table.path] == delivered.lake.version(table)
    predicted = delivered.lake.read(tables.GOLD_PREDICTIONS)["ticker"].unique().to_list()
    online = online_features(open_store(delivered.feast), predicted, dt.timedelta(days=5))
    assert body.online_cache["rows"] == online.filter(pl.col("status") != "missing").height > 30


def test_latest_predictions_are_the_stored_rows_with_their_signals(api, delivered):
    with api.client() as client:
        answer = client.get("/v1/predictions/latest", params={"tickers": ",".join(SOME)})
        everything = client.get("/v1/predictions/latest")
        shadow = client.get(
            "/v1/predictions/latest", params={"tickers": "aapl", "role": "challenger"}
        )
    assert answer.status_code == 200, answer.text
    body = schemas.LatestPredictions.model_validate(answer.json())
    assert answer.headers["x-data-date"] == "2010-07-30"
    assert answer.headers["x-model-version"] == "1"
    assert body.data_date == NEWEST and body.model_versions == ["1"]
    lake = stored(delivered).filter(pl.col("ticker").is_in(SOME))
    signals = delivered.lake.read_dates(tables.GOLD_SIGNALS, NEWEST, NEWEST)
    assert [i.ticker for i in body.items] == SOME
    for item in body.items:
        row = lake.filter(pl.col("ticker") == item.ticker).row(0, named=True)
        assert (item.prediction, item.lower, item.upper) == (
            row["prediction"],
            row["lower"],
            row["upper"],
        )
        assert item.model.version == row["model_version"] == "1"
        # expected return (fraction over the horizon) and price (currency of last_close)
        assert {c: getattr(item, c) for c in RETURN_COLUMNS} == {c: row[c] for c in RETURN_COLUMNS}
        assert item.expected_price == pytest.approx(
            row["last_close"] * (1 + row["expected_return"])
        )
        assert item.return_lower_95 < item.return_lower_90 < item.expected_return
        assert item.set_aside is None
        signal = signals.filter(pl.col("ticker") == item.ticker)
        if signal.height:
            assert (item.signal.rank, item.signal.side) == (signal["rank"][0], signal["side"][0])
    all_items = everything.json()["items"]
    assert {i["ticker"] for i in all_items} == set(stored(delivered)["ticker"])
    challenger = shadow.json()
    assert challenger["model_versions"] == ["2"]
    expected = stored(delivered, role="challenger").filter(pl.col("ticker") == "AAPL")
    assert challenger["items"][0]["prediction"] == expected["prediction"][0]
    assert challenger["items"][0]["signal"] is None  # signals rank the champion only


def test_history_over_a_date_range_is_the_stored_history(api, delivered):
    start, end = dt.date(2010, 6, 28), dt.date(2010, 7, 2)
    with api.client() as client:
        answer = client.get(
            "/v1/predictions/AAPL/history",
            params={"start": start.isoformat(), "end": end.isoformat(), "role": "all"},
        )
    body = schemas.History.model_validate(answer.json())
    lake = (
        delivered.lake.read_dates(tables.GOLD_PREDICTIONS, start, end)
        .filter(pl.col("ticker") == "AAPL")
        .sort("date", "role")
    )
    assert [(i.date, i.role, i.prediction) for i in body.items] == list(
        zip(lake["date"], lake["role"], lake["prediction"], strict=True)
    )
    for item, row in zip(body.items, lake.iter_rows(named=True), strict=True):
        assert {c: getattr(item, c) for c in RETURN_COLUMNS} == {c: row[c] for c in RETURN_COLUMNS}
    assert body.set_aside_sessions == []  # none in the delivered state (test_latest sets one)
    assert body.model_versions == ["1", "2"]  # July has the challenger in shadow
    assert {i.role for i in body.items if i.date.month == 7} == {"champion", "challenger"}
    assert all(start <= i.date <= end for i in body.items) and len(body.items) >= 6


def test_tickers_signals_backtest_and_models_are_the_stored_outputs(api, delivered):
    with api.client() as client:
        ticker_list = schemas.Tickers.model_validate(client.get("/v1/tickers").json())
        signals = schemas.Signals.model_validate(client.get("/v1/signals/latest").json())
        backtest = schemas.Backtest.model_validate(client.get("/v1/backtest").json())
        models = schemas.Models.model_validate(client.get("/v1/models").json())
    predicted = delivered.lake.read(tables.GOLD_PREDICTIONS)["ticker"].unique()
    assert {t.ticker for t in ticker_list.tickers} == set(predicted) and len(predicted) > 30
    lake_signals = delivered.lake.read_dates(tables.GOLD_SIGNALS, NEWEST, NEWEST)
    book = lake_signals.filter(pl.col("side") != "none").sort("rank")
    assert [(p.ticker, p.side, p.weight) for p in signals.positions] == list(
        zip(book["ticker"], book["side"], book["weight"], strict=True)
    )
    daily = delivered.lake.read(tables.GOLD_BACKTEST).sort("date")
    assert [d.rank_ic for d in backtest.days] == daily["rank_ic"].to_list()
    assert backtest.summary["days"] == daily.height
    assert models.models["champion"].version == "1" and models.models["challenger"].version == "2"
    # realised quality of the champion's stored predictions: gold/backtest's rank IC, averaged
    champion = next(
        q for q in models.realised_quality if (q.role, q.model_version) == ("champion", "1")
    )
    assert champion.days == daily["rank_ic"].drop_nulls().len()
    assert champion.rank_ic == pytest.approx(daily["rank_ic"].drop_nulls().mean(), abs=1e-12)
    # every t shown is Newey-West's with at least h lags, and says so
    horizon = int(daily["horizon"].max())
    assert backtest.summary["nw_lags"] >= horizon and champion.nw_lags >= horizon
    assert backtest.summary["t_stat_shown"] == f"Newey-West t, {backtest.summary['nw_lags']} lags"
    assert "rank_ic_t_stat" not in backtest.summary  # no plain t
    assert backtest.thin_sessions == [] and signals.session.thin is False
    assert signals.session.names == lake_signals.height


def test_on_demand_is_the_booster_on_the_online_row_and_equals_the_stored_prediction(
    api, delivered
):
    """Same features, same model -> same number: the cached path, the cold Feast path, the
    booster applied here to Feast's online rows, and the prediction stored for that session."""
    with api.client() as client:
        cached = client.post("/v1/predictions/on-demand", json={"tickers": SOME})
        cold = client.post("/v1/predictions/on-demand", json={"tickers": SOME, "source": "feast"})
    assert cached.status_code == 200, cached.text
    body = schemas.OnDemandResponse.model_validate(cached.json())
    assert body.model.role == "champion" and body.model.version == "1"
    assert cached.headers["x-served-model"] == "champion/1"
    assert cold.json()["items"] == [
        {**item, "age_seconds": pytest.approx(item["age_seconds"], abs=120)}
        for item in cached.json()["items"]
    ]
    rows = online_features(open_store(delivered.feast), SOME, dt.timedelta(days=5))
    rows = rows.with_columns(date=pl.lit(NEWEST))
    booster = delivered.registry.load_booster("1")
    expected = dict(zip(SOME, predict(booster, rows)["prediction"], strict=True))
    lake = stored(delivered).filter(pl.col("ticker").is_in(SOME))
    version = delivered.registry.client().get_model_version(delivered.registry.model_name, "1")
    half = float(version.tags["conformal_half_width"])
    for item in body.items:
        assert item.feature_date == NEWEST and item.status == "stale"  # 2010 is long ago
        assert item.prediction == expected[item.ticker]
        row = lake.filter(pl.col("ticker") == item.ticker).row(0, named=True)
        assert item.feature_table_version == row["feature_table_version"]
        assert item.prediction == pytest.approx(row["prediction"], abs=1e-12)
        assert (item.lower, item.upper) == (item.prediction - half, item.prediction + half)
        # the same session and version as the stored row: its return and price figures
        assert {c: getattr(item, c) for c in RETURN_COLUMNS} == {c: row[c] for c in RETURN_COLUMNS}
        assert item.expected_return is not None and item.set_aside is None


def test_audit_returns_the_chain_down_to_kafka_offsets(api, delivered):
    with api.client() as client:
        answer = client.get("/v1/audit/AAPL/2010-07-30")
        missing = client.get("/v1/audit/AAPL/2010-05-03")  # before the first prediction
    assert answer.status_code == 200, answer.text
    body = schemas.AuditOut.model_validate(answer.json())
    chain = prediction_chain(delivered.lake, delivered.registry, "AAPL", NEWEST)
    assert body.prediction["prediction"] == chain.prediction["prediction"]
    assert body.model["version"] == "1"
    assert body.kafka == chain.kafka.to_dicts()
    assert len(body.bronze_bars) == chain.bronze_bars.height > 0
    assert missing.status_code == 404  # a fixed message, no lake path
    assert missing.json()["message"] == "no stored champion prediction for AAPL on 2010-05-03"


def test_keys_are_required_and_checked(api):
    with api.client(None) as anonymous, api.client("sk_not_a_key") as stranger:
        no_key = anonymous.get("/v1/tickers")
        bad_key = stranger.get("/v1/tickers")
    with api.client() as reader:
        not_admin = reader.put("/v1/admin/rollout", json={"challenger_share": 50})
    assert no_key.status_code == 401 and no_key.json()["error"] == "missing_api_key"
    assert bad_key.status_code == 401 and bad_key.json()["error"] == "invalid_api_key"
    assert not_admin.status_code == 403
    for answer in (no_key, bad_key, not_admin):  # refusals name neither the data nor the models
        assert "x-data-date" not in answer.headers and "x-model-version" not in answer.headers


def test_over_the_rate_limit_is_429_with_retry_after(api):
    """The limited key: 0.5 requests/s, burst 2."""
    with api.client(LIMITED) as client:
        answers = [client.get("/v1/signals/latest") for _ in range(4)]
        codes = [a.status_code for a in answers]
        assert codes[:2] == [200, 200] and 429 in codes[2:], codes
        refused = next(a for a in answers if a.status_code == 429)
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        assert refused.json()["error"] == "rate_limited"
        time.sleep(wait + 0.2)
        assert client.get("/v1/signals/latest").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "payload", "fragment"),
    [
        ("get", "/v1/predictions/latest?tickers=AA$PL", None, "malformed"),
        ("get", "/v1/predictions/latest?role=boss", None, "role"),
        ("get", "/v1/predictions/AAPL/history?start=2010-07-02&end=2010-07-01", None, "after"),
        ("get", "/v1/predictions/AAPL/history?start=July", None, "start"),
        ("post", "/v1/predictions/on-demand", {"tickers": []}, "tickers"),
        ("post", "/v1/predictions/on-demand", {"tickers": ["AAPL"], "source": "x"}, "source"),
        (
            "post",
            "/v1/predictions/on-demand",
            {"tickers": [f"T{i}" for i in range(101)]},
            "at most",
        ),
    ],
)
def test_invalid_requests_are_422_with_a_message(api, method, path, payload, fragment):
    with api.client() as client:
        answer = client.request(method.upper(), path, json=payload)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "validation_error"
    assert fragment in body["message"]
    assert body["detail"] and all(d["loc"] and d["msg"] for d in body["detail"])  # one shape


def test_unknown_tickers_are_404(api):
    with api.client() as client:
        for answer in (
            client.get("/v1/predictions/latest", params={"tickers": "AAPL,NOPE"}),
            client.get("/v1/predictions/NOPE/history"),
            client.post("/v1/predictions/on-demand", json={"tickers": ["NOPE"]}),
            client.get("/v1/audit/NOPE/2010-07-30"),
        ):
            assert answer.status_code == 404, answer.text
            assert answer.json() == {
                "error": "unknown_ticker",
                "message": "no predictions for NOPE",
            }


def test_cors_allows_the_configured_origin_only(api):
    with api.client(None) as client:
        preflight = client.options(
            "/v1/predictions/latest",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "X-API-Key"},
        )  # fmt: skip
        foreign = client.options(
            "/v1/predictions/latest",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        simple = client.get("/v1/tickers", headers={"Origin": ORIGIN, "X-API-Key": "wrong"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    assert simple.status_code == 401 and simple.headers["access-control-allow-origin"] == ORIGIN


def role_of(client, secret: str) -> str:
    answer = client.post(
        "/v1/predictions/on-demand", json={"tickers": ["AAPL"]}, headers={"X-API-Key": secret}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert answer.headers["x-served-model"] == f"{body['model']['role']}/{body['model']['version']}"
    return body["model"]["role"]


def test_challenger_share_is_sticky_per_key_and_moves_without_restart(api):
    from serving.settings import ab_bucket

    with api.client(ADMIN) as admin, api.client(None) as client:
        pid = client.get("/health/live").json()["pid"]
        try:
            for share in (0, 30, 60, 100):
                moved = admin.put("/v1/admin/rollout", json={"challenger_share": share})
                assert moved.json()["challenger_share"] == share
                roles = {key_id: role_of(client, secret) for key_id, secret in AB_KEYS.items()}
                expected = {
                    k: "challenger" if ab_bucket(k) < share * 100 else "champion" for k in AB_KEYS
                }
                assert roles == expected, share
                again = {k: role_of(client, AB_KEYS[k]) for k in list(AB_KEYS)[:5]}
                assert again == {k: roles[k] for k in again}  # sticky
                if share == 30:
                    assert 0 < list(roles.values()).count("challenger") < len(AB_KEYS)
            invalid = admin.put("/v1/admin/rollout", json={"challenger_share": 150})
            assert invalid.status_code == 422
        finally:
            admin.put("/v1/admin/rollout", json={"challenger_share": 0})
        assert client.get("/health/live").json()["pid"] == pid


def test_metrics_expose_requests_models_and_realised_quality(api):
    with api.client() as client:
        client.get("/v1/predictions/latest", params={"tickers": "AAPL"})
        client.post("/v1/predictions/on-demand", json={"tickers": ["AAPL"]})
    with api.client(None) as anonymous:
        text = anonymous.get("/metrics").text

    def value(series: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(series + " "))
        return float(line.split()[-1])

    assert value('stock_api_requests_total{route="/v1/predictions/latest",status="200"}') >= 1
    assert value('stock_api_model_requests_total{kind="stored",role="champion",version="1"}') >= 1
    assert (
        value('stock_api_model_requests_total{kind="on_demand",role="champion",version="1"}') >= 1
    )
    assert value('stock_api_model_realised_days{role="champion",version="1"}') > 0
    assert 'stock_api_model_realised_rank_ic{role="challenger",version="2"}' in text
    assert value('stock_api_model_alias_version{role="champion"}') == 1
    assert (
        value("stock_api_data_date_seconds") == dt.datetime(2010, 7, 30, tzinfo=dt.UTC).timestamp()
    )
    bucket = 'stock_api_request_duration_seconds_bucket{le="0.001",route="/v1/predictions/latest"}'
    assert value(bucket) >= 0


def test_the_service_never_imports_dagster():
    code = (
        "import sys, serving, serving.api, serving.__main__, stock_assets.outputs\n"
        "serving.api.create_app()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
