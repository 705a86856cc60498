"""NYSE sessions from the maintained exchange_calendars library (no Dagster here)."""

from __future__ import annotations

import datetime as dt
from functools import cache

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


def first_trading_day() -> dt.date:
    return dt.date.fromisoformat(FIRST_TRADING_DAY)


def owning_session(day: dt.date) -> dt.date | None:
    """The session whose silver partition owns calendar ``day``: the first session on or after it.

    Every calendar day after the first session belongs to exactly one partition, so a bar dated on
    a weekend or holiday is read, and quarantined, by exactly one silver run. None before the first
    session or after the calendar's last known session.
    """
    calendar = nyse()
    stamp = pd.Timestamp(day)
    if stamp < calendar.first_session or stamp > calendar.last_session:
        return None
    return calendar.date_to_session(stamp, direction="next").date()


def previous_session(day: dt.date) -> dt.date | None:
    """The last session strictly before ``day`` (None before the first one)."""
    calendar = nyse()
    stamp = pd.Timestamp(day)
    if stamp <= calendar.first_session:
        return None
    return calendar.date_to_session(stamp - pd.Timedelta(days=1), direction="previous").date()


def sessions_before(day: dt.date, count: int) -> dt.date:
    """The session ``count`` sessions before ``day`` (the first session if history is shorter)."""
    sessions = nyse().sessions
    position = sessions.searchsorted(pd.Timestamp(day))
    return sessions[max(0, position - count)].date()


def session_numbers(days: list[dt.date]) -> dict[dt.date, int]:
    """Position of each session in the calendar: differences count sessions, not days."""
    sessions = nyse().sessions
    return {d: int(sessions.searchsorted(pd.Timestamp(d))) for d in days}
