"""``silver/daily_bars``: one validated bar per ticker and NYSE session, rebuilt from bronze.

Write-audit-publish: a run reads every bronze bar of the calendar days its sessions own (a session
owns the days since the previous session, so a Saturday bar belongs to Monday's run), keeps the
latest published version of each ticker-day (corrections win), sets aside what silver cannot
accept in ``silver/daily_bars_quarantine`` with the reason, runs the blocking rules on what is left
and only then commits. A bad message therefore never blocks the range, and no reader ever sees a
row a blocking check rejects.

The OHLC envelope rule only warns: the real S&P 500 set has 78 bars whose open or close sits
outside [low, high] by a cent or two.
"""

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.calendar import EXCHANGE_TIMEZONE, owning_session, previous_session, trading_days
from stock_assets.checks import (
    CheckInput,
    CheckSuite,
    Rule,
    quarantine_rule,
    row_reasons,
    schema_rule,
    unique_rule,
)
from stock_assets.lake import month_column
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.resources.lake import LakeResource
from stock_assets.silver import MARKET_GROUP
from stock_assets.symbols import TICKER_PATTERN
from stock_assets.table_assets import table_asset

SILVER_COLUMNS = list(tables.DAILY_BARS.schema)
QUARANTINE_COLUMNS = list(tables.DAILY_BARS_QUARANTINE.schema)


