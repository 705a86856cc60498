"""Long real histories from packages: valid bars, honest about what is missing, replayable."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets.cli import build_parser
from stock_assets.ingestion.datasets import CLOSE_ONLY_SUFFIX, DATASETS, load_dataset
from stock_assets.ingestion.messages import encode_bar, parse_bar
from stock_assets.ingestion.replay import replay, select_bars
from stock_assets.market.calendar import trading_days
from stock_assets.market.corporate_actions import (
    build_corporate_actions,
    corporate_actions,
    corporate_actions_checks,
    load_curated,
)
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets_tests.test_pipeline_end_to_end import (
    build_silver_from_sensor,
    ingest_from_sensor,
)

# name: (rows, tickers, first date, last date, close only)
LONG_HISTORIES = {
    "sp500_1990_adjclose": (166_260, 20, dt.date(1990, 1, 2), dt.date(2022, 12, 28), True),
    "msft_1986": (7_983, 1, dt.date(1986, 3, 13), dt.date(2017, 11, 10), False),
    "tsd_ohlcv": (15_174, 5, dt.date(1997, 5, 15), dt.date(2025, 2, 14), False),
}


@pytest.mark.parametrize("name", sorted(LONG_HISTORIES))
def test_long_history_loads_as_valid_bars_on_nyse_sessions(name):
    rows, tickers, first, last, close_only = LONG_HISTORIES[name]
    bars = load_dataset(name)
    assert bars.height == rows and bars["ticker"].n_unique() == tickers
    assert (bars["date"].min(), bars["date"].max()) == (first, last)
    assert bars.null_count().sum_horizontal().item() == 0
    assert not bars.select("ticker", "date").is_duplicated().any()
    assert set(bars["date"].unique()) <= set(trading_days(first, last))
    assert (bars["low"] > 0).all() and (bars["high"] >= bars["low"]).all()
    assert bars["source"].str.ends_with(CLOSE_ONLY_SUFFIX).all() == close_only
    if close_only:  # OHLC collapse onto the close; volume is absent, so 0, never invented
        assert (bars["open"] == bars["close"]).all() and (bars["high"] == bars["close"]).all()
        assert (bars["volume"] == 0).all()
    else:
        assert (bars["volume"] > 0).mean() > 0.99
    for row in bars.sample(200, seed=1).iter_rows():  # the Kafka contract accepts every bar
        assert parse_bar(encode_bar(*row), dt.date.today())[:2] == row[:2]


def test_replay_cli_offers_every_long_history():
    choices = next(
        a.choices
        for a in build_parser()._subparsers._group_actions[0].choices["replay"]._actions
        if a.dest == "dataset"
    )
    assert set(LONG_HISTORIES) <= set(choices) == set(DATASETS)
    assert all(DATASETS[name].licence for name in LONG_HISTORIES)


def test_adjusted_histories_show_no_split_and_unreviewed_gaps_block():
    msft = build_corporate_actions(load_dataset("msft_1986"), load_curated())
    assert msft.select("action", "status").rows() == [("split", "not_observed")]  # 2003 2:1
    tsd = build_corporate_actions(load_dataset("tsd_ohlcv"), load_curated())
    pending = tsd.filter(pl.col("status") == "needs_review")
    assert pending.select("instrument", "effective_date").rows() == [("AMZN", dt.date(2001, 4, 9))]


def test_a_long_history_replays_through_kafka_into_silver(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    topic = fresh_topic(3)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    bars = select_bars("msft_1986", dt.date(1987, 9, 1), dt.date(1987, 11, 30))
    report = replay(kafka, topic, bars, "msft_1986")
    assert report.sent == bars.height == 63 and report.failed == 0
    ingest_from_sensor(instance, kafka, lake)
    build_silver_from_sensor(instance, lake)
    silver = lake.scan("silver/daily_bars").collect().sort("date")
    assert silver.select(bars.columns).equals(bars.sort("date"))
    crash = silver.filter(pl.col("date") == dt.date(1987, 10, 19))  # Black Monday, real data
    assert (
        crash["close"].item()
        < 0.75 * silver.filter(pl.col("date") == dt.date(1987, 10, 16))["close"].item()
    )
    result = dg.materialize(
        [corporate_actions, corporate_actions_checks], resources={"lake": lake}, instance=instance
    )
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
