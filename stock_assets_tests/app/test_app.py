"""The Streamlit app against the delivered state, through Streamlit's AppTest.

Every figure on the page is compared with what the lake and the registry hold, read here
independently of the app's readers.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from stock_assets import tables
from stock_assets.lake import Lake
from stock_assets_tests.app.conftest import DAGSTER_UI

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "app" / "streamlit_app.py")
TIMEOUT_S = 180  # the first run imports MLflow and loads two boosters on a busy machine


def run_app() -> AppTest:
    at = AppTest.from_file(SCRIPT, default_timeout=TIMEOUT_S).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart(at: AppTest, title: str) -> tuple[dict, list[pd.DataFrame]]:
    """The Vega-Lite spec whose title starts with ``title``, and the data sets it was sent."""
    found = []
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if str(spec.get("title", "")).startswith(title):
            data = [
                pa.ipc.open_stream(d.data.data).read_all().to_pandas()
                for d in element.proto.datasets
            ]
            found.append((spec, data))
    assert len(found) == 1, f"{len(found)} charts titled {title!r}"
    return found[0]


def rows_with(data: list[pd.DataFrame], column: str) -> pd.DataFrame:
    """The largest data set with ``column`` (a layer may draw a subset, e.g. the band)."""
    return max((d for d in data if column in d.columns), key=len)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def page(app_env) -> AppTest:
    return run_app()


def test_ticker_options_are_the_tickers_with_stored_predictions(page, delivered):
    stored = delivered.lake.read(tables.GOLD_PREDICTIONS)
    expected = sorted(stored.filter(pl.col("role") == "champion")["ticker"].unique())
    picker = page.selectbox(key="ticker")
    assert picker.options == expected
    assert picker.value == "AAPL"
    assert len(expected) > 30


def test_signals_table_is_the_newest_stored_session(page, delivered):
    stored = delivered.lake.read(tables.GOLD_SIGNALS)
    newest = stored["date"].max()
    expected = stored.filter(pl.col("date") == newest).sort("rank")
    [table] = [
        d.value for d in page.dataframe if list(d.value.columns)[:3] == ["rank", "ticker", "side"]
    ]
    assert table["ticker"].tolist() == expected["ticker"].to_list()
    assert table["rank"].tolist() == expected["rank"].to_list()
    assert table["side"].tolist() == expected["side"].to_list()
    assert table["weight"].tolist() == expected["weight"].to_list()
    assert table["prediction"].tolist() == expected["prediction"].to_list()
    assert [h.value for h in page.header if h.value.startswith("Signals")] == [
        f"Signals of {newest}"
    ]
    [rule] = expected["rule"].unique()
    assert rule in [c.value for c in page.caption]


def test_backtest_metrics_are_those_of_the_stored_backtest(page, delivered):
    daily = delivered.lake.read(tables.GOLD_BACKTEST).sort("date")
    shown = metrics(page)
    assert shown["Sessions"] == str(daily.height)

    import statsmodels.api as sm

    ic, rank_ic = (daily[c].drop_nulls().drop_nans().to_numpy() for c in ("ic", "rank_ic"))
    assert shown["Mean IC"] == f"{ic.mean():+.4f}"
    assert shown["Mean rank IC"] == f"{rank_ic.mean():+.4f}"
    # the t shown is Newey-West's with at least h lags (statsmodels' HAC as the oracle)
    horizon = int(daily["horizon"].max())
    lags = max(horizon, math.floor(4 * (rank_ic.size / 100) ** (2 / 9)))
    hac = sm.OLS(rank_ic, np.ones_like(rank_ic)).fit(
        cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False}
    )
    label = f"Rank IC t (Newey-West t, {lags} lag{'s' if lags != 1 else ''})"
    assert lags >= horizon and shown[label] == f"{hac.tvalues[0]:+.2f}"
    assert shown["Thin sessions left out"] == "0"  # the delivered state ranks every session
    growth = {
        c: float(np.prod(1 + daily[c].to_numpy()))
        for c in ("long_net", "long_short_net", "benchmark")
    }
    assert shown["Long cumulative"] == f"{growth['long_net'] - 1:+.2%}"
    assert shown["Long-short cumulative"] == f"{growth['long_short_net'] - 1:+.2%}"
    assert shown["Benchmark cumulative"] == f"{growth['benchmark'] - 1:+.2%}"
    # the equity curve ends where the cumulative returns do, one point per stored session
    _, data = chart(page, "Backtest equity")
    curve = rows_with(data, "equity")
    assert sorted(curve["book"].unique()) == ["benchmark", "long", "long_short"]
    for book, column in [
        ("long", "long_net"),
        ("long_short", "long_short_net"),
        ("benchmark", "benchmark"),
    ]:
        one = curve[curve["book"] == book].sort_values("date")
        assert len(one) == daily.height
        assert one["equity"].iloc[-1] == pytest.approx(growth[column], rel=1e-12)
    # and the performance table's drawdown is the stored returns' own
    [performance] = [d.value for d in page.dataframe if "max_drawdown" in d.value.columns]
    wealth = np.cumprod(1 + daily["long_short_net"].to_numpy())
    drawdown = np.min(wealth / np.maximum.accumulate(np.concatenate([[1.0], wealth]))[1:] - 1)
    long_short = performance.set_index("book").loc["long_short"]
    assert long_short["max_drawdown"] == pytest.approx(min(drawdown, 0.0), abs=1e-12)
    assert long_short["cumulative_return"] == pytest.approx(growth["long_short_net"] - 1, rel=1e-12)


def expected_bars(delivered, ticker: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    predictions = delivered.lake.read(tables.GOLD_PREDICTIONS).filter(pl.col("ticker") == ticker)
    start = predictions["date"].min() - dt.timedelta(days=90)
    bars = delivered.lake.read(tables.ADJUSTED_DAILY_BARS).filter(
        pl.col("ticker") == ticker, pl.col("date") >= start
    )
    return bars.sort("date"), predictions.sort("date", "role")


def assert_ticker_charts(at: AppTest, delivered, ticker: str) -> list[float]:
    bars, predictions = expected_bars(delivered, ticker)
    spec, data = chart(at, f"Traded price (raw, as printed): {ticker}")
    shown = rows_with(data, "close").sort_values("date")
    assert len(shown) == bars.height
    assert shown["close"].tolist() == bars["close"].to_list()  # as traded, not adjusted
    assert shown["high"].tolist() == bars["high"].to_list()
    newest = bars.row(bars.height - 1, named=True)
    _, data = chart(at, f"Back-adjusted close as of {newest['date']}: {ticker}")
    back = rows_with(data, "back_close").sort_values("date")
    # back-adjusted as of the newest bar: that bar's traded close, earlier ones rescaled by it
    expected = (bars["adj_close"] / newest["cum_factor"]).to_list()
    assert back["back_close"].tolist() == pytest.approx(expected, rel=1e-12)
    assert back["back_close"].iloc[-1] == pytest.approx(newest["close"], rel=1e-12)
    returns = bars["adj_close"].pct_change().tail(20).to_numpy()
    volatility = float(np.std(returns, ddof=1) * math.sqrt(252))
    assert metrics(at)["Volatility (20 sessions, annualised)"] == f"{volatility:.1%}"
    assert metrics(at)[f"Last traded close ({newest['date']})"] == f"{newest['close']:,.2f}"
    _, data = chart(at, f"Predictions with conformal interval: {ticker}")
    lines = rows_with(data, "role")
    for role in ("champion", "challenger"):
        stored = predictions.filter(pl.col("role") == role)
        drawn = lines[lines["role"] == role].sort_values("date")
        assert drawn["prediction"].tolist() == stored["prediction"].to_list()
    champion = predictions.filter(pl.col("role") == "champion").tail(1).row(0, named=True)
    assert metrics(at)["Champion prediction"] == f"{champion['prediction']:+.4f}"
    assert_returns_panel(at, ticker, champion)
    assert_why_panel(at, delivered, ticker, champion)
    return shown["close"].tolist()


def assert_returns_panel(at: AppTest, ticker: str, champion: dict) -> None:
    """Expected return in percent and price with its 90% interval, as stored, the price drawn
    at the session it is for (the next one: h = 1 here) on the traded-price chart."""
    assert champion["horizon"] == 1 and champion["expected_return"] is not None
    shown = metrics(at)
    assert shown["Expected return (1 session)"] == f"{champion['expected_return']:+.2%}"
    target = champion["date"] + dt.timedelta(days=3 if champion["date"].weekday() == 4 else 1)
    assert shown[f"Expected price ({target})"] == f"{champion['expected_price']:,.2f}"
    [note] = [c.value for c in at.caption if c.value.startswith("Return over")]
    low, high = champion["return_lower_90"], champion["return_upper_90"]
    assert f"90%: {low:+.2%} .. {high:+.2%}" in note
    assert f"{champion['volatility']:.2%}" in note
    _, data = chart(at, f"Traded price (raw, as printed): {ticker}")
    spot = rows_with(data, "price_upper")
    assert spot["price"].tolist() == [champion["expected_price"]]
    assert spot["price_lower"].tolist() == [champion["price_lower_90"]]
    assert spot["price_upper"].tolist() == [champion["price_upper_90"]]
    assert pd.Timestamp(spot["date"].iloc[0]).date() == target


def assert_why_panel(at: AppTest, delivered, ticker: str, champion: dict) -> None:
    """The why chart is LightGBM's contributions for the stored prediction, computed here."""
    booster = delivered.registry.load_booster(champion["model_version"])
    day = champion["date"]
    features = delivered.lake.read_dates(
        tables.GOLD_DAILY_FEATURES, day, day, champion["feature_table_version"]
    ).filter(pl.col("instrument") == champion["instrument"])
    names = booster.feature_name()
    matrix = features.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy()
    contrib = booster.predict(
        matrix, num_iteration=booster.best_iteration or None, pred_contrib=True
    )
    values = dict(zip(names, contrib[0][:-1], strict=True))
    largest = sorted(values, key=lambda f: (-abs(values[f]), f))[:10]
    _, data = chart(at, f"Why this prediction: {ticker} {day} (v{champion['model_version']})")
    drawn = rows_with(data, "contribution")
    assert drawn["feature"].tolist() == largest
    assert drawn["contribution"].tolist() == pytest.approx([values[f] for f in largest], abs=1e-12)
    shown = metrics(at)
    assert shown["Score (raw)"] == f"{champion['prediction']:+.4f}"
    assert shown["Bias (model's mean score)"] == f"{contrib[0][-1]:+.4f}"


