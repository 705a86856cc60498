"""Long real histories from packages: valid bars, honest about what is missing, replayable.

Every replayable data set also passes the blocking corporate-actions checks with the curated
table, and each extreme gap decided for the long histories keeps its curated row
(docs/CORPORATE_ACTIONS.md, "Long-history decisions").
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from stock_assets import config, tables
from stock_assets.bronze.datasets import CLOSE_ONLY_SUFFIX, DATASETS, load_dataset
from stock_assets.bronze.market_bars import encode_bar, parse_bar
from stock_assets.bronze.replay import replay, select_bars
from stock_assets.calendar import trading_days
from stock_assets.checks import CheckInput
from stock_assets.cli import build_parser
from stock_assets.lake import Lake, month_column
from stock_assets.pit import adjust_bars
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.adjusted_daily_bars import ADJUSTED_CHECKS, CONTINUITY_CHECK
from stock_assets.silver.corporate_actions import (
    CORPORATE_ACTIONS_CHECKS,
    EXPLAINED_CHECK,
    build_corporate_actions,
    corporate_actions,
    load_curated,
    unexplained_gaps,
)
from stock_assets_tests.conftest import build_silver_from_sensor, ingest_from_sensor, write_silver

# name: (rows, tickers, first date, last date, close only)
LONG_HISTORIES = {
    "sp500_1990_adjclose": (166_260, 20, dt.date(1990, 1, 2), dt.date(2022, 12, 28), True),
    "msft_1986": (7_983, 1, dt.date(1986, 3, 13), dt.date(2017, 11, 10), False),
    "tsd_ohlcv": (15_174, 5, dt.date(1997, 5, 15), dt.date(2025, 2, 14), False),
}


@pytest.mark.parametrize("name", sorted(LONG_HISTORIES))
def test_long_history_loads_as_valid_bars_on_nyse_sessions(name):
    rows, tickers, first, last, close_only = LONG_HISTORIES[name]
    bars = load_dataset(name)
    assert bars.height == rows and bars["ticker"].n_unique() == tickers
    assert (bars["date"].min(), bars["date"].max()) == (first, last)
    assert bars.null_count().sum_horizontal().item() == 0
    assert not bars.select("ticker", "date").is_duplicated().any()
    assert set(bars["date"].unique()) <= set(trading_days(first, last))
    assert (bars["low"] > 0).all() and (bars["high"] >= bars["low"]).all()
    assert bars["source"].str.ends_with(CLOSE_ONLY_SUFFIX).all() == close_only
    if close_only:  # OHLC collapse onto the close; volume is absent, so 0, never invented
        assert (bars["open"] == bars["close"]).all() and (bars["high"] == bars["close"]).all()
        assert (bars["volume"] == 0).all()
    else:
        assert (bars["volume"] > 0).mean() > 0.99
    for row in bars.sample(200, seed=1).iter_rows():  # the Kafka contract accepts every bar
        assert parse_bar(encode_bar(*row), dt.date.today())[:2] == row[:2]


def test_replay_cli_offers_every_long_history():
    choices = next(
        a.choices
        for a in build_parser()._subparsers._group_actions[0].choices["replay"]._actions
        if a.dest == "dataset"
    )
    assert set(LONG_HISTORIES) <= set(choices) == set(DATASETS)
    assert all(DATASETS[name].licence for name in LONG_HISTORIES)


def blocking_checks(
    bars: pl.DataFrame, events: pl.DataFrame, root: Path
) -> dict[str, dg.AssetCheckResult]:
    """The two blocking checks as silver runs them: bars and events in a real lake, then the
    corporate-actions audit and the continuity audit of the adjusted rows."""
    lake = Lake(str(root))
    write_silver(lake, bars)
    lake.replace_table(
        tables.CORPORATE_ACTIONS, events.with_columns(month_column("effective_date"))
    )
    first, last = bars["date"].min(), bars["date"].max()
    results = [
        *CORPORATE_ACTIONS_CHECKS.evaluate(CheckInput(events, lake)),
        *ADJUSTED_CHECKS.evaluate(CheckInput(adjust_bars(bars, events), lake, first, last)),
    ]
    return {r.check_name: r for r in results}


def test_adjusted_histories_show_no_split_and_unreviewed_gaps_block(tmp_path):
    msft = build_corporate_actions(load_dataset("msft_1986"), load_curated())
    assert msft.select("action", "status").rows() == [("split", "not_observed")]  # 2003 2:1
    bars = load_dataset("tsd_ohlcv")
    without_review = load_curated().filter(pl.col("instrument") != "AMZN")
    tsd = build_corporate_actions(bars, without_review)
    pending = tsd.filter(pl.col("status") == "needs_review")
    assert pending.select("instrument", "effective_date").rows() == [("AMZN", dt.date(2001, 4, 9))]
    # unreviewed: AMZN is set aside from that day, and the other instruments' chain goes on
    checks = blocking_checks(bars, tsd, tmp_path / "lake")
    assert checks[EXPLAINED_CHECK].passed and checks[CONTINUITY_CHECK].passed
    assert "AMZN" in checks[EXPLAINED_CHECK].metadata["set_aside_instruments"].value
    assert checks[CONTINUITY_CHECK].metadata["rows_set_aside"].value > 0


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_replayable_data_set_passes_the_blocking_checks_with_the_curated_table(
    name, tmp_path
):
    bars = load_dataset(name)
    events = build_corporate_actions(bars, load_curated())
    pending = events.filter(pl.col("status") == "needs_review")
    assert pending.is_empty(), pending.select("instrument", "effective_date", "note").rows()
    left = unexplained_gaps(bars, events)
    assert left.is_empty(), left.rows()
    checks = blocking_checks(bars, events, tmp_path / "lake")
    assert set(checks) == {EXPLAINED_CHECK, CONTINUITY_CHECK}
    for check in checks.values():
        assert check.passed and check.severity == dg.AssetCheckSeverity.ERROR, check.metadata


# Extreme gaps in the long histories, decided from the data (evidence in each curated note):
# (instrument, effective date) -> (data set, measured gap prev_close / open, action, status)
LONG_HISTORY_DECISIONS = {
    ("RRC", dt.date(1990, 4, 10)): ("sp500_1990_adjclose", 3.0009, "genuine_move", "rejected"),
    ("RRC", dt.date(1998, 10, 19)): ("sp500_1990_adjclose", 0.6516, "genuine_move", "rejected"),
    ("AMZN", dt.date(2001, 4, 9)): ("tsd_ohlcv", 0.7069, "genuine_move", "rejected"),
}


def _decided_case(instrument: str, day: dt.date, root: Path) -> None:
    """The curated row holds the decision, and it is what makes the measured gap pass."""
    name, gap, action, status = LONG_HISTORY_DECISIONS[(instrument, day)]
    curated = load_curated()
    row = curated.filter(pl.col("instrument") == instrument, pl.col("effective_date") == day)
    assert row.select("action", "status", "known_from").rows() == [(action, status, day)]
    assert row["note"].item().strip()
    window = select_bars(name, day - dt.timedelta(days=60), day + dt.timedelta(days=60))
    bars = window.filter(pl.col("ticker") == instrument)
    events = build_corporate_actions(bars, curated)
    event = events.filter(pl.col("effective_date") == day)
    assert event.select("action", "status", "source").rows() == [(action, status, "curated")]
    assert event["detected_ratio"].item() == pytest.approx(gap, abs=1e-4)
    assert all(c.passed for c in blocking_checks(bars, events, root).values())
    unreviewed = build_corporate_actions(bars, curated.filter(pl.col("instrument") != instrument))
    pending = unreviewed.filter(pl.col("status") == "needs_review")
    assert pending["effective_date"].to_list() == [day]


def test_rrc_1990_04_10_drop_is_a_reviewed_genuine_move(tmp_path):
    _decided_case("RRC", dt.date(1990, 4, 10), tmp_path / "lake")


def test_rrc_1998_10_19_rebound_is_a_reviewed_genuine_move(tmp_path):
    _decided_case("RRC", dt.date(1998, 10, 19), tmp_path / "lake")


def test_amzn_2001_04_09_jump_is_a_reviewed_genuine_move(tmp_path):
    _decided_case("AMZN", dt.date(2001, 4, 9), tmp_path / "lake")


def test_replay_datasets_setting(monkeypatch):
    monkeypatch.delenv("STOCK_REPLAY_DATASETS", raising=False)
    assert config.replay_datasets() == ["sp500_2009"]  # one price source per ticker
    monkeypatch.setenv("STOCK_REPLAY_DATASETS", " sp500_1990_adjclose , tsd_ohlcv,")
    assert config.replay_datasets() == ["sp500_1990_adjclose", "tsd_ohlcv"]
    assert config.replay_datasets("msft_1986") == ["msft_1986"]
    monkeypatch.setenv("STOCK_REPLAY_DATASETS", "sp500_1990_adjclose,sp500_1991")
    with pytest.raises(ValueError, match="unknown data set sp500_1991; choose from ") as error:
        config.replay_datasets()
    assert "\n" not in str(error.value) and "STOCK_REPLAY_DATASETS=" in str(error.value)


def test_make_run_rejects_an_unknown_data_set_before_starting_anything(monkeypatch, tmp_path):
    from stock_assets.local_stack import run_local_stack

    monkeypatch.setenv("STOCK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STOCK_REPLAY_DATASETS", "msft_1986,nope")
    with pytest.raises(ValueError, match="unknown data set nope"):
        run_local_stack()
    with pytest.raises(ValueError, match="unknown data set bad"):  # an explicit --datasets
        run_local_stack(["bad"])
    monkeypatch.setenv("STOCK_REPLAY_DATASETS", "sp500_2009")
    monkeypatch.setenv("STOCK_REPLAY_UNTIL", "2010-13-01")
    with pytest.raises(ValueError, match="STOCK_REPLAY_UNTIL='2010-13-01': give a date") as error:
        run_local_stack()
    assert "\n" not in str(error.value)
    assert not (tmp_path / "state").exists()


def test_replay_until_holds_back_later_sessions(monkeypatch):
    monkeypatch.delenv("STOCK_REPLAY_UNTIL", raising=False)
    assert config.replay_until() is None
    monkeypatch.setenv("STOCK_REPLAY_UNTIL", " 2010-08-13 ")
    assert config.replay_until() == dt.date(2010, 8, 13)
    held = select_bars("sp500_2009", end=config.replay_until())
    assert held["date"].max() == dt.date(2010, 8, 13)


def test_a_long_history_replays_through_kafka_into_silver(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    topic = fresh_topic(3)
    monkeypatch.setenv("STOCK_MARKET_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    bars = select_bars("msft_1986", dt.date(1987, 9, 1), dt.date(1987, 11, 30))
    report = replay(kafka, topic, bars, "msft_1986")
    assert report.sent == bars.height == 63 and report.failed == 0
    ingest_from_sensor(instance, kafka, lake)
    build_silver_from_sensor(instance, lake)
    silver = lake.read(tables.DAILY_BARS).sort("date")
    assert silver.select(bars.columns).equals(bars.sort("date"))
    crash = silver.filter(pl.col("date") == dt.date(1987, 10, 19))  # Black Monday, real data
    assert (
        crash["close"].item()
        < 0.75 * silver.filter(pl.col("date") == dt.date(1987, 10, 16))["close"].item()
    )
    audited = [corporate_actions, CORPORATE_ACTIONS_CHECKS.asset_check()]
    result = dg.materialize(audited, resources={"lake": lake}, instance=instance)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
