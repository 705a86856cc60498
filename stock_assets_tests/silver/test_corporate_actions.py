"""Corporate actions on the REAL events of the bundled sp500_2009 set (docs/DATA.md)."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.bronze.replay import select_bars
from stock_assets.checks import CheckInput
from stock_assets.lake import Lake
from stock_assets.pit import adjust_bars
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import CorporateActionSource
from stock_assets.silver.corporate_actions import (
    CORPORATE_ACTIONS_CHECKS,
    EXPLAINED_CHECK,
    build_corporate_actions,
    corporate_actions,
    load_curated,
    parse_vendor,
    read_events,
    reviewed_events,
    unexplained_gaps,
)
from stock_assets_tests.conftest import REAL_EVENTS, check_results, write_silver

FAKE_DAY = dt.date(2010, 3, 1)
PRICES = ("open", "high", "low", "close")


def _price_event(events: pl.DataFrame, instrument: str, day: dt.date) -> dict:
    rows = events.filter(
        pl.col("instrument") == instrument,
        pl.col("effective_date") == day,
        pl.col("action") != "ticker_change",
    )
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def with_fake_ko_jump(bars: pl.DataFrame) -> pl.DataFrame:
    """KO x1.7 from FAKE_DAY on: a 1:1.7 jump with no event behind it."""
    return bars.with_columns(
        pl.when(pl.col("ticker") == "KO", pl.col("date") >= FAKE_DAY)
        .then(pl.col(c) * 1.7)
        .otherwise(pl.col(c))
        for c in PRICES
    )


def audit(events: pl.DataFrame, lake) -> dg.AssetCheckResult:
    (result,) = CORPORATE_ACTIONS_CHECKS.evaluate(CheckInput(events, lake))
    assert result.check_name == EXPLAINED_CHECK
    return result


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


def test_an_undecided_gap_sets_its_instrument_aside_and_a_jump_no_event_covers_fails(
    tmp_path, sp500, events
):
    """A jump awaiting review no longer stops the chain: its instrument is set aside from that
    day. The check still fails when the bars hold a jump the event table does not account for."""
    assert unexplained_gaps(sp500, events).is_empty()
    real = Lake(str(tmp_path / "real"))
    write_silver(real, sp500)
    passed = audit(events, real)
    assert passed.passed and passed.severity == dg.AssetCheckSeverity.ERROR
    assert passed.metadata["needs_review"].value == 0

    fake = with_fake_ko_jump(sp500)
    fake_events = build_corporate_actions(fake, load_curated())
    flagged = fake_events.filter(pl.col("status") == "needs_review")
    assert flagged.select("instrument", "effective_date", "known_from").rows() == [
        ("KO", FAKE_DAY, FAKE_DAY)
    ]
    assert unexplained_gaps(fake, fake_events).is_empty()  # set aside, not judged
    adjusted = adjust_bars(fake, fake_events)
    ko = adjusted.filter(pl.col("instrument") == "KO")
    aside = ko.filter(pl.col("set_aside").is_not_null())
    assert (
        aside["date"].min() == FAKE_DAY
        and aside.height == ko.filter(pl.col("date") >= FAKE_DAY).height
    )
    assert aside["adj_close"].null_count() == aside.height
    assert aside["set_aside"][0].startswith("price jump on 2010-03-01 (prev close / open 0.5827)")
    assert adjusted.filter(pl.col("instrument") != "KO")["set_aside"].null_count() == (
        adjusted.height - ko.height
    )
    faked = Lake(str(tmp_path / "fake"))
    write_silver(faked, fake)
    result = audit(fake_events, faked)
    assert result.passed and result.metadata["needs_review"].value == 1
    assert "KO" in result.metadata["set_aside_instruments"].value
    # the real events against the faked bars: a jump no event explains is genuinely wrong
    stale = audit(events, faked)
    assert not stale.passed and stale.metadata["unexplained_extreme_gaps"].value == 1


def test_asset_sets_a_fake_gap_aside_and_commits_the_other_instruments(tmp_path, sp500):
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, sp500)
    instance = dg.DagsterInstance.ephemeral()
    audited = [corporate_actions, CORPORATE_ACTIONS_CHECKS.asset_check()]
    result = dg.materialize(audited, resources={"lake": lake}, instance=instance)
    assert result.success
    (check,) = check_results(result).values()
    assert check.check_name == EXPLAINED_CHECK and check.passed
    table = lake.read(tables.CORPORATE_ACTIONS)
    assert table.height == 10 and set(table["month"]) >= {"2010-06", "2010-07"}
    metadata = result.asset_materializations_for_node("silver__corporate_actions")[0].metadata
    assert metadata["needs_review"].value == 0 and metadata["applied"].value == 8
    assert metadata["vendor_records"].value == 0
    assert metadata["checked_before_commit"].value == [EXPLAINED_CHECK]
    version = lake.version(tables.CORPORATE_ACTIONS)

    # a 1:1.7 jump on one real day with no event behind it: into the day and back out
    ko = sp500.filter(pl.col("ticker") == "KO", pl.col("date") == FAKE_DAY)
    bad = pl.concat([sp500.filter(pl.col("date") == FAKE_DAY, pl.col("ticker") != "KO"), ko])
    bad = bad.with_columns(
        pl.when(pl.col("ticker") == "KO").then(pl.col(c) * 1.7).otherwise(pl.col(c)) for c in PRICES
    )
    write_silver(lake, bad)
    again = dg.materialize(audited, resources={"lake": lake}, instance=instance)
    assert again.success  # one undecided instrument never blocks the chain
    metadata = again.asset_materializations_for_node("silver__corporate_actions")[0].metadata
    assert metadata["needs_review"].value == 2
    assert "KO" in metadata["set_aside_instruments"].value
    assert lake.version(tables.CORPORATE_ACTIONS) == version + 1
    stored = read_events(lake)
    pending = stored.filter(pl.col("status") == "needs_review")
    assert set(pending["instrument"]) == {"KO"} and pending["effective_date"].min() == FAKE_DAY
    order = ["effective_date", "instrument", "action"]
    others = stored.filter(pl.col("instrument") != "KO").sort(order)
    assert others.equals(table.drop("month").sort(order))


def test_a_vendor_record_overrides_detection_from_the_day_it_was_published(tmp_path, sp500):
    """WY's distribution from a vendor file instead of the curated table, published two sessions
    late: applied from then on, WY set aside in between; a curated row beats the vendor's."""
    vendor_file = tmp_path / "vendor_actions.csv"
    vendor_file.write_text(
        "instrument,action,effective_date,ratio,new_ticker,known_from,note\n"
        "WY,special_distribution,2010-07-20,2.661,,2010-07-22,REIT conversion\n"
    )
    source = CorporateActionSource(provider="file", path=str(vendor_file))
    vendor = parse_vendor(source.records())
    curated = load_curated()
    without_wy = curated.filter(pl.col("instrument") != "WY")
    events = build_corporate_actions(sp500, reviewed_events(without_wy, vendor))
    wy = _price_event(events, "WY", dt.date(2010, 7, 20))
    assert (wy["source"], wy["status"], wy["ratio"]) == ("vendor", "corrected", 2.661)
    assert wy["known_from"] == dt.date(2010, 7, 22)
    adjusted = adjust_bars(sp500.filter(pl.col("ticker") == "WY"), events).sort("date")
    aside = adjusted.filter(pl.col("set_aside").is_not_null())
    assert aside["date"].to_list() == [dt.date(2010, 7, 20), dt.date(2010, 7, 21)]
    assert aside["set_aside"][0].startswith("price jump on 2010-07-20 (prev close / open 2.6609)")
    assert adjusted.filter(pl.col("date") >= dt.date(2010, 7, 22))["cum_factor"].min() == 2.661
    assert unexplained_gaps(sp500, events).is_empty()

    both = build_corporate_actions(sp500, reviewed_events(curated, vendor))
    assert _price_event(both, "WY", dt.date(2010, 7, 20))["source"] == "curated"
    assert CorporateActionSource().records().is_empty()  # off unless a file is configured
    vendor_file.write_text(
        "instrument,action,effective_date,ratio,new_ticker,known_from,note\n"
        "WY,split,2010-07-20,two,,,\n"
    )
    with pytest.raises(ValueError, match="cannot be read"):
        parse_vendor(source.records())


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


def test_audit_in_a_one_session_chain_run_reads_every_event(tmp_path, sp500):
    """The chain's runs carry a session range; the asset still rewrites the whole table, so the
    audit must read all of it (reading the range's events alone left every split unexplained)."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, sp500)
    newest = sp500["date"].max().isoformat()
    one_session = {
        "dagster/asset_partition_range_start": newest,
        "dagster/asset_partition_range_end": newest,
    }
    audited = [corporate_actions, CORPORATE_ACTIONS_CHECKS.asset_check()]
    result = dg.materialize(audited, resources={"lake": lake}, tags=one_session)
    assert result.success
    (check,) = check_results(result).values()
    assert check.passed, check.metadata
    assert check.metadata["unexplained_extreme_gaps"].value == 0
