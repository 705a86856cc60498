"""What the app reads that `stock_assets.outputs` does not cover yet (candidates to move there).

Plain functions over an `Outputs` reader (its lake and, when pinned, its table versions) and the
model registry: traded and back-adjusted prices with the stock's own volatility for the price
charts, a stored prediction's explanation, the newest date of each table for the
freshness panel, the books' performance from the stored backtest rows, and a booster's feature
importance. No Streamlit and no Dagster here; the app caches what these return.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence

import polars as pl

from stock_assets import tables
from stock_assets.calendar import owning_session
from stock_assets.models.evaluation import portfolio_report
from stock_assets.models.explain import Explanation, explain
from stock_assets.outputs import TRACKED, Outputs
from stock_assets.pit import back_adjust

DAGSTER_UI_DEFAULT = "http://127.0.0.1:3000"
VOLATILITY_SESSIONS = 20  # the stock's own recent volatility: std of this many daily returns
SESSIONS_PER_YEAR = 252
READ_COLUMNS = ["instrument", "date", "open", "high", "low", "close", "volume", "cum_factor",
                "cum_volume_factor", "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume",
                "set_aside"]  # fmt: skip
BAR_COLUMNS = ["date", "open", "high", "low", "close", "volume", "back_close", "daily_return",
               "volatility", "set_aside"]  # fmt: skip
BOOKS = {"long_net": "long", "long_short_net": "long_short", "benchmark": "benchmark"}
# the freshness panel: the tables the outputs track, plus the models' pages in the registry view
MODEL_PAGES = (["models", "challenger"], ["models", "champion"], ["models", "drift"])


def dagster_ui_url() -> str:
    """``STOCK_DAGSTER_UI_URL`` (default the local ``dagster dev``), without a trailing slash."""
    return os.environ.get("STOCK_DAGSTER_UI_URL", DAGSTER_UI_DEFAULT).rstrip("/")


def asset_url(key_path: Sequence[str], base: str | None = None) -> str:
    """An asset's page in the Dagster UI: ``<base>/assets/<key path joined by />``."""
    return f"{base or dagster_ui_url()}/assets/{'/'.join(key_path)}"


def _scan(out: Outputs, table: tables.Table) -> pl.LazyFrame | None:
    """The table at the reader's pinned version (latest when unpinned); None if never written."""
    if out.pins is not None and table.path in out.pins:
        version = out.pins[table.path]
        return None if version is None else out.lake.scan(table, version)
    return out.lake.scan(table) if out.lake.exists(table) else None


def price_bars(
    out: Outputs, ticker: str, start: dt.date, end: dt.date | None = None
) -> pl.DataFrame:
    """One ticker's bars from ``start`` to ``end`` (both ends; open when None) on the bases
    people know: ``open..close, volume`` as traded (raw), ``back_close`` back-adjusted as of
    the newest bar read (`pit.back_adjust`: that bar's back price is its traded price), the
    ``daily_return`` between consecutive bars of the adjusted series, and ``volatility``: the
    annualised standard deviation of the last VOLATILITY_SESSIONS daily returns (null until
    there are that many). Rows whose adjustment was set aside have no return."""
    frame = _scan(out, tables.ADJUSTED_DAILY_BARS)
    if frame is None:
        schema = tables.ADJUSTED_DAILY_BARS.schema
        extra = {"back_close": pl.Float64, "daily_return": pl.Float64, "volatility": pl.Float64}
        return pl.DataFrame(schema={c: extra.get(c) or schema[c] for c in BAR_COLUMNS})
    frame = frame.filter(
        pl.col("month") >= f"{start:%Y-%m}", pl.col("date") >= start, pl.col("ticker") == ticker
    )
    if end is not None:
        frame = frame.filter(pl.col("month") <= f"{end:%Y-%m}", pl.col("date") <= end)
    bars = frame.select(READ_COLUMNS).sort("date").collect()
    if bars.is_empty():
        return bars.with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ("back_close", "daily_return", "volatility")
        ).select(BAR_COLUMNS)
    back = back_adjust(bars, bars["date"].max()).sort("date")
    scale = math.sqrt(SESSIONS_PER_YEAR)
    daily = (pl.col("adj_close") / pl.col("adj_close").shift(1) - 1.0).alias("daily_return")
    return (
        back.with_columns(daily)
        .with_columns(
            volatility=pl.col("daily_return").rolling_std(VOLATILITY_SESSIONS) * scale,
        )
        .select(BAR_COLUMNS)
    )