def test_switching_ticker_redraws_the_charts_from_the_stored_rows(app_env, delivered):
    at = run_app()
    aapl = assert_ticker_charts(at, delivered, "AAPL")
    other = next(t for t in at.selectbox(key="ticker").options if t != "AAPL")
    at.selectbox(key="ticker").set_value(other).run()
    assert not at.exception
    assert at.header[0].value == f"{other}: price and predictions"
    assert assert_ticker_charts(at, delivered, other) != aapl


def test_champion_and_challenger_show_their_boosters_gain(page, delivered):
    subheaders = [s.value for s in page.subheader]
    assert subheaders == [
        "Why this prediction: AAPL",
        "Champion: version 1",
        "Challenger: version 2",
    ]
    for role, version in (("champion", "1"), ("challenger", "2")):
        booster = delivered.registry.load_booster(version)
        gain = booster.feature_importance(importance_type="gain")
        order = sorted(
            zip(booster.feature_name(), gain, strict=True), key=lambda fg: (-fg[1], fg[0])
        )
        _, data = chart(page, f"Feature importance (gain): {role} v{version}")
        bars = rows_with(data, "gain")
        assert bars["feature"].tolist() == [f for f, _ in order[:15]]
        assert bars["gain"].tolist() == pytest.approx([g for _, g in order[:15]], rel=1e-12)
        assert bars["share"].iloc[0] == pytest.approx(order[0][1] / gain.sum(), rel=1e-12)
    assert f"({DAGSTER_UI}/assets/models/champion)" in "".join(m.value for m in page.markdown)


