"""The analyst app: one ticker's prices and predictions, the newest signals, the backtest, the
champion and challenger with their feature importance, and how fresh the data are.

    streamlit run app/streamlit_app.py --server.port 8501

It reads only what the pipeline stored (the Delta tables through `stock_assets.outputs` and
`app.readers`, the MLflow registry) and never imports Dagster, so it runs beside the pipeline
with nothing but ``STOCK_LAKE_ROOT`` and the MLflow settings (docs/APP.md). Each rerun pins the
tables' Delta versions once, so every panel shows the same moment; reads are cached by those
versions and a model's booster by its registered version.
"""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
import streamlit as st

from app import charts, readers
from stock_assets import config
from stock_assets.lake import Lake
from stock_assets.models.registry import ModelRegistry, settings_from_env
from stock_assets.outputs import CHALLENGER, CHAMPION, ModelCard, Outputs

DEFAULT_TICKER = "AAPL"
PRICE_LOOKBACK = dt.timedelta(days=90)  # bars shown before the first prediction
Pins = tuple[tuple[str, int | None], ...]
# how often an open page checks the tables' versions; it redraws when the pipeline wrote one
REFRESH_SECONDS = float(os.environ.get("STOCK_APP_REFRESH_SECONDS", "30"))


def reader(root: str, pins: Pins) -> Outputs:
    return Outputs(Lake(root), None, dict(pins))


# -- cached reads: keyed by the lake and the pinned table versions ---------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def tickers(root: str, pins: Pins) -> pl.DataFrame:
    return reader(root, pins).tickers()


