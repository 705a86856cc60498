"""``silver/index_membership``: index membership intervals, kept as vintages.

Intervals are ``[member_from, member_until)``; an open ``member_until`` means still a member.
Each run merges the source's snapshot into the stored vintages (`silver.vintages`): an interval
new in it is first seen that day, one it no longer lists (replaced by a closed or corrected
interval) is dropped that day, so silver/universe.py, expanding them to the members of each
session, gives a past session the members known then. A lake's first snapshot counts each
interval as known from its start (the history as published).
"""

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.checks import (
    CheckInput,
    CheckSuite,
    frame_check,
    quarantine_rule,
    row_reasons,
    schema_rule,
    source_quarantine,
)
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.silver import ALTDATA_GROUP, WEEKLY_REFRESH
from stock_assets.silver.vintages import merge_vintage, vintage_summary
from stock_assets.symbols import TICKER_PATTERN
from stock_assets.table_assets import table_asset

MEMBERSHIP_SCHEMA = dict(tables.INDEX_MEMBERSHIP.schema)


def parse_intervals(raw: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed membership intervals and the quarantined rows with reasons."""

    def day(column: str) -> pl.Expr:
        return pl.col(column).str.strip_chars().str.strptime(pl.Date, "%Y-%m-%d", strict=False)

    work = raw.with_columns(day("opt_in").alias("__from"), day("opt_out").alias("__until"))
    reasons = work.select(
        row_reasons(
            (~pl.col("ticker").str.contains(TICKER_PATTERN), "ticker is not an upper-case symbol"),
            (pl.col("__from").is_null(), "opt_in is not a YYYY-MM-DD calendar date"),
            (
                pl.col("opt_out").is_not_null() & pl.col("__until").is_null(),
                "opt_out is not a YYYY-MM-DD calendar date",
            ),
            (
                pl.col("__until").is_not_null() & (pl.col("__until") <= pl.col("__from")),
                "membership ends on or before the day it starts",
            ),
            (
                pl.col("__from") > pl.lit(today + dt.timedelta(days=366)),
                "opt_in is implausibly far ahead",
            ),
            (
                pl.int_range(pl.len()).over("index", "ticker", "name", "__from") > 0,
                "duplicate interval for this index, company and start",
            ),
        )
    ).to_series()
    bad = source_quarantine(raw, reasons, "index")
    good = (
        work.filter(reasons.is_null())
        .select(
            "index",
            "ticker",
            "name",
            pl.col("__from").alias("member_from"),
            pl.col("__until").alias("member_until"),
        )
        .cast({k: v for k, v in MEMBERSHIP_SCHEMA.items() if k not in ("first_seen", "dropped_on")})
        .sort("index", "ticker", "member_from")
    )
    return good, bad


INTERVAL_KEY = ["index", "ticker", "name", "member_from", "member_until"]


def merge_intervals(stored: pl.DataFrame, fresh: pl.DataFrame, today: dt.date) -> pl.DataFrame:
    """The stored vintages after today's parsed snapshot (`silver.vintages.merge_vintage`)."""
    backdated = pl.min_horizontal(pl.col("member_from"), pl.lit(today))
    merged = merge_vintage(stored, fresh, INTERVAL_KEY, today, backdated)
    return merged.cast(MEMBERSHIP_SCHEMA).sort("index", "ticker", "member_from", "first_seen")


MEMBERSHIP_CHECKS = CheckSuite(
    "index_membership_checks",
    tables.INDEX_MEMBERSHIP,
    [
        schema_rule(
            "index_membership_schema",
            pa.DataFrameSchema(
                {
                    "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
                    "member_from": pa.Column(pl.Date, nullable=False),
                    "member_until": pa.Column(pl.Date, nullable=True),
                },
                checks=[
                    frame_check(
                        pl.col("member_until").is_null()
                        | (pl.col("member_until") > pl.col("member_from")),
                        "interval_not_empty",
                    )
                ],
                name="index_membership",
            ),
            "symbols, non-empty intervals",
        ),
        quarantine_rule("index_membership_quarantine_empty", tables.INDEX_MEMBERSHIP_QUARANTINE),
    ],
)


@table_asset(
    tables.INDEX_MEMBERSHIP,
    group=ALTDATA_GROUP,
    freshness_policy=WEEKLY_REFRESH,
    extra_metadata={"quarantine_table": tables.INDEX_MEMBERSHIP_QUARANTINE.path},
)
def index_membership(
    membership_source: MembershipSource, lake: LakeResource
) -> dg.MaterializeResult:
    """Today's membership intervals merged into the stored vintages."""
    raw = membership_source.intervals()
    today = today_utc()
    fresh, bad = parse_intervals(raw, today)
    intervals = merge_intervals(lake.read(tables.INDEX_MEMBERSHIP), fresh, today)
    checked = MEMBERSHIP_CHECKS.gate(CheckInput(intervals, lake))
    lake.replace_table(tables.INDEX_MEMBERSHIP_QUARANTINE, bad)
    version = lake.replace_table(tables.INDEX_MEMBERSHIP, intervals)
    return dg.MaterializeResult(
        metadata={
            "intervals": intervals.height,
            **vintage_summary(intervals, today),
            "tickers": intervals["ticker"].n_unique(),
            "current_members": intervals.filter(
                pl.col("member_until").is_null() & pl.col("dropped_on").is_null()
            ).height,
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "delta_version": version,
            **checked,
        }
    )
