"""Validation of the alternative-data tables: pandera (polars API) schemas as asset checks.

Blocking checks guard what features consume (types, finite values, ranges, point-in-time order,
uniqueness); a failure stops downstream assets in the same run. Warnings report what a person
should look at but that does not poison features (rows in quarantine, odd member counts).
Like the silver bar checks, these are unpartitioned: one result per run for the range it wrote.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets.altdata.earnings import (
    EARNINGS_KEY,
    EARNINGS_QUARANTINE,
    EARNINGS_TABLE,
)
from stock_assets.altdata.macro import FREQUENCY_MONTHS, MACRO_KEY, MACRO_QUARANTINE, MACRO_TABLE
from stock_assets.altdata.news import (
    MARKET_SENTIMENT_KEY,
    MARKET_SENTIMENT_TABLE,
    NEWS_KEY,
    NEWS_SILVER_QUARANTINE,
    NEWS_TABLE,
)
from stock_assets.altdata.universe import (
    MEMBERSHIP_KEY,
    MEMBERSHIP_QUARANTINE,
    MEMBERSHIP_TABLE,
    UNIVERSE_KEY,
    UNIVERSE_TABLE,
)
from stock_assets.resources.lake import LakeResource
from stock_assets.symbols import TICKER_PATTERN

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def _frame_check(expr: pl.Expr, name: str) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(expr), name=name)


MACRO_SCHEMA = pa.DataFrameSchema(
    {
        "series": pa.Column(pl.String, pa.Check.str_length(min_value=1)),
        "frequency": pa.Column(pl.String, pa.Check.isin([*FREQUENCY_MONTHS, "daily"])),
        "period": pa.Column(pl.Date),
        "period_end": pa.Column(pl.Date),
        "value": pa.Column(
            pl.Float64,
            pa.Check(lambda d: d.lazyframe.select(pl.col(d.key).is_finite()), name="finite"),
        ),
        "known_from": pa.Column(pl.Date),
        "release_lag_days": pa.Column(pl.Int32, pa.Check.ge(0)),
    },
    checks=[
        _frame_check(pl.col("period_end") >= pl.col("period"), "period_end_not_before_period"),
        _frame_check(pl.col("known_from") >= pl.col("period_end"), "known_only_after_period"),
    ],
    name="macro_indicators",
)
NEWS_SCHEMA = pa.DataFrameSchema(
    {
        "article_id": pa.Column(pl.String, pa.Check.str_length(min_value=1)),
        "date": pa.Column(pl.Date),
        "positive": pa.Column(pl.Int32, pa.Check.ge(0)),
        "negative": pa.Column(pl.Int32, pa.Check.ge(0)),
        "terms": pa.Column(pl.Int32, pa.Check.ge(0)),
        "polarity": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0)),
        "subjectivity": pa.Column(pl.Float64, pa.Check.in_range(0.0, 1.0)),
    },
    name="news_sentiment",
)
MARKET_SENTIMENT_SCHEMA = pa.DataFrameSchema(
    {
        "date": pa.Column(pl.Date),
        "articles": pa.Column(pl.Int32, pa.Check.gt(0)),
        "net_tone": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0)),
        "mean_polarity": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0)),
        "known_from": pa.Column(pl.Date),
    },
    checks=[_frame_check(pl.col("known_from") > pl.col("date"), "known_after_publication_day")],
    name="market_sentiment",
)
EARNINGS_SCHEMA = pa.DataFrameSchema(
    {
        "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
        "earnings_date": pa.Column(pl.Date, nullable=False),
    },
    name="earnings_calendar",
)
MEMBERSHIP_SCHEMA = pa.DataFrameSchema(
    {
        "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
        "member_from": pa.Column(pl.Date, nullable=False),
        "member_until": pa.Column(pl.Date, nullable=True),
    },
    checks=[
        _frame_check(
            pl.col("member_until").is_null() | (pl.col("member_until") > pl.col("member_from")),
            "interval_not_empty",
        )
    ],
    name="index_membership",
)
UNIVERSE_SCHEMA = pa.DataFrameSchema(
    {
        "date": pa.Column(pl.Date, nullable=False),
        "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
    },
    name="universe",
)


def pandera_result(name: str, schema: pa.DataFrameSchema, frame: pl.DataFrame):
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return False, {
            "failure_cases": cases.height,
            "failed_checks": sorted(set(cases["check"].cast(pl.String).to_list())),
            "sample": dg.MetadataValue.md(cases.head(20).to_pandas().to_markdown(index=False)),
        }
    return True, {"rows": frame.height}


def unique_result(frame: pl.DataFrame, keys: list[str]):
    dupes = frame.group_by(keys).len().filter(pl.col("len") > 1)
    sample = [" ".join(str(v) for v in row[:-1]) for row in dupes.head(10).iter_rows()]
    return dupes.is_empty(), {"duplicates": dupes.height, "sample": sample}


def quarantine_result(lake: LakeResource, table: str):
    rows = lake.scan(table).collect() if lake.table(table) is not None else pl.DataFrame()
    reasons = dict(rows.group_by("reason").len().iter_rows()) if rows.height else {}
    return rows.is_empty(), {
        "quarantine_table": table,
        "rows": rows.height,
        "reasons": dg.MetadataValue.json(reasons),
    }


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    blocking: bool
    evaluate: Callable  # (frame, lake) -> (passed, metadata)


def build_checks(
    name: str, asset_key: dg.AssetKey, table: str, rules: list[Rule], date_column: str = "date"
) -> dg.AssetChecksDefinition:
    """One unpartitioned multi-check per asset, validating the range the run wrote."""

    @dg.multi_asset_check(
        name=name,
        specs=[
            dg.AssetCheckSpec(
                r.name, asset=asset_key, description=r.description, blocking=r.blocking
            )
            for r in rules
        ],
        compute_kind="pandera",
    )
    def checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        op_context = context.op_execution_context
        if op_context.has_partition_key_range:
            keys = op_context.partition_key_range
            start = dt.date.fromisoformat(keys.start)
            last = dt.date.fromisoformat(keys.end)
            end = (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            frame = lake.read_dates(table, start, end - dt.timedelta(days=1), date_column)
        else:
            frame = lake.scan(table).collect()
        for rule in rules:
            passed, metadata = rule.evaluate(frame, lake)
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=rule.name,
                passed=passed,
                severity=ERROR if rule.blocking else WARN,
                metadata=metadata,
            )

    return checks


def _schema(name: str, schema: pa.DataFrameSchema, text: str) -> Rule:
    return Rule(name, text, True, lambda frame, lake: pandera_result(name, schema, frame))


def _unique(name: str, keys: list[str]) -> Rule:
    return Rule(
        name, f"one row per {', '.join(keys)}", True, lambda f, lake: unique_result(f, keys)
    )


def _quarantine(name: str, table: str) -> Rule:
    text = f"no source rows rejected into {table}"
    return Rule(name, text, False, lambda frame, lake: quarantine_result(lake, table))


def _member_count(frame: pl.DataFrame, lake: LakeResource, low: int = 450, high: int = 510):
    per_day = frame.group_by("date").len()
    odd = per_day.filter(~pl.col("len").is_between(low, high)).sort("date")
    return odd.is_empty(), {
        "sessions": per_day.height,
        "sessions_outside_range": odd.height,
        "expected_members": f"{low}..{high}",
        "sample": [f"{d}: {n}" for d, n in odd.head(10).iter_rows()],
    }


macro_checks = build_checks(
    "macro_indicators_checks",
    MACRO_KEY,
    MACRO_TABLE,
    [
        _schema("macro_indicators_schema", MACRO_SCHEMA, "finite values, known after period"),
        _unique("macro_indicators_unique_series_period", ["series", "period"]),
        _quarantine("macro_indicators_quarantine_empty", MACRO_QUARANTINE),
    ],
    date_column="known_from",
)
news_checks = build_checks(
    "news_sentiment_checks",
    NEWS_KEY,
    NEWS_TABLE,
    [
        _schema("news_sentiment_schema", NEWS_SCHEMA, "counts >= 0, polarity in [-1, 1]"),
        _unique("news_sentiment_unique_article", ["article_id"]),
        _quarantine("news_sentiment_quarantine_empty", NEWS_SILVER_QUARANTINE),
    ],
)
market_sentiment_checks = build_checks(
    "market_sentiment_checks",
    MARKET_SENTIMENT_KEY,
    MARKET_SENTIMENT_TABLE,
    [
        _schema("market_sentiment_schema", MARKET_SENTIMENT_SCHEMA, "tone in range, known later"),
        _unique("market_sentiment_unique_date", ["date"]),
    ],
)
earnings_checks = build_checks(
    "earnings_calendar_checks",
    EARNINGS_KEY,
    EARNINGS_TABLE,
    [
        _schema("earnings_calendar_schema", EARNINGS_SCHEMA, "symbols and dates well formed"),
        _unique("earnings_calendar_unique", ["ticker", "earnings_date"]),
        _quarantine("earnings_calendar_quarantine_empty", EARNINGS_QUARANTINE),
    ],
)
membership_checks = build_checks(
    "index_membership_checks",
    MEMBERSHIP_KEY,
    MEMBERSHIP_TABLE,
    [
        _schema("index_membership_schema", MEMBERSHIP_SCHEMA, "symbols, non-empty intervals"),
        _quarantine("index_membership_quarantine_empty", MEMBERSHIP_QUARANTINE),
    ],
)
universe_checks = build_checks(
    "universe_checks",
    UNIVERSE_KEY,
    UNIVERSE_TABLE,
    [
        _schema("universe_schema", UNIVERSE_SCHEMA, "symbols and dates well formed"),
        _unique("universe_unique_member_day", ["date", "index", "ticker"]),
        Rule("universe_member_count", "450..510 members a session", False, _member_count),
    ],
)
ALTDATA_CHECKS = [
    macro_checks,
    news_checks,
    market_sentiment_checks,
    earnings_checks,
    membership_checks,
    universe_checks,
]