def test_freshness_lists_each_table_with_its_dagster_page(page, delivered):
    [panel] = [m.value for m in page.markdown if m.value.startswith("| table |")]
    for table in (
        tables.GOLD_PREDICTIONS,
        tables.GOLD_SIGNALS,
        tables.GOLD_BACKTEST,
        tables.GOLD_DAILY_FEATURES,
        tables.ADJUSTED_DAILY_BARS,
    ):
        newest = delivered.lake.read(table)["date"].max()
        version = delivered.lake.version(table)
        link = f"[{table.path}]({DAGSTER_UI}/assets/{table.path})"
        assert f"| {link} | {newest} | {version} |" in panel


def test_the_app_never_imports_dagster(app_env):
    code = (
        "import sys\n"
        "import app.readers, app.charts, app.streamlit_app\n"
        "import mlflow.lightgbm  # what loading a booster imports\n"
        "from stock_assets.outputs import Outputs\n"
        "out = Outputs.from_env().pinned()\n"
        "assert app.readers.newest_dates(out).height == 5 and out.models()['champion']\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_late_bar_on_a_thin_session_is_flagged_not_shown_as_latest(
    app_env, delivered, tmp_path, monkeypatch
):
    shutil.copytree(delivered.lake.root, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    full = lake.read(tables.GOLD_SIGNALS)["date"].max()
    late = full + dt.timedelta(days=3)  # the next session after a Friday
    row = lake.read_dates(tables.GOLD_PREDICTIONS, full, full).filter(pl.col("ticker") == "AAPL")
    moved = row.with_columns(date=pl.lit(late), month=pl.lit(f"{late:%Y-%m}"))
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, moved, late, late)
    monkeypatch.setenv("STOCK_LAKE_ROOT", str(tmp_path / "lake"))
    at = run_app()
    assert metrics(at)["Predicted session"] == full.isoformat()
    warnings = [w.value for w in at.warning]
    assert any("Newer predictions of AAPL on thin sessions" in w and f"{late} (1 names)" in w
               for w in warnings), warnings  # fmt: skip


def test_a_set_aside_session_is_named_with_its_reason(app_env, delivered, tmp_path, monkeypatch):
    """AAPL's bar of the newest session set aside (silver's reason, no adjusted prices), so it
    has no prediction that day: the page says so and shows its older latest."""
    shutil.copytree(delivered.lake.root, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    full = lake.read(tables.GOLD_SIGNALS)["date"].max()
    reason = "needs_review: undecided overnight jump (test)"
    bars = lake.read_dates(tables.ADJUSTED_DAILY_BARS, full, full)
    aapl = pl.col("ticker") == "AAPL"
    bars = bars.with_columns(set_aside=pl.when(aapl).then(pl.lit(reason)).otherwise("set_aside"))
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, bars, full, full)
    day = lake.read_dates(tables.GOLD_PREDICTIONS, full, full)
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, day.filter(~aapl), full, full)
    monkeypatch.setenv("STOCK_LAKE_ROOT", str(tmp_path / "lake"))
    at = run_app()
    assert metrics(at)["Predicted session"] < full.isoformat()
    warnings = [w.value for w in at.warning]
    assert any(f"AAPL is set aside on {full} ({reason})" in w for w in warnings), warnings
    assert any(f"{full}: {reason}" in c.value for c in at.caption)
