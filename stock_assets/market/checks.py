"""Validation of silver daily bars: pandera (polars API) schemas turned into asset check results.

Blocking rules are the ones that would poison features (nulls, non-positive prices, high < low,
duplicate ticker-days, dates outside the partition). The OHLC envelope rule only warns: the real
S&P 500 set has 78 bars whose open or close sits outside [low, high] by a cent or two.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets.market.calendar import trading_days

SCHEMA_CHECK = "daily_bars_schema"
UNIQUE_CHECK = "daily_bars_unique_ticker_day"
TRADING_DAY_CHECK = "daily_bars_on_partition_trading_days"
ENVELOPE_CHECK = "daily_bars_ohlc_envelope"

DAILY_BARS_SCHEMA = pa.DataFrameSchema(
    {
        "ticker": pa.Column(pl.String, pa.Check.str_matches(r"^[A-Z0-9][A-Z0-9.\-]{0,11}$")),
        "date": pa.Column(pl.Date),
        "open": pa.Column(pl.Float64, pa.Check.gt(0)),
        "high": pa.Column(pl.Float64, pa.Check.gt(0)),
        "low": pa.Column(pl.Float64, pa.Check.gt(0)),
        "close": pa.Column(pl.Float64, pa.Check.gt(0)),
        "volume": pa.Column(pl.Int64, pa.Check.ge(0)),
    },
    checks=[
        pa.Check(
            lambda data: data.lazyframe.select(pl.col("high") >= pl.col("low")), name="high_ge_low"
        )
    ],
    strict=False,
    name="daily_bars",
)

ENVELOPE_SCHEMA = pa.DataFrameSchema(
    checks=[
        pa.Check(
            lambda data: data.lazyframe.select(
                pl.col("open").is_between(pl.col("low"), pl.col("high"))
                & pl.col("close").is_between(pl.col("low"), pl.col("high"))
            ),
            name="open_close_within_low_high",
        )
    ],
    name="daily_bars_envelope",
)


def _pandera_result(
    check_name: str, schema: pa.DataFrameSchema, bars: pl.DataFrame, severity
) -> dg.AssetCheckResult:
    try:
        schema.validate(bars, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return dg.AssetCheckResult(
            check_name=check_name,
            passed=False,
            severity=severity,
            metadata={
                "failure_cases": cases.height,
                "failed_checks": sorted(set(cases["check"].cast(pl.String).to_list())),
                "sample": dg.MetadataValue.md(cases.head(20).to_pandas().to_markdown(index=False)),
            },
        )
    return dg.AssetCheckResult(check_name=check_name, passed=True, metadata={"rows": bars.height})


def check_schema(bars: pl.DataFrame) -> dg.AssetCheckResult:
    return _pandera_result(SCHEMA_CHECK, DAILY_BARS_SCHEMA, bars, dg.AssetCheckSeverity.ERROR)


def check_ohlc_envelope(bars: pl.DataFrame) -> dg.AssetCheckResult:
    return _pandera_result(ENVELOPE_CHECK, ENVELOPE_SCHEMA, bars, dg.AssetCheckSeverity.WARN)


def check_unique_ticker_day(bars: pl.DataFrame) -> dg.AssetCheckResult:
    dupes = bars.group_by("ticker", "date").len().filter(pl.col("len") > 1)
    return dg.AssetCheckResult(
        check_name=UNIQUE_CHECK,
        passed=dupes.is_empty(),
        metadata={
            "duplicate_ticker_days": dupes.height,
            "sample": [f"{t} {d}" for t, d, _ in dupes.head(10).iter_rows()],
        },
    )


def check_on_trading_days(bars: pl.DataFrame, start: dt.date, end: dt.date) -> dg.AssetCheckResult:
    allowed = set(trading_days(start, end))
    stray = sorted(set(bars["date"].unique().to_list()) - allowed)
    return dg.AssetCheckResult(
        check_name=TRADING_DAY_CHECK,
        passed=not stray,
        metadata={"dates_outside_partitions": [d.isoformat() for d in stray[:20]]},
    )


def daily_bars_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    blocking = [
        (SCHEMA_CHECK, "pandera schema: types, positive prices, high >= low"),
        (UNIQUE_CHECK, "one row per ticker and trading day"),
        (TRADING_DAY_CHECK, "every row's date is an NYSE session inside the partition range"),
    ]
    return [
        *(
            dg.AssetCheckSpec(name, asset=asset_key, description=text, blocking=True)
            for name, text in blocking
        ),
        dg.AssetCheckSpec(
            ENVELOPE_CHECK, asset=asset_key, description="open and close within [low, high]"
        ),
    ]


def run_daily_bars_checks(
    bars: pl.DataFrame, start: dt.date, end: dt.date
) -> list[dg.AssetCheckResult]:
    return [
        check_schema(bars),
        check_unique_ticker_day(bars),
        check_on_trading_days(bars, start, end),
        check_ohlc_envelope(bars),
    ]
