"""silver/daily_bars: its check suite as plain functions, and the write-audit-publish asset.

Each rule catches its own kind of bad bar and the real data passes; the asset sets aside what
silver cannot accept (non-sessions, row-rule failures) and commits nothing when a blocking rule
fails.
"""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.checks import CheckInput, Rule
from stock_assets.lake import Lake, month_column
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.daily_bars import (
    DAILY_BARS_CHECKS,
    SILVER_COLUMNS,
    daily_bars,
    latest_bar_per_ticker_day,
    owned_days,
    split_acceptable,
)
from stock_assets_tests.conftest import (
    FIRST,
    LAST,
    bars_between,
    materialize_checked,
    step_failures,
)

START, END = dt.date(2010, 6, 1), dt.date(2010, 6, 30)
ENVELOPE = "daily_bars_ohlc_envelope"
QUARANTINE = "daily_bars_quarantine_empty"
WARNINGS = {ENVELOPE, QUARANTINE}
BLOCKING = {
    "daily_bars_schema",
    "daily_bars_unique_ticker_day",
    "daily_bars_on_partition_trading_days",
}


@pytest.fixture(scope="module")
def june_2010(sp500) -> pl.DataFrame:
    return bars_between(sp500, START, END)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """The daily-bars rules read nothing from the lake; CheckInput still carries one."""
    return Lake(str(tmp_path_factory.mktemp("checks") / "lake"))


def evaluate(frame, lake, start=START, end=END) -> dict[str, dg.AssetCheckResult]:
    results = DAILY_BARS_CHECKS.evaluate(CheckInput(frame, lake, start, end))
    return {r.check_name: r for r in results}


# -- the suite as functions ----------------------------------------------------------------------
def test_suite_blocks_on_schema_uniqueness_and_sessions_and_warns_on_the_envelope():
    severity = {r.name: r.blocking for r in DAILY_BARS_CHECKS.rules}
    assert severity == {**dict.fromkeys(BLOCKING, True), **dict.fromkeys(WARNINGS, False)}
    assert DAILY_BARS_CHECKS.table == tables.DAILY_BARS


def test_real_month_passes_every_blocking_check(june_2010, lake):
    results = evaluate(june_2010, lake)
    assert set(results) == BLOCKING | WARNINGS
    assert results[QUARANTINE].passed  # nothing set aside in this (empty) lake
    assert all(results[name].passed for name in BLOCKING)
    assert all(results[name].severity == dg.AssetCheckSeverity.ERROR for name in BLOCKING)
    gated = DAILY_BARS_CHECKS.gate(CheckInput(june_2010, lake, START, END))
    blocking_rules = [r.name for r in DAILY_BARS_CHECKS.rules if r.blocking]
    assert gated == {"checked_before_commit": blocking_rules}


def test_real_data_has_a_few_bars_outside_their_own_range_and_the_warning_says_so(sp500, lake):
    result = evaluate(sp500, lake, FIRST, LAST)[ENVELOPE]
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["failure_cases"].value == 78  # measured on the bundled set


@pytest.mark.parametrize(
    "column, value, failed_check",
    [("close", -3.0, "greater_than(0)"), ("volume", -1, "greater_than_or_equal_to(0)")],
)
def test_schema_check_reports_the_failing_rule(june_2010, lake, column, value, failed_check):
    bad = june_2010.with_row_index().with_columns(
        pl.when(pl.col("index") == 5).then(value).otherwise(pl.col(column)).alias(column)
    )
    result = evaluate(bad.drop("index"), lake)["daily_bars_schema"]
    assert not result.passed
    assert failed_check in result.metadata["failed_checks"].value


def test_schema_check_catches_high_below_low(june_2010, lake):
    swapped = june_2010.head(3).with_columns(high=pl.col("low"), low=pl.col("high") + 1)
    result = evaluate(pl.concat([june_2010, swapped]), lake)["daily_bars_schema"]
    assert not result.passed and "high_ge_low" in result.metadata["failed_checks"].value


