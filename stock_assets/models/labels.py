"""Forward-return labels, the day each becomes known, and their cross-sectional normalisation.

Labels look forward by construction, so they are only ever built in memory, inside training and
evaluation, from the adjusted bars available at that moment; they are never written to any
table (a stored label would be a standing invitation to join the future onto the past).

The horizon counts NYSE sessions from the calendar, not rows: when an instrument has no bar on
the session h sessions after t, its label is null instead of being taken from a later bar (a
later bar would silently make it an (h+k)-session return). ``label_known_on`` is that session:
the label of row t is known at the close of t+h, so a model whose cutoff is c may only learn
from rows with ``label_known_on <= c``.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pandas as pd
import polars as pl
from scipy.special import ndtri

from stock_assets.calendar import nyse

HORIZONS = (1, 5)  # sessions ahead the platform predicts
KEY = ["instrument", "date"]
Normalisation = Literal["rank_gauss", "zscore", "none"]


def sessions_after(days: list[dt.date], horizon: int) -> dict[dt.date, dt.date | None]:
    """For each session, the NYSE session ``horizon`` sessions later (None past the calendar)."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least one session, got {horizon}")
    sessions = nyse().sessions
    positions = sessions.searchsorted(pd.DatetimeIndex(days))
    result: dict[dt.date, dt.date | None] = {}
    for day, position in zip(days, positions, strict=True):
        if position >= len(sessions) or sessions[position].date() != day:
            raise ValueError(f"{day} is not an NYSE session")
        later = position + horizon
        result[day] = sessions[later].date() if later < len(sessions) else None
    return result


def forward_returns(bars: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """``adj_close(t+h) / adj_close(t) - 1`` per (instrument, date), t+h the h-th session after t.

    Input: adjusted bars (``instrument, ticker, date, adj_close``, one row per instrument and
    session). Output, one row per input bar: ``instrument, ticker, date, label_known_on,
    forward_return`` (null when the instrument has no bar on ``label_known_on``, or that session
    is not in ``bars`` yet). In memory only: never store it.
    """
    days = sorted(bars["date"].unique().to_list())
    known_on = sessions_after(days, horizon)
    rows = bars.select("instrument", "ticker", "date", "adj_close")
    future = rows.select(
        "instrument", pl.col("date").alias("label_known_on"), future_close="adj_close"
    )
    return (
        rows.with_columns(
            label_known_on=pl.col("date").replace_strict(known_on, return_dtype=pl.Date)
        )
        .join(future, on=["instrument", "label_known_on"], how="left")
        .select(
            "instrument",
            "ticker",
            "date",
            "label_known_on",
            forward_return=pl.col("future_close") / pl.col("adj_close") - 1.0,
        )
        .sort("date", "instrument")
    )


def known_by(frame: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    """Rows whose label is known at the close of ``cutoff`` (null where there was no bar)."""
    return frame.filter(pl.col("label_known_on") <= cutoff)


def normalise_cross_section(
    frame: pl.DataFrame,
    column: str = "forward_return",
    method: Normalisation = "rank_gauss",
    output: str = "label",
) -> pl.DataFrame:
    """Normalise ``column`` per date over the rows given (typically that day's universe members).

    ``rank_gauss`` (the default): average-tie rank r of n non-null values mapped to the normal
    quantile of (r - 0.5) / n. Why: daily returns are heavy-tailed and share a market move no
    stock feature predicts. Ranking removes the market move and caps every outlier (a 40% jump
    counts like the day's top stock, not like 20 of them under a squared loss), the gaussian
    shape gives the regression a well-behaved target with the same scale every day (so days of
    high volatility do not dominate training, and conformal scores stay comparable over time),
    and the order, which the rank IC and the top-k portfolio use, is exactly the return's.
    ``zscore``: (x - mean) / std per date; keeps magnitudes, hence outliers. ``none``: a copy.
    Nulls stay null and do not count in n; a date with one value gets null.
    """
    value = pl.col(column)
    if method == "none":
        return frame.with_columns(value.alias(output))
    if method == "zscore":
        normalised = (value - value.mean().over("date")) / value.std().over("date")
        return frame.with_columns(pl.when(normalised.is_finite()).then(normalised).alias(output))
    if method != "rank_gauss":
        raise ValueError(f"unknown normalisation {method!r}")
    count = value.count().over("date")
    quantile = (value.rank("average").over("date") - 0.5) / count
    gauss = quantile.map_batches(
        lambda q: pl.Series(ndtri(q.to_numpy()), dtype=pl.Float64), return_dtype=pl.Float64
    )
    return frame.with_columns(pl.when(value.is_not_null() & (count > 1)).then(gauss).alias(output))


def labelled_universe(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    method: Normalisation = "rank_gauss",
) -> pl.DataFrame:
    """Feature rows of index members that day, joined with their known label.

    ``labels`` is `forward_returns` output. Rows outside the universe, and rows whose forward
    return is null (no bar on t+h, or t+h not reached yet), are dropped before normalising, so
    each date's label is ranked among the members that have one. Adds ``label_known_on``,
    ``forward_return`` and ``label`` (the normalised target).
    """
    returns = labels.select(*KEY, "label_known_on", "forward_return")
    members = features.filter(pl.col("in_universe").fill_null(False))
    joined = members.join(returns, on=KEY, how="inner").filter(
        pl.col("forward_return").is_not_null() & pl.col("forward_return").is_finite()
    )
    return normalise_cross_section(joined, "forward_return", method, "label").sort(
        "date", "instrument"
    )
