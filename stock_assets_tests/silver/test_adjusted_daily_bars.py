"""Adjusted bars: continuous across the six real events, one ETFC instrument, point in time.

The point-in-time helpers themselves (`adjust_bars`, `back_adjust`) are tested in test_pit.py;
here the asset, its continuity suite and its write-audit-publish gate.
"""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.lake import month_column
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.adjusted_daily_bars import (
    ADJUSTED_CHECKS,
    CONTINUITY_CHECK,
    adjusted_daily_bars,
)
from stock_assets.silver.corporate_actions import corporate_actions
from stock_assets_tests.conftest import (
    FIRST,
    LAST,
    REAL_EVENTS,
    bars_between,
    check_results,
    step_failures,
    write_silver,
)

YEAR = range_tags(FIRST.isoformat(), LAST.isoformat())
GIS_SPLIT = dt.date(2010, 6, 9)
AROUND_GIS = (dt.date(2010, 5, 3), dt.date(2010, 7, 30))  # a shorter range: fewer partitions


@pytest.fixture(scope="module")
def built(tmp_path_factory, sp500):
    """The real assets over the whole year: silver -> corporate actions -> adjusted (+ check)."""
    lake = LakeResource(root=str(tmp_path_factory.mktemp("adjusted") / "lake"))
    write_silver(lake, sp500)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([corporate_actions], resources={"lake": lake}, instance=instance).success
    result = dg.materialize(
        [adjusted_daily_bars, ADJUSTED_CHECKS.asset_check()],
        resources={"lake": lake},
        instance=instance,
        tags=YEAR,
    )
    assert result.success
    return lake, instance, result


def _around(adjusted: pl.DataFrame, instrument: str, day: dt.date) -> tuple[dict, dict]:
    rows = adjusted.filter(pl.col("instrument") == instrument).sort("date")
    after = rows.filter(pl.col("date") == day).row(0, named=True)
    before = rows.filter(pl.col("date") < day).row(-1, named=True)
    return before, after


@pytest.mark.parametrize(("instrument", "day", "ratio"), REAL_EVENTS)
def test_returns_are_continuous_across_each_real_event(built, instrument, day, ratio):
    adjusted = built[0].read(tables.ADJUSTED_DAILY_BARS)
    before, after = _around(adjusted, instrument, day)
    raw_overnight = after["open"] / before["close"] - 1
    adj_overnight = after["adj_open"] / before["adj_close"] - 1
    assert abs(raw_overnight) > 0.4  # the fake move is there in the raw prices ...
    assert abs(adj_overnight) < 0.10  # ... and gone from the adjusted ones
    assert after["cum_factor"] / before["cum_factor"] == pytest.approx(ratio, rel=0.005)
    # raw prices are kept for display; adjusted = raw * cumulative factor
    assert after["adj_close"] == pytest.approx(after["close"] * after["cum_factor"])
    share_event = instrument != "WY"  # a distribution changes the price, not the share count
    volume_ratio = after["cum_volume_factor"] / before["cum_volume_factor"]
    assert volume_ratio == pytest.approx(ratio if share_event else 1.0, rel=0.005)


def test_etfcd_and_etfc_are_one_instrument(built):
    adjusted = built[0].read(tables.ADJUSTED_DAILY_BARS)
    etfc = adjusted.filter(pl.col("instrument") == "ETFC").sort("date")
    assert set(etfc["ticker"]) == {"ETFC", "ETFCD"}
    assert etfc.filter(pl.col("ticker") == "ETFCD")["date"].to_list() == sorted(
        etfc.filter(pl.col("date").is_between(dt.date(2010, 6, 2), dt.date(2010, 6, 29)))["date"]
    )
    assert etfc["date"].is_unique().all() and etfc.height == 240
    etfc = etfc.with_columns(overnight=pl.col("adj_open") / pl.col("adj_close").shift(1) - 1)
    at = dict(etfc.select("date", "overnight").iter_rows())
    assert abs(at[dt.date(2010, 6, 2)]) < 0.03  # ETFC 1.42 -> ETFCD 14.40 (1:10)
    assert abs(at[dt.date(2010, 6, 30)]) < 0.03  # ETFCD 12.03 -> ETFC 12.02 (8.5x per ticker)
    assert etfc["overnight"].abs().max() < 0.15  # its largest real overnight move is 11%
    assert not adjusted.filter(pl.col("instrument") == "ETFCD").height