def test_duplicate_ticker_day_fails(june_2010, lake):
    result = evaluate(pl.concat([june_2010, june_2010.head(2)]), lake)[
        "daily_bars_unique_ticker_day"
    ]
    assert not result.passed
    assert result.metadata["duplicates"].value == 2
    first_two = june_2010.head(2).select("ticker", "date").rows()
    assert sorted(result.metadata["sample"].value) == sorted(f"{t} {d}" for t, d in first_two)


def test_bar_on_a_holiday_or_outside_the_range_fails(june_2010, lake):
    holiday = june_2010.head(1).with_columns(date=pl.lit(dt.date(2010, 7, 5)))  # Independence Day
    check = "daily_bars_on_partition_trading_days"
    result = evaluate(pl.concat([june_2010, holiday]), lake, START, dt.date(2010, 7, 9))[check]
    assert not result.passed
    assert result.metadata["dates_outside_partitions"].value == ["2010-07-05"]
    assert not evaluate(june_2010, lake, START, dt.date(2010, 6, 15))[check].passed


# -- what a run reads and sets aside -------------------------------------------------------------
def test_a_session_owns_the_calendar_days_since_the_previous_session():
    assert owned_days(dt.date(2010, 7, 6), dt.date(2010, 7, 6)) == (
        dt.date(2010, 7, 3),  # Saturday, Sunday and the Monday holiday belong to Tuesday
        dt.date(2010, 7, 6),
    )
    assert owned_days(dt.date(2010, 7, 7), dt.date(2010, 7, 9)) == (
        dt.date(2010, 7, 7),
        dt.date(2010, 7, 9),
    )


def silver_frame(bars: pl.DataFrame) -> pl.DataFrame:
    return (
        bars.with_columns(
            kafka_partition=pl.lit(0, pl.Int32),
            kafka_offset=pl.int_range(pl.len(), dtype=pl.Int64),
            kafka_topic=pl.lit(None, pl.String),
            bronze_version=pl.lit(None, pl.Int64),
        )
        .with_columns(month_column())
        .select(SILVER_COLUMNS)
    )


def test_row_rules_set_bars_aside_with_the_first_reason_that_applies(sp500):
    day = dt.date(2010, 6, 1)
    good = bars_between(sp500, day, day, ["AAPL", "IBM", "KO", "XOM", "GE", "MSFT"])
    bad = good.with_columns(
        ticker=pl.when(pl.col("ticker") == "AAPL").then(pl.lit("aapl")).otherwise("ticker"),
        close=pl.when(pl.col("ticker") == "IBM").then(0.0).otherwise("close"),
        high=pl.when(pl.col("ticker") == "KO").then(pl.col("low") - 1).otherwise("high"),
        volume=pl.when(pl.col("ticker") == "XOM").then(-1).otherwise("volume"),
        date=pl.when(pl.col("ticker") == "GE").then(pl.lit(dt.date(2010, 6, 5))).otherwise("date"),
    )
    accepted, rejected = split_acceptable(silver_frame(bad), [day], "2010-06-01..2010-06-01")
    assert accepted["ticker"].to_list() == ["MSFT"]
    assert dict(rejected.select("ticker", "reason").iter_rows()) == {
        "aapl": "ticker is not a symbol",
        "IBM": "non-positive price",
        "KO": "high below low",
        "XOM": "negative volume",
        "GE": "not an NYSE session: weekend",
    }
    assert list(rejected.schema) == list(tables.DAILY_BARS_QUARANTINE.schema)
    assert set(rejected["partition_key"]) == {"2010-06-01..2010-06-01"}


