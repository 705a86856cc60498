"""The real app: `streamlit run` on a free port, loaded by headless Chromium (Debian's build).

Checks what a person would see: every chart drawn by vega-embed with one mark per stored row,
the panels' headings, a number of the stored state, a link into the Dagster UI, and no Streamlit
exception box.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import expect, sync_playwright

from stock_assets import tables
from stock_assets.lake import Lake
from stock_assets.resources.broker import free_port, stop_process_group
from stock_assets_tests.serving.conftest import copy_state

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHARTS = 7  # price, back-adjusted, predictions, why, equity, and one importance chart per model
WHY_BARS = 10


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """The app served by `streamlit run` (headless) with ``env``; stopped by PID."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        stop_process_group(server, grace_s=3)  # SIGTERM, then SIGKILL to the group


@contextlib.contextmanager
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def served_app(app_env, tmp_path):
    with serve(app_env, tmp_path / "streamlit.log") as url:
        yield url


def test_the_served_app_draws_every_chart_from_the_stored_state(served_app, delivered):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 3000})
        page.goto(served_app)
        page.get_by_role("heading", name="Data freshness").wait_for(timeout=150_000)
        charts = page.locator("[data-testid=stVegaLiteChart]")  # the vega-embed containers
        expect(charts.locator("svg.marks")).to_have_count(CHARTS, timeout=90_000)
        marks = []
        for index in range(CHARTS):
            drawn = charts.nth(index).locator("svg.marks")
            box = drawn.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100, box
            # data marks (candles, bands, lines, bars), not axes or grid
            marks.append(drawn.locator("g.role-mark > path, g.role-mark > line").count())
        bars = delivered.lake.read(tables.ADJUSTED_DAILY_BARS).filter(
            pl.col("ticker") == "AAPL", pl.col("date") >= dt.date(2010, 3, 3)
        )  # from 90 days before AAPL's first prediction (2010-06-01)
        # a wick and a body per bar, the last close, the expected price and its interval
        assert marks[0] == 2 * bars.height + 1 + 2
        assert marks[1] == 1  # the back-adjusted close: one line
        assert marks[2] > 3  # the band, a line per role, a point per prediction
        assert marks[3:] == [WHY_BARS, 3, 15, 15]  # why; three books; top 15 features per model
        assert_last_close_and_top_contribution(charts, bars, delivered)
        assert page.locator("[data-testid=stException]").count() == 0
        newest = delivered.lake.read(tables.GOLD_SIGNALS)["date"].max()
        expected = page.locator("[data-testid=stMetric]").filter(
            has=page.get_by_text("Expected return (1 session)", exact=True)
        )
        stored = delivered.lake.read(tables.GOLD_PREDICTIONS).filter(
            pl.col("ticker") == "AAPL", pl.col("role") == "champion"
        )
        newest_row = stored.sort("date").row(stored.height - 1, named=True)
        value = expected.locator("[data-testid=stMetricValue]").inner_text()
        assert value == f"{newest_row['expected_return']:+.2%}"
        for heading in ["AAPL: price and predictions", f"Signals of {newest}", "Backtest",
                        "Champion: version 1", "Challenger: version 2"]:  # fmt: skip
            assert page.get_by_role("heading", name=heading).count() == 1, heading
        backtest = delivered.lake.read(tables.GOLD_BACKTEST)
        label = page.get_by_text("Sessions", exact=True)
        sessions = page.locator("[data-testid=stMetric]").filter(has=label)
        assert sessions.locator("[data-testid=stMetricValue]").inner_text() == str(backtest.height)
        link = page.get_by_role("link", name="silver/adjusted_daily_bars")
        assert link.get_attribute("href") == (
            "http://dagster.example:3000/assets/silver/adjusted_daily_bars"
        )


def aria_labels(chart) -> list[dict[str, str]]:
    """The data marks' accessible labels (vega-lite writes ``field: value; ...`` per mark)."""
    texts = chart.locator("g.role-mark [aria-label]").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('aria-label'))"
    )
    return [dict(part.split(": ", 1) for part in text.split("; ")) for text in texts]


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-").replace(",", ""))


def assert_last_close_and_top_contribution(charts, bars: pl.DataFrame, delivered) -> None:
    """The price chart ends on the traded close and shows the stored expected price with its
    interval; the why panel's first bar is the stored prediction's largest contribution,
    computed here from the lake and the registry."""
    newest = bars.sort("date").row(bars.height - 1, named=True)
    labels = aria_labels(charts.nth(0))
    [last] = [label for label in labels if "last close" in label]
    assert _number(last["last close"]) == newest["close"]  # raw, not the adjusted basis
    stored = delivered.lake.read(tables.GOLD_PREDICTIONS).filter(
        pl.col("ticker") == "AAPL", pl.col("role") == "champion"
    )
    prediction = stored.sort("date").row(stored.height - 1, named=True)
    # the stored expected price and its 90% interval, drawn on the traded-price chart
    [spot] = [label for label in labels if "expected price" in label]
    for key, column in [("expected price", "expected_price"), ("90% lower", "price_lower_90"),
                        ("90% upper", "price_upper_90")]:  # fmt: skip
        assert _number(spot[key]) == round(prediction[column], 2), key
    day = prediction["date"]
    features = delivered.lake.read_dates(
        tables.GOLD_DAILY_FEATURES, day, day, prediction["feature_table_version"]
    ).filter(pl.col("instrument") == prediction["instrument"])
    booster = delivered.registry.load_booster(prediction["model_version"])
    names = booster.feature_name()
    matrix = features.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy()
    contrib = booster.predict(
        matrix, num_iteration=booster.best_iteration or None, pred_contrib=True
    )
    values = dict(zip(names, contrib[0][:-1], strict=True))
    top = min(values, key=lambda f: (-abs(values[f]), f))
    first = aria_labels(charts.nth(3))[0]
    assert first["feature"] == top
    assert abs(_number(first["contribution to the score"]) - values[top]) < 1e-10


def test_an_open_page_shows_a_new_session_without_a_reload(app_env, delivered, tmp_path):
    env = copy_state(delivered, tmp_path / "state") | {
        "STOCK_DAGSTER_UI_URL": app_env["STOCK_DAGSTER_UI_URL"],
        "STOCK_APP_REFRESH_SECONDS": "2",
    }
    lake = Lake(env["STOCK_LAKE_ROOT"])
    newest = lake.read(tables.GOLD_SIGNALS)["date"].max()
    later = newest + dt.timedelta(days=3)  # the next session after a Friday
    with serve(env, tmp_path / "streamlit.log") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        loads = []
        page.on("load", lambda _: loads.append(1))
        page.goto(url)
        page.get_by_role("heading", name=f"Signals of {newest}").wait_for(timeout=150_000)
        day = lake.read_dates(tables.GOLD_SIGNALS, newest, newest)
        lake.overwrite_dates(
            tables.GOLD_SIGNALS,
            day.with_columns(date=pl.lit(later), month=pl.lit(f"{later:%Y-%m}")),
            later,
            later,
        )  # the pipeline's next session, as the open page would see it land
        heading = page.get_by_role("heading", name=f"Signals of {later}")
        heading.wait_for(timeout=90_000)
        assert len(loads) == 1  # the page followed without a reload
