"""Adjusted bars record the silver versions they were computed from, and tables written before
those columns existed gain them as nulls (real Delta tables, real S&P bars of GIS and DHR).

The Kafka path (bronze -> silver with ``bronze_version`` and the record's topic) is tested end
to end in test_prediction_audit.py.
"""

import datetime as dt

import dagster as dg
import polars as pl
import pytest
from deltalake import write_deltalake

from stock_assets import tables
from stock_assets.lake import month_column
from stock_assets.models.audit import SILVER_KEYS, rows_at_recorded_versions
from stock_assets.pit import adjust_bars
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.adjusted_daily_bars import adjusted_daily_bars
from stock_assets_tests.conftest import bars_between, write_silver

FIRST, LAST = dt.date(2010, 6, 1), dt.date(2010, 6, 30)
DAY = dt.date(2010, 6, 15)


def test_old_adjusted_rows_gain_null_versions_and_new_rows_record_theirs(tmp_path, sp500, events):
    lake = LakeResource(root=str(tmp_path / "lake"))
    bars = bars_between(sp500, FIRST, LAST, ["GIS", "DHR"])
    write_silver(lake, bars)
    actions = events.with_columns(month_column("effective_date"))
    lake.replace_table(tables.CORPORATE_ACTIONS, actions)
    # the table as the platform wrote it before the provenance columns existed
    old = adjust_bars(bars, events).drop(*tables.ADJUSTED_BAR_PROVENANCE)
    write_deltalake(lake.uri(tables.ADJUSTED_DAILY_BARS), old.to_arrow(), partition_by=["month"])
    before = lake.version(tables.ADJUSTED_DAILY_BARS)

    result = dg.materialize(
        [adjusted_daily_bars], resources={"lake": lake}, partition_key=DAY.isoformat()
    )
    assert result.success
    stored = lake.read(tables.ADJUSTED_DAILY_BARS)
    assert list(stored.schema) == list(tables.ADJUSTED_DAILY_BARS.schema)
    versions = {
        "daily_bars_version": lake.version(tables.DAILY_BARS),
        "corporate_actions_version": lake.version(tables.CORPORATE_ACTIONS),
    }
    today = stored.filter(pl.col("date") == DAY)
    assert today.height == 2
    for column, version in versions.items():
        assert today[column].to_list() == [version, version]
        assert stored.filter(pl.col("date") != DAY)[column].null_count() == stored.height - 2
    values = [c for c in old.columns if c != "month"]
    assert (
        today.select(values)
        .sort("instrument")
        .equals(old.filter(pl.col("date") == DAY).select(values).sort("instrument"))
    )  # same prices: only the provenance is new
    assert (
        "daily_bars_version"
        not in lake.scan(tables.ADJUSTED_DAILY_BARS, before).collect_schema().names()
    )

    # the audit follows the recorded link, and refuses to guess one that was never recorded
    silver, read_at = rows_at_recorded_versions(
        lake, today, "daily_bars_version", tables.DAILY_BARS, SILVER_KEYS, "today's rows"
    )
    assert read_at == [versions["daily_bars_version"]]
    assert silver.sort("ticker")["close"].to_list() == today.sort("ticker")["close"].to_list()
    older = stored.filter(pl.col("date") == DAY - dt.timedelta(days=1))
    with pytest.raises(LookupError, match="records no silver/daily_bars version"):
        rows_at_recorded_versions(
            lake, older, "daily_bars_version", tables.DAILY_BARS, SILVER_KEYS, "older rows"
        )
    at_old_version = lake.read_dates(tables.ADJUSTED_DAILY_BARS, FIRST, LAST, before)
    with pytest.raises(LookupError, match="records no silver/daily_bars version"):
        rows_at_recorded_versions(
            lake, at_old_version, "daily_bars_version", tables.DAILY_BARS, SILVER_KEYS, "old"
        )
