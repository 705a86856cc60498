"""Earnings calendar and point-in-time S&P 500 universe from the packaged real data."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets.altdata.checks import earnings_checks, membership_checks, universe_checks
from stock_assets.altdata.earnings import (
    EARNINGS_QUARANTINE,
    EARNINGS_TABLE,
    earnings_calendar,
    earnings_proximity,
)
from stock_assets.altdata.resources import EarningsSource, MembershipSource
from stock_assets.altdata.universe import (
    MEMBERSHIP_QUARANTINE,
    MEMBERSHIP_TABLE,
    UNIVERSE_TABLE,
    index_membership,
    restrict_to_members,
    universe,
)
from stock_assets.resources.lake import LakeResource


def run(assets, resources, tags=None) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        assets, resources=resources, instance=dg.DagsterInstance.ephemeral(), tags=tags
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    blocking = [c for c in checks.values() if c.severity == dg.AssetCheckSeverity.ERROR]
    assert blocking and all(c.passed for c in blocking), blocking
    return checks


def test_real_earnings_calendar_and_previous_next_dates(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    checks = run(
        [earnings_calendar, earnings_checks], {"lake": lake, "earnings_source": EarningsSource()}
    )
    assert checks["earnings_calendar_quarantine_empty"].passed
    calendar = lake.scan(EARNINGS_TABLE).collect()
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
    near = earnings_proximity(rows, calendar)
    assert near.columns[:2] == ["ticker", "date"] and near["date"].equals(rows["date"])
    columns = ["previous_earnings_date", "next_earnings_date", "days_to_earnings"]
    assert near.select(columns).rows() == [
        (dt.date(2010, 1, 25), dt.date(2010, 4, 20), 1),
        (dt.date(2010, 4, 20), None, None),  # the release day counts as previous, next is 91 d
        (dt.date(2010, 1, 25), None, None),  # 50 days ahead: not announced yet, so not shown
        (dt.date(2010, 4, 20), dt.date(2010, 7, 20), 25),
        (None, None, None),
    ]  # fmt: skip


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
    checks = run([earnings_calendar, earnings_checks], {"lake": lake, "earnings_source": source})
    assert lake.scan(EARNINGS_TABLE).collect()["ticker"].to_list() == ["IBM", "MSFT"]
    assert sorted(lake.scan(EARNINGS_QUARANTINE).collect()["reason"].to_list()) == [
        "earnings_date is implausibly far ahead",
        "earnings_date is not a YYYY-MM-DD calendar date",
        "ticker is not an upper-case symbol",
    ]
    assert not checks["earnings_calendar_quarantine_empty"].passed


def test_point_in_time_universe_follows_real_index_changes(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    checks = run(
        [index_membership, membership_checks],
        {"lake": lake, "membership_source": MembershipSource()},
    )
    # the real history holds zero-length intervals: kept aside with their reason
    quarantine = lake.scan(MEMBERSHIP_QUARANTINE).collect()
    assert quarantine["reason"].to_list() == ["membership ends on or before the day it starts"] * 3
    intervals = lake.scan(MEMBERSHIP_TABLE).collect()
    assert intervals.height + quarantine.height == 889
    assert not checks["index_membership_quarantine_empty"].passed

    tags = {
        "dagster/asset_partition_range_start": "2010-06-01",
        "dagster/asset_partition_range_end": "2010-07-01",
    }
    checks = run([universe, universe_checks], {"lake": lake}, tags)
    assert checks["universe_member_count"].passed
    members = lake.scan(UNIVERSE_TABLE).collect()
    assert members["date"].n_unique() == 43  # NYSE sessions in June and July 2010
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
