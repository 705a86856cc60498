"""What "latest" means: the newest session with a full cross-section, and for a ticker that did
not trade in it, its own latest. Tested on a copy of the delivered state where one late bar's
prediction lands on a new (thin) session and one ticker has no row on the newest full one; and
where one ticker's newest bar is set aside, which its answers name with the reason."""

from __future__ import annotations

import datetime as dt
import shutil

import orjson
import polars as pl
import pytest

from serving.snapshot import Loader, Snapshot, newer_set_aside
from stock_assets import tables
from stock_assets.lake import Lake
from stock_assets.outputs import Outputs
from stock_assets_tests.serving.conftest import copy_state, key_settings, running

pytestmark = pytest.mark.timeout(900)
LATE = dt.date(2010, 8, 2)  # the session after the delivered state's last (a Friday)


@pytest.fixture
def late_bar_state(delivered, tmp_path) -> Outputs:
    shutil.copytree(delivered.lake.root, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    newest = lake.read(tables.GOLD_SIGNALS)["date"].max()
    day = lake.read_dates(tables.GOLD_PREDICTIONS, newest, newest)
    late = day.filter(pl.col("ticker") == "AAPL").with_columns(
        date=pl.lit(LATE), month=pl.lit(f"{LATE:%Y-%m}")
    )  # one data set's late bar: a session of one name, below the signals' floor
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, late, LATE, LATE)
    without = day.filter(pl.col("ticker") != "ADI")  # ADI did not trade on the newest session
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, without, newest, newest)
    return Outputs(lake, delivered.registry)


def test_latest_is_the_newest_full_session_and_each_ticker_its_own(late_bar_state, delivered):
    out = late_bar_state
    full = delivered.lake.read(tables.GOLD_SIGNALS)["date"].max()
    assert out.newest_session() == LATE and out.latest_session() == full
    assert out.thin_sessions(LATE).rows() == [(LATE, 1)]
    latest = out.latest_predictions()
    known = out.tickers()["ticker"].to_list()
    assert latest["ticker"].to_list() == sorted(known)  # nobody missing
    aapl, adi = (latest.filter(pl.col("ticker") == t).row(0, named=True) for t in ("AAPL", "ADI"))
    assert aapl["date"] == full and aapl["thin"] is False and aapl["side"] is not None
    previous = delivered.lake.read(tables.GOLD_PREDICTIONS).filter(
        pl.col("ticker") == "ADI", pl.col("role") == "champion", pl.col("date") < full
    )
    stored = previous.sort("date").row(previous.height - 1, named=True)
    assert adi["date"] == stored["date"] and adi["prediction"] == stored["prediction"]
    signal = delivered.lake.read_dates(tables.GOLD_SIGNALS, stored["date"], stored["date"])
    assert adi["rank"] == signal.filter(pl.col("ticker") == "ADI")["rank"][0]


def test_the_served_snapshot_answers_every_ticker_and_names_the_thin_session(late_bar_state):
    snapshot = Loader(late_bar_state, None).refresh(Snapshot())
    full = late_bar_state.latest_session()
    assert snapshot.data_date == full
    assert snapshot.thin_after == ({"date": LATE, "names": 1},)
    items = {t: orjson.loads(b) for t, b in snapshot.latest["champion"].items()}
    assert set(items) == set(snapshot.tickers)
    assert items["AAPL"]["date"] == full.isoformat() and items["ADI"]["date"] < full.isoformat()
    assert {i["thin"] for i in items.values()} == {False}


REASON = "needs_review: undecided overnight jump (test)"


def set_aside_bar(lake: Lake, ticker: str, day: dt.date) -> None:
    """``ticker``'s bar of ``day`` set aside, as silver does for an undecided jump: the reason
    in `set_aside`, no adjusted prices, so no features and no prediction that day."""
    bars = lake.read_dates(tables.ADJUSTED_DAILY_BARS, day, day)
    adjusted = [c for c in bars.columns if c.startswith("adj_")]
    aside = pl.col("ticker") == ticker
    bars = bars.with_columns(
        set_aside=pl.when(aside).then(pl.lit(REASON)).otherwise(pl.col("set_aside")),
        **{c: pl.when(aside).then(None).otherwise(pl.col(c)) for c in adjusted},
    )
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, bars, day, day)
    predicted = lake.read_dates(tables.GOLD_PREDICTIONS, day, day)
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, predicted.filter(~aside), day, day)


@pytest.fixture
def set_aside_state(delivered, tmp_path) -> Outputs:
    shutil.copytree(delivered.lake.root, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    set_aside_bar(lake, "ADI", lake.read(tables.GOLD_SIGNALS)["date"].max())
    return Outputs(lake, delivered.registry)


def test_a_set_aside_session_is_named_with_its_reason(set_aside_state):
    out = set_aside_state
    newest = out.latest_session()
    assert out.set_aside().rows() == [("ADI", "ADI", newest, REASON)]
    snapshot = Loader(out, None).refresh(Snapshot())
    items = {t: orjson.loads(b) for t, b in snapshot.latest["champion"].items()}
    adi, aapl = items["ADI"], items["AAPL"]
    assert adi["date"] < newest.isoformat()  # its own latest, before the set-aside session
    assert adi["set_aside"] == {"date": newest.isoformat(), "reason": REASON}
    assert aapl["set_aside"] is None and aapl["date"] == newest.isoformat()
    # on-demand rows of an older session say so too; newer ones do not
    older = dt.date.fromisoformat(adi["date"])
    assert newer_set_aside(snapshot.set_aside, "ADI", older) == {"date": newest, "reason": REASON}
    assert newer_set_aside(snapshot.set_aside, "ADI", newest) is None
    assert newer_set_aside(snapshot.set_aside, "AAPL", older) is None


def test_the_api_names_a_set_aside_session_over_http(delivered, tmp_path):
    """The same set-aside bar on a private copy of the whole state, served by a real server:
    latest and history answers name the session and its reason."""
    env = copy_state(delivered, tmp_path / "state")
    lake = Lake(env["STOCK_LAKE_ROOT"])
    newest = lake.read(tables.GOLD_SIGNALS)["date"].max()
    set_aside_bar(lake, "ADI", newest)
    env |= key_settings() | {"STOCK_API_POLL_SECONDS": "60"}
    for server in running(env, tmp_path / "api.log"):
        with server.client() as client:
            latest = client.get("/v1/predictions/latest", params={"tickers": "ADI,AAPL"}).json()
            history = client.get("/v1/predictions/ADI/history").json()
    adi, aapl = latest["items"]
    assert adi["set_aside"] == {"date": newest.isoformat(), "reason": REASON}
    assert adi["date"] < newest.isoformat() and aapl["set_aside"] is None
    assert history["set_aside_sessions"] == [{"date": newest.isoformat(), "reason": REASON}]
    assert newest.isoformat() not in {i["date"] for i in history["items"]}
