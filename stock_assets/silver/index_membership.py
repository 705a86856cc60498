"""``silver/index_membership``: index membership intervals, replaced as a snapshot each run.

Intervals are ``[member_from, member_until)``; an open ``member_until`` means still a member.
silver/universe.py expands them to the members of each session.
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
        .cast(MEMBERSHIP_SCHEMA)
        .sort("index", "ticker", "member_from")
    )
    return good, bad


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
    """Membership intervals of the configured index (the whole history, replaced each run)."""
    raw = membership_source.intervals()
    intervals, bad = parse_intervals(raw, today_utc())
    checked = MEMBERSHIP_CHECKS.gate(CheckInput(intervals, lake))
    lake.replace_table(tables.INDEX_MEMBERSHIP_QUARANTINE, bad)
    version = lake.replace_table(tables.INDEX_MEMBERSHIP, intervals)
    return dg.MaterializeResult(
        metadata={
            "intervals": intervals.height,
            "tickers": intervals["ticker"].n_unique(),
            "current_members": intervals.filter(pl.col("member_until").is_null()).height,
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "delta_version": version,
            **checked,
        }
    )
