"""One bad message must not stop the pipeline: an adversarial corpus through the sensor chain.

Real S&P 500 bars with, mixed in, bars dated on weekends and holidays, a correction of an earlier
bar with different values, an exact duplicate, a bar that arrives late and out of order, and
messages the contract rejects. The chain Kafka -> bronze -> silver runs from the sensors to green
blocking checks, and every published message is accounted for exactly once.
"""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.bronze.market_bars import encode_bar
from stock_assets.calendar import is_trading_day
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets_tests.conftest import (
    bars_between,
    build_silver_from_sensor,
    ingest_from_sensor,
    publish,
)

START, END = dt.date(2010, 1, 4), dt.date(2010, 1, 15)
TICKERS = ["AAPL", "MSFT", "IBM", "GE", "XOM", "JPM", "PG", "KO", "WMT", "T"]
LATE = ("XOM", dt.date(2010, 1, 7))  # withheld, then published after silver was built


def message(row: dict, **changes) -> tuple[bytes, bytes]:
    bar = {**row, **changes}
    value = encode_bar(
        bar["ticker"], bar["date"], bar["open"], bar["high"], bar["low"], bar["close"],
        bar["volume"], bar["source"],
    )  # fmt: skip
    return bar["ticker"].encode(), value


@pytest.fixture
def corpus(sp500):
    bars = bars_between(sp500, START, END, TICKERS)
    on = {(r["ticker"], r["date"]): r for r in bars.iter_rows(named=True)}
    base = [message(r) for key, r in on.items() if key != LATE]
    aapl, msft, ibm, ge = (on[(t, dt.date(2010, 1, 8))] for t in ("AAPL", "MSFT", "IBM", "GE"))
    corrected_close = round(on[("AAPL", dt.date(2010, 1, 5))]["close"] * 1.01, 2)
    corrected = on[("AAPL", dt.date(2010, 1, 5))]
    not_sessions = {
        ("AAPL", dt.date(2010, 1, 9)): "not an NYSE session: weekend",  # Saturday
        ("MSFT", dt.date(2010, 1, 10)): "not an NYSE session: weekend",  # Sunday
        ("IBM", dt.date(2010, 1, 18)): "not an NYSE session: holiday or closure",  # MLK day
        ("GE", dt.date(2010, 1, 1)): "not an NYSE session: holiday or closure",  # New Year
    }
    sources = {"AAPL": aapl, "MSFT": msft, "IBM": ibm, "GE": ge}
    mixed = [
        *(message(sources[t], date=str(d)) for t, d in not_sessions),
        message(
            corrected,
            close=corrected_close,
            high=max(corrected["high"], corrected_close),
        ),  # a correction of an earlier bar, different values
        message(on[("MSFT", dt.date(2010, 1, 6))]),  # an exact duplicate
        message(aapl, date="1970-01-02"),  # before the first session partition
        (b"GE", b"{not json"),
        message(ge, low=-1.0),
    ]
    return {
        "first": base + mixed,
        "late": [message(on[LATE])],
        "not_sessions": not_sessions,
        "corrected_close": corrected_close,
        "bronze_rejects": 3,
    }


def test_weekend_holiday_correction_duplicate_and_late_bars_flow_to_green_silver(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch, corpus
):
    topic = fresh_topic(3)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()

    publish(kafka_bootstrap, topic, corpus["first"])
    ingest_from_sensor(instance, kafka, lake)
    first_requests, cursor = build_silver_from_sensor(instance, lake)  # all blocking checks green
    # the Saturday bar belongs to Monday's run; the holiday of 2010-01-18 to 2010-01-19's
    ranges = [(r.tags["dagster/asset_partition_range_start"],
               r.tags["dagster/asset_partition_range_end"]) for r in first_requests]  # fmt: skip
    assert ranges == [("2010-01-04", "2010-01-19")]

    publish(kafka_bootstrap, topic, corpus["late"])
    ingest_from_sensor(instance, kafka, lake)
    late_requests, _ = build_silver_from_sensor(instance, lake, cursor)
    assert [r.tags["dagster/asset_partition_range_start"] for r in late_requests] == ["2010-01-07"]

    ends = kafka.end_offsets(topic)
    bronze = lake.read(tables.BRONZE_MARKET_BARS)
    rejected_at_bronze = lake.read(tables.BRONZE_MARKET_BARS_QUARANTINE)
    silver = lake.read(tables.DAILY_BARS)
    set_aside = lake.read(tables.DAILY_BARS_QUARANTINE)

    # bronze + its quarantine hold every published offset exactly once
    offsets = pl.concat(
        [f.select("kafka_partition", "kafka_offset") for f in (bronze, rejected_at_bronze)]
    )
    assert not offsets.is_duplicated().any()
    assert set(offsets.iter_rows()) == {(p, o) for p, end in ends.items() for o in range(end)}
    assert offsets.height == len(corpus["first"]) + len(corpus["late"])
    assert rejected_at_bronze.height == corpus["bronze_rejects"]
    assert any("date out of range" in r for r in rejected_at_bronze["reason"])

    # silver quarantine holds each non-session bar once, with its reason
    quarantined = {(r["ticker"], r["date"]): r["reason"] for r in set_aside.iter_rows(named=True)}
    assert quarantined == corpus["not_sessions"]
    assert all(is_trading_day(d) for d in silver["date"].unique())

    # every bronze row is in silver, superseded by a later version, or set aside
    latest = bronze.sort("kafka_timestamp", "kafka_partition", "kafka_offset").unique(
        ["ticker", "date"], keep="last"
    )
    key = ["kafka_partition", "kafka_offset"]
    in_silver = latest.join(silver.select(key), on=key, how="semi")
    in_quarantine = latest.join(set_aside.select(key), on=key, how="semi")
    assert in_silver.height + in_quarantine.height == latest.height
    assert bronze.height - latest.height == 2  # the correction's original and the duplicate

    # the correction won, the duplicate is one row, the late bar arrived
    aapl = silver.filter(pl.col("ticker") == "AAPL", pl.col("date") == dt.date(2010, 1, 5))
    assert aapl["close"].to_list() == [corpus["corrected_close"]]
    assert silver.filter(pl.col("ticker") == "MSFT", pl.col("date") == dt.date(2010, 1, 6)).height
    assert silver.filter(pl.col("ticker") == LATE[0], pl.col("date") == LATE[1]).height == 1
    assert silver.height == len(TICKERS) * 10  # ten sessions, every ticker, nothing else
    assert lake.read(tables.ADJUSTED_DAILY_BARS).height == silver.height
