"""Assemble the daily feature rows of a date range from adjusted bars and point-in-time context.

Pure functions (no Dagster, no IO): the asset (gold/daily_features.py) reads the inputs, this
module computes, so the streaming path (new sessions as bars arrive) and the nightly batch path
(a trailing range) run the same code. Every join looks backwards (stock_assets.pit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from stock_assets.bronze.datasets import CLOSE_ONLY_SUFFIX
from stock_assets.calendar import session_numbers
from stock_assets.gold.alpha158 import ALPHA158_COLUMNS, alpha158_lookback, compute_alpha158
from stock_assets.gold.feature_set import CROSS_SECTIONAL_SOURCES, MACRO_SERIES, SCHEMA
from stock_assets.gold.indicators import INDICATOR_COLUMNS, compute_indicators, indicator_lookback
from stock_assets.lake import month_column
from stock_assets.pit import earnings_proximity, macro_as_of_wide

# Bars of history a date needs, plus a margin for missing stock-days inside the window.
LOOKBACK_SESSIONS = int(max(indicator_lookback(), alpha158_lookback()) * 1.1) + 10
KEY = ["instrument", "date"]
TECHNICAL = (*INDICATOR_COLUMNS, *ALPHA158_COLUMNS)


@dataclass
class Context:
    """Point-in-time inputs beside the bars; an empty frame means "not available yet"."""

    macro: pl.DataFrame = field(default_factory=pl.DataFrame)  # silver/macro_indicators rows
    sentiment: pl.DataFrame = field(default_factory=pl.DataFrame)  # silver/market_sentiment
    earnings: pl.DataFrame = field(default_factory=pl.DataFrame)  # silver/earnings_calendar
    universe: pl.DataFrame = field(default_factory=pl.DataFrame)  # silver/universe rows
    previous_obv: pl.DataFrame = field(default_factory=pl.DataFrame)  # instrument, date, obv
    first_bars: pl.DataFrame = field(default_factory=pl.DataFrame)  # instrument, first_date

    def missing(self) -> list[str]:
        sources = ("macro", "sentiment", "earnings", "universe")
        return [name for name in sources if getattr(self, name).is_empty()]


def usable_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """Adjusted bars without the rows set aside (silver/adjusted_daily_bars ``set_aside``)."""
    if "set_aside" not in bars.columns:
        return bars
    return bars.filter(pl.col("set_aside").is_null())


def close_only_instruments(bars: pl.DataFrame) -> set[str]:
    """Instruments with any close-only bar in the window get only close-defined features."""
    flagged = bars.filter(pl.col("source").fill_null("").str.ends_with(CLOSE_ONLY_SUFFIX))
    return set(flagged["instrument"].unique().to_list())


def technical_features(bars: pl.DataFrame) -> pl.DataFrame:
    """TA-Lib indicators and Alpha158 per instrument; close-only instruments computed apart."""
    close_only = close_only_instruments(bars)
    parts = []
    for only_close, group in (
        (False, bars.filter(~pl.col("instrument").is_in(close_only))),
        (True, bars.filter(pl.col("instrument").is_in(close_only))),
    ):
        if group.is_empty():
            continue
        if only_close:  # one homogeneous set for the feature modules
            group = group.with_columns(source=pl.lit(f"mixed{CLOSE_ONLY_SUFFIX}"))
        indicators = compute_indicators(group)
        factors = compute_alpha158(group)
        parts.append(
            indicators.join(factors, on=KEY, how="left").with_columns(close_only=pl.lit(only_close))
        )
    if not parts:
        return pl.DataFrame(schema={"instrument": pl.String, "date": pl.Date})
    return pl.concat(parts, how="diagonal_relaxed")


def continue_obv(frame: pl.DataFrame, context: Context, start: dt.date) -> pl.DataFrame:
    """OBV is a running total since an instrument's first bar; a window only knows its changes.

    Where the window holds the instrument's first bar, the computed total is already exact.
    Otherwise the total continues the stored value of the last bar before ``start``; with no
    stored value there, it stays null rather than restarting from zero.
    """
    if "obv" not in frame.columns:
        return frame
    window_first = frame.group_by("instrument").agg(pl.col("date").min().alias("window_first"))
    if context.first_bars.is_empty():
        complete = window_first.head(0)
    else:
        complete = window_first.join(context.first_bars, on="instrument").filter(
            pl.col("window_first") <= pl.col("first_date")
        )
    anchor = (
        frame.filter(pl.col("date") < start)
        .join(complete, on="instrument", how="anti")
        .group_by("instrument")
        .agg(pl.col("date").max().alias("anchor_date"))
    )
    computed = frame.select("instrument", pl.col("date").alias("anchor_date"), "obv")
    anchor = anchor.join(computed.rename({"obv": "computed"}), on=["instrument", "anchor_date"])
    previous = context.previous_obv
    if not previous.is_empty():
        stored = previous.select(
            "instrument", pl.col("date").alias("anchor_date"), pl.col("obv").alias("stored")
        )
        anchor = anchor.join(stored, on=["instrument", "anchor_date"], how="left")
    else:
        anchor = anchor.with_columns(stored=pl.lit(None, pl.Float64))
    return (
        frame.join(anchor, on="instrument", how="left")
        .with_columns(
            obv=pl.when(pl.col("anchor_date").is_null())  # window starts at the first bar
            .then(pl.col("obv"))
            .otherwise(pl.col("obv") - pl.col("computed") + pl.col("stored"))
        )
        .drop("anchor_date", "computed", "stored")
    )


def gap_sessions(bars: pl.DataFrame) -> pl.DataFrame:
    """Sessions since each bar's previous bar (1 when consecutive; null for the first)."""
    numbers = session_numbers(bars["date"].unique().to_list())
    return (
        bars.select(KEY)
        .sort(KEY)
        .with_columns(n=pl.col("date").replace_strict(numbers, return_dtype=pl.Int32))
        .with_columns(sessions_since_previous_bar=pl.col("n").diff().over("instrument"))
        .drop("n")
    )


