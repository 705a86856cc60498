"""Adjusted daily bars: continuous prices and volumes across splits, distributions, renames.

Point in time (docs/CORPORATE_ACTIONS.md): each row's ``cum_factor`` is the product of the
ratios of the events that were both effective and known on the row's own date
(``max(effective_date, known_from) <= date``). Adjusted prices are expressed in the
instrument's first share (``adj = raw * cum_factor``), so a row never changes after it is written:
an event known on day t changes rows from t on and nothing before. Conventional back-adjusted
prices "as of" any day A are derived from rows <= A only (``back_adjust``), so a backtest
replaying day A sees exactly what was knowable on A. Raw prices stay in the row for display.
"""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets.market.assets import DAILY_BARS, DAILY_BARS_KEY, MARKET_GROUP, partition_bounds
from stock_assets.market.calendar import partition_date, trading_day_partitions
from stock_assets.market.corporate_actions import (
    APPLIED,
    CORPORATE_ACTIONS_KEY,
    EXTREME_GAP,
    PRICE_ACTIONS,
    SHARE_ACTIONS,
    overnight_gaps,
    read_events,
    with_instrument,
)
from stock_assets.resources.lake import LakeResource, month_column

ADJUSTED_BARS = "silver/adjusted_daily_bars"
ADJUSTED_BARS_KEY = dg.AssetKey(["silver", "adjusted_daily_bars"])
CONTINUITY_CHECK = "adjusted_daily_bars_continuous"
PRICES = ["open", "high", "low", "close"]
ADJUSTED_COLUMNS = [
    "instrument", "ticker", "date", *PRICES, "volume", "cum_factor", "cum_volume_factor",
    "events_applied", *(f"adj_{p}" for p in PRICES), "adj_volume", "source", "month",
]  # fmt: skip


def _factor_steps(events: pl.DataFrame, as_of: dt.date | None) -> pl.DataFrame:
    """Per instrument, cumulative factors as step functions of the day each event applies from."""
    applied = events.filter(
        pl.col("status").is_in(APPLIED), pl.col("action").is_in(PRICE_ACTIONS)
    ).with_columns(applies_from=pl.max_horizontal("effective_date", "known_from"))
    if as_of is not None:
        applied = applied.filter(pl.col("known_from") <= as_of)
    share = pl.when(pl.col("action").is_in(SHARE_ACTIONS)).then(pl.col("ratio")).otherwise(1.0)
    return (
        applied.sort("instrument", "applies_from")
        .select(
            "instrument",
            pl.col("applies_from").alias("date"),
            cum_factor=pl.col("ratio").log().cum_sum().exp().over("instrument"),
            cum_volume_factor=share.log().cum_sum().exp().over("instrument"),
            events_applied=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("instrument"),
        )
        .unique(["instrument", "date"], keep="last", maintain_order=True)
    )


def adjust_bars(
    bars: pl.DataFrame, events: pl.DataFrame, as_of: dt.date | None = None
) -> pl.DataFrame:
    """Raw bars -> ADJUSTED_COLUMNS; ``as_of`` drops rows and events not yet known on that day."""
    if as_of is not None:
        bars = bars.filter(pl.col("date") <= as_of)
    if "source" not in bars.columns:
        bars = bars.with_columns(source=pl.lit(None, pl.String))
    for column in ("high", "low"):
        if column not in bars.columns:
            bars = bars.with_columns(pl.col("close").alias(column))
    bars = with_instrument(bars, events).sort("date")
    steps = _factor_steps(events, as_of).sort("date")
    joined = bars.join_asof(
        steps, on="date", by="instrument", strategy="backward", check_sortedness=False
    )
    joined = joined.with_columns(
        pl.col("cum_factor", "cum_volume_factor").fill_null(1.0),
        pl.col("events_applied").fill_null(0),
    )
    return (
        joined.with_columns(
            *((pl.col(p) * pl.col("cum_factor")).alias(f"adj_{p}") for p in PRICES),
            adj_volume=pl.col("volume") / pl.col("cum_volume_factor"),
        )
        .with_columns(month_column())
        .select(ADJUSTED_COLUMNS)
        .sort("date", "instrument")
    )


