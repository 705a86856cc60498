"""Macro indicators from the packaged sources: release lags, point-in-time joins, quarantine."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets.altdata.checks import macro_checks
from stock_assets.altdata.macro import (
    MACRO_QUARANTINE,
    MACRO_TABLE,
    SERIES,
    as_of,
    as_of_wide,
    macro_indicators,
)
from stock_assets.altdata.resources import MacroSource
from stock_assets.resources.lake import LakeResource

RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2009-01-01",
    "dagster/asset_partition_range_end": "2010-12-01",
}
REQUIRED_SERIES = {
    "us_realgdp", "us_cpi", "us_unemp", "us_core_cpi", "moodys_aaa_yield", "moodys_baa_yield",
    "treasury_3month", "treasury_10year", "treasury_30year", "vix_close", "wti_spot",
}  # fmt: skip


def materialize_macro(lake: LakeResource, source: MacroSource, tags=RANGE_TAGS):
    result = dg.materialize(
        [macro_indicators, macro_checks],
        resources={"lake": lake, "macro_source": source},
        instance=dg.DagsterInstance.ephemeral(),
        tags=tags,
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def macro_lake(tmp_path_factory) -> tuple[LakeResource, dg.ExecuteInProcessResult]:
    lake = LakeResource(root=str(tmp_path_factory.mktemp("macro") / "lake"))
    return lake, materialize_macro(lake, MacroSource())


def test_real_packaged_series_land_in_delta_with_checks_passing(macro_lake):
    lake, result = macro_lake
    table = lake.scan(MACRO_TABLE).collect()
    assert table["known_from"].min() >= dt.date(2009, 1, 1)
    assert table["known_from"].max() <= dt.date(2010, 12, 31)
    present = set(table["series"].unique().to_list())
    assert REQUIRED_SERIES - {"vix_close"} <= present  # arch's VIX starts in 2014
    assert table.select("series", "period").is_duplicated().sum() == 0
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {k.name for k in macro_checks.check_keys}
    assert all(c.passed for c in checks.values()), checks
    metadata = result.asset_materializations_for_node("silver__macro_indicators")[0].metadata
    assert metadata["rows_quarantined"].value == 0
    # FRED's "." holiday markers in VIX/WTI and the blank treasury cells are counted, not stored
    assert metadata["source_rows_not_observed"].value > 300
    assert lake.scan(MACRO_QUARANTINE).collect().height == 0


def test_every_packaged_series_has_a_lag_rule_and_the_whole_history_parses():
    from stock_assets.altdata.macro import not_observed, parse_observations

    raw = MacroSource().observations()
    typed, bad = parse_observations(raw.filter(~not_observed(raw)), dt.date(2026, 1, 1))
    assert bad.height == 0, bad.head()
    assert set(typed["series"].unique().to_list()) == set(SERIES)
    assert set(SERIES) >= REQUIRED_SERIES
    gdp = typed.filter(pl.col("series") == "us_realgdp")
    assert gdp["period"].min() == dt.date(1959, 1, 1)
    assert (gdp["known_from"] - gdp["period_end"]).dt.total_days().unique().to_list() == [120]


def test_a_value_is_invisible_before_its_availability_date(macro_lake):
    lake, _ = macro_lake
    values = lake.scan(MACRO_TABLE).collect()
    # real GDP for 2009Q2 (ends 2009-06-30) is known from 2009-10-28 (quarter end + 120 days)
    q2 = values.filter(pl.col("series") == "us_realgdp", pl.col("period") == dt.date(2009, 4, 1))
    assert q2["known_from"].to_list() == [dt.date(2009, 10, 28)]
    dates = pl.DataFrame({"date": [dt.date(2009, 10, 27), dt.date(2009, 10, 28)]})
    seen = as_of(values, dates, ["us_realgdp", "us_core_cpi", "treasury_10year"])
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
    wide = as_of_wide(values, dates.with_columns(pl.lit("x").alias("k")), ["us_realgdp"])
    assert wide.columns == ["date", "k", "us_realgdp"]
    assert wide["us_realgdp"].to_list() == gdp["value"].to_list()


def test_rerunning_one_month_touches_no_other_month(macro_lake, tmp_path):
    lake, _ = macro_lake
    before = lake.scan(MACRO_TABLE).collect()
    tags = {
        "dagster/asset_partition_range_start": "2010-03-01",
        "dagster/asset_partition_range_end": "2010-03-01",
    }
    materialize_macro(lake, MacroSource(), tags)
    after = lake.scan(MACRO_TABLE).collect()
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
    tags = {
        "dagster/asset_partition_range_start": "2010-03-01",
        "dagster/asset_partition_range_end": "2010-03-01",
    }
    result = materialize_macro(lake, MacroSource(provider="file", path=str(path)), tags)
    stored = lake.scan(MACRO_TABLE).collect().sort("series")
    assert stored.select("series", "period", "value", "known_from").rows() == [
        ("us_core_cpi", dt.date(2010, 1, 1), 216.8, dt.date(2010, 3, 2)),
        ("vix_close", dt.date(2010, 3, 2), 18.5, dt.date(2010, 3, 2)),
    ]
    quarantine = lake.scan(MACRO_QUARANTINE).collect()
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
    warn = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not warn["macro_indicators_quarantine_empty"].passed
    assert warn["macro_indicators_quarantine_empty"].severity == dg.AssetCheckSeverity.WARN
    assert warn["macro_indicators_schema"].passed
