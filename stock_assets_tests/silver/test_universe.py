"""Index membership and the point-in-time S&P 500 universe from the packaged real data.

`pit.members_on` and `pit.restrict_to_members` themselves are tested in test_pit.py.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.gold.assemble import Context, assemble
from stock_assets.lake import Lake
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import MembershipSource
from stock_assets.silver.index_membership import (
    MEMBERSHIP_CHECKS,
    index_membership,
    merge_intervals,
    parse_intervals,
)
from stock_assets.silver.universe import UNIVERSE_CHECKS, universe
from stock_assets_tests.conftest import materialize_checked


def test_point_in_time_universe_follows_real_index_changes(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    _, checks = materialize_checked(
        [index_membership, MEMBERSHIP_CHECKS.asset_check()],
        {"lake": lake, "membership_source": MembershipSource()},
    )
    # the real history holds zero-length intervals: kept aside with their reason
    quarantine = lake.read(tables.INDEX_MEMBERSHIP_QUARANTINE)
    assert quarantine["reason"].to_list() == ["membership ends on or before the day it starts"] * 3
    intervals = lake.read(tables.INDEX_MEMBERSHIP)
    assert intervals.height + quarantine.height == 889
    assert not checks["index_membership_quarantine_empty"].passed

    _, checks = materialize_checked(
        [universe, UNIVERSE_CHECKS.asset_check()],
        {"lake": lake},
        range_tags("2010-06-01", "2010-07-01"),
    )
    assert checks["universe_member_count"].passed
    members = lake.read(tables.UNIVERSE)
    assert members["date"].n_unique() == 43  # NYSE sessions in June and July 2010
    assert set(members["month"]) == {"2010-06", "2010-07"}
    # S&P 500 change of 2010-06-28: CarMax replaced XTO Energy
    on = {
        day: set(members.filter(pl.col("date") == day)["ticker"])
        for day in (dt.date(2010, 6, 25), dt.date(2010, 6, 28))
    }
    assert "XTO" in on[dt.date(2010, 6, 25)] and "KMX" not in on[dt.date(2010, 6, 25)]
    assert "KMX" in on[dt.date(2010, 6, 28)] and "XTO" not in on[dt.date(2010, 6, 28)]


def test_the_suites_reject_empty_intervals_and_warn_on_odd_member_counts(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    intervals = pl.DataFrame(
        {
            "index": ["sp500", "sp500"],
            "ticker": ["XTO", "KMX"],
            "name": ["XTO Energy", "CarMax"],
            "member_from": [dt.date(1990, 1, 2), dt.date(2010, 6, 28)],
            "member_until": [dt.date(2010, 6, 28), None],
            "first_seen": [dt.date(1990, 1, 2), dt.date(2010, 6, 1)],
            "dropped_on": [None, None],
        },
        schema=tables.INDEX_MEMBERSHIP.schema,
    )
    results = {r.check_name: r for r in MEMBERSHIP_CHECKS.evaluate(CheckInput(intervals, lake))}
    assert results["index_membership_schema"].passed
    empty = intervals.with_columns(member_until=pl.col("member_from"))
    results = {r.check_name: r for r in MEMBERSHIP_CHECKS.evaluate(CheckInput(empty, lake))}
    schema = results["index_membership_schema"]
    assert not schema.passed and schema.severity == dg.AssetCheckSeverity.ERROR
    assert schema.metadata["failed_checks"].value == ["interval_not_empty"]

    two_members = pl.DataFrame(
        {"date": [dt.date(2010, 6, 28)] * 2, "index": ["sp500"] * 2, "ticker": ["KMX", "AAPL"]}
    )
    results = {r.check_name: r for r in UNIVERSE_CHECKS.evaluate(CheckInput(two_members, lake))}
    count = results["universe_member_count"]
    assert not count.passed and count.severity == dg.AssetCheckSeverity.WARN
    assert count.metadata["sample"].value == ["2010-06-28: 2"]
    assert results["universe_schema"].passed and results["universe_unique_member_day"].passed


def test_a_later_membership_vintage_changes_no_session_before_it_was_seen(tmp_path, adjusted):
    """A snapshot on 2010-05-14 closes a member's interval back to 2010-03-01 and adds a member
    from 2010-02-01: the universe and the features of sessions before 2010-05-14, recomputed
    after it landed, are what the first vintage gave; from that day on they follow it."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    raw = MembershipSource().intervals()
    first, _ = parse_intervals(raw, dt.date(2010, 1, 4))
    v1 = merge_intervals(lake.read(tables.INDEX_MEMBERSHIP), first, dt.date(2010, 1, 4))
    # history: known as it happened (an interval starting later is known from the first run)
    assert v1["first_seen"].equals(
        v1["member_from"].clip(upper_bound=dt.date(2010, 1, 4)), check_names=False
    )
    lake.replace_table(tables.INDEX_MEMBERSHIP, v1)
    months = range_tags("2010-02-01", "2010-06-01")
    assert dg.materialize([universe], resources={"lake": lake}, tags=months).success
    universe_v1 = lake.read(tables.UNIVERSE)

    seen = dt.date(2010, 5, 14)
    leaver = "AAPL"
    open_aapl = pl.col("ticker").eq(leaver) & pl.col("member_until").is_null()
    newcomer = pl.DataFrame(
        {"index": ["SP500"], "ticker": ["NEWCO"], "name": ["New Co"],
         "member_from": [dt.date(2010, 2, 1)], "member_until": [None]},
    ).cast(first.schema)  # fmt: skip
    revised = pl.concat(
        [
            first.with_columns(
                member_until=pl.when(open_aapl)
                .then(pl.lit(dt.date(2010, 3, 1)))
                .otherwise(pl.col("member_until"))
            ),
            newcomer.with_columns(index=pl.lit(first["index"][0])),
        ]
    )
    v2 = merge_intervals(lake.read(tables.INDEX_MEMBERSHIP), revised, seen)
    lake.replace_table(tables.INDEX_MEMBERSHIP, v2)
    stored = lake.read(tables.INDEX_MEMBERSHIP)
    assert stored.height == v1.height + 2
    assert (
        stored.filter(pl.col("first_seen") < seen).drop("dropped_on").equals(v1.drop("dropped_on"))
    )  # first_seen of stored entries is never rewritten
    assert dg.materialize([universe], resources={"lake": lake}, tags=months).success
    universe_v2 = lake.read(tables.UNIVERSE)

    before = pl.col("date") < seen
    key = ["date", "ticker"]
    assert universe_v2.filter(before).sort(key).equals(universe_v1.filter(before).sort(key))
    after = universe_v2.filter(~before)
    assert leaver not in after["ticker"] and "NEWCO" in after["ticker"]
    assert leaver in universe_v1.filter(~before)["ticker"]

    # features of the sessions before it, recomputed with either vintage, are bit-identical
    start, end = dt.date(2010, 5, 3), dt.date(2010, 5, 28)
    first_bars = adjusted.group_by("instrument").agg(pl.col("date").min().alias("first_date"))
    features = {
        name: assemble(
            adjusted.filter(pl.col("date") <= end),
            start,
            end,
            Context(
                universe=u.filter(pl.col("date").is_between(start, end)), first_bars=first_bars
            ),
        )
        for name, u in (("v1", universe_v1), ("v2", universe_v2))
    }
    fkey = ["date", "instrument"]
    assert features["v1"].filter(before).sort(fkey).equals(features["v2"].filter(before).sort(fkey))
    assert not features["v1"].filter(~before).equals(features["v2"].filter(~before))
