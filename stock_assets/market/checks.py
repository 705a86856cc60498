"""Validation of silver daily bars: pandera (polars API) schemas turned into asset check results.

Blocking rules are the ones that would poison features (nulls, non-positive prices, high < low,
duplicate ticker-days, dates outside the partition). The OHLC envelope rule only warns: the real
S&P 500 set has 78 bars whose open or close sits outside [low, high] by a cent or two.
"""

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets.market.assets import DAILY_BARS, DAILY_BARS_KEY
from stock_assets.market.calendar import partition_date, trading_days
from stock_assets.resources.lake import LakeResource
from stock_assets.symbols import TICKER_PATTERN

SCHEMA_CHECK = "daily_bars_schema"
UNIQUE_CHECK = "daily_bars_unique_ticker_day"
TRADING_DAY_CHECK = "daily_bars_on_partition_trading_days"
ENVELOPE_CHECK = "daily_bars_ohlc_envelope"

DAILY_BARS_SCHEMA = pa.DataFrameSchema(
    {
        "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
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


def run_daily_bars_checks(
    bars: pl.DataFrame, start: dt.date, end: dt.date
) -> list[dg.AssetCheckResult]:
    return [
        check_schema(bars),
        check_unique_ticker_day(bars),
        check_on_trading_days(bars, start, end),
        check_ohlc_envelope(bars),
    ]


BLOCKING_CHECKS = {
    SCHEMA_CHECK: "pandera schema: types, positive prices, high >= low",
    UNIQUE_CHECK: "one row per ticker and trading day",
    TRADING_DAY_CHECK: "every row's date is an NYSE session inside the checked range",
}


@dg.multi_asset_check(
    specs=[
        *(
            dg.AssetCheckSpec(name, asset=DAILY_BARS_KEY, description=text, blocking=True)
            for name, text in BLOCKING_CHECKS.items()
        ),
        dg.AssetCheckSpec(
            ENVELOPE_CHECK, asset=DAILY_BARS_KEY, description="open and close within [low, high]"
        ),
    ],
    compute_kind="pandera",
)
def daily_bars_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    """Validate the trading days this run built (the whole table when run on its own).

    The checks are deliberately not partitioned: Dagster 1.13 writes one planned-check row per
    partition, serializing the whole event each time, which made a 3,270-day backfill spend
    80 s before doing any work. One result per run covers exactly the range the run wrote.
    """
    op_context = context.op_execution_context
    if op_context.has_partition_key_range:
        keys = op_context.partition_key_range
        start, end = partition_date(keys.start), partition_date(keys.end)
        bars = lake.read_dates(DAILY_BARS, start, end)
    else:
        bars = lake.scan(DAILY_BARS).collect()
        start, end = bars["date"].min(), bars["date"].max()
    context.log.info(f"validating {bars.height} rows for {start}..{end}")
    yield from run_daily_bars_checks(bars, start, end)