def target_session(day: dt.date, horizon: int) -> dt.date:
    """The session ``horizon`` sessions after ``day``: when a prediction's return is realised."""
    for _ in range(horizon):
        day = owning_session(day + dt.timedelta(days=1)) or day + dt.timedelta(days=1)
    return day


def forecast(prediction: dict, level: str = "90") -> pl.DataFrame | None:
    """The stored expected price with its ``level``% interval, at the session it is for
    (``date, price, price_lower, price_upper``; currency of ``last_close``); None when the
    row has no price (fewer than 20 sessions of returns behind it)."""
    if prediction.get("expected_price") is None:
        return None
    return pl.DataFrame(
        {
            "date": [target_session(prediction["date"], int(prediction["horizon"]))],
            "price": [prediction["expected_price"]],
            "price_lower": [prediction[f"price_lower_{level}"]],
            "price_upper": [prediction[f"price_upper_{level}"]],
        }
    )


def latest_explanation(out: Outputs, booster_of, ticker: str, top: int = 10):
    """``(stored prediction, Explanation)`` of ``ticker``'s newest champion prediction up to
    the newest full session, from the features it was scored on, with the booster of the
    version that made it (``booster_of(version)``); None when nothing is stored."""
    day = out.latest_session()
    history = out.prediction_history(ticker, end=day) if day else None
    if history is None or history.is_empty():
        return None
    prediction = out.stored_prediction(ticker, history["date"].max())
    features = out.prediction_features(prediction)
    if features.is_empty():
        return None
    why: Explanation = explain(booster_of(prediction["model_version"]), features, top)[0]
    return prediction, why


def newest_dates(out: Outputs) -> pl.DataFrame:
    """Per tracked table: its newest date, its Delta version and its page in the Dagster UI."""
    versions = out.versions()
    rows = []
    for path, table in TRACKED.items():
        frame = _scan(out, table)
        newest = None if frame is None else frame.select(pl.col("date").max()).collect().item()
        rows.append((path, newest, versions.get(path), asset_url(table.key_path)))
    schema = {"table": pl.String, "newest_date": pl.Date, "delta_version": pl.Int64}
    return pl.DataFrame(rows, schema={**schema, "dagster": pl.String}, orient="row")


def book_performance(daily: pl.DataFrame) -> pl.DataFrame:
    """Annualised return, volatility, Sharpe, drawdown, cumulative return and turnover per book,
    from the stored daily backtest rows (the same functions the backtest asset reports with)."""
    if daily.is_empty():
        return pl.DataFrame(schema={"book": pl.String})
    report = portfolio_report(daily)
    return pl.DataFrame([{"book": book, **vars(perf)} for book, perf in report.items()])


def equity_curves(daily: pl.DataFrame) -> pl.DataFrame:
    """Growth of 1 per book (net of costs), long format ``date, book, equity``."""
    if daily.is_empty():
        return pl.DataFrame(schema={"date": pl.Date, "book": pl.String, "equity": pl.Float64})
    wide = daily.sort("date").select(
        "date", *((1.0 + pl.col(c).fill_null(0.0)).cum_prod().alias(b) for c, b in BOOKS.items())
    )
    return wide.unpivot(index="date", variable_name="book", value_name="equity")


def feature_importance(booster) -> pl.DataFrame:
    """A LightGBM booster's total gain per feature, with its share of the total, largest first."""
    gain = booster.feature_importance(importance_type="gain")
    frame = pl.DataFrame(
        {"feature": booster.feature_name(), "gain": [float(g) for g in gain]},
        schema={"feature": pl.String, "gain": pl.Float64},
    )
    total = frame["gain"].sum()
    share = pl.col("gain") / total if total > 0 else pl.lit(0.0)
    return frame.with_columns(share=share).sort("gain", "feature", descending=[True, False])
