"""The asset graph users rely on: keys, dependencies, partitions, checks, sensors, code links."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import dagster as dg

from stock_assets import tables
from stock_assets.definitions import defs
from stock_assets.table_assets import table_key

REPO = Path(__file__).resolve().parent.parent
FEAST_STORE = {"feast/daily_features_offline", "feast/feature_repo", "feast/daily_features_online"}
MODEL_REGISTRY = {
    "models/challenger",
    "models/champion",
    "models/drift",
    "models/shadow_comparison",
}  # MLflow, not Delta
ASSET_KEYS = {
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
    "gold/daily_features",
    *FEAST_STORE,
    *MODEL_REGISTRY,
    "gold/predictions",
    "gold/signals",
    "gold/backtest",
}


def test_asset_keys_and_dependencies():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == ASSET_KEYS
    # silver's quarantine is a table the daily_bars run writes, not an asset of its own
    assert tables.DAILY_BARS_QUARANTINE.path not in keys
    silver = graph.get(dg.AssetKey(["silver", "daily_bars"]))
    assert silver.parent_keys == {dg.AssetKey(["bronze", "market_bars"])}
    assert silver.group_name == "market"
    assert silver.metadata["quarantine_table"] == tables.DAILY_BARS_QUARANTINE.path


def test_every_asset_key_is_a_catalog_table_with_its_delta_path():
    """Every asset is a Delta table of the catalog, except the Feast store built from them and
    the models, which live in MLflow's registry."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        if key.to_user_string() in FEAST_STORE | MODEL_REGISTRY:
            assert "delta" not in graph.get(key).kinds
            continue
        table = tables.table(key.to_user_string())
        assert table_key(table) == key
        assert graph.get(key).metadata["delta_path"] == table.path


def _stream_module(key: dg.AssetKey) -> str:
    """``bronze/market_bars_quarantine`` -> ``stock_assets/bronze/market_bars.py``."""
    layer, name = key.path
    return f"stock_assets/{layer}/{name.removesuffix('_quarantine')}.py"


def test_every_asset_links_to_the_module_named_after_its_key():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        references = graph.get(key).metadata["dagster/code_references"].code_references
        files = [Path(ref.file_path) for ref in references]
        assert all(f.is_file() for f in files), files
        # the first link is the module the key names, for factory-built bronze assets too
        expected = REPO / _stream_module(key)
        assert files[0] == expected, (key, files)
        module = importlib.import_module(_stream_module(key).removesuffix(".py").replace("/", "."))
        defined = {
            k for value in vars(module).values() if isinstance(value, dg.AssetsDefinition)
            for k in value.keys
        }  # fmt: skip
        assert key in defined, key
        if key.path[0] in ("silver", "gold", "feast", "models"):  # one reference: the asset itself
            (reference,) = references
            lines = expected.read_text().splitlines()[reference.line_number - 1 :]
            header = next(i for i, line in enumerate(lines) if line.startswith("def "))
            assert lines[header].startswith(f"def {key.path[1]}("), lines[header]
            assert all(line.startswith(("@", " ", ")")) for line in lines[:header]), lines[:header]
        else:  # the stream's module first, then the shared Kafka ingest factory
            assert files[1:] == [REPO / "stock_assets/bronze/kafka_assets.py"]


def test_silver_is_partitioned_by_nyse_sessions():
    partitions = (
        defs.resolve_asset_graph().get(dg.AssetKey(["silver", "daily_bars"])).partitions_def
    )
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2012-10-25", "2012-11-02"))
    # Hurricane Sandy closed the NYSE on 29 and 30 October 2012
    assert keys == ["2012-10-25", "2012-10-26", "2012-10-31", "2012-11-01", "2012-11-02"]
    assert not partitions.has_partition_key("2001-09-11")
    assert partitions.has_partition_key("2009-08-21")
    assert partitions.get_first_partition_key() == "1985-01-02"


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
    assert set(specs) - {"daily_bars_ohlc_envelope", "daily_bars_quarantine_empty"} == {
        n for n, s in specs.items() if s.blocking
    }
    assert graph.get(silver_key).freshness_policy is not None


def test_sensors_are_declared_running():
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {
        "market_bars_kafka_sensor",
        "daily_bars_sensor",
        "news_articles_kafka_sensor",
        "drift_refit_sensor",
        "blocking_check_alert_sensor",
        "drift_alert_sensor",
        "stale_data_alert_sensor",
        "strong_signal_alert_sensor",
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


def test_checks_on_whole_table_assets_audit_the_whole_table():
    """A ranged run's tags must not narrow the audit of an asset that rewrites every row."""
    from stock_assets.definitions import CHECK_SUITES

    graph = defs.resolve_asset_graph()
    for suite in CHECK_SUITES:
        unpartitioned = graph.get(suite.asset_key).partitions_def is None
        if unpartitioned and suite.table.date_column is not None:
            assert suite.whole_table, suite.name


def test_the_production_executor_is_k8s_job_executor_from_the_shipped_file(monkeypatch):
    from stock_assets.definitions import build_executor

    assert build_executor() is None  # local runs and tests: Dagster's default
    monkeypatch.setenv("STOCK_K8S_EXECUTOR_CONFIG", str(REPO / "deployment/k8s-job-executor.yaml"))
    executor = build_executor()
    assert executor is not None and executor.name == "k8s"