def back_adjust(adjusted: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The conventional back-adjusted view as known on ``as_of``: uses rows <= as_of only.

    Prices are in the share basis of each instrument's last row on or before ``as_of``; that
    row's back-adjusted prices equal its raw prices.
    """
    known = adjusted.filter(pl.col("date") <= as_of).sort("instrument", "date")
    last = pl.col("cum_factor").last().over("instrument")
    last_volume = pl.col("cum_volume_factor").last().over("instrument")
    return known.with_columns(
        *((pl.col(f"adj_{p}") / last).alias(f"back_{p}") for p in PRICES),
        back_volume=pl.col("adj_volume") * last_volume,
    )


@dg.asset(
    key=ADJUSTED_BARS_KEY,
    deps=[DAILY_BARS_KEY, CORPORATE_ACTIONS_KEY],
    partitions_def=trading_day_partitions(),
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=MARKET_GROUP,
    kinds={"polars", "delta"},
    metadata={"delta_path": ADJUSTED_BARS, "delta_partition_column": "month"},
)
def adjusted_daily_bars(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    """Adjust the selected trading days; point in time, so other days never need a rewrite."""
    start, end = partition_bounds(context)
    bars = lake.read_dates(DAILY_BARS, start, end)
    events = read_events(lake)
    adjusted = adjust_bars(bars, events)
    version = lake.overwrite_dates(
        ADJUSTED_BARS, adjusted.to_arrow(), start, end, partition_by=["month"]
    )
    touched = adjusted.filter(pl.col("cum_factor") != 1.0)
    by_instrument = touched.group_by("instrument").agg(
        rows=pl.len(), cum_factor=pl.col("cum_factor").last()
    )
    return dg.MaterializeResult(
        metadata={
            "rows": adjusted.height,
            "instruments": adjusted["instrument"].n_unique(),
            "rows_with_factor": touched.height,
            "renamed_rows": adjusted.filter(pl.col("instrument") != pl.col("ticker")).height,
            "adjusted_instruments": dg.MetadataValue.md(
                by_instrument.sort("instrument").to_pandas().to_markdown(index=False)
                if by_instrument.height
                else "_none_"
            ),
            "date_range": f"{start}..{end}",
            "delta_version": version,
        }
    )


def check_continuity(adjusted: pl.DataFrame, events: pl.DataFrame) -> dg.AssetCheckResult:
    """No adjusted overnight move beyond the extreme threshold unless reviewed as genuine."""
    series = adjusted.select(
        "instrument", "ticker", "date",
        pl.col("adj_open").alias("open"), pl.col("adj_close").alias("close"),
        pl.col("adj_volume").alias("volume"),
    )  # fmt: skip
    reviewed = events.filter(pl.col("status") == "rejected").select(
        "instrument", pl.col("effective_date").alias("date")
    )
    extreme = (
        overnight_gaps(series)
        .filter(pl.col("overnight_return").abs() > EXTREME_GAP)
        .join(reviewed, on=["instrument", "date"], how="anti")
    )
    sample = extreme.select("instrument", "date", pl.col("overnight_return").round(4)).head(20)
    return dg.AssetCheckResult(
        check_name=CONTINUITY_CHECK,
        passed=extreme.is_empty(),
        metadata={
            "rows": adjusted.height,
            "extreme_adjusted_gaps": extreme.height,
            "sample": dg.MetadataValue.md(
                sample.to_pandas().to_markdown(index=False) if sample.height else "_none_"
            ),
        },
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CONTINUITY_CHECK,
            asset=ADJUSTED_BARS_KEY,
            blocking=True,
            description=f"no adjusted |overnight return| > {EXTREME_GAP:.0%} unless reviewed",
        )
    ],
    compute_kind="polars",
)
def adjusted_daily_bars_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    """Unpartitioned (see market/checks.py): one result covering the run's range."""
    op_context = context.op_execution_context
    if op_context.has_partition_key_range:
        keys = op_context.partition_key_range
        adjusted = lake.read_dates(
            ADJUSTED_BARS, partition_date(keys.start), partition_date(keys.end)
        )
    else:
        adjusted = lake.scan(ADJUSTED_BARS).collect()
    yield check_continuity(adjusted, read_events(lake))
