"""``gold/daily_features``: the model's inputs per instrument and session, point in time.

A run for sessions ``start..end`` reads the adjusted bars of those sessions plus the lookback the
longest indicator needs (`assemble.LOOKBACK_SESSIONS`), the context tables, and the stored OBV of
the session before ``start``; `assemble.assemble` computes; the blocking rules gate the commit.
The same asset serves both paths: the sensor chain materializes the sessions new bars touched
(streaming), and a nightly schedule recomputes a trailing range (batch).
"""

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.calendar import sessions_before
from stock_assets.checks import (
    CheckInput,
    CheckSuite,
    Rule,
    markdown,
    schema_rule,
    unique_rule,
)
from stock_assets.gold.assemble import LOOKBACK_SESSIONS, Context, assemble
from stock_assets.gold.feature_set import FLOAT_FEATURES
from stock_assets.lake import LakeIO
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_asset, table_key

FEATURES_GROUP = "features"


def finite_or_null(data: CheckInput) -> tuple[bool, dict]:
    """NaN and infinity never reach a model: a value is a finite number or null."""
    bad = data.frame.select(
        pl.sum_horizontal(
            (pl.col(c).is_nan() | pl.col(c).is_infinite()).fill_null(False) for c in FLOAT_FEATURES
        ).sum()
    ).item()
    return bad == 0, {"non_finite_values": int(bad or 0)}


DAILY_FEATURES_CHECKS = CheckSuite(
    "daily_features_checks",
    tables.GOLD_DAILY_FEATURES,
    [
        schema_rule(
            "daily_features_keys",
            pa.DataFrameSchema(
                {
                    "instrument": pa.Column(pl.String, nullable=False),
                    "ticker": pa.Column(pl.String, nullable=False),
                    "date": pa.Column(pl.Date, nullable=False),
                },
                name="daily_features",
            ),
            "every row has its instrument, ticker and session",
        ),
        unique_rule("daily_features_unique_instrument_day", ["instrument", "date"]),
        Rule("daily_features_finite", "no NaN or infinite feature value", finite_or_null),
    ],
    trading_day_partitions(),
)


def input_versions(lake: LakeIO) -> dict[str, int | None]:
    """The Delta version of every input, pinned once so a run reads one consistent state and
    each row can name what it was computed from (`tables.FEATURE_PROVENANCE`)."""
    return {column: lake.version(table) for column, table in tables.FEATURE_INPUTS.items()}


def read_context(
    lake: LakeIO,
    start: dt.date,
    end: dt.date,
    versions: dict[str, int | None],
    obv_anchor_version: int | None,
) -> Context:
    """Context tables at the pinned ``versions``, as of ``end`` (empty where a table does not
    exist yet), and the stored OBV before ``start`` read at ``obv_anchor_version``."""

    def at(column: str) -> int | None:
        return versions[column]

    def upto(column: str, date_column: str) -> pl.DataFrame:
        if at(column) is None:
            return pl.DataFrame()
        table = tables.FEATURE_INPUTS[column]
        return lake.scan(table, at(column)).filter(pl.col(date_column) <= end).collect()

    previous = pl.DataFrame()
    before = sessions_before(start, 1)
    if before < start and obv_anchor_version is not None:
        previous = lake.read_dates(
            tables.GOLD_DAILY_FEATURES, before, before, obv_anchor_version
        ).select("instrument", "date", "obv")
    first_bars = (
        lake.scan(tables.ADJUSTED_DAILY_BARS, at("adjusted_bars_version"))
        .group_by("instrument")
        .agg(pl.col("date").min().alias("first_date"))
        .collect()
    )
    universe = pl.DataFrame()
    if at("universe_version") is not None:
        universe = lake.read_dates(tables.UNIVERSE, start, end, at("universe_version"))
    return Context(
        macro=upto("macro_indicators_version", "known_from"),
        sentiment=upto("market_sentiment_version", "known_from"),
        earnings=upto("earnings_calendar_version", "first_seen"),
        universe=universe,
        previous_obv=previous,
        first_bars=first_bars,
    )


def with_provenance(
    features: pl.DataFrame, start: dt.date, versions: dict[str, int | None], anchor: int | None
) -> pl.DataFrame:
    """``features`` with the inputs' versions on every row (what `models.audit` reads back)."""
    return features.with_columns(
        computed_from=pl.lit(start, pl.Date),
        **{column: pl.lit(version, pl.Int64) for column, version in versions.items()},
        obv_anchor_version=pl.lit(anchor, pl.Int64),
    ).select(list(tables.GOLD_DAILY_FEATURES.schema))


@table_asset(
    tables.GOLD_DAILY_FEATURES,
    group=FEATURES_GROUP,
    deps=[
        tables.ADJUSTED_DAILY_BARS,
        tables.EARNINGS_CALENDAR,
        # monthly context read as of each session: every month so far may matter
        *(
            dg.AssetDep(table_key(t), partition_mapping=dg.AllPartitionMapping())
            for t in (tables.MACRO_INDICATORS, tables.MARKET_SENTIMENT, tables.UNIVERSE)
        ),
    ],
    partitions_def=trading_day_partitions(),
)
def daily_features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Compute the selected sessions from their lookback of adjusted bars and the context."""
    start, end = run_dates(context)
    read_from = sessions_before(start, LOOKBACK_SESSIONS)
    versions = input_versions(lake)
    bars = lake.read_dates(
        tables.ADJUSTED_DAILY_BARS, read_from, end, versions["adjusted_bars_version"]
    )
    anchor_version = lake.version(tables.GOLD_DAILY_FEATURES)
    inputs = read_context(lake, start, end, versions, anchor_version)
    features = with_provenance(assemble(bars, start, end, inputs), start, versions, anchor_version)
    checked = DAILY_FEATURES_CHECKS.gate(CheckInput(features, lake, start, end))
    version = lake.overwrite_dates(tables.GOLD_DAILY_FEATURES, features, start, end)
    close_only = features.filter(pl.col("close_only"))
    set_aside = bars.filter(
        pl.col("date").is_between(start, end), pl.col("set_aside").is_not_null()
    )
    return dg.MaterializeResult(
        metadata={
            "rows": features.height,
            "instruments": features["instrument"].n_unique(),
            "date_range": f"{start}..{end}",
            "bars_read": bars.height,
            "bars_read_from": read_from.isoformat(),
            "close_only_rows": close_only.height,
            "close_only_note": "close-only data sets get the indicators and factors the close "
            "alone defines; OHLCV-based columns are null there, never made up",
            "context_missing": inputs.missing(),
            "rows_set_aside": set_aside.height,
            "set_aside": markdown(
                set_aside.select("instrument", "ticker", "date", "set_aside"), limit=50
            ),
            "set_aside_note": "instruments whose price jump was undecided that day get no "
            "feature row; the reason is in silver/adjusted_daily_bars.set_aside",
            "rows_in_universe": int(features["in_universe"].fill_null(False).sum()),
            "gaps_over_one_session": int(
                (features["sessions_since_previous_bar"].fill_null(1) > 1).sum()
            ),
            "delta_version": version,
            "input_versions": dg.MetadataValue.json(versions),
            **checked,
        }
    )
