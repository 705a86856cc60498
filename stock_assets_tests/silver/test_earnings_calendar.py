"""Earnings calendar from the packaged real data (proximity features: test_pit.py)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.lake import Lake
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import EarningsSource
from stock_assets.silver.earnings_calendar import EARNINGS_CHECKS, earnings_calendar
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
        }
    )
    results = {r.check_name: r for r in EARNINGS_CHECKS.evaluate(CheckInput(calendar, lake))}
    assert all(r.passed for r in results.values()), results
    twice = pl.concat([calendar, calendar.head(1)])
    results = {r.check_name: r for r in EARNINGS_CHECKS.evaluate(CheckInput(twice, lake))}
    unique = results["earnings_calendar_unique"]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert unique.metadata["sample"].value == ["AAPL 2010-01-25"]
