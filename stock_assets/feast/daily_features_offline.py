"""``feast/daily_features_offline``: Feast's offline source, a parquet copy of the gold features.

DuckDB (Feast's offline store here) reads parquet, not Delta: its Delta reader is an extension
downloaded at run time. Each row keeps the Delta version it was read at, so a served value can be
traced to, and reproduced from, the exact table version.

The Feast assets are not partitioned: the store is one artifact, refreshed after each range of
feature sessions. A run of the sensor chain or of the nightly job refreshes the sessions its
partition range names; a run without a range (from the UI) rebuilds the whole store. Partitioned,
they would record one event per session per asset: measured, a 3,270-session range spent over
half an hour writing those events on a busy 2-core machine.
"""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.feast import feature_store as fs
from stock_assets.gold.daily_features import FEATURES_GROUP
from stock_assets.gold.feature_set import ONLINE_FEATURES
from stock_assets.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    partition_date,
)
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_key

OFFLINE_KEY = dg.AssetKey(["feast", "daily_features_offline"])


def sessions_of_run(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> tuple[dt.date, dt.date]:
    """The sessions a run refreshes: its partition range, else every feature session."""
    tags = context.run.tags
    if PARTITION_RANGE_START_TAG in tags:
        start, end = tags[PARTITION_RANGE_START_TAG], tags[PARTITION_RANGE_END_TAG]
        return partition_date(start), partition_date(end)
    if "dagster/partition" in tags:
        day = partition_date(tags["dagster/partition"])
        return day, day
    if not lake.exists(tables.GOLD_DAILY_FEATURES):
        raise FileNotFoundError("gold/daily_features has not been written yet")
    span = lake.scan(tables.GOLD_DAILY_FEATURES).select(
        pl.col("date").min().alias("first"), pl.col("date").max().alias("last")
    )
    return span.collect().row(0)


def snapshot_rows(lake: LakeResource, start, end) -> tuple[pl.DataFrame, int]:
    """Gold rows of ``start..end`` read at one Delta version, with that version on every row."""
    version = lake.version(tables.GOLD_DAILY_FEATURES)
    if version is None:
        raise FileNotFoundError("gold/daily_features has not been written yet")
    gold = lake.read_dates(tables.GOLD_DAILY_FEATURES, start, end, version=version)
    rows = gold.select(
        fs.ENTITY, "date", pl.lit(version, pl.Int64).alias(fs.VERSION), *ONLINE_FEATURES
    )
    return rows, version


@dg.asset(
    key=OFFLINE_KEY,
    deps=[table_key(tables.GOLD_DAILY_FEATURES)],
    group_name=FEATURES_GROUP,
    kinds={"polars", "parquet", "feast"},
    pool=fs.WRITER_POOL,
)
def daily_features_offline(
    context: dg.AssetExecutionContext, lake: LakeResource, feast: FeastResource
) -> dg.MaterializeResult:
    """Copy the selected sessions, read at one Delta version, into the snapshot's month files."""
    start, end = sessions_of_run(context, lake)
    rows, version = snapshot_rows(lake, start, end)
    settings = feast.settings()
    written = fs.write_offline_snapshot(settings, rows, start, end)
    return dg.MaterializeResult(
        metadata={
            "rows": rows.height,
            "tickers": rows[fs.ENTITY].n_unique(),
            "date_range": f"{start}..{end}",
            "feature_table_version": version,
            "month_files_written": len(written),
            "snapshot_glob": dg.MetadataValue.path(str(settings.snapshot_dir / "*.parquet")),
        }
    )
