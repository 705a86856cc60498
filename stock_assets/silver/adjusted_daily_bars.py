"""``silver/adjusted_daily_bars``: continuous prices and volumes across splits and renames.

Point in time (docs/CORPORATE_ACTIONS.md): each row's ``cum_factor`` is the product of the ratios
of the events that were both effective and known on the row's own date
(``max(effective_date, known_from) <= date``; `stock_assets.pit.adjust_bars`). Adjusted prices are
in the instrument's first share (``adj = raw * cum_factor``), so a row never changes after it is
written: an event known on day t changes rows from t on and nothing before. Back-adjusted prices
"as of" a day A come from rows <= A only (`stock_assets.pit.back_adjust`), so a backtest replaying
day A sees exactly what was knowable on A. Raw prices stay in the row for display.

A row whose price jump is undecided on its date (an unexplained gap awaiting review, or a split
before the day its evidence exists) is set aside: null adjusted prices and volume, the reason in
``set_aside`` (the API and the app show it), and no features downstream. The other instruments'
rows go on; only a jump left on a usable row fails the blocking check.
"""

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput, CheckSuite, Rule, markdown
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.pit import adjust_bars
from stock_assets.resources.lake import LakeResource
from stock_assets.silver import MARKET_GROUP
from stock_assets.silver.corporate_actions import (
    EXTREME_GAP,
    overnight_gaps,
    read_events,
    without_genuine_moves,
)
from stock_assets.table_assets import table_asset

CONTINUITY_CHECK = "adjusted_daily_bars_continuous"


def continuity(data: CheckInput) -> tuple[bool, dict]:
    """No adjusted overnight move beyond the extreme threshold unless reviewed as genuine."""
    series = data.frame.filter(pl.col("set_aside").is_null()).select(
        "instrument", "ticker", "date",
        pl.col("adj_open").alias("open"), pl.col("adj_close").alias("close"),
        pl.col("adj_volume").alias("volume"),
    )  # fmt: skip
    extreme = without_genuine_moves(
        overnight_gaps(series).filter(pl.col("overnight_return").abs() > EXTREME_GAP),
        read_events(data.lake),
    )
    sample = extreme.select("instrument", "date", pl.col("overnight_return").round(4))
    return extreme.is_empty(), {
        "rows": data.frame.height,
        "rows_set_aside": data.frame.height - series.height,
        "extreme_adjusted_gaps": extreme.height,
        "sample": markdown(sample),
    }


ADJUSTED_CHECKS = CheckSuite(
    "adjusted_daily_bars_checks",
    tables.ADJUSTED_DAILY_BARS,
    [
        Rule(
            CONTINUITY_CHECK,
            f"no adjusted |overnight return| > {EXTREME_GAP:.0%} unless reviewed",
            continuity,
        )
    ],
    trading_day_partitions(),
)


def with_versions(adjusted: pl.DataFrame, versions: dict[str, int | None]) -> pl.DataFrame:
    """``adjusted`` with the input versions it was computed from on every row."""
    return adjusted.with_columns(
        pl.lit(versions[column], dtype).alias(column)
        for column, dtype in tables.ADJUSTED_BAR_PROVENANCE.items()
    )


@table_asset(
    tables.ADJUSTED_DAILY_BARS,
    group=MARKET_GROUP,
    deps=[tables.DAILY_BARS, tables.CORPORATE_ACTIONS],
    partitions_def=trading_day_partitions(),
)
def adjusted_daily_bars(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    """Adjust the selected trading days; point in time, so other days never need a rewrite."""
    start, end = run_dates(context)
    versions = {  # read at these versions and recorded on every row (the audit's link)
        "daily_bars_version": lake.version(tables.DAILY_BARS),
        "corporate_actions_version": lake.version(tables.CORPORATE_ACTIONS),
    }
    bars = lake.read_dates(tables.DAILY_BARS, start, end, versions["daily_bars_version"])
    events = read_events(lake, versions["corporate_actions_version"])
    adjusted = with_versions(adjust_bars(bars, events), versions)
    checked = ADJUSTED_CHECKS.gate(CheckInput(adjusted, lake, start, end))
    version = lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, adjusted, start, end)
    touched = adjusted.filter(pl.col("cum_factor") != 1.0)
    by_instrument = touched.group_by("instrument").agg(
        rows=pl.len(), cum_factor=pl.col("cum_factor").last()
    )
    set_aside = (
        adjusted.filter(pl.col("set_aside").is_not_null())
        .group_by("instrument", "set_aside")
        .agg(first=pl.col("date").min(), last=pl.col("date").max(), rows=pl.len())
        .sort("first", "instrument")
    )
    return dg.MaterializeResult(
        metadata={
            "rows": adjusted.height,
            "instruments": adjusted["instrument"].n_unique(),
            "rows_with_factor": touched.height,
            "renamed_rows": adjusted.filter(pl.col("instrument") != pl.col("ticker")).height,
            "adjusted_instruments": markdown(by_instrument.sort("instrument"), limit=100),
            "rows_set_aside": int(set_aside["rows"].sum()),
            "set_aside": markdown(set_aside, limit=100),
            "date_range": f"{start}..{end}",
            **versions,
            "delta_version": version,
            **checked,
        }
    )