def bronze_rows(bars: pl.DataFrame, first_offset: int = 0) -> pl.DataFrame:
    """Bars as bronze stores them: one Kafka partition, consecutive offsets."""
    return (
        bars.with_columns(
            schema_version=pl.lit(1, pl.Int32),
            kafka_topic=pl.lit("market.bars.test"),
            kafka_partition=pl.lit(0, pl.Int32),
            kafka_offset=pl.int_range(first_offset, first_offset + pl.len(), dtype=pl.Int64),
            kafka_timestamp=pl.lit(dt.datetime(2010, 7, 9, tzinfo=dt.UTC)).cast(
                pl.Datetime("ms", "UTC")
            ),
            ingested_at=pl.lit(dt.datetime(2010, 7, 9, tzinfo=dt.UTC)).cast(
                pl.Datetime("us", "UTC")
            ),
        )
        .with_columns(month_column())
        .select(list(tables.BRONZE_MARKET_BARS.schema))
    )


def write_bronze(lake: LakeResource, bars: pl.DataFrame, first_offset: int = 0) -> None:
    rows = bronze_rows(bars, first_offset)
    last = {0: first_offset + rows.height - 1}
    assert lake.append_kafka(tables.BRONZE_MARKET_BARS, rows, "market.bars.test", last).version


JULY = (dt.date(2010, 7, 1), dt.date(2010, 7, 7))  # sessions 1, 2, 6, 7 (5th: Independence Day)


