"""Earnings calendar from the packaged real data (proximity features: test_pit.py)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.lake import Lake
from stock_assets.pit import ANNOUNCE_DAYS, earnings_proximity
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import EarningsSource
from stock_assets.silver.earnings_calendar import (
    EARNINGS_CHECKS,
    earnings_calendar,
    merge_calendar,
    parse_events,
)
from stock_assets_tests.conftest import materialize_checked


def test_real_earnings_calendar_lands_whole_with_checks_passing(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    _, checks = materialize_checked(
        [earnings_calendar, EARNINGS_CHECKS.asset_check()],
        {"lake": lake, "earnings_source": EarningsSource()},
    )
    assert checks["earnings_calendar_quarantine_empty"].passed
    calendar = lake.read(tables.EARNINGS_CALENDAR)
    assert calendar.height == 36845 and calendar["ticker"].n_unique() == 505
    # the first snapshot is history: each date known from its announcement, none dropped
    announced = calendar["earnings_date"] - dt.timedelta(days=ANNOUNCE_DAYS)
    assert (calendar["first_seen"] == announced).all()
    assert calendar["dropped_on"].null_count() == calendar.height
    aapl_2010 = calendar.filter(
        pl.col("ticker") == "AAPL", pl.col("earnings_date").dt.year() == 2010
    )
    assert aapl_2010["earnings_date"].to_list() == [
        dt.date(2010, 1, 25),
        dt.date(2010, 4, 20),
        dt.date(2010, 7, 20),
        dt.date(2010, 10, 18),
    ]


def test_bad_calendar_rows_are_quarantined(tmp_path):
    path = tmp_path / "calendar.csv"
    pl.DataFrame(
        {
            "ticker": ["MSFT", "msft", "IBM", "IBM", "GE"],
            "earnings_date": ["2010-04-22", "2010-04-22", "2010-04-31", "2010-04-19", "2099-01-01"],
            "source": ["vendor"] * 5,
        }
    ).write_csv(path)
    lake = LakeResource(root=str(tmp_path / "lake"))
    source = EarningsSource(provider="file", path=str(path))
    _, checks = materialize_checked(
        [earnings_calendar, EARNINGS_CHECKS.asset_check()],
        {"lake": lake, "earnings_source": source},
    )
    assert lake.read(tables.EARNINGS_CALENDAR)["ticker"].to_list() == ["IBM", "MSFT"]
    assert sorted(lake.read(tables.EARNINGS_CALENDAR_QUARANTINE)["reason"].to_list()) == [
        "earnings_date is implausibly far ahead",
        "earnings_date is not a YYYY-MM-DD calendar date",
        "ticker is not an upper-case symbol",
    ]
    warning = checks["earnings_calendar_quarantine_empty"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN


def test_the_suite_rejects_duplicate_release_dates(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    calendar = pl.DataFrame(
        {
            "ticker": ["AAPL", "AAPL"],
            "earnings_date": [dt.date(2010, 1, 25), dt.date(2010, 4, 20)],
            "source": ["test", "test"],
            "first_seen": [dt.date(2009, 12, 28), dt.date(2010, 3, 23)],
            "dropped_on": [None, None],
        },
        schema_overrides={"dropped_on": pl.Date},
    )
    results = {r.check_name: r for r in EARNINGS_CHECKS.evaluate(CheckInput(calendar, lake))}
    assert all(r.passed for r in results.values()), results
    twice = pl.concat([calendar, calendar.head(1)])
    results = {r.check_name: r for r in EARNINGS_CHECKS.evaluate(CheckInput(twice, lake))}
    unique = results["earnings_calendar_unique"]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert unique.metadata["sample"].value == ["AAPL 2010-01-25 2009-12-28"]


def test_a_revised_calendar_is_a_new_vintage_and_never_rewrites_the_past(tmp_path):
    """A later snapshot moves AAPL's 2010-04-20 release and adds a missed past one: stored
    entries keep their first_seen, the moved date is dropped that day, the new ones are first
    seen that day, and proximity for days before it is what the first vintage said."""
    lake = Lake(str(tmp_path / "lake"))
    raw = EarningsSource().events()
    first, _ = parse_events(raw, dt.date(2010, 1, 4))
    v1 = merge_calendar(lake.read(tables.EARNINGS_CALENDAR), first, dt.date(2010, 1, 4))
    lake.replace_table(tables.EARNINGS_CALENDAR, v1)
    revision = dt.date(2010, 4, 12)
    moved = pl.col("ticker").eq("AAPL") & pl.col("earnings_date").eq(dt.date(2010, 4, 20))
    revised = pl.concat(
        [
            first.with_columns(
                earnings_date=pl.when(moved)
                .then(pl.lit(dt.date(2010, 4, 14)))
                .otherwise(pl.col("earnings_date"))
            ),
            pl.DataFrame(
                {"ticker": ["AAPL"], "earnings_date": [dt.date(2010, 3, 1)], "source": ["late"]}
            ).cast(first.schema),
        ]
    )
    v2 = merge_calendar(lake.read(tables.EARNINGS_CALENDAR), revised, revision)
    lake.replace_table(tables.EARNINGS_CALENDAR, v2)
    stored = lake.read(tables.EARNINGS_CALENDAR)
    assert stored.height == v1.height + 2  # the moved date is kept, dropped; two new entries
    unchanged = stored.filter(pl.col("first_seen") < revision)
    assert unchanged.select("ticker", "earnings_date", "first_seen").equals(
        v1.select("ticker", "earnings_date", "first_seen")
    )
    aapl = stored.filter(pl.col("ticker") == "AAPL", pl.col("earnings_date").dt.year() == 2010)
    assert aapl.filter(pl.col("dropped_on") == revision)["earnings_date"].to_list() == [
        dt.date(2010, 4, 20)
    ]
    assert sorted(aapl.filter(pl.col("first_seen") == revision)["earnings_date"].to_list()) == [
        dt.date(2010, 3, 1),
        dt.date(2010, 4, 14),
    ]

    days = pl.DataFrame(
        {
            "ticker": "AAPL",
            "date": pl.date_range(dt.date(2010, 3, 1), dt.date(2010, 4, 30), eager=True),
        }
    )
    before_v2, after_v2 = earnings_proximity(days, v1), earnings_proximity(days, stored)
    early = pl.col("date") < revision
    assert before_v2.height == after_v2.height == days.height
    assert before_v2.filter(early).equals(after_v2.filter(early))  # the past as known then
    on = after_v2.filter(pl.col("date") == revision).row(0, named=True)
    assert on["previous_earnings_date"] == dt.date(2010, 3, 1)  # the late entry, from its day
    assert on["next_earnings_date"] == dt.date(2010, 4, 14)  # the moved release
    assert before_v2.filter(pl.col("date") == revision)["next_earnings_date"].item() == dt.date(
        2010, 4, 20
    )
