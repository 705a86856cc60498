"""Altair charts of the app; each has a fixed title, which the tests use to find it.

Prices and predictions are separate charts on one date axis: the prediction is in the label's
units (the cross-sectional rank-gaussian score), not in dollars, so one y axis cannot hold both.
"""

from __future__ import annotations

import datetime as dt

import altair as alt
import polars as pl

PRICE_TITLE = "Adjusted price"
PREDICTION_TITLE = "Predictions with conformal interval"
EQUITY_TITLE = "Backtest equity (growth of 1, net of costs)"
IMPORTANCE_TITLE = "Feature importance (gain)"
ROLE_COLORS = alt.Scale(domain=["champion", "challenger"], range=["#1f77b4", "#ff7f0e"])


DATE_AXIS = alt.Axis(format="%b %d", labelOverlap=True)


def _dates(start: dt.date, end: dt.date) -> alt.X:
    domain = [start.isoformat(), end.isoformat()]
    return alt.X("date:T", title=None, axis=DATE_AXIS, scale=alt.Scale(domain=domain))


def price_chart(bars: pl.DataFrame, ticker: str, start: dt.date, end: dt.date) -> alt.Chart:
    """Candles of the adjusted bars: wick from low to high, body from open to close."""
    data = bars.with_columns(
        direction=pl.when(pl.col("adj_close") >= pl.col("adj_open"))
        .then(pl.lit("up"))
        .otherwise(pl.lit("down"))
    )
    color = alt.Color(
        "direction:N",
        scale=alt.Scale(domain=["up", "down"], range=["#2ca02c", "#d62728"]),
        legend=None,
    )
    base = alt.Chart(data).encode(x=_dates(start, end), color=color)
    wick = base.mark_rule().encode(
        y=alt.Y("adj_low:Q", title="adjusted price", scale=alt.Scale(zero=False)),
        y2="adj_high:Q",
    )
    body = base.mark_bar(size=4).encode(
        y="adj_open:Q",
        y2="adj_close:Q",
        tooltip=["date:T", "adj_open:Q", "adj_high:Q", "adj_low:Q", "adj_close:Q", "adj_volume:Q"],
    )
    return (wick + body).properties(title=f"{PRICE_TITLE}: {ticker}", height=260)


def prediction_chart(
    predictions: pl.DataFrame, ticker: str, start: dt.date, end: dt.date
) -> alt.Chart:
    """Each role's prediction as a line, the champion's interval as a band around it."""
    x = _dates(start, end)
    champion = predictions.filter(pl.col("role") == "champion")
    band = (
        alt.Chart(champion)
        .mark_area(opacity=0.2, color="#1f77b4")
        .encode(x=x, y=alt.Y("lower:Q", title="predicted score"), y2="upper:Q")
    )
    lines = (
        alt.Chart(predictions)
        .mark_line(point=True)
        .encode(
            x=x,
            y="prediction:Q",
            color=alt.Color("role:N", scale=ROLE_COLORS, title="role"),
            strokeDash=alt.StrokeDash("role:N", legend=None),
            tooltip=["date:T", "role:N", "prediction:Q", "lower:Q", "upper:Q", "model_version:N"],
        )
    )
    return (band + lines).properties(title=f"{PREDICTION_TITLE}: {ticker}", height=200)


def equity_chart(curves: pl.DataFrame) -> alt.Chart:
    return (
        alt.Chart(curves)
        .mark_line()
        .encode(
            x=alt.X("date:T", title=None, axis=DATE_AXIS),
            y=alt.Y("equity:Q", title="growth of 1", scale=alt.Scale(zero=False)),
            color=alt.Color("book:N", title="book"),
            tooltip=["date:T", "book:N", alt.Tooltip("equity:Q", format=".4f")],
        )
        .properties(title=EQUITY_TITLE, height=260)
    )


def importance_chart(importance: pl.DataFrame, role: str, version: str, top: int = 15):
    data = importance.head(top)
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("gain:Q", title="total gain"),
            y=alt.Y("feature:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
            tooltip=["feature:N", alt.Tooltip("gain:Q", format=",.1f"), "share:Q"],
        )
        .properties(title=f"{IMPORTANCE_TITLE}: {role} v{version}", height=26 * data.height)
    )
