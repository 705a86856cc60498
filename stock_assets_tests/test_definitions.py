"""The asset graph users rely on: keys, dependencies, partitions, checks, sensors, automation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from stock_assets.definitions import defs

REPO = Path(__file__).resolve().parent.parent


def test_asset_keys_and_dependencies():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        "bronze/market_bars",
        "bronze/market_bars_quarantine",
        "silver/daily_bars",
        "silver/corporate_actions",
        "silver/adjusted_daily_bars",
        "silver/data_quality",
        "bronze/news_articles",
        "bronze/news_articles_quarantine",
        "silver/macro_indicators",
        "silver/news_sentiment",
        "silver/market_sentiment",
        "silver/earnings_calendar",
        "silver/index_membership",
        "silver/universe",
    }
    silver = graph.get(dg.AssetKey(["silver", "daily_bars"]))
    assert silver.parent_keys == {dg.AssetKey(["bronze", "market_bars"])}
    assert silver.group_name == "market"


def test_silver_is_partitioned_by_nyse_sessions():
    partitions = (
        defs.resolve_asset_graph().get(dg.AssetKey(["silver", "daily_bars"])).partitions_def
    )
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2012-10-25", "2012-11-02"))
    # Hurricane Sandy closed the NYSE on 29 and 30 October 2012
    assert keys == ["2012-10-25", "2012-10-26", "2012-10-31", "2012-11-01", "2012-11-02"]
    assert not partitions.has_partition_key("2001-09-11")
    assert partitions.has_partition_key("2009-08-21")


def test_silver_checks_block_downstream_and_freshness_is_declared():
    graph = defs.resolve_asset_graph()
    silver_key = dg.AssetKey(["silver", "daily_bars"])
    specs = {
        key.name: graph.get(key) for key in graph.asset_check_keys if key.asset_key == silver_key
    }
    assert {name for name, node in specs.items() if node.blocking} == {
        "daily_bars_schema",
        "daily_bars_unique_ticker_day",
        "daily_bars_on_partition_trading_days",
    }
    assert set(specs) - {"daily_bars_ohlc_envelope"} == {n for n, s in specs.items() if s.blocking}
    assert graph.get(silver_key).freshness_policy is not None


def test_sensors_are_declared_running():
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {
        "market_bars_kafka_sensor",
        "daily_bars_sensor",
        "news_articles_kafka_sensor",
        "default_automation_condition_sensor",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())


def test_altdata_assets_are_scheduled_running_fresh_and_blocking_checked():
    graph = defs.resolve_asset_graph()
    altdata = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "altdata"}
    assert {k.to_user_string() for k in altdata} == {
        "silver/macro_indicators",
        "silver/news_sentiment",
        "silver/market_sentiment",
        "silver/earnings_calendar",
        "silver/index_membership",
        "silver/universe",
    }
    assert all(graph.get(k).freshness_policy is not None for k in altdata)
    blocking = {c.asset_key for c in graph.asset_check_keys if graph.get(c).blocking}
    assert altdata <= blocking
    assert graph.get(dg.AssetKey(["silver", "market_sentiment"])).parent_keys == {
        dg.AssetKey(["silver", "news_sentiment"])
    }
    assert graph.get(dg.AssetKey(["silver", "universe"])).parent_keys == {
        dg.AssetKey(["silver", "index_membership"])
    }
    schedules = {s.name: s for s in defs.schedules}
    altdata_schedules = {
        "macro_indicators_daily",
        "news_sentiment_daily",
        "universe_daily",
        "earnings_calendar_weekly",
        "index_membership_weekly",
    }
    assert altdata_schedules <= set(schedules)
    assert all(
        schedules[name].default_status == dg.DefaultScheduleStatus.RUNNING
        for name in altdata_schedules
    )


def test_dagster_definitions_validate_passes():
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
