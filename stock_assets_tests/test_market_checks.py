"""Silver checks as plain functions: each rule catches its own kind of bad bar, real data passes."""

import datetime as dt

import polars as pl
import pytest

from stock_assets.ingestion.replay import select_bars
from stock_assets.market.checks import (
    check_ohlc_envelope,
    check_on_trading_days,
    check_schema,
    check_unique_ticker_day,
    run_daily_bars_checks,
)

START, END = dt.date(2010, 6, 1), dt.date(2010, 6, 30)


@pytest.fixture(scope="module")
def june_2010() -> pl.DataFrame:
    return select_bars("sp500_2009", START, END)


def test_real_month_passes_every_blocking_check(june_2010):
    results = {r.check_name: r for r in run_daily_bars_checks(june_2010, START, END)}
    assert all(results[name].passed for name in results if name != "daily_bars_ohlc_envelope")


def test_real_data_has_a_few_bars_outside_their_own_range_and_the_warning_says_so():
    full_year = select_bars("sp500_2009")
    result = check_ohlc_envelope(full_year)
    assert not result.passed
    assert result.severity.value == "WARN"
    assert result.metadata["failure_cases"].value == 78  # measured on the bundled set


@pytest.mark.parametrize(
    "column, value, failed_check",
    [("close", -3.0, "greater_than(0)"), ("volume", -1, "greater_than_or_equal_to(0)")],
)
def test_schema_check_reports_the_failing_rule(june_2010, column, value, failed_check):
    bad = june_2010.with_row_index().with_columns(
        pl.when(pl.col("index") == 5).then(value).otherwise(pl.col(column)).alias(column)
    )
    result = check_schema(bad.drop("index"))
    assert not result.passed
    assert failed_check in result.metadata["failed_checks"].value


def test_schema_check_catches_high_below_low(june_2010):
    swapped = june_2010.head(3).with_columns(high=pl.col("low"), low=pl.col("high") + 1)
    result = check_schema(pl.concat([june_2010, swapped]))
    assert not result.passed and "high_ge_low" in result.metadata["failed_checks"].value


def test_duplicate_ticker_day_fails(june_2010):
    result = check_unique_ticker_day(pl.concat([june_2010, june_2010.head(2)]))
    assert not result.passed
    assert result.metadata["duplicate_ticker_days"].value == 2


def test_bar_on_a_holiday_or_outside_the_range_fails(june_2010):
    holiday = june_2010.head(1).with_columns(date=pl.lit(dt.date(2010, 7, 5)))  # Independence Day
    result = check_on_trading_days(pl.concat([june_2010, holiday]), START, dt.date(2010, 7, 9))
    assert not result.passed
    assert result.metadata["dates_outside_partitions"].value == ["2010-07-05"]
    assert not check_on_trading_days(june_2010, START, dt.date(2010, 6, 15)).passed
