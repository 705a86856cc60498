"""Macro indicators from the packaged sources: release lags, quarantine, month isolation.

The point-in-time join over these rows (`pit.macro_as_of`) is tested in test_pit.py.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.lake import Lake
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import MacroSource
from stock_assets.silver.macro_indicators import (
    MACRO_CHECKS,
    SERIES,
    macro_indicators,
    not_observed,
    parse_observations,
)
from stock_assets_tests.conftest import check_results, materialize_checked

RANGE_TAGS = range_tags("2009-01-01", "2010-12-01")
MARCH_2010 = range_tags("2010-03-01", "2010-03-01")
REQUIRED_SERIES = {
    "us_realgdp", "us_cpi", "us_unemp", "us_core_cpi", "moodys_aaa_yield", "moodys_baa_yield",
    "treasury_3month", "treasury_10year", "treasury_30year", "vix_close", "wti_spot",
}  # fmt: skip
MACRO_AUDIT = MACRO_CHECKS.asset_check()


def materialize_macro(lake: LakeResource, source: MacroSource, tags=RANGE_TAGS):
    return materialize_checked(
        [macro_indicators, MACRO_AUDIT], {"lake": lake, "macro_source": source}, tags
    )


@pytest.fixture(scope="module")
def macro_lake(tmp_path_factory) -> tuple[LakeResource, dg.ExecuteInProcessResult]:
    lake = LakeResource(root=str(tmp_path_factory.mktemp("macro") / "lake"))
    result, _ = materialize_macro(lake, MacroSource())
    return lake, result


def test_real_packaged_series_land_in_delta_with_checks_passing(macro_lake):
    lake, result = macro_lake
    table = lake.read(tables.MACRO_INDICATORS)
    assert table["known_from"].min() >= dt.date(2009, 1, 1)
    assert table["known_from"].max() <= dt.date(2010, 12, 31)
    present = set(table["series"].unique().to_list())
    assert REQUIRED_SERIES - {"vix_close"} <= present  # arch's VIX starts in 2014
    assert table.select("series", "period").is_duplicated().sum() == 0
    checks = check_results(result)
    assert set(checks) == {k.name for k in MACRO_AUDIT.check_keys}
    assert all(c.passed for c in checks.values()), checks
    metadata = result.asset_materializations_for_node("silver__macro_indicators")[0].metadata
    assert metadata["rows_quarantined"].value == 0
    # FRED's "." holiday markers in VIX/WTI and the blank treasury cells are counted, not stored
    assert metadata["source_rows_not_observed"].value > 300
    assert lake.read(tables.MACRO_INDICATORS_QUARANTINE).height == 0


def test_every_packaged_series_has_a_lag_rule_and_the_whole_history_parses():
    raw = MacroSource().observations()
    typed, bad = parse_observations(raw.filter(~not_observed(raw)), dt.date(2026, 1, 1))
    assert bad.height == 0, bad.head()
    assert set(typed["series"].unique().to_list()) == set(SERIES)
    assert set(SERIES) >= REQUIRED_SERIES
    gdp = typed.filter(pl.col("series") == "us_realgdp")
    assert gdp["period"].min() == dt.date(1959, 1, 1)
    assert (gdp["known_from"] - gdp["period_end"]).dt.total_days().unique().to_list() == [120]


def test_each_value_is_stored_with_the_day_it_became_known(macro_lake):
    lake, _ = macro_lake
    values = lake.read(tables.MACRO_INDICATORS)
    # real GDP for 2009Q2 (ends 2009-06-30) is known from 2009-10-28 (quarter end + 120 days)
    q2 = values.filter(pl.col("series") == "us_realgdp", pl.col("period") == dt.date(2009, 4, 1))
    assert q2.select("period_end", "known_from", "month").rows() == [
        (dt.date(2009, 6, 30), dt.date(2009, 10, 28), "2009-10")
    ]
    # core CPI for September 2009 is known 30 days after the month ends, on 2009-10-30
    cpi = values.filter(pl.col("series") == "us_core_cpi", pl.col("period") == dt.date(2009, 9, 1))
    assert cpi["known_from"].to_list() == [dt.date(2009, 10, 30)]
    assert (values["known_from"] >= values["period_end"]).all()


def test_rerunning_one_month_touches_no_other_month(macro_lake):
    lake, _ = macro_lake
    before = lake.read(tables.MACRO_INDICATORS)
    materialize_macro(lake, MacroSource(), MARCH_2010)
    after = lake.read(tables.MACRO_INDICATORS)
    order = ["series", "period"]
    assert after.sort(order).drop("month").equals(before.sort(order).drop("month"))


def test_bad_vendor_rows_go_to_quarantine_with_a_reason(tmp_path):
    rows = [
        ("us_core_cpi", "2010-01-01", "216.8", "vendor"),  # good: known 2010-03-02
        ("us_core_cpi", "2010-02-01", "n/a", "vendor"),  # non-numeric
        ("us_core_cpi", "2010-02-30", "217.0", "vendor"),  # impossible date
        ("us_core_cpi", "2010-02-15", "217.0", "vendor"),  # monthly value mid-month
        ("vix_close", "2010-03-01", "inf", "vendor"),  # not finite
        ("gold_fix", "2010-03-01", "1100", "vendor"),  # no lag rule: cannot be point-in-time
        ("vix_close", "2010-03-02", "18.5", "vendor"),
        ("vix_close", "2010-03-02", "18.6", "vendor"),  # duplicate
        ("wti_spot", "2010-03-04", ".", "vendor"),  # FRED's "no observation": counted only
    ]
    path = tmp_path / "vendor.csv"
    pl.DataFrame(rows, schema=["series", "period", "value", "source"], orient="row").write_csv(path)
    lake = LakeResource(root=str(tmp_path / "lake"))
    _, checks = materialize_macro(lake, MacroSource(provider="file", path=str(path)), MARCH_2010)
    stored = lake.read(tables.MACRO_INDICATORS).sort("series")
    assert stored.select("series", "period", "value", "known_from").rows() == [
        ("us_core_cpi", dt.date(2010, 1, 1), 216.8, dt.date(2010, 3, 2)),
        ("vix_close", dt.date(2010, 3, 2), 18.5, dt.date(2010, 3, 2)),
    ]
    quarantine = lake.read(tables.MACRO_INDICATORS_QUARANTINE)
    reasons = sorted(quarantine["reason"].to_list())
    assert reasons == sorted(
        [
            "value is not a number",
            "period is not a YYYY-MM-DD calendar date",
            "period does not start a month or quarter of the series' frequency",
            "value is not finite",
            "no release-lag rule for this series",
            "duplicate observation for this series and period",
        ]
    )
    assert all('"source":"vendor"' in record for record in quarantine["record"].to_list())
    warn = checks["macro_indicators_quarantine_empty"]
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert warn.metadata["rows"].value == 6
    assert checks["macro_indicators_schema"].passed


def typed_rows(*values: tuple[str, str, str]) -> pl.DataFrame:
    raw = pl.DataFrame(
        [(series, period, value, "test") for series, period, value in values],
        schema=["series", "period", "value", "source"],
        orient="row",
    )
    typed, bad = parse_observations(raw, dt.date(2026, 1, 1))
    assert bad.is_empty()
    return typed


def test_the_suite_rejects_a_value_known_before_its_period_ends(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    good = typed_rows(("us_core_cpi", "2010-01-01", "216.8"), ("vix_close", "2010-03-02", "18.5"))
    results = {r.check_name: r for r in MACRO_CHECKS.evaluate(CheckInput(good, lake))}
    assert all(r.passed for r in results.values()), results
    leaky = good.with_columns(known_from=pl.col("period"))  # CPI "known" on its first day
    results = {r.check_name: r for r in MACRO_CHECKS.evaluate(CheckInput(leaky, lake))}
    schema = results["macro_indicators_schema"]
    assert not schema.passed and schema.severity == dg.AssetCheckSeverity.ERROR
    assert schema.metadata["failed_checks"].value == ["known_only_after_period"]
    twice = pl.concat([good, good.head(1)])
    results = {r.check_name: r for r in MACRO_CHECKS.evaluate(CheckInput(twice, lake))}
    assert not results["macro_indicators_unique_series_period"].passed
