"""The bar contract shared by the feature modules: which columns, which order, what is absent.

Features read point-in-time split-adjusted bars (silver/adjusted_daily_bars). Every computation
walks one instrument's bars in date order; rows are sorted explicitly here instead of trusting
the caller, and a missing stock-day stays missing (no row is invented, nothing is carried
forward), so a window of N sessions means the instrument's last N bars.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from stock_assets.bronze.datasets import CLOSE_ONLY_SUFFIX

KEY = ("instrument", "date")
FIELDS = ("open", "high", "low", "close", "volume")
# bar field -> adjusted column the features read
COLUMN = {field: f"adj_{field}" for field in FIELDS}
CLOSE_ONLY = frozenset({"close"})
FULL = frozenset(FIELDS)


def available_fields(bars: pl.DataFrame) -> frozenset[str]:
    """Fields that carry information: close only for ':close_only' sets, all five otherwise.

    Close-only bars repeat the close as open/high/low and store volume 0 because volume is
    absent; features built on those columns would be made up, so they are not computed. A frame
    mixing close-only and full sets is refused: its columns would depend on the mix.
    """
    if "source" not in bars.columns or bars.height == 0:
        return FULL
    sources = bars["source"].fill_null("").unique()
    close_only = sources.str.ends_with(CLOSE_ONLY_SUFFIX)
    if close_only.all():
        return CLOSE_ONLY
    if close_only.any():
        raise ValueError(
            f"bars mix close-only sets {sorted(sources.filter(close_only).to_list())} with full "
            "OHLCV sets; compute each set apart"
        )
    return FULL


def sort_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (instrument, date), by one integer permutation.

    Sorting on (string, date) directly is several times slower. Bars usually arrive in date
    order (partitions are trading days); then a stable sort on the instrument code alone (a
    radix sort in numpy) already leaves each instrument's bars in date order.
    """
    following = pl.col("instrument") == pl.col("instrument").shift(1)
    ordered = (pl.col("instrument") > pl.col("instrument").shift(1)) | (
        following & (pl.col("date") >= pl.col("date").shift(1))
    )
    if frame.select(ordered.slice(1).all()).item():
        return frame
    codes = frame["instrument"].cast(pl.Enum(frame["instrument"].unique().sort()))
    key = codes.to_physical().to_numpy()
    if not frame["date"].is_sorted():
        key = key.astype(np.int64) * 2**32 + frame["date"].to_physical().to_numpy()
    return frame[np.argsort(key, kind="stable")]


def prepare(bars: pl.DataFrame, fields: frozenset[str] = FULL) -> pl.DataFrame:
    """Key + the needed adjusted columns as Float64, sorted by (instrument, date), validated.

    Duplicate (instrument, date) rows and null/NaN inputs are errors: either would silently
    change what a window means.
    """
    columns = [COLUMN[f] for f in FIELDS if f in fields]
    missing = [c for c in (*KEY, *columns) if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    frame = sort_bars(bars.select(*KEY, pl.col(columns).cast(pl.Float64)))
    problems = frame.select(
        duplicate=(
            (pl.col("instrument") == pl.col("instrument").shift(1))
            & (pl.col("date") == pl.col("date").shift(1))
        ).any(),
        missing=pl.any_horizontal(pl.col(columns).is_null() | pl.col(columns).is_nan()).any(),
        null_key=pl.any_horizontal(pl.col(KEY).is_null()).any(),
    ).row(0, named=True)
    if problems["duplicate"]:
        raise ValueError("bars have duplicate (instrument, date) rows")
    if problems["missing"] or problems["null_key"]:
        raise ValueError("bars have null keys or null/NaN adjusted prices/volumes")
    return frame


def last_sessions(bars: pl.DataFrame, sessions: int) -> pl.DataFrame:
    """Each instrument's last ``sessions`` bars: what an incremental computation reads."""
    ordered = sort_bars(bars)
    return ordered.filter(pl.int_range(pl.len()).reverse().over("instrument") < sessions)
