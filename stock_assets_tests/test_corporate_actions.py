"""Corporate actions on the REAL events of the bundled sp500_2009 set (DESIGN.md, "Data quirks")."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets.ingestion.replay import select_bars
from stock_assets.market.assets import DAILY_BARS, SILVER_COLUMNS
from stock_assets.market.corporate_actions import (
    CORPORATE_ACTIONS,
    EXPLAINED_CHECK,
    build_corporate_actions,
    check_gaps_explained,
    corporate_actions,
    corporate_actions_checks,
    load_curated,
)
from stock_assets.resources.lake import LakeResource, month_column

# (instrument, effective date, expected ratio as new shares per old share / price factor)
REAL_EVENTS = [
    ("DHR", dt.date(2010, 6, 14), 2.0),
    ("ESRX", dt.date(2010, 6, 8), 2.0),
    ("GIS", dt.date(2010, 6, 9), 2.0),
    ("STR", dt.date(2010, 7, 1), 3.0),
    ("WY", dt.date(2010, 7, 20), 2.66),
    ("ETFC", dt.date(2010, 6, 2), 0.1),
]
FIRST, LAST = dt.date(2009, 8, 21), dt.date(2010, 8, 20)


def write_silver(lake: LakeResource, bars: pl.DataFrame) -> None:
    """Silver daily bars straight from a bundled set (the Kafka path is tested elsewhere)."""
    silver = bars.with_columns(
        kafka_partition=pl.lit(0, pl.Int32), kafka_offset=pl.int_range(pl.len(), dtype=pl.Int64)
    ).with_columns(month_column())
    start, end = silver["date"].min(), silver["date"].max()
    lake.overwrite_dates(
        DAILY_BARS, silver.select(SILVER_COLUMNS).to_arrow(), start, end, partition_by=["month"]
    )


def _price_event(events: pl.DataFrame, instrument: str, day: dt.date) -> dict:
    rows = events.filter(
        pl.col("instrument") == instrument,
        pl.col("effective_date") == day,
        pl.col("action") != "ticker_change",
    )
    assert rows.height == 1, rows
    return rows.row(0, named=True)


@pytest.mark.parametrize(("instrument", "day", "ratio"), REAL_EVENTS)
def test_each_real_event_is_found_with_the_right_ratio(events, instrument, day, ratio):
    event = _price_event(events, instrument, day)
    assert event["status"] in {"confirmed", "corrected"}
    assert event["ratio"] == pytest.approx(ratio, rel=0.005)
    assert event["detected_ratio"] == pytest.approx(ratio, rel=0.05)  # measured from the bars
    assert event["known_from"] == day


def test_detection_alone_finds_the_splits_and_flags_the_rest_for_review(sp500):
    detected = build_corporate_actions(sp500, load_curated().clear())
    splits = {
        (r["instrument"], r["effective_date"]): r["ratio"]
        for r in detected.filter(pl.col("status") == "detected").iter_rows(named=True)
        if r["action"] in {"split", "reverse_split"}
    }
    assert splits == {(i, d): r for i, d, r in REAL_EVENTS if i != "WY"}
    review = detected.filter(pl.col("status") == "needs_review")
    assert set(review["instrument"]) == {"WY", "ARG", "MFE"}  # 2.66x, +44%, +58%: not k:1
    assert detected.filter(pl.col("action") == "reverse_split")["volume_ratio"].item() < 0.1


def test_etfcd_is_detected_as_etfc_trading_under_another_ticker(events):
    changes = events.filter(pl.col("action") == "ticker_change").sort("effective_date")
    assert changes.select("instrument", "ticker", "new_ticker", "effective_date").rows() == [
        ("ETFC", "ETFC", "ETFCD", dt.date(2010, 6, 2)),
        ("ETFC", "ETFCD", "ETFC", dt.date(2010, 6, 30)),
    ]
    assert set(changes["status"]) == {"confirmed"}
    reverse = _price_event(events, "ETFC", dt.date(2010, 6, 2))
    assert reverse["ticker"] == "ETFCD" and reverse["action"] == "reverse_split"


def test_curated_rows_about_other_data_or_already_adjusted_bars_do_not_apply(events):
    assert not events.filter(pl.col("instrument") == "AAPL").height  # 2000/2005 rows: other set
    adjusted_msft = select_bars("msft_1986", dt.date(2003, 1, 2), dt.date(2003, 3, 31))
    msft = build_corporate_actions(adjusted_msft, load_curated())
    assert msft.select("action", "status").rows() == [("split", "not_observed")]


def test_real_data_passes_and_an_injected_fake_gap_fails_the_blocking_check(sp500, events):
    assert check_gaps_explained(sp500, events).passed
    day = dt.date(2010, 3, 1)
    fake = sp500.with_columns(
        pl.when(pl.col("ticker") == "KO", pl.col("date") >= day)
        .then(pl.col(c) * 1.7)
        .otherwise(pl.col(c))
        for c in ("open", "high", "low", "close")
    )
    fake_events = build_corporate_actions(fake, load_curated())
    result = check_gaps_explained(fake, fake_events)
    assert not result.passed
    assert result.metadata["needs_review"].value == 1
    assert result.metadata["unexplained_extreme_gaps"].value == 1
    flagged = fake_events.filter(pl.col("status") == "needs_review")
    assert flagged.select("instrument", "effective_date").rows() == [("KO", day)]


def test_asset_writes_the_table_and_the_check_blocks_on_a_fake_gap(tmp_path, sp500):
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, sp500)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [corporate_actions, corporate_actions_checks], resources={"lake": lake}, instance=instance
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == EXPLAINED_CHECK and check.passed
    table = lake.scan(CORPORATE_ACTIONS).collect()
    assert table.height == 10 and set(table["month"]) >= {"2010-06", "2010-07"}
    metadata = result.asset_materializations_for_node("silver__corporate_actions")[0].metadata
    assert metadata["needs_review"].value == 0 and metadata["applied"].value == 8

    # a 1:1.7 jump on one real day with no event behind it
    day = dt.date(2010, 3, 1)
    ko = sp500.filter(pl.col("ticker") == "KO", pl.col("date") == day)
    bad = pl.concat([sp500.filter(pl.col("date") == day, pl.col("ticker") != "KO"), ko])
    bad = bad.with_columns(
        pl.when(pl.col("ticker") == "KO").then(pl.col(c) * 1.7).otherwise(pl.col(c))
        for c in ("open", "high", "low", "close")
    )
    write_silver(lake, bad)
    failed = dg.materialize(
        [corporate_actions, corporate_actions_checks],
        resources={"lake": lake},
        instance=instance,
        raise_on_error=False,
    )
    (check,) = failed.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["needs_review"].value == 2  # into the fake day and back out of it


def test_graph_wires_corporate_actions_between_silver_bars_and_adjusted_bars():
    from stock_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    daily, actions, adjusted, quality = (
        dg.AssetKey(["silver", name])
        for name in ("daily_bars", "corporate_actions", "adjusted_daily_bars", "data_quality")
    )
    assert graph.get(actions).parent_keys == {daily}
    assert graph.get(adjusted).parent_keys == {daily, actions}
    assert graph.get(quality).parent_keys == {daily, actions}
    assert graph.get(adjusted).partitions_def == graph.get(daily).partitions_def
    assert graph.get(actions).partitions_def is None
    assert {graph.get(k).group_name for k in (actions, adjusted, quality)} == {"market"}
    blocking = {c.name for c in graph.asset_check_keys if graph.get(c).blocking}
    assert {EXPLAINED_CHECK, "adjusted_daily_bars_continuous"} <= blocking