def owned_days(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """Calendar days whose bars the run for sessions ``start..end`` reads: after the previous
    session up to ``end``. Every calendar day belongs to exactly one session's run."""
    before = previous_session(start)
    return (before + dt.timedelta(days=1) if before else start), end


def latest_bar_per_ticker_day(
    bronze: pl.DataFrame, bronze_version: int | None = None
) -> pl.DataFrame:
    """Keep the most recently published version of each ticker-day (corrections win), naming
    the Kafka record it is and the ``bronze_version`` it was read at (the audit's link)."""
    return (
        bronze.sort("kafka_timestamp", "kafka_partition", "kafka_offset")
        .unique(subset=["ticker", "date"], keep="last", maintain_order=True)
        .with_columns(month_column(), bronze_version=pl.lit(bronze_version, pl.Int64))
        .select(SILVER_COLUMNS)
        .sort("date", "ticker")
    )


def split_acceptable(
    bars: pl.DataFrame, sessions: list[dt.date], partition_key: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(bars silver accepts, the rest as quarantine rows with the reason)."""
    weekend = pl.col("date").dt.weekday() >= 6
    reasons = bars.select(
        row_reasons(
            (weekend, "not an NYSE session: weekend"),
            (~pl.col("date").is_in(sessions), "not an NYSE session: holiday or closure"),
            (
                pl.any_horizontal(pl.col(*tables.PRICE_COLUMNS, "volume").is_null()),
                "missing price or volume",
            ),
            (~pl.col("ticker").str.contains(TICKER_PATTERN), "ticker is not a symbol"),
            (pl.min_horizontal("open", "high", "low", "close") <= 0, "non-positive price"),
            (pl.col("high") < pl.col("low"), "high below low"),
            (pl.col("volume") < 0, "negative volume"),
        )
    ).to_series()
    rejected = bars.filter(reasons.is_not_null()).with_columns(
        reason=reasons.filter(reasons.is_not_null()),
        partition_key=pl.lit(partition_key),
        quarantined_at=pl.lit(dt.datetime.now(dt.UTC), dtype=pl.Datetime("us", "UTC")),
    )
    return bars.filter(reasons.is_null()), rejected.select(QUARANTINE_COLUMNS)


def on_trading_days(data: CheckInput) -> tuple[bool, dict]:
    """Every date is a session inside the checked range."""
    start = data.start or data.frame["date"].min()
    end = data.end or data.frame["date"].max()
    allowed = set(trading_days(start, end)) if start else set()
    stray = sorted(set(data.frame["date"].unique().to_list()) - allowed)
    return not stray, {"dates_outside_partitions": [d.isoformat() for d in stray[:20]]}


DAILY_BARS_CHECKS = CheckSuite(
    "daily_bars_checks",
    tables.DAILY_BARS,
    [
        schema_rule(
            "daily_bars_schema",
            pa.DataFrameSchema(
                {
                    "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
                    "date": pa.Column(pl.Date),
                    **{p: pa.Column(pl.Float64, pa.Check.gt(0)) for p in tables.PRICE_COLUMNS},
                    "volume": pa.Column(pl.Int64, pa.Check.ge(0)),
                },
                checks=[
                    pa.Check(
                        lambda d: d.lazyframe.select(pl.col("high") >= pl.col("low")),
                        name="high_ge_low",
                    )
                ],
                name="daily_bars",
            ),
            "pandera schema: types, positive prices, high >= low",
        ),
        unique_rule("daily_bars_unique_ticker_day", ["ticker", "date"]),
        Rule(
            "daily_bars_on_partition_trading_days",
            "every row's date is an NYSE session inside the checked range",
            on_trading_days,
        ),
        schema_rule(
            "daily_bars_ohlc_envelope",
            pa.DataFrameSchema(
                checks=[
                    pa.Check(
                        lambda d: d.lazyframe.select(
                            pl.col("open").is_between(pl.col("low"), pl.col("high"))
                            & pl.col("close").is_between(pl.col("low"), pl.col("high"))
                        ),
                        name="open_close_within_low_high",
                    )
                ],
                name="daily_bars_envelope",
            ),
            "open and close within [low, high]",
            blocking=False,
        ),
        quarantine_rule("daily_bars_quarantine_empty", tables.DAILY_BARS_QUARANTINE, owned_days),
    ],
    trading_day_partitions(),
)


@table_asset(
    tables.DAILY_BARS,
    group=MARKET_GROUP,
    deps=[tables.BRONZE_MARKET_BARS],
    partitions_def=trading_day_partitions(),
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 19 * * 1-5",
        lower_bound_delta=dt.timedelta(hours=3),
        timezone=EXCHANGE_TIMEZONE,
    ),
    extra_metadata={"quarantine_table": tables.DAILY_BARS_QUARANTINE.path},
)
def daily_bars(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Rebuild the selected sessions from bronze; other days in the table are untouched."""
    start, end = run_dates(context)
    first_day, last_day = owned_days(start, end)
    bronze_version = lake.version(tables.BRONZE_MARKET_BARS)  # read and recorded: one version
    bronze = lake.read_dates(tables.BRONZE_MARKET_BARS, first_day, last_day, bronze_version)
    latest = latest_bar_per_ticker_day(bronze, bronze_version)
    bars, rejected = split_acceptable(latest, trading_days(start, end), f"{start}..{end}")
    checked = DAILY_BARS_CHECKS.gate(CheckInput(bars, lake, start, end))
    lake.overwrite_dates(tables.DAILY_BARS_QUARANTINE, rejected, first_day, last_day)
    version = lake.overwrite_dates(tables.DAILY_BARS, bars, start, end)
    reasons = dict(rejected.group_by("reason").len().iter_rows()) if rejected.height else {}
    if rejected.height:
        context.log.warning(f"{rejected.height} bronze bars set aside: {reasons}")
    return dg.MaterializeResult(
        metadata={
            "rows": bars.height,
            "tickers": bars["ticker"].n_unique(),
            "trading_days_with_bars": bars["date"].n_unique(),
            "date_range": f"{start}..{end}",
            "calendar_days_read": f"{first_day}..{last_day}",
            "bronze_rows_read": bronze.height,
            "bronze_version": bronze_version,
            "superseded_versions": bronze.height - latest.height,
            "rows_quarantined": rejected.height,
            "quarantine_reasons": dg.MetadataValue.json(reasons),
            "delta_version": version,
            **checked,
        }
    )


def silver_partition_for(day: dt.date) -> str | None:
    """The session partition whose run reads a bar dated ``day`` (None: no partition owns it)."""
    session = owning_session(day)
    return session.isoformat() if session else None
