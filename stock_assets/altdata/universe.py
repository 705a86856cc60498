"""Index membership history and the point-in-time universe (members of the index per session).

``silver/index_membership`` holds membership intervals ``[member_from, member_until)`` (an open
``member_until`` means still a member), replaced as a snapshot each run. ``silver/universe`` expands
them to one row per NYSE session and member, partitioned by month; `restrict_to_members` keeps
only the (ticker, date) rows of a frame whose ticker was in the index that day, which is how
training avoids survivorship bias (a universe fixed at one date keeps only the survivors).
"""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets.altdata import ALTDATA_GROUP
from stock_assets.altdata.common import (
    first_failure,
    month_window,
    monthly_partitions,
    quarantine_frame,
    write_quarantine,
)
from stock_assets.altdata.resources import MembershipSource, today_utc
from stock_assets.market.calendar import trading_days
from stock_assets.resources.lake import LakeResource, month_column
from stock_assets.symbols import TICKER_PATTERN

MEMBERSHIP_TABLE = "silver/index_membership"
MEMBERSHIP_QUARANTINE = "silver/index_membership_quarantine"
UNIVERSE_TABLE = "silver/universe"
MEMBERSHIP_KEY = dg.AssetKey(["silver", "index_membership"])
UNIVERSE_KEY = dg.AssetKey(["silver", "universe"])
UNIVERSE_PARTITIONS = monthly_partitions("1990-01-01")  # the bundled price histories start 1990+
MEMBERSHIP_SCHEMA = {
    "index": pl.String,
    "ticker": pl.String,
    "name": pl.String,
    "member_from": pl.Date,
    "member_until": pl.Date,
}
UNIVERSE_SCHEMA = {"date": pl.Date, "index": pl.String, "ticker": pl.String, "month": pl.String}


def parse_intervals(raw: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed membership intervals and the quarantined rows with reasons."""

    def day(column: str) -> pl.Expr:
        return pl.col(column).str.strip_chars().str.strptime(pl.Date, "%Y-%m-%d", strict=False)

    work = raw.with_columns(day("opt_in").alias("__from"), day("opt_out").alias("__until"))
    reasons = work.select(
        first_failure(
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
    bad = quarantine_frame(raw, reasons, "index")
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


def members_on(intervals: pl.DataFrame, days: list[dt.date]) -> pl.DataFrame:
    """One row per day and member: ``member_from <= day < member_until`` (open end = member)."""
    sessions = pl.DataFrame({"date": days}, schema={"date": pl.Date})
    return (
        sessions.join(intervals, how="cross")
        .filter(
            (pl.col("member_from") <= pl.col("date"))
            & (pl.col("member_until").is_null() | (pl.col("member_until") > pl.col("date")))
        )
        .unique(["date", "index", "ticker"])  # a ticker re-used by two companies at once
        .with_columns(month_column())
        .select(list(UNIVERSE_SCHEMA))
        .cast(UNIVERSE_SCHEMA)
        .sort("date", "ticker")
    )


def restrict_to_members(
    frame: pl.DataFrame,
    universe: pl.DataFrame,
    date_column: str = "date",
    ticker_column: str = "ticker",
) -> pl.DataFrame:
    """Only the rows of ``frame`` whose ticker was an index member on that row's date."""
    members = universe.select(
        pl.col("date").alias(date_column), pl.col("ticker").alias(ticker_column)
    ).unique()
    return frame.join(members, on=[date_column, ticker_column], how="semi")


@dg.asset(
    key=MEMBERSHIP_KEY,
    group_name=ALTDATA_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=8), warn_window=dt.timedelta(days=7, hours=2)
    ),
    metadata={"delta_path": MEMBERSHIP_TABLE, "quarantine_table": MEMBERSHIP_QUARANTINE},
)
def index_membership(
    membership_source: MembershipSource, lake: LakeResource
) -> dg.MaterializeResult:
    """Membership intervals of the configured index (the whole history, replaced each run)."""
    raw = membership_source.intervals()
    intervals, bad = parse_intervals(raw, today_utc())
    write_quarantine(lake, MEMBERSHIP_QUARANTINE, bad)
    version = lake.replace_table(MEMBERSHIP_TABLE, intervals)
    return dg.MaterializeResult(
        metadata={
            "intervals": intervals.height,
            "tickers": intervals["ticker"].n_unique(),
            "current_members": intervals.filter(pl.col("member_until").is_null()).height,
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "delta_version": version,
        }
    )


@dg.asset(
    key=UNIVERSE_KEY,
    deps=[MEMBERSHIP_KEY],
    partitions_def=UNIVERSE_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ALTDATA_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=48), warn_window=dt.timedelta(hours=26)
    ),
    metadata={"delta_path": UNIVERSE_TABLE, "delta_partition_column": "month"},
)
def universe(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Index members on every NYSE session of the selected months."""
    start, end = month_window(context)
    intervals = lake.scan(MEMBERSHIP_TABLE).collect()
    rows = members_on(intervals, trading_days(start, end))
    version = lake.overwrite_dates(UNIVERSE_TABLE, rows.to_arrow(), start, end, ["month"])
    per_day = rows.group_by("date").len()
    return dg.MaterializeResult(
        metadata={
            "rows": rows.height,
            "sessions": per_day.height,
            "min_members": int(per_day["len"].min() or 0),
            "max_members": int(per_day["len"].max() or 0),
            "date_range": f"{start}..{end}",
            "delta_version": version,
        }
    )
