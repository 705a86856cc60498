"""``silver/earnings_calendar``: release dates per ticker (proximity: `pit.earnings_proximity`).

The calendar is a small reference table that vendors revise retroactively (a date moved, a
release added). Each run merges the vendor's snapshot into the stored vintages
(`silver.vintages`): a new date is first seen that day, a vanished one dropped that day, so a
recomputation of a past session sees the calendar as it was known then. A lake's first snapshot
counts each date as known `pit.ANNOUNCE_DAYS` before it (the announcement rule).
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
from stock_assets.pit import ANNOUNCE_DAYS
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import EarningsSource, today_utc
from stock_assets.silver import ALTDATA_GROUP, WEEKLY_REFRESH
from stock_assets.silver.vintages import merge_vintage, vintage_summary
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
        .cast({k: v for k, v in EARNINGS_SCHEMA.items() if k in ("ticker", "earnings_date")})
        .sort("ticker", "earnings_date")
    )
    return good, bad


def merge_calendar(stored: pl.DataFrame, fresh: pl.DataFrame, today: dt.date) -> pl.DataFrame:
    """The stored vintages after today's parsed snapshot (`silver.vintages.merge_vintage`)."""
    announced = pl.col("earnings_date") - pl.duration(days=ANNOUNCE_DAYS)
    backdated = pl.min_horizontal(announced, pl.lit(today))
    merged = merge_vintage(stored, fresh, ["ticker", "earnings_date"], today, backdated)
    return merged.cast(EARNINGS_SCHEMA).sort("ticker", "earnings_date", "first_seen")


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
        unique_rule("earnings_calendar_unique", ["ticker", "earnings_date", "first_seen"]),
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
    """Today's calendar merged into the stored vintages (first seen today, dropped today)."""
    raw = earnings_source.events()
    today = today_utc()
    fresh, bad = parse_events(raw, today)
    events = merge_calendar(lake.read(tables.EARNINGS_CALENDAR), fresh, today)
    checked = EARNINGS_CHECKS.gate(CheckInput(events, lake))
    lake.replace_table(tables.EARNINGS_CALENDAR_QUARANTINE, bad)
    version = lake.replace_table(tables.EARNINGS_CALENDAR, events)
    return dg.MaterializeResult(
        metadata={
            "rows": events.height,
            **vintage_summary(events, today),
            "tickers": events["ticker"].n_unique(),
            "first_date": str(events["earnings_date"].min()),
            "last_date": str(events["earnings_date"].max()),
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "delta_version": version,
            **checked,
        }
    )