@st.cache_data(show_spinner=False, max_entries=256)
def ticker_view(root: str, pins: Pins, ticker: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(both roles' stored predictions, the traded and back-adjusted bars from before the
    first of them, with the stock's own volatility)."""
    out = reader(root, pins)
    history = out.prediction_history(ticker, role=None)
    start = (history["date"].min() if history.height else dt.date.today()) - PRICE_LOOKBACK
    return history, readers.price_bars(out, ticker, start)


@st.cache_data(show_spinner=False, max_entries=256)
def why(root: str, pins: Pins, ticker: str, tracking_uri: str, artifact_location: str):
    """The newest champion prediction's explanation (booster of the version that made it)."""
    return readers.latest_explanation(
        reader(root, pins), lambda v: booster(tracking_uri, artifact_location, v), ticker
    )


@st.cache_data(show_spinner=False, max_entries=32)
def latest_session(root: str, pins: Pins) -> dict:
    out = reader(root, pins)
    return out.session_status(out.latest_session())


@st.cache_data(show_spinner=False, max_entries=32)
def signals(root: str, pins: Pins) -> pl.DataFrame:
    return reader(root, pins).signals()


@st.cache_data(show_spinner=False, max_entries=32)
def backtest(root: str, pins: Pins) -> pl.DataFrame:
    return reader(root, pins).backtest()


@st.cache_data(show_spinner=False, max_entries=32)
def thin_sessions(root: str, pins: Pins) -> pl.DataFrame:
    return reader(root, pins).thin_sessions()


@st.cache_data(show_spinner=False, max_entries=32)
def realised_quality(root: str, pins: Pins) -> pl.DataFrame:
    return reader(root, pins).realised_quality()


@st.cache_data(show_spinner=False, max_entries=32)
def freshness(root: str, pins: Pins) -> pl.DataFrame:
    return readers.newest_dates(reader(root, pins))


# -- the registry: aliases may move (short TTL), a version's model never changes -------------
@st.cache_data(show_spinner=False, ttl=60)
def model_cards(tracking_uri: str, artifact_location: str) -> dict[str, ModelCard | None]:
    registry = ModelRegistry(tracking_uri=tracking_uri, artifact_location=artifact_location)
    return Outputs(Lake(config.lake_root()), registry).models()


@st.cache_resource(show_spinner="Loading the model from MLflow...", max_entries=8)
def booster(tracking_uri: str, artifact_location: str, version: str):
    registry = ModelRegistry(tracking_uri=tracking_uri, artifact_location=artifact_location)
    return registry.load_booster(version)


@st.cache_data(show_spinner=False, max_entries=8)
def importance(tracking_uri: str, artifact_location: str, version: str) -> pl.DataFrame:
    return readers.feature_importance(booster(tracking_uri, artifact_location, version))


# -- panels ----------------------------------------------------------------------------------
def _signed(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def _thin_note(status: dict) -> None:
    if status.get("thin"):
        st.warning(
            f"{status['date']} is a thin session ({status['names']} names, below the signals' "
            "floor): its figures are shown but no signals or backtest day stand on them."
        )


def ticker_panel(root: str, pins: Pins, ticker: str) -> None:
    st.header(f"{ticker}: price and predictions")
    history, bars = ticker_view(root, pins, ticker)
    session = latest_session(root, pins)
    shown = history.filter(pl.col("role") == CHAMPION)
    if session["date"] is not None:
        shown = shown.filter(pl.col("date") <= session["date"])  # latest: a full session
    latest = shown.tail(1)
    newest = signals(root, pins).filter(pl.col("ticker") == ticker)
    cells, second = st.columns(4), st.columns(4)
    if latest.height:
        row = latest.row(0, named=True)
        cells[0].metric("Champion prediction", _signed(row["prediction"]))
        cells[1].metric(
            f"Interval ({row['interval_level']:.0%})", f"{row['lower']:+.2f} .. {row['upper']:+.2f}"
        )
        cells[3].metric("Predicted session", row["date"].isoformat())
        if row["date"] != session["date"]:
            st.caption(f"{ticker} has no prediction for {session['date']}: its latest is shown.")
        _thin_note(reader(root, pins).session_status(row["date"]))
    later = history.filter(pl.col("role") == CHAMPION, pl.col("date") > latest["date"].max())
    thin = thin_sessions(root, pins).join(later.select("date"), on="date")
    if latest.height and thin.height:
        days = ", ".join(f"{d} ({n} names)" for d, n in thin.iter_rows())
        st.warning(
            f"Newer predictions of {ticker} on thin sessions, below the signals' floor: {days}. "
            "They are drawn in the predictions chart but are not its latest."
        )
    if latest.height:
        returns_panel(row, second)
    set_aside_note(bars, latest["date"].max() if latest.height else None, ticker)
    if newest.height:
        signal = newest.row(0, named=True)
        cells[2].metric("Signal", f"{signal['side']} (rank {signal['rank']})")
    if bars.is_empty() and history.is_empty():
        st.info(f"Nothing stored for {ticker} yet.")
        return
    if bars.height:
        last = bars.row(bars.height - 1, named=True)
        second[0].metric(f"Last traded close ({last['date']})", f"{last['close']:,.2f}")
        vol = bars["volatility"].drop_nulls()
        second[1].metric(
            f"Volatility ({readers.VOLATILITY_SESSIONS} sessions, annualised)",
            f"{vol[-1]:.1%}" if vol.len() else "n/a",
        )
    dates = [d for d in (bars["date"].min(), history["date"].min()) if d is not None]
    ends = [d for d in (bars["date"].max(), history["date"].max()) if d is not None]
    start, end = min(dates), max(ends)
    spot = readers.forecast(latest.row(0, named=True)) if latest.height else None
    end = max(end, spot["date"][0]) if spot is not None else end
    st.altair_chart(charts.price_chart(bars, ticker, start, end, spot), width="stretch")
    st.altair_chart(charts.back_adjusted_chart(bars, ticker, start, end), width="stretch")
    st.caption(
        "Top: prices as traded; the blue point is the expected price at the session it is for, "
        "with its 90% interval (currency of the last close). Below: closes back-adjusted for "
        "splits and distributions as of "
        f"{bars['date'].max()} (that day's close equals its traded close; earlier closes are in "
        "today's share basis, so their changes are returns). Volatility: standard deviation of "
        f"the last {readers.VOLATILITY_SESSIONS} daily returns x sqrt(252)."
    )
    st.altair_chart(charts.prediction_chart(history, ticker, start, end), width="stretch")
    thin = thin_sessions(root, pins).join(history.select("date").unique(), on="date")
    flagged = (
        f" Thin sessions drawn (below the signals' floor): {thin.height}." if thin.height else ""
    )
    st.caption(
        "Scores are in the label's units (cross-sectional rank-gaussian of the forward return); "
        f"the band is the champion's split-conformal interval.{flagged}"
    )
    why_panel(root, pins, ticker)
    with st.expander("Stored predictions"):
        st.dataframe(history.sort("date", "role", descending=[True, False]), hide_index=True)


def returns_panel(row: dict, cells) -> None:
    """The expected return over the horizon and its intervals in percent, the implied price
    (currency of the last close), and the stock's own volatility over the same horizon."""
    h = int(row["horizon"])
    span = f"{h} session{'s' if h > 1 else ''}"
    if row.get("expected_return") is None:
        st.caption("No expected return for this prediction: fewer than 20 sessions of returns.")
        return
    target = readers.target_session(row["date"], h)
    cells[2].metric(f"Expected return ({span})", _percent(row["expected_return"]))
    cells[3].metric(f"Expected price ({target})", f"{row['expected_price']:,.2f}")
    bands = "; ".join(
        f"{v}%: {_percent(row[f'return_lower_{v}'])} .. {_percent(row[f'return_upper_{v}'])}"
        for v in ("80", "90", "95")
    )
    st.caption(
        f"Return over {span} to {target}, intervals {bands}. Price 90%: "
        f"{row['price_lower_90']:,.2f} .. {row['price_upper_90']:,.2f}, in the currency of the "
        f"last close ({row['last_close']:,.2f} on {row['date']}). The stock's own volatility "
        f"over {span}: {row['volatility']:.2%} (standard deviation of its last 20 daily "
        f"returns x sqrt({h})); the intervals widen with it."
    )


def set_aside_note(bars: pl.DataFrame, latest: dt.date | None, ticker: str) -> None:
    """Sessions the ticker was set aside (an undecided price jump: no features, no
    prediction), the ones after its latest prediction as a warning."""
    aside = bars.filter(pl.col("set_aside").is_not_null()).select("date", "set_aside")
    if aside.is_empty():
        return
    newer = aside.filter(pl.col("date") > latest) if latest else aside
    listed = "; ".join(f"{d}: {reason}" for d, reason in aside.iter_rows())
    if newer.height:
        st.warning(
            f"{ticker} is set aside on {newer['date'].max()} ({newer['set_aside'][-1]}): no "
            "features or prediction for that session, so the latest shown is older."
        )
    st.caption(f"Sessions {ticker} was set aside (no prediction): {listed}.")


def why_panel(root: str, pins: Pins, ticker: str) -> None:
    settings = settings_from_env()
    found = why(root, pins, ticker, settings["tracking_uri"], settings["artifact_location"])
    st.subheader(f"Why this prediction: {ticker}")
    if found is None:
        st.info(f"No stored champion prediction of {ticker} to explain.")
        return
    prediction, explanation = found
    shown = explanation.raw_score - explanation.bias - explanation.rest
    others = explanation.features - len(explanation.top)
    cells = st.columns(4)
    cells[0].metric("Score (raw)", _signed(explanation.raw_score))
    cells[1].metric("Bias (model's mean score)", _signed(explanation.bias))
    cells[2].metric(f"Top {len(explanation.top)} features", _signed(shown))
    cells[3].metric(f"Other {others} features", _signed(explanation.rest))
    top = pl.DataFrame(
        [c.as_dict() for c in explanation.top],
        schema={"feature": pl.String, "value": pl.Float64, "contribution": pl.Float64},
    )
    chart = charts.why_chart(top, ticker, prediction["date"], prediction["model_version"])
    st.altair_chart(chart, width="stretch")
    st.caption(
        "LightGBM's own feature contributions (TreeSHAP) for the stored prediction of "
        f"{prediction['date']}, from the features it was scored on (gold/daily_features "
        f"v{prediction['feature_table_version']}) and model version "
        f"{prediction['model_version']}: bias + contributions = the score. A market-wide feature "
        "(the same for every stock that day) can only move the whole day; its share here "
        "includes its interactions with this stock's features."
    )


def signals_panel(root: str, pins: Pins) -> None:
    frame = signals(root, pins)
    if frame.is_empty():
        st.header("Signals")
        st.info("No signals are stored yet.")
        return
    day = frame["date"].max()
    st.header(f"Signals of {day}")
    st.caption(frame["rule"][0])
    thin = thin_sessions(root, pins).filter(pl.col("date") > day)
    if thin.height:
        names = ", ".join(f"{d} ({n} names)" for d, n in thin.iter_rows())
        st.warning(f"Not ranked, cross-section too thin: {names}. These are the newest signals.")
    shown = frame.select("rank", "ticker", "side", "weight", "prediction", "model_version")
    st.dataframe(shown, hide_index=True, key="signals_table")


def backtest_panel(root: str, pins: Pins) -> None:
    st.header("Backtest")
    daily = backtest(root, pins)
    if daily.is_empty():
        st.info("No backtest is stored yet.")
        return
    summary = Outputs.backtest_summary(daily)
    thin = thin_sessions(root, pins)
    st.caption(
        f"{summary['days']} sessions, {daily['date'].min()} to {daily['date'].max()}, "
        f"models {', '.join(sorted(set(','.join(daily['model_versions']).split(','))))}; "
        "the stored signals traded, rebalanced at each close, 5 bp buys / 15 bp sells; "
        f"{summary['missing_outcomes']} positions had no bar next session (in cash); "
        f"{thin.height} thin sessions left out (too few names to rank). IC against the "
        f"{summary['horizon']}-session return; t: {summary['t_stat_shown']}."
    )
    first, second = st.columns(4), st.columns(4)
    first[0].metric("Sessions", summary["days"])
    first[1].metric("Mean IC", _signed(summary["ic_mean"]))
    first[2].metric("Mean rank IC", _signed(summary["rank_ic_mean"]))
    first[3].metric(
        f"Rank IC t ({summary['t_stat_shown']})", _signed(summary["rank_ic_nw_t_stat"], 2)
    )
    second[3].metric("Thin sessions left out", thin.height)
    second[0].metric("Long cumulative", _percent(summary["long_net_cumulative"]))
    second[1].metric("Long-short cumulative", _percent(summary["long_short_net_cumulative"]))
    second[2].metric("Benchmark cumulative", _percent(summary["benchmark_cumulative"]))
    st.altair_chart(charts.equity_chart(readers.equity_curves(daily)), width="stretch")
    st.dataframe(readers.book_performance(daily), hide_index=True, key="performance_table")


def models_panel(root: str, pins: Pins) -> None:
    st.header("Champion and challenger")
    settings = settings_from_env()
    uri, artifacts = settings["tracking_uri"], settings["artifact_location"]
    cards = model_cards(uri, artifacts)
    if not any(cards.values()):
        st.info("No model is registered yet.")
        return
    for column, role in zip(st.columns(2), (CHAMPION, CHALLENGER), strict=True):
        card = cards[role]
        with column:
            if card is None:
                st.subheader(role.title())
                st.write("none")
                continue
            st.subheader(f"{role.title()}: version {card.version}")
            page = readers.asset_url(["models", role])
            st.markdown(
                f"refit for **{card.refit_month or 'n/a'}**, champion from "
                f"**{card.champion_from or 'never'}**, interval +/-{card.half_width:.3f} at "
                f"{card.interval_level:.0%}, horizon {card.horizon}; MLflow run `{card.run_id}` "
                f"([asset page]({page}))"
            )
            gains = importance(uri, artifacts, card.version)
            st.altair_chart(charts.importance_chart(gains, role, card.version), width="stretch")
    quality = realised_quality(root, pins)
    if quality.height:
        st.caption("Realised rank IC of each model's stored predictions (outcomes known so far)")
        st.dataframe(quality, hide_index=True, key="quality_table")


def freshness_panel(root: str, pins: Pins) -> None:
    st.header("Data freshness")
    tables = freshness(root, pins)
    lines = ["| table | newest date | Delta version |", "| --- | --- | --- |"]
    for row in tables.iter_rows(named=True):
        newest = row["newest_date"].isoformat() if row["newest_date"] else "never written"
        version = "" if row["delta_version"] is None else row["delta_version"]
        lines.append(f"| [{row['table']}]({row['dagster']}) | {newest} | {version} |")
    st.markdown("\n".join(lines))
    models = ", ".join(f"[{'/'.join(k)}]({readers.asset_url(k)})" for k in readers.MODEL_PAGES)
    st.caption(f"Models in the Dagster UI: {models}. Read at {dt.datetime.now(dt.UTC):%H:%M} UTC.")


def current_pins(root: str) -> Pins:
    return tuple(sorted(Outputs(Lake(root)).versions().items()))


@st.fragment(run_every=REFRESH_SECONDS)
def follow_pipeline(root: str, pins: Pins) -> None:
    """Reruns the whole page once a table it shows has a new Delta version, so a new session's
    prediction appears in an open page without a reload; otherwise draws nothing."""
    if current_pins(root) != pins:
        st.rerun()


def main() -> None:
    st.set_page_config(page_title="Stock predictions", layout="wide")
    st.title("Stock predictions")
    root = config.lake_root()
    pins = current_pins(root)
    follow_pipeline(root, pins)
    names = tickers(root, pins)["ticker"].to_list()
    if not names:
        st.info("No predictions are stored yet: `make run` trains the first models.")
        freshness_panel(root, pins)
        return
    default = names.index(DEFAULT_TICKER) if DEFAULT_TICKER in names else 0
    ticker = st.sidebar.selectbox("Ticker", names, index=default, key="ticker")
    st.sidebar.caption(f"{len(names)} tickers with stored predictions")
    ticker_panel(root, pins, ticker)
    signals_panel(root, pins)
    backtest_panel(root, pins)
    models_panel(root, pins)
    freshness_panel(root, pins)


if __name__ == "__main__":  # `streamlit run` and AppTest; importing the module draws nothing
    main()
