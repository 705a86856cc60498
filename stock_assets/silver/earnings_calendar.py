"""``silver/earnings_calendar``: release dates per ticker (proximity: `pit.earnings_proximity`).

The calendar is a small reference table that vendors revise retroactively (a date moved, a
release added), so each run replaces the whole snapshot; Delta time travel keeps earlier ones.
"""

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.checks import (
    CheckInput,
    CheckSuite,
    quarantine_rule,
    row_reasons,
    schema_rule,
    source_quarantine,
    unique_rule,
)
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import EarningsSource, today_utc
from stock_assets.silver import ALTDATA_GROUP, WEEKLY_REFRESH
from stock_assets.symbols import TICKER_PATTERN
from stock_assets.table_assets import table_asset

MAX_YEARS_AHEAD = 2
EARNINGS_SCHEMA = dict(tables.EARNINGS_CALENDAR.schema)


def parse_events(raw: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed ``ticker, earnings_date, source`` rows and the quarantined ones with reasons."""
    date = pl.col("earnings_date").str.strip_chars().str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    work = raw.with_columns(date.alias("__date"), pl.col("ticker").str.strip_chars())
    horizon = today + dt.timedelta(days=366 * MAX_YEARS_AHEAD)
    reasons = work.select(
        row_reasons(
            (~pl.col("ticker").str.contains(TICKER_PATTERN), "ticker is not an upper-case symbol"),
            (pl.col("__date").is_null(), "earnings_date is not a YYYY-MM-DD calendar date"),
            (pl.col("__date") > pl.lit(horizon), "earnings_date is implausibly far ahead"),
            (
                pl.int_range(pl.len()).over("ticker", "__date") > 0,
                "duplicate earnings date for this ticker",
            ),
        )
    ).to_series()
    bad = source_quarantine(raw, reasons, "source")
    good = (
        work.filter(reasons.is_null())
        .select("ticker", pl.col("__date").alias("earnings_date"), "source")
        .cast(EARNINGS_SCHEMA)
        .sort("ticker", "earnings_date")
    )
    return good, bad


EARNINGS_CHECKS = CheckSuite(
    "earnings_calendar_checks",
    tables.EARNINGS_CALENDAR,
    [
        schema_rule(
            "earnings_calendar_schema",
            pa.DataFrameSchema(
                {
                    "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
                    "earnings_date": pa.Column(pl.Date, nullable=False),
                },
                name="earnings_calendar",
            ),
            "symbols and dates well formed",
        ),
        unique_rule("earnings_calendar_unique", ["ticker", "earnings_date"]),
        quarantine_rule("earnings_calendar_quarantine_empty", tables.EARNINGS_CALENDAR_QUARANTINE),
    ],
    whole_table=True,
)


@table_asset(
    tables.EARNINGS_CALENDAR,
    group=ALTDATA_GROUP,
    freshness_policy=WEEKLY_REFRESH,
    extra_metadata={"quarantine_table": tables.EARNINGS_CALENDAR_QUARANTINE.path},
)
def earnings_calendar(earnings_source: EarningsSource, lake: LakeResource) -> dg.MaterializeResult:
    """Every known earnings release date per ticker (the whole calendar, replaced each run)."""
    raw = earnings_source.events()
    events, bad = parse_events(raw, today_utc())
    checked = EARNINGS_CHECKS.gate(CheckInput(events, lake))
    lake.replace_table(tables.EARNINGS_CALENDAR_QUARANTINE, bad)
    version = lake.replace_table(tables.EARNINGS_CALENDAR, events)
    return dg.MaterializeResult(
        metadata={
            "rows": events.height,
            "tickers": events["ticker"].n_unique(),
            "first_date": str(events["earnings_date"].min()),
            "last_date": str(events["earnings_date"].max()),
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "delta_version": version,
            **checked,
        }
    )
