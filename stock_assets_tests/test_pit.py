"""Point-in-time helpers: what was known on a given day (stock_assets/pit.py).

Every join looks backwards only; each test shows a value invisible before the day it was known.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from stock_assets.calendar import trading_days
from stock_assets.pit import (
    ADJUSTED_COLUMNS,
    adjust_bars,
    back_adjust,
    earnings_proximity,
    instrument_map,
    known_on,
    macro_as_of,
    macro_as_of_wide,
    members_on,
    restrict_to_members,
    with_instrument,
)
from stock_assets.resources.sources import EarningsSource, MacroSource, MembershipSource
from stock_assets.silver.earnings_calendar import parse_events
from stock_assets.silver.index_membership import parse_intervals
from stock_assets.silver.macro_indicators import not_observed, parse_observations
from stock_assets.silver.vintages import merge_vintage

TODAY = dt.date(2026, 1, 1)
GIS_SPLIT = dt.date(2010, 6, 9)


# -- instruments and adjustments -------------------------------------------------------------
def test_renamed_tickers_map_to_the_instruments_first_name(sp500, events):
    assert instrument_map(events) == {"ETFC": "ETFC", "ETFCD": "ETFC"}
    day = dt.date(2010, 6, 15)
    window = sp500.filter(pl.col("date") == day, pl.col("ticker").is_in(["ETFCD", "KO"]))
    assert dict(with_instrument(window, events).select("ticker", "instrument").iter_rows()) == {
        "ETFCD": "ETFC",
        "KO": "KO",
    }


def test_an_event_known_on_day_t_changes_nothing_a_reader_saw_before_t(sp500, events):
    without_gis = events.filter(~((pl.col("instrument") == "GIS") & (pl.col("action") == "split")))
    gis = sp500.filter(pl.col("ticker") == "GIS")
    old, new = adjust_bars(gis, without_gis), adjust_bars(gis, events)
    assert new.columns == ADJUSTED_COLUMNS
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


# -- macro indicators -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def macro_values() -> pl.DataFrame:
    """Every packaged macro observation with its release lag applied (as silver stores them)."""
    raw = MacroSource().observations()
    typed, bad = parse_observations(raw.filter(~not_observed(raw)), TODAY)
    assert bad.is_empty()
    return typed


def test_a_macro_value_is_invisible_before_its_availability_date(macro_values):
    # real GDP for 2009Q2 (ends 2009-06-30) is known from 2009-10-28 (quarter end + 120 days)
    q2 = macro_values.filter(
        pl.col("series") == "us_realgdp", pl.col("period") == dt.date(2009, 4, 1)
    )
    assert q2["known_from"].to_list() == [dt.date(2009, 10, 28)]
    dates = pl.DataFrame({"date": [dt.date(2009, 10, 27), dt.date(2009, 10, 28)]})
    seen = macro_as_of(macro_values, dates, ["us_realgdp", "us_core_cpi", "treasury_10year"])
    assert seen.columns == ["date", "series", "value", "period", "known_from"]
    gdp = seen.filter(pl.col("series") == "us_realgdp").sort("date")
    assert gdp["period"].to_list() == [dt.date(2009, 1, 1), dt.date(2009, 4, 1)]
    assert gdp["value"][1] == q2["value"][0] != gdp["value"][0]
    # core CPI for September 2009 becomes known 30 days after the month ends: 2009-10-30
    cpi = seen.filter(pl.col("series") == "us_core_cpi")
    assert cpi["period"].to_list() == [dt.date(2009, 8, 1)] * 2
    # daily market series are known at that day's close
    ten_year = seen.filter(pl.col("series") == "treasury_10year").sort("date")
    assert ten_year["period"].to_list() == dates["date"].to_list()
    # nothing known from the future, however the frame is built
    assert (seen["known_from"] <= seen["date"]).all()
    keyed = dates.with_columns(pl.lit("x").alias("k"))
    wide = macro_as_of_wide(macro_values, keyed, ["us_realgdp"])
    assert wide.columns == ["date", "k", "us_realgdp"]
    assert wide["us_realgdp"].to_list() == gdp["value"].to_list()


def test_a_day_before_any_release_sees_nothing(macro_values):
    seen = macro_as_of(macro_values, pl.DataFrame({"date": [dt.date(1959, 3, 1)]}), ["us_realgdp"])
    assert seen.select("value", "period", "known_from").rows() == [(None, None, None)]


# -- earnings ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def earnings() -> pl.DataFrame:
    calendar, _ = parse_events(EarningsSource().events(), TODAY)
    return calendar


def test_previous_and_next_earnings_dates_never_leak_the_unannounced_schedule(earnings):
    rows = pl.DataFrame(
        {
            "ticker": ["AAPL", "AAPL", "AAPL", "AAPL", "NOPE"],
            "date": [
                dt.date(2010, 4, 19),
                dt.date(2010, 4, 20),
                dt.date(2010, 3, 1),
                dt.date(2010, 6, 25),
                dt.date(2010, 3, 1),
            ],
        }
    )
    near = earnings_proximity(rows, earnings)
    assert near.columns[:2] == ["ticker", "date"] and near["date"].equals(rows["date"])
    columns = ["previous_earnings_date", "next_earnings_date", "days_to_earnings"]
    assert near.select(columns).rows() == [
        (dt.date(2010, 1, 25), dt.date(2010, 4, 20), 1),
        (dt.date(2010, 4, 20), None, None),  # the release day counts as previous, next is 91 d
        (dt.date(2010, 1, 25), None, None),  # 50 days ahead: not announced yet, so not shown
        (dt.date(2010, 4, 20), dt.date(2010, 7, 20), 25),
        (None, None, None),
    ]  # fmt: skip
    assert near["days_since_earnings"].to_list() == [84, 0, 35, 66, None]
    wider = earnings_proximity(rows, earnings, announce_days=60)
    assert wider["next_earnings_date"][2] == dt.date(2010, 4, 20)


# -- index membership -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def membership() -> pl.DataFrame:
    intervals, _ = parse_intervals(MembershipSource().intervals(), TODAY)
    return intervals


def test_members_on_each_session_follow_real_index_changes(membership):
    days = trading_days(dt.date(2010, 6, 25), dt.date(2010, 7, 1))
    members = members_on(membership, days)
    assert sorted(set(members["date"])) == days
    assert set(members["month"]) == {"2010-06", "2010-07"}
    assert members.select("date", "index", "ticker").is_duplicated().sum() == 0
    per_day = members.group_by("date").len()["len"]
    assert per_day.min() >= 450 and per_day.max() <= 510
    # S&P 500 change of 2010-06-28: CarMax replaced XTO Energy
    frame = pl.DataFrame(
        {
            "ticker": ["XTO", "XTO", "KMX", "KMX", "AAPL"],
            "date": [dt.date(2010, 6, 25), dt.date(2010, 6, 28)] * 2 + [dt.date(2010, 7, 1)],
            "close": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    kept = restrict_to_members(frame, members)
    assert kept.rows() == [
        ("XTO", dt.date(2010, 6, 25), 1.0),
        ("KMX", dt.date(2010, 6, 28), 4.0),
        ("AAPL", dt.date(2010, 7, 1), 5.0),
    ]


def test_membership_intervals_are_half_open():
    intervals = pl.DataFrame(
        {
            "index": ["sp500"],
            "ticker": ["XTO"],
            "name": ["XTO Energy"],
            "member_from": [dt.date(2010, 6, 1)],
            "member_until": [dt.date(2010, 6, 28)],
        }
    )
    days = [dt.date(2010, 5, 28), dt.date(2010, 6, 1), dt.date(2010, 6, 25), dt.date(2010, 6, 28)]
    assert members_on(intervals, days)["date"].to_list() == days[1:3]
    still = members_on(intervals.with_columns(member_until=pl.lit(None, pl.Date)), days)
    assert still["date"].to_list() == days[1:]


def test_vintages_keep_first_seen_and_a_relisted_entry_is_a_new_one():
    """Mechanics of `silver.vintages.merge_vintage` and `known_on` on a three-row calendar."""
    day1, day2, day3 = dt.date(2010, 1, 4), dt.date(2010, 2, 1), dt.date(2010, 3, 1)
    snapshot = pl.DataFrame(
        {"ticker": ["A", "A", "B"], "earnings_date": [day2, day3, day3], "source": "s"}
    )
    v1 = merge_vintage(pl.DataFrame(), snapshot, ["ticker", "earnings_date"], day1, pl.lit(day1))
    v2 = merge_vintage(v1, snapshot.head(2), ["ticker", "earnings_date"], day2, pl.lit(day1))
    v3 = merge_vintage(v2, snapshot, ["ticker", "earnings_date"], day3, pl.lit(day1))
    assert v3.height == 4  # B dropped on day2, listed again on day3: a second entry
    b = v3.filter(pl.col("ticker") == "B").sort("first_seen")
    assert b.select("first_seen", "dropped_on").rows() == [(day1, day2), (day3, None)]
    assert v3.filter(pl.col("ticker") == "A")["first_seen"].to_list() == [day1, day1]
    known = {
        day: v3.filter(known_on(pl.lit(day)))["ticker"].sort().to_list()
        for day in (day1, day2, day3)
    }
    assert known == {day1: ["A", "A", "B"], day2: ["A", "A"], day3: ["A", "A", "B"]}