def test_blocking_continuity_check_passes_on_real_data_and_fails_on_a_fake_gap(built):
    lake, _, result = built
    (check,) = check_results(result).values()
    assert check.check_name == CONTINUITY_CHECK and check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    adjusted = lake.read(tables.ADJUSTED_DAILY_BARS)
    (passed,) = ADJUSTED_CHECKS.evaluate(CheckInput(adjusted, lake, FIRST, LAST))
    assert passed.passed and passed.metadata["rows"].value == adjusted.height
    fake = adjusted.with_columns(
        pl.when(pl.col("instrument") == "KO", pl.col("date") == dt.date(2010, 3, 1))
        .then(pl.col("adj_open") * 0.5)  # one open at half price: a -50% overnight gap
        .otherwise(pl.col("adj_open"))
        .alias("adj_open")
    )
    (failed,) = ADJUSTED_CHECKS.evaluate(CheckInput(fake, lake, FIRST, LAST))
    assert not failed.passed and failed.metadata["extreme_adjusted_gaps"].value == 1


def test_a_gap_reviewed_as_genuine_passes_the_continuity_check(built):
    """ARG's +44% and MFE's +58% nights are real moves, rejected as splits by review."""
    lake = built[0]
    adjusted = lake.read(tables.ADJUSTED_DAILY_BARS)
    arg = adjusted.filter(pl.col("instrument") == "ARG").sort("date")
    overnight = (arg["adj_open"] / arg["adj_close"].shift(1) - 1).abs().max()
    assert overnight > 0.4  # present in the adjusted series, and still not a failure:
    (passed,) = ADJUSTED_CHECKS.evaluate(CheckInput(arg, lake, FIRST, LAST))
    assert passed.passed


