"""Dagster partitions: NYSE sessions for market data, calendar months for alternative data."""

from __future__ import annotations

import datetime as dt
from functools import cache

import dagster as dg
import pandas as pd

from stock_assets.calendar import EXCHANGE_TIMEZONE, FIRST_TRADING_DAY, nyse


@cache
def trading_day_partitions() -> dg.TimeWindowPartitionsDefinition:
    """One partition per NYSE session; weekday holidays and special closures are excluded.

    ``end_offset=1`` keeps today's session addressable, so a bar published at today's close
    already has a partition to land in.
    """
    calendar = nyse()
    weekdays = pd.bdate_range(FIRST_TRADING_DAY, calendar.last_session)
    closed = weekdays.difference(calendar.sessions)
    return dg.TimeWindowPartitionsDefinition(
        start=FIRST_TRADING_DAY,
        fmt="%Y-%m-%d",
        cron_schedule="0 0 * * 1-5",
        timezone=EXCHANGE_TIMEZONE,
        end_offset=1,
        exclusions=[day.to_pydatetime() for day in closed],
    )


def monthly_partitions(start: str) -> dg.MonthlyPartitionsDefinition:
    """Calendar months, with the current (open) month addressable so daily refreshes land."""
    return dg.MonthlyPartitionsDefinition(start_date=start, end_offset=1)


def partition_date(key: str) -> dt.date:
    return dt.date.fromisoformat(key)


def month_key(when: dt.datetime | dt.date) -> str:
    return f"{when.year:04d}-{when.month:02d}-01"


def run_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last calendar day (inclusive) of the partitions a run materializes.

    For sessions that is the first and last session of the range; for months, the first day of
    the first month and the last day of the last month.
    """
    window = context.partition_time_window
    start = window.start.date()
    if isinstance(context.assets_def.partitions_def, dg.MonthlyPartitionsDefinition):
        return start, window.end.date() - dt.timedelta(days=1)
    keys = context.partition_key_range
    return partition_date(keys.start), partition_date(keys.end)


# Run tags Dagster reads to run one range of partitions (as a single-run backfill does); spelled
# out here because the constants live in a private Dagster module.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(start: str, end: str) -> dict[str, str]:
    return {PARTITION_RANGE_START_TAG: start, PARTITION_RANGE_END_TAG: end}
