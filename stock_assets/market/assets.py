"""Silver daily bars: one row per ticker and NYSE trading day, rebuilt from bronze per partition."""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets.ingestion.assets import BRONZE_BARS_KEY
from stock_assets.ingestion.messages import MARKET_BARS
from stock_assets.market.calendar import EXCHANGE_TIMEZONE, partition_date, trading_day_partitions
from stock_assets.resources.lake import LakeResource, month_column

DAILY_BARS = "silver/daily_bars"
DAILY_BARS_KEY = dg.AssetKey(["silver", "daily_bars"])
MARKET_GROUP = "market"
SILVER_COLUMNS = [
    "ticker", "date", "open", "high", "low", "close", "volume", "source",
    "kafka_partition", "kafka_offset", "month",
]  # fmt: skip


def latest_bar_per_ticker_day(bronze: pl.DataFrame) -> pl.DataFrame:
    """Keep the most recently published version of each ticker-day (corrections win)."""
    return (
        bronze.sort("kafka_timestamp", "kafka_partition", "kafka_offset")
        .unique(subset=["ticker", "date"], keep="last", maintain_order=True)
        .with_columns(month_column())
        .select(SILVER_COLUMNS)
        .sort("date", "ticker")
    )


def partition_bounds(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    keys = context.partition_key_range
    return partition_date(keys.start), partition_date(keys.end)


@dg.asset(
    key=DAILY_BARS_KEY,
    deps=[BRONZE_BARS_KEY],
    partitions_def=trading_day_partitions(),
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=MARKET_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 19 * * 1-5",
        lower_bound_delta=dt.timedelta(hours=3),
        timezone=EXCHANGE_TIMEZONE,
    ),
    metadata={"delta_path": DAILY_BARS, "delta_partition_column": "month"},
)
def daily_bars(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Rebuild the selected trading days from bronze; other days in the table are untouched."""
    start, end = partition_bounds(context)
    bars = latest_bar_per_ticker_day(lake.read_dates(MARKET_BARS.bronze_table, start, end))
    version = lake.overwrite_dates(DAILY_BARS, bars.to_arrow(), start, end, partition_by=["month"])
    return dg.MaterializeResult(
        metadata={
            "rows": bars.height,
            "tickers": bars["ticker"].n_unique(),
            "trading_days_with_bars": bars["date"].n_unique(),
            "date_range": f"{start}..{end}",
            "delta_version": version,
        }
    )
