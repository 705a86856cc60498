"""Adjusted bars: continuous across the six real events, one ETFC instrument, point in time."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets.market.adjusted import (
    ADJUSTED_BARS,
    CONTINUITY_CHECK,
    adjust_bars,
    adjusted_daily_bars,
    adjusted_daily_bars_checks,
    back_adjust,
    check_continuity,
)
from stock_assets.market.corporate_actions import (
    CORPORATE_ACTIONS,
    corporate_actions,
)
from stock_assets.resources.lake import LakeResource, month_column
from stock_assets_tests.test_corporate_actions import FIRST, LAST, REAL_EVENTS, write_silver

RANGE_TAGS = {
    "dagster/asset_partition_range_start": FIRST.isoformat(),
    "dagster/asset_partition_range_end": LAST.isoformat(),
}
GIS_SPLIT = dt.date(2010, 6, 9)


@pytest.fixture(scope="module")
def built(tmp_path_factory, sp500):
    """The real assets over the whole year: silver -> corporate actions -> adjusted (+ check)."""
    lake = LakeResource(root=str(tmp_path_factory.mktemp("adjusted") / "lake"))
    write_silver(lake, sp500)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([corporate_actions], resources={"lake": lake}, instance=instance).success
    result = dg.materialize(
        [adjusted_daily_bars, adjusted_daily_bars_checks],
        resources={"lake": lake},
        instance=instance,
        tags=RANGE_TAGS,
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
    adjusted = built[0].scan(ADJUSTED_BARS).collect()
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
    adjusted = built[0].scan(ADJUSTED_BARS).collect()
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


def test_blocking_continuity_check_passes_on_real_data_and_fails_on_a_fake_gap(built, events):
    lake, _, result = built
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CONTINUITY_CHECK and check.passed
    adjusted = lake.scan(ADJUSTED_BARS).collect()
    assert check_continuity(adjusted, events).passed
    fake = adjusted.with_columns(
        pl.when(pl.col("instrument") == "KO", pl.col("date") == dt.date(2010, 3, 1))
        .then(pl.col("adj_open") * 0.5)  # one open at half price: a -50% overnight gap
        .otherwise(pl.col("adj_open"))
        .alias("adj_open")
    )
    failed = check_continuity(fake, events)
    assert not failed.passed and failed.metadata["extreme_adjusted_gaps"].value == 1


def test_an_event_known_on_day_t_changes_nothing_a_reader_saw_before_t(sp500, events):
    without_gis = events.filter(~((pl.col("instrument") == "GIS") & (pl.col("action") == "split")))
    gis = sp500.filter(pl.col("ticker") == "GIS")
    old, new = adjust_bars(gis, without_gis), adjust_bars(gis, events)
    earlier = pl.col("date") < GIS_SPLIT
    assert new.filter(earlier).equals(old.filter(earlier))  # stored rows before t never change
    assert not new.filter(~earlier).equals(old.filter(~earlier))
    day_before = GIS_SPLIT - dt.timedelta(days=1)
    assert back_adjust(new, day_before).equals(back_adjust(old, day_before))
    # as of t the conventional back-adjusted history halves: what a backtest on day t would see
    as_of_t = back_adjust(new, GIS_SPLIT).filter(pl.col("date") == dt.date(2010, 6, 8))
    assert as_of_t["back_close"].item() == pytest.approx(75.14 / 2)
    assert as_of_t["back_volume"].item() == pytest.approx(as_of_t["volume"].item() * 2)


def test_a_late_known_event_only_applies_from_the_day_it_became_known(sp500, events):
    known_late = events.with_columns(
        known_from=pl.when(pl.col("instrument") == "GIS")
        .then(pl.lit(dt.date(2010, 6, 15)))
        .otherwise(pl.col("known_from"))
    )
    gis = adjust_bars(sp500.filter(pl.col("ticker") == "GIS"), known_late)
    factors = dict(gis.select("date", "cum_factor").iter_rows())
    assert factors[dt.date(2010, 6, 14)] == 1.0 and factors[dt.date(2010, 6, 15)] == 2.0
    as_of = adjust_bars(sp500.filter(pl.col("ticker") == "GIS"), known_late, dt.date(2010, 6, 11))
    assert as_of["cum_factor"].max() == 1.0 and as_of["date"].max() == dt.date(2010, 6, 11)


def test_rematerializing_with_a_new_event_rewrites_no_earlier_row(tmp_path, sp500, events):
    lake = LakeResource(root=str(tmp_path / "lake"))
    write_silver(lake, sp500.filter(pl.col("ticker").is_in(["GIS", "DHR"])))
    without_gis = events.filter(pl.col("instrument") != "GIS")
    lake.replace_table(
        CORPORATE_ACTIONS, without_gis.with_columns(month_column("effective_date")), ["month"]
    )
    instance = dg.DagsterInstance.ephemeral()
    run = [adjusted_daily_bars]
    assert dg.materialize(run, resources={"lake": lake}, instance=instance, tags=RANGE_TAGS).success
    before = lake.scan(ADJUSTED_BARS).collect().sort("instrument", "date")
    lake.replace_table(
        CORPORATE_ACTIONS, events.with_columns(month_column("effective_date")), ["month"]
    )
    assert dg.materialize(run, resources={"lake": lake}, instance=instance, tags=RANGE_TAGS).success
    after = lake.scan(ADJUSTED_BARS).collect().sort("instrument", "date")
    earlier = pl.col("date") < GIS_SPLIT
    assert after.filter(earlier).equals(before.filter(earlier))
    changed = after.filter(~earlier, pl.col("instrument") == "GIS")["cum_factor"]
    assert set(changed) == {2.0}
