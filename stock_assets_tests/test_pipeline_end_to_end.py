"""Real bars: replay -> Kafka sensor -> bronze -> silver sensor -> silver, gold and Feast online,
counts reconciled."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.bronze.market_bars import MARKET_BARS, encode_bar, market_bars
from stock_assets.bronze.replay import replay
from stock_assets.feast import feature_store as fs
from stock_assets.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.daily_bars import daily_bars
from stock_assets_tests.conftest import (
    bars_between,
    build_silver_from_sensor,
    feast_beside,
    ingest_from_sensor,
    publish,
    run_kafka_sensor,
)

BAD_MESSAGES = [
    (b"AAPL", b"not json at all"),
    (b"AAPL", encode_bar("AAPL", "2010-06-02", 10.0, 9.0, 9.5, 9.8, 100, "t")),  # high < low
    (b"MSFT", b'{"schema_version": 9, "ticker": "MSFT"}'),
    (b"IBM", encode_bar("IBM", "2010-06-31", 1.0, 1.0, 1.0, 1.0, 1, "t")),  # no such day
    (b"GE", encode_bar("GE", "2010-06-03", -1.0, 1.0, 0.5, 1.0, 1, "t")),
]
# a valid message for a day the NYSE was closed: bronze stores it, silver sets it aside
SATURDAY_BAR = (b"KO", encode_bar("KO", "2010-06-05", 53.0, 53.5, 52.5, 53.2, 1000, "t"))


@pytest.fixture
def pipeline(kafka_bootstrap, fresh_topic, tmp_path, monkeypatch):
    topic = fresh_topic(3)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    return topic, kafka, lake, dg.DagsterInstance.ephemeral()


def range_of(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]


def test_real_bars_flow_from_kafka_to_silver_with_every_record_accounted_for(pipeline, sp500):
    topic, kafka, lake, instance = pipeline
    bars = bars_between(sp500, dt.date(2010, 5, 24), dt.date(2010, 6, 11))
    report = replay(kafka, topic, bars, "sp500_2009")
    publish(kafka.bootstrap_servers, topic, [*BAD_MESSAGES, SATURDAY_BAR])
    published = report.sent + len(BAD_MESSAGES) + 1
    assert report.failed == 0 and report.sent == bars.height

    ingest_from_sensor(instance, kafka, lake)
    bronze = lake.read(MARKET_BARS.bronze)
    quarantine = lake.read(MARKET_BARS.quarantine)
    assert bronze.height + quarantine.height == published
    assert quarantine.height == len(BAD_MESSAGES)
    assert sorted(quarantine["payload"].to_list()) == sorted(v for _, v in BAD_MESSAGES)
    assert quarantine["reason"].null_count() == 0
    assert bronze.select("kafka_partition", "kafka_offset").is_duplicated().sum() == 0

    caught_up, _ = run_kafka_sensor(instance, kafka, lake)
    assert isinstance(caught_up, dg.SkipReason) and "holds every offset" in caught_up.skip_message

    requests, _ = build_silver_from_sensor(instance, lake)
    assert [range_of(r) for r in requests] == [("2010-05-24", "2010-06-11")]
    silver = lake.read(tables.DAILY_BARS)
    set_aside = lake.read(tables.DAILY_BARS_QUARANTINE)
    assert silver.height == bars.height
    assert silver.height + set_aside.height == bronze.select("ticker", "date").unique().height
    assert set_aside.select("ticker", "date", "reason", "partition_key").rows() == [
        ("KO", dt.date(2010, 6, 5), "not an NYSE session: weekend", "2010-05-24..2010-06-11")
    ]
    expected = bars.sort("ticker", "date").select(
        "ticker", "date", "open", "high", "low", "close", "volume"
    )
    assert silver.sort("ticker", "date").select(expected.columns).equals(expected)
    materialized = instance.get_materialized_partitions(daily_bars.key)
    assert len(materialized) == bars["date"].n_unique() == 14  # Memorial Day 2010-05-31 excluded

    # the same run adjusted the real 2:1 splits inside the window (ESRX 06-08, GIS 06-09)
    adjusted = lake.read(tables.ADJUSTED_DAILY_BARS).sort("ticker", "date")
    assert adjusted.height == silver.height
    for ticker, split_day in [("ESRX", dt.date(2010, 6, 8)), ("GIS", dt.date(2010, 6, 9))]:
        rows = adjusted.filter(pl.col("ticker") == ticker)
        before = rows.filter(pl.col("date") < split_day).tail(1)
        after = rows.filter(pl.col("date") == split_day)
        assert after["open"].item() / before["close"].item() < 0.6  # raw: a fake -50% night
        assert abs(after["adj_open"].item() / before["adj_close"].item() - 1) < 0.06

    # the same chain served the newest session's features from Feast's online store
    store = fs.open_store(feast_beside(lake).settings())
    newest = lake.read_dates(tables.GOLD_DAILY_FEATURES, dt.date(2010, 6, 11), dt.date(2010, 6, 11))
    online = fs.online_features(
        store,
        newest["ticker"].to_list(),
        dt.timedelta(days=1),
        now=fs.event_time(newest["date"][0]),
    )
    assert online["status"].unique().to_list() == ["fresh"]
    assert online[fs.VERSION].unique().to_list() == [lake.version(tables.GOLD_DAILY_FEATURES)]
    assert online["rsi_14"].to_list() == newest["rsi_14"].fill_nan(None).to_list()


def test_replayed_range_is_stored_once_and_a_correction_wins_in_silver(pipeline, sp500):
    topic, kafka, lake, instance = pipeline
    bars = bars_between(sp500, dt.date(2010, 6, 1), dt.date(2010, 6, 4), ["AAPL", "MSFT", "XOM"])
    replay(kafka, topic, bars, "sp500_2009")
    request = ingest_from_sensor(instance, kafka, lake)
    _, silver_cursor = build_silver_from_sensor(instance, lake)

    # the same run config again (a retry): nothing new is stored
    again = dg.materialize(
        [market_bars],
        run_config=request.run_config,
        resources={"kafka": kafka, "lake": lake},
        instance=instance,
    )
    metadata = again.asset_materializations_for_node("market_bars")[0].metadata
    assert metadata["rows_stored"].value == 0
    assert metadata["rows_skipped_already_stored"].value == bars.height
    assert lake.read(MARKET_BARS.bronze).height == bars.height

    # a vendor correction for one bar: bronze keeps both versions, silver keeps the latest
    original = bars.filter(pl.col("ticker") == "AAPL", pl.col("date") == dt.date(2010, 6, 2))
    _, _, o, h, low, c, v, _ = original.row(0)
    corrected = encode_bar("AAPL", "2010-06-02", o, h, low, c + 0.25, v + 100, "correction")
    publish(kafka.bootstrap_servers, topic, [(b"AAPL", corrected)])
    ingest_from_sensor(instance, kafka, lake)
    requests, _ = build_silver_from_sensor(instance, lake, cursor=silver_cursor)
    assert [range_of(r) for r in requests] == [("2010-06-02", "2010-06-02")]
    silver = lake.read(tables.DAILY_BARS)
    assert silver.height == bars.height
    fixed = silver.filter(pl.col("ticker") == "AAPL", pl.col("date") == dt.date(2010, 6, 2))
    assert fixed["close"].to_list() == [c + 0.25] and fixed["source"].to_list() == ["correction"]
    assert lake.read(MARKET_BARS.bronze).height == bars.height + 1
