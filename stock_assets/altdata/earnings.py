"""Earnings calendar: release dates per ticker, and previous/next earnings for any (ticker, date).

The calendar is a small reference table that vendors revise retroactively (a date moved, a
release added), so each run replaces the whole snapshot; Delta time travel keeps earlier ones.
"""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets.altdata import ALTDATA_GROUP
from stock_assets.altdata.common import (
    first_failure,
    quarantine_frame,
    write_quarantine,
)
from stock_assets.altdata.resources import EarningsSource, today_utc
from stock_assets.resources.lake import LakeResource
from stock_assets.symbols import TICKER_PATTERN

EARNINGS_TABLE = "silver/earnings_calendar"
EARNINGS_QUARANTINE = "silver/earnings_calendar_quarantine"
EARNINGS_KEY = dg.AssetKey(["silver", "earnings_calendar"])
ANNOUNCE_DAYS = 28  # companies confirm a release date about four weeks ahead
MAX_YEARS_AHEAD = 2
EARNINGS_SCHEMA = {"ticker": pl.String, "earnings_date": pl.Date, "source": pl.String}


def parse_events(raw: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed ``ticker, earnings_date, source`` rows and the quarantined ones with reasons."""
    date = pl.col("earnings_date").str.strip_chars().str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    work = raw.with_columns(date.alias("__date"), pl.col("ticker").str.strip_chars())
    horizon = today + dt.timedelta(days=366 * MAX_YEARS_AHEAD)
    reasons = work.select(
        first_failure(
            (~pl.col("ticker").str.contains(TICKER_PATTERN), "ticker is not an upper-case symbol"),
            (pl.col("__date").is_null(), "earnings_date is not a YYYY-MM-DD calendar date"),
            (pl.col("__date") > pl.lit(horizon), "earnings_date is implausibly far ahead"),
            (
                pl.int_range(pl.len()).over("ticker", "__date") > 0,
                "duplicate earnings date for this ticker",
            ),
        )
    ).to_series()
    bad = quarantine_frame(raw, reasons, "source")
    good = (
        work.filter(reasons.is_null())
        .select("ticker", pl.col("__date").alias("earnings_date"), "source")
        .cast(EARNINGS_SCHEMA)
        .sort("ticker", "earnings_date")
    )
    return good, bad


def earnings_proximity(
    frame: pl.DataFrame,
    calendar: pl.DataFrame,
    announce_days: int = ANNOUNCE_DAYS,
    date_column: str = "date",
    ticker_column: str = "ticker",
) -> pl.DataFrame:
    """Add previous/next earnings dates and day counts to ``(ticker, date)`` rows.

    ``previous_earnings_date`` is the last release on or before the date. ``next_earnings_date``
    is the first release after it, shown only when it is at most ``announce_days`` ahead: a date
    further out was usually not announced yet, and showing it would leak the future schedule.
    """
    events = calendar.select(
        pl.col("ticker").alias(ticker_column), pl.col("earnings_date").alias("__event")
    ).sort("__event")
    keyed = frame.with_row_index("__row").sort(date_column)
    previous = keyed.join_asof(
        events,
        left_on=date_column,
        right_on="__event",
        by=ticker_column,
        strategy="backward",
        check_sortedness=False,  # both sides sorted on the key overall, so within each ticker
    ).rename({"__event": "previous_earnings_date"})
    upcoming = (
        keyed.select("__row", ticker_column, date_column)
        .with_columns((pl.col(date_column) + pl.duration(days=1)).alias("__after"))
        .sort("__after")
        .join_asof(
            events,
            left_on="__after",
            right_on="__event",
            by=ticker_column,
            strategy="forward",
            check_sortedness=False,
        )
        .select("__row", pl.col("__event").alias("next_earnings_date"))
    )
    days_to_next = (pl.col("next_earnings_date") - pl.col(date_column)).dt.total_days()
    return (
        previous.join(upcoming, on="__row", how="left")
        .with_columns(
            pl.when(days_to_next <= announce_days).then(pl.col("next_earnings_date")),
        )
        .with_columns(
            (pl.col(date_column) - pl.col("previous_earnings_date"))
            .dt.total_days()
            .alias("days_since_earnings"),
            days_to_next.alias("days_to_earnings"),
        )
        .sort("__row")
        .drop("__row")
    )


@dg.asset(
    key=EARNINGS_KEY,
    group_name=ALTDATA_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=8), warn_window=dt.timedelta(days=7, hours=2)
    ),
    metadata={"delta_path": EARNINGS_TABLE, "quarantine_table": EARNINGS_QUARANTINE},
)
def earnings_calendar(earnings_source: EarningsSource, lake: LakeResource) -> dg.MaterializeResult:
    """Every known earnings release date per ticker (the whole calendar, replaced each run)."""
    raw = earnings_source.events()
    events, bad = parse_events(raw, today_utc())
    write_quarantine(lake, EARNINGS_QUARANTINE, bad)
    version = lake.replace_table(EARNINGS_TABLE, events)
    return dg.MaterializeResult(
        metadata={
            "rows": events.height,
            "tickers": events["ticker"].n_unique(),
            "first_date": str(events["earnings_date"].min()),
            "last_date": str(events["earnings_date"].max()),
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "delta_version": version,
        }
    )