def with_context(frame: pl.DataFrame, context: Context) -> pl.DataFrame:
    """Universe membership, earnings proximity, macro and market sentiment as of each date."""
    dates = frame.select("date").unique()
    if context.universe.is_empty():
        frame = frame.with_columns(in_universe=pl.lit(None, pl.Boolean))
    else:
        members = context.universe.select("date", "ticker", in_universe=pl.lit(True)).unique()
        frame = frame.join(members, on=["date", "ticker"], how="left").with_columns(
            pl.col("in_universe").fill_null(False)
        )
    if context.earnings.is_empty():
        frame = frame.with_columns(days_to_earnings=None, days_since_earnings=None)
    else:
        frame = earnings_proximity(frame, context.earnings).drop(
            "previous_earnings_date", "next_earnings_date"
        )
    if context.macro.is_empty():
        macro = dates.with_columns(pl.lit(None, pl.Float64).alias(s) for s in MACRO_SERIES)
    else:
        macro = macro_as_of_wide(context.macro, dates, list(MACRO_SERIES))
    frame = frame.join(macro.rename({s: f"macro_{s}" for s in MACRO_SERIES}), on="date")
    return frame.join(market_sentiment_as_of(dates, context.sentiment), on="date", how="left")


def market_sentiment_as_of(dates: pl.DataFrame, sentiment: pl.DataFrame) -> pl.DataFrame:
    """The latest daily tone known by each date (known_from <= date), with its age in days."""
    if sentiment.is_empty():
        return dates.with_columns(
            market_net_tone=pl.lit(None, pl.Float64),
            market_sentiment_age_days=pl.lit(None, pl.Float64),
        )
    known = sentiment.select(
        pl.col("known_from"), pl.col("date").alias("tone_date"), market_net_tone="net_tone"
    ).sort("known_from")
    return (
        dates.sort("date")
        .join_asof(known, left_on="date", right_on="known_from", strategy="backward")
        .select(
            "date",
            "market_net_tone",
            market_sentiment_age_days=(pl.col("date") - pl.col("tone_date")).dt.total_days(),
        )
    )


def cross_sectional(frame: pl.DataFrame) -> pl.DataFrame:
    """Rank (0..1, average ties) and z-score per date over that day's universe members.

    Before membership history is available for a date, over every instrument with a bar.
    """
    members = pl.col("in_universe").fill_null(True)
    columns = []
    for name in CROSS_SECTIONAL_SOURCES:
        value = pl.when(members).then(pl.col(name))
        count = value.count().over("date")
        rank = (value.rank("average").over("date") - 1) / (count - 1)
        z = (value - value.mean().over("date")) / value.std().over("date")
        columns += [
            pl.when(count > 1).then(rank).alias(f"cs_rank_{name}"),
            pl.when(z.is_finite()).then(z).alias(f"cs_z_{name}"),
        ]
    return frame.with_columns(columns)


def assemble(bars: pl.DataFrame, start: dt.date, end: dt.date, context: Context) -> pl.DataFrame:
    """Feature rows (feature_set.SCHEMA) for sessions ``start..end`` from adjusted bars that
    reach ``LOOKBACK_SESSIONS`` back; no value of a row uses data after its date.

    Bars set aside (their price jump undecided that day) get no row and count as missing
    stock-days for the rows after them, so an unadjusted jump never reaches a feature.
    """
    bars = usable_bars(bars)
    technical = technical_features(bars)
    technical = continue_obv(technical, context, start)
    tickers = bars.select(*KEY, "ticker")
    frame = (
        technical.join(gap_sessions(bars), on=KEY, how="left")
        .join(tickers, on=KEY, how="left")
        .filter(pl.col("date").is_between(start, end))
    )
    absent = [name for name in TECHNICAL if name not in frame.columns]
    frame = frame.with_columns(  # skipped for close-only data: absent, so null, never made up
        pl.lit(None, pl.Float64).alias(name) for name in absent
    )
    frame = cross_sectional(with_context(frame, context))
    return (
        frame.with_columns(month_column())
        .select([pl.col(c).cast(t) for c, t in SCHEMA.items()])
        .sort("date", "instrument")
    )