@pytest.fixture
def july_bronze(tmp_path, sp500) -> tuple[LakeResource, pl.DataFrame]:
    """Bronze with the real KO and XOM bars of early July 2010, one dated on a Saturday and one
    on the Monday holiday."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    sessions = bars_between(sp500, *JULY, ["KO", "XOM"])
    friday = sessions.filter(pl.col("date") == dt.date(2010, 7, 2))
    strays = pl.concat(
        [
            friday.filter(pl.col("ticker") == "KO").with_columns(date=pl.lit(dt.date(2010, 7, 3))),
            friday.filter(pl.col("ticker") == "XOM").with_columns(date=pl.lit(dt.date(2010, 7, 5))),
        ]
    )
    write_bronze(lake, pl.concat([sessions, strays]))
    return lake, sessions


def materialize_daily_bars(lake, start, end, **kwargs):
    return dg.materialize(
        [daily_bars, DAILY_BARS_CHECKS.asset_check()],
        resources={"lake": lake},
        instance=dg.DagsterInstance.ephemeral(),
        tags=range_tags(start.isoformat(), end.isoformat()),
        **kwargs,
    )


def test_weekend_and_holiday_bars_are_set_aside_by_the_session_owning_the_day(july_bronze):
    lake, sessions = july_bronze
    result, checks = materialize_checked(
        [daily_bars, DAILY_BARS_CHECKS.asset_check()],
        {"lake": lake},
        tags=range_tags(*(d.isoformat() for d in JULY)),
    )
    assert set(checks) == BLOCKING | WARNINGS
    assert not checks[QUARANTINE].passed  # a warning: a person should look at the two bars
    assert checks[QUARANTINE].severity == dg.AssetCheckSeverity.WARN
    assert checks[QUARANTINE].metadata["rows"].value == 2
    silver = lake.read(tables.DAILY_BARS).sort("date", "ticker")
    expected = sessions.select("ticker", "date", "open", "high", "low", "close", "volume")
    assert silver.select(expected.columns).equals(expected)
    quarantine = lake.read(tables.DAILY_BARS_QUARANTINE).sort("date")
    assert quarantine.select("ticker", "date", "reason", "partition_key", "month").rows() == [
        ("KO", dt.date(2010, 7, 3), "not an NYSE session: weekend", "2010-07-01..2010-07-07",
         "2010-07"),
        ("XOM", dt.date(2010, 7, 5), "not an NYSE session: holiday or closure",
         "2010-07-01..2010-07-07", "2010-07"),
    ]  # fmt: skip
    metadata = result.asset_materializations_for_node("silver__daily_bars")[0].metadata
    assert metadata["rows"].value == silver.height == 8
    assert metadata["rows_quarantined"].value == 2
    assert metadata["bronze_rows_read"].value == 10
    assert metadata["calendar_days_read"].value == "2010-07-01..2010-07-07"
    assert metadata["quarantine_reasons"].value == {
        "not an NYSE session: weekend": 1,
        "not an NYSE session: holiday or closure": 1,
    }
    assert checks[ENVELOPE].severity == dg.AssetCheckSeverity.WARN

    # Tuesday's run alone owns Saturday to Tuesday: it replaces those quarantine rows, no copies
    assert materialize_daily_bars(lake, dt.date(2010, 7, 6), dt.date(2010, 7, 6)).success
    again = lake.read(tables.DAILY_BARS_QUARANTINE).sort("date")
    assert again.select("ticker", "date").rows() == quarantine.select("ticker", "date").rows()
    assert set(again["partition_key"]) == {"2010-07-06..2010-07-06"}
    assert lake.read(tables.DAILY_BARS).sort("date", "ticker").equals(silver)


def test_a_bar_with_a_missing_price_is_set_aside_not_blocking(july_bronze):
    lake, sessions = july_bronze
    tuesday = dt.date(2010, 7, 6)
    corrected = sessions.filter(pl.col("ticker") == "KO", pl.col("date") == tuesday)
    write_bronze(lake, corrected.with_columns(close=pl.lit(None, pl.Float64)), first_offset=10)
    assert materialize_daily_bars(lake, tuesday, tuesday).success
    set_aside = lake.read(tables.DAILY_BARS_QUARANTINE).filter(pl.col("date") == tuesday)
    assert set_aside.select("ticker", "reason").rows() == [("KO", "missing price or volume")]
    assert lake.read(tables.DAILY_BARS).filter(pl.col("date") == tuesday)["ticker"].to_list() == [
        "XOM"
    ]


def test_a_failing_blocking_rule_commits_nothing(july_bronze, monkeypatch):
    """Write-audit-publish: when a blocking rule fails on the frame about to be committed, the run
    fails before its commit; silver and its quarantine keep their last version."""
    lake, _ = july_bronze
    assert materialize_daily_bars(lake, *JULY).success
    silver, quarantine = lake.read(tables.DAILY_BARS), lake.read(tables.DAILY_BARS_QUARANTINE)
    versions = lake.version(tables.DAILY_BARS), lake.version(tables.DAILY_BARS_QUARANTINE)

    # a rule that rejects every frame stands in for any blocking failure
    rejects_all = Rule("rejects_all", "test rule", lambda data: (False, {"why": "test"}))
    monkeypatch.setattr(DAILY_BARS_CHECKS, "rules", [*DAILY_BARS_CHECKS.rules, rejects_all])
    failed = materialize_daily_bars(lake, *JULY, raise_on_error=False)
    assert not failed.success
    (failure,) = step_failures(failed).values()
    assert "nothing was written" in failure.description
    assert "rejects_all" in failure.description
    assert not failed.get_asset_check_evaluations()  # the audit never ran: nothing to audit
    assert (lake.version(tables.DAILY_BARS), lake.version(tables.DAILY_BARS_QUARANTINE)) == versions
    assert lake.read(tables.DAILY_BARS).equals(silver)
    assert lake.read(tables.DAILY_BARS_QUARANTINE).equals(quarantine)


def test_the_latest_published_version_of_a_ticker_day_wins(sp500):
    day = dt.date(2010, 6, 1)
    bars = bars_between(sp500, day, day, ["KO", "XOM"])
    first = bronze_rows(bars)
    correction = bronze_rows(bars.filter(pl.col("ticker") == "KO"), first_offset=2).with_columns(
        close=pl.lit(99.0)
    )
    latest = latest_bar_per_ticker_day(pl.concat([correction, first]))  # arrival order: offsets
    assert latest.columns == SILVER_COLUMNS
    assert dict(latest.select("ticker", "close").iter_rows())["KO"] == 99.0
    assert latest.height == 2
