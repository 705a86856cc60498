"""Altair charts of the app; each has a fixed title, which the tests use to find it.

Prices and predictions are separate charts on one date axis: the prediction is in the label's
units (the cross-sectional rank-gaussian score), not in dollars, so one y axis cannot hold both.
Prices are drawn as traded (raw); the returns view is back-adjusted as of its newest bar, so
its last point is the traded close and earlier points are comparable with it.
"""

from __future__ import annotations

import datetime as dt

import altair as alt
import polars as pl

PRICE_TITLE = "Traded price (raw, as printed)"
BACK_TITLE = "Back-adjusted close"
WHY_TITLE = "Why this prediction"
PREDICTION_TITLE = "Predictions with conformal interval"
EQUITY_TITLE = "Backtest equity (growth of 1, net of costs)"
IMPORTANCE_TITLE = "Feature importance (gain)"
ROLE_COLORS = alt.Scale(domain=["champion", "challenger"], range=["#1f77b4", "#ff7f0e"])


DATE_AXIS = alt.Axis(format="%b %d", labelOverlap=True)


def _dates(start: dt.date, end: dt.date) -> alt.X:
    domain = [start.isoformat(), end.isoformat()]
    return alt.X("date:T", title=None, axis=DATE_AXIS, scale=alt.Scale(domain=domain))


def price_chart(
    bars: pl.DataFrame,
    ticker: str,
    start: dt.date,
    end: dt.date,
    forecast: pl.DataFrame | None = None,
) -> alt.Chart:
    """Candles of the traded bars: wick from low to high, body from open to close, and the last
    close as a point. ``forecast`` (``date, price, price_lower, price_upper``: the stored
    expected price and its 90% interval at the session it is for) is a point with its interval."""
    data = bars.with_columns(
        direction=pl.when(pl.col("close") >= pl.col("open"))
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
        y=alt.Y("low:Q", title="traded price ($)", scale=alt.Scale(zero=False)),
        y2="high:Q",
    )
    body = base.mark_bar(size=4).encode(
        y="open:Q",
        y2="close:Q",
        tooltip=["date:T", "open:Q", "high:Q", "low:Q", "close:Q", "volume:Q"],
    )
    last = (
        alt.Chart(data.tail(1))
        .mark_point(shape="diamond", size=80, filled=True, color="black")
        .encode(
            x=_dates(start, end),
            y="close:Q",
            tooltip=["date:T", alt.Tooltip("close:Q", title="last close")],
        )
    )
    layers = [wick, body, last]
    if forecast is not None and forecast.height:
        spot = alt.Chart(forecast).encode(x=_dates(start, end))
        layers += [
            spot.mark_rule(color="#1f77b4").encode(y="price_lower:Q", y2="price_upper:Q"),
            spot.mark_point(color="#1f77b4", filled=True).encode(
                y="price:Q",
                tooltip=[
                    alt.Tooltip("date:T", title="predicted for"),
                    alt.Tooltip("price:Q", title="expected price", format=",.2f"),
                    alt.Tooltip("price_lower:Q", title="90% lower", format=",.2f"),
                    alt.Tooltip("price_upper:Q", title="90% upper", format=",.2f"),
                ],
            ),
        ]
    return alt.layer(*layers).properties(title=f"{PRICE_TITLE}: {ticker}", height=260)


def back_adjusted_chart(bars: pl.DataFrame, ticker: str, start: dt.date, end: dt.date):
    """The returns view: closes back-adjusted as of the newest bar, with each daily return."""
    as_of = bars["date"].max()
    return (
        alt.Chart(bars)
        .mark_line()
        .encode(
            x=_dates(start, end),
            y=alt.Y("back_close:Q", title=f"$ in shares of {as_of}", scale=alt.Scale(zero=False)),
            tooltip=[
                "date:T",
                alt.Tooltip("back_close:Q", format=",.2f"),
                alt.Tooltip("daily_return:Q", format="+.2%"),
                alt.Tooltip("volatility:Q", format=".1%", title="20-session vol, annualised"),
            ],
        )
        .properties(title=f"{BACK_TITLE} as of {as_of}: {ticker}", height=200)
    )


def why_chart(contributions: pl.DataFrame, ticker: str, day: dt.date, version: str):
    """The largest contributions (``feature, value, contribution``) as signed bars."""
    data = contributions.with_columns(
        sign=pl.when(pl.col("contribution") >= 0).then(pl.lit("up")).otherwise(pl.lit("down"))
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title="contribution to the score"),
            y=alt.Y("feature:N", sort=None, title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.Color(
                "sign:N",
                scale=alt.Scale(domain=["up", "down"], range=["#2ca02c", "#d62728"]),
                legend=None,
            ),
            tooltip=[
                "feature:N",
                alt.Tooltip("value:Q", format=",.4g"),
                alt.Tooltip("contribution:Q", format="+.5f"),
            ],  # fmt: skip
        )
        .properties(
            title=f"{WHY_TITLE}: {ticker} {day} (v{version})", height=26 * max(data.height, 1)
        )
    )


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
