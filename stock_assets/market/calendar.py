"""NYSE trading days as Dagster partitions, from the maintained exchange_calendars library."""

from __future__ import annotations

import datetime as dt
from functools import cache

import dagster as dg
import exchange_calendars as xcals
import pandas as pd

EXCHANGE = "XNYS"
EXCHANGE_TIMEZONE = "America/New_York"
FIRST_TRADING_DAY = "1985-01-02"  # before every bundled history (MSFT 1986, S&P names 1990)


@cache
def nyse() -> xcals.ExchangeCalendar:
    return xcals.get_calendar(EXCHANGE, start=FIRST_TRADING_DAY)


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """NYSE sessions in ``[start, end]``."""
    sessions = nyse().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    return [session.date() for session in sessions]


def is_trading_day(day: dt.date) -> bool:
    return nyse().is_session(pd.Timestamp(day))


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


def partition_date(key: str) -> dt.date:
    return dt.date.fromisoformat(key)