def test_an_unexplained_gap_stops_the_run_before_its_commit(tmp_path, sp500, events):
    """Write-audit-publish: without the GIS split in the event table, GIS's raw -50% night is an
    extreme adjusted gap; the run fails and the adjusted table keeps its last version."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, bars_between(sp500, *AROUND_GIS, ["GIS", "DHR"]))
    lake.replace_table(
        tables.CORPORATE_ACTIONS, events.with_columns(month_column("effective_date"))
    )
    instance = dg.DagsterInstance.ephemeral()
    window = range_tags(*(d.isoformat() for d in AROUND_GIS))
    run = [adjusted_daily_bars, ADJUSTED_CHECKS.asset_check()]
    assert dg.materialize(run, resources={"lake": lake}, instance=instance, tags=window).success
    stored, version = (
        lake.read(tables.ADJUSTED_DAILY_BARS),
        lake.version(tables.ADJUSTED_DAILY_BARS),
    )

    without_gis = events.filter(pl.col("instrument") != "GIS")
    lake.replace_table(
        tables.CORPORATE_ACTIONS, without_gis.with_columns(month_column("effective_date"))
    )
    failed = dg.materialize(
        run, resources={"lake": lake}, instance=instance, tags=window, raise_on_error=False
    )
    assert not failed.success
    (failure,) = step_failures(failed).values()
    assert CONTINUITY_CHECK in failure.description
    assert failure.metadata[f"{CONTINUITY_CHECK}.extreme_adjusted_gaps"].value == 1
    assert lake.version(tables.ADJUSTED_DAILY_BARS) == version
    assert lake.read(tables.ADJUSTED_DAILY_BARS).equals(stored)


def test_rematerializing_with_a_new_event_rewrites_no_earlier_row(tmp_path, sp500, events):
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, bars_between(sp500, *AROUND_GIS, ["GIS", "DHR"]))
    without_gis = events.filter(pl.col("instrument") != "GIS")
    lake.replace_table(
        tables.CORPORATE_ACTIONS, without_gis.with_columns(month_column("effective_date"))
    )
    instance = dg.DagsterInstance.ephemeral()
    window = range_tags(*(d.isoformat() for d in AROUND_GIS))
    run = [adjusted_daily_bars]
    # before the split day the event is not needed (and not knowable): these rows are final
    before_split = range_tags(
        AROUND_GIS[0].isoformat(), (GIS_SPLIT - dt.timedelta(days=1)).isoformat()
    )
    assert dg.materialize(
        run, resources={"lake": lake}, instance=instance, tags=before_split
    ).success
    before = lake.read(tables.ADJUSTED_DAILY_BARS).sort("instrument", "date")
    assert before["date"].max() < GIS_SPLIT
    lake.replace_table(
        tables.CORPORATE_ACTIONS, events.with_columns(month_column("effective_date"))
    )
    assert dg.materialize(run, resources={"lake": lake}, instance=instance, tags=window).success
    after = lake.read(tables.ADJUSTED_DAILY_BARS).sort("instrument", "date")
    earlier = pl.col("date") < GIS_SPLIT
    values = [c for c in before.columns if c not in tables.ADJUSTED_BAR_PROVENANCE]
    assert after.filter(earlier).select(values).equals(before.select(values))
    # the rows were recomputed from the new events' version, and say so
    events_version = lake.version(tables.CORPORATE_ACTIONS)
    assert set(after["corporate_actions_version"]) == {events_version}
    assert set(before["corporate_actions_version"]) == {events_version - 1}
    changed = after.filter(~earlier, pl.col("instrument") == "GIS")["cum_factor"]
    assert set(changed) == {2.0}


def test_an_undecided_jump_sets_one_instrument_aside_and_the_run_commits_the_rest(tmp_path, sp500):
    """A KO 1:1.7 jump on 2010-06-01 with no event behind it awaits review: KO's rows from that
    day have no adjusted prices and carry the reason; DHR and GIS are adjusted as always."""
    jump = dt.date(2010, 6, 1)
    bars = bars_between(sp500, *AROUND_GIS, ["GIS", "DHR", "KO"]).with_columns(
        pl.when(pl.col("ticker") == "KO", pl.col("date") >= jump)
        .then(pl.col(c) * 1.7)
        .otherwise(pl.col(c))
        for c in ("open", "high", "low", "close")
    )
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, bars)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([corporate_actions], resources={"lake": lake}, instance=instance).success
    window = range_tags(*(d.isoformat() for d in AROUND_GIS))
    run = [adjusted_daily_bars, ADJUSTED_CHECKS.asset_check()]
    result = dg.materialize(run, resources={"lake": lake}, instance=instance, tags=window)
    assert result.success
    (check,) = check_results(result).values()
    assert check.passed and check.metadata["rows_set_aside"].value > 0
    stored = lake.read(tables.ADJUSTED_DAILY_BARS)
    ko = stored.filter(pl.col("instrument") == "KO")
    aside = ko.filter(pl.col("date") >= jump)
    assert aside["set_aside"].null_count() == 0 and aside["adj_close"].null_count() == aside.height
    assert ko.filter(pl.col("date") < jump)["set_aside"].null_count() == ko.height - aside.height
    others = stored.filter(pl.col("instrument") != "KO")
    assert others["set_aside"].null_count() == others.height
    assert set(
        others.filter(pl.col("instrument") == "GIS", pl.col("date") >= GIS_SPLIT)["cum_factor"]
    ) == {2.0}
    metadata = result.asset_materializations_for_node("silver__adjusted_daily_bars")[0].metadata
    assert metadata["rows_set_aside"].value == aside.height
    assert "| KO" in metadata["set_aside"].value and "2010-06-01" in metadata["set_aside"].value
