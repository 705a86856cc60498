"""The table catalog: every Delta table the platform writes, with its layout and schema.

Assets, checks, sensors, the API and the app all address tables through these entries, so a path,
a partition column or a column type changes in one place. Asset keys follow the path
(``silver/daily_bars`` -> ``AssetKey(["silver", "daily_bars"])``). No Dagster import: serving/ and
app/ read the lake with this module and `stock_assets.lake` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True)
class Table:
    """One Delta table under the lake root."""

    path: str  # "<layer>/<name>"
    description: str
    schema: Mapping[str, pl.DataType] = field(default_factory=dict)
    date_column: str | None = "date"  # rows a run writes are selected by this column
    partition_by: tuple[str, ...] = ("month",)  # month of date_column: many tickers per file
    columns: Mapping[str, str] = field(default_factory=dict)  # per-column descriptions (units)

    @property
    def layer(self) -> str:
        return self.path.split("/")[0]

    @property
    def name(self) -> str:
        return self.path.split("/")[-1]

    @property
    def key_path(self) -> list[str]:
        """The asset key's path, e.g. ``["silver", "daily_bars"]``."""
        return self.path.split("/")

    def __str__(self) -> str:
        return self.path


# -- columns shared by several tables --------------------------------------------------------
KAFKA_COLUMNS = {
    "kafka_topic": pl.String,
    "kafka_partition": pl.Int32,
    "kafka_offset": pl.Int64,
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
}
KAFKA_QUARANTINE_SCHEMA = {
    **KAFKA_COLUMNS,
    "kafka_key": pl.Binary,
    "payload": pl.Binary,
    "reason": pl.String,
    "quarantined_at": pl.Datetime("us", "UTC"),
}
SOURCE_QUARANTINE_SCHEMA = {
    "source": pl.String,
    "record": pl.String,  # the raw row as JSON, exactly as the connector returned it
    "reason": pl.String,
    "detected_at": pl.Datetime("us", "UTC"),
}
MONTH = {"month": pl.String}
# when an entry of a revised reference table was first seen, and when it stopped being listed
VINTAGE = {"first_seen": pl.Date, "dropped_on": pl.Date}

# -- bronze: what arrived on Kafka --------------------------------------------------------------
MARKET_BAR_FIELDS = {
    "ticker": pl.String,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Int64,
    "source": pl.String,
    "schema_version": pl.Int32,
}
NEWS_ARTICLE_FIELDS = {
    "article_id": pl.String,
    "published_at": pl.Datetime("us", "UTC"),
    "date": pl.Date,
    "headline": pl.String,
    "body": pl.String,
    "tickers": pl.List(pl.String),
    "source": pl.String,
    "schema_version": pl.Int32,
}
_INGESTED = {"ingested_at": pl.Datetime("us", "UTC")}

BRONZE_MARKET_BARS = Table(
    "bronze/market_bars",
    "Every valid market bar from Kafka, with topic, partition and offset.",
    {**MARKET_BAR_FIELDS, **KAFKA_COLUMNS, **_INGESTED, **MONTH},
)
BRONZE_MARKET_BARS_QUARANTINE = Table(
    "bronze/market_bars_quarantine",
    "Market-bar messages that failed the contract: raw payload, offset and reason.",
    KAFKA_QUARANTINE_SCHEMA,
    date_column=None,
    partition_by=(),
)
BRONZE_NEWS_ARTICLES = Table(
    "bronze/news_articles",
    "Every valid news article from Kafka, with topic, partition and offset.",
    {**NEWS_ARTICLE_FIELDS, **KAFKA_COLUMNS, **_INGESTED, **MONTH},
)
BRONZE_NEWS_ARTICLES_QUARANTINE = Table(
    "bronze/news_articles_quarantine",
    "News messages that failed the contract: raw payload, offset and reason.",
    KAFKA_QUARANTINE_SCHEMA,
    date_column=None,
    partition_by=(),
)

# -- silver: market data -----------------------------------------------------------------------
PRICE_COLUMNS = ("open", "high", "low", "close")
DAILY_BAR_SCHEMA = {
    **{k: v for k, v in MARKET_BAR_FIELDS.items() if k != "schema_version"},
    "kafka_partition": pl.Int32,
    "kafka_offset": pl.Int64,
    **MONTH,
}
# where a silver bar came from: the exact Kafka record (with kafka_partition and kafka_offset) and
# the bronze/market_bars version the run read. Last in the schema, nullable: tables written
# before they existed gain them as null columns (`LakeIO.ensure_table`).
DAILY_BAR_PROVENANCE = {"kafka_topic": pl.String, "bronze_version": pl.Int64}
DAILY_BARS = Table(
    "silver/daily_bars",
    "One validated bar per ticker and NYSE session (the latest published version wins), with "
    "the Kafka record it came from and the bronze version the run read.",
    {**DAILY_BAR_SCHEMA, **DAILY_BAR_PROVENANCE},
)
DAILY_BARS_QUARANTINE = Table(
    "silver/daily_bars_quarantine",
    "Bronze bars silver cannot accept (not an NYSE session, failed a row rule), with the reason.",
    {
        **{k: v for k, v in DAILY_BAR_SCHEMA.items() if k != "month"},
        "reason": pl.String,
        "partition_key": pl.String,  # the session whose run owns this calendar day
        "quarantined_at": pl.Datetime("us", "UTC"),
        **MONTH,
    },
)
CORPORATE_ACTION_SCHEMA = {
    "instrument": pl.String,
    "ticker": pl.String,
    "action": pl.String,
    "effective_date": pl.Date,
    "ratio": pl.Float64,
    "new_ticker": pl.String,
    "detected_ratio": pl.Float64,
    "volume_ratio": pl.Float64,
    "source": pl.String,
    "status": pl.String,
    "known_from": pl.Date,
    "note": pl.String,
}
CORPORATE_ACTIONS = Table(
    "silver/corporate_actions",
    "Splits, distributions and ticker changes: detected, then confirmed or corrected by review.",
    {**CORPORATE_ACTION_SCHEMA, **MONTH},
    date_column="effective_date",
)
# the versions an adjusted row was computed from (null: not recorded, or the table did not exist)
ADJUSTED_BAR_PROVENANCE = {"daily_bars_version": pl.Int64, "corporate_actions_version": pl.Int64}
ADJUSTED_DAILY_BARS = Table(
    "silver/adjusted_daily_bars",
    "Bars in each instrument's first-share basis, point in time; raw prices kept for display; "
    "rows whose price jump was undecided that day are set aside (null adjusted, reason given); "
    "with the silver/daily_bars and silver/corporate_actions versions each row was computed from.",
    {
        "instrument": pl.String,
        "ticker": pl.String,
        "date": pl.Date,
        **dict.fromkeys(PRICE_COLUMNS, pl.Float64),
        "volume": pl.Int64,
        "cum_factor": pl.Float64,
        "cum_volume_factor": pl.Float64,
        "events_applied": pl.Int32,
        **{f"adj_{p}": pl.Float64 for p in PRICE_COLUMNS},
        "adj_volume": pl.Float64,
        "source": pl.String,
        # why the row has no adjusted prices (its price jump was undecided that day), else null
        "set_aside": pl.String,
        **MONTH,
        **ADJUSTED_BAR_PROVENANCE,
    },
)
DATA_QUALITY = Table(
    "silver/data_quality",
    "Per data set: missing sessions and stock-days, volume findings, adjustments applied.",
    date_column="last_date",
)

# -- silver: alternative data --------------------------------------------------------------------
MACRO_INDICATORS = Table(
    "silver/macro_indicators",
    "Macro and market-context observations with the day each became known (known_from).",
    {
        "series": pl.String,
        "frequency": pl.String,
        "period": pl.Date,
        "period_end": pl.Date,
        "value": pl.Float64,
        "unit": pl.String,
        "known_from": pl.Date,
        "release_lag_days": pl.Int32,
        "source": pl.String,
        **MONTH,
    },
    date_column="known_from",
)
NEWS_SENTIMENT = Table(
    "silver/news_sentiment",
    "Loughran-McDonald scores per article.",
    {
        "article_id": pl.String,
        "published_at": pl.Datetime("us", "UTC"),
        "date": pl.Date,
        "headline": pl.String,
        "source": pl.String,
        "tickers": pl.List(pl.String),
        "positive": pl.Int32,
        "negative": pl.Int32,
        "terms": pl.Int32,
        "polarity": pl.Float64,
        "subjectivity": pl.Float64,
        **MONTH,
    },
)
MARKET_SENTIMENT = Table(
    "silver/market_sentiment",
    "Market-wide tone per publication day, usable from the next day (known_from).",
)
EARNINGS_CALENDAR = Table(
    "silver/earnings_calendar",
    "Every earnings release date per ticker ever listed, with when it was first seen and when "
    "a later snapshot stopped listing it (vintages: a revision never rewrites the past).",
    {"ticker": pl.String, "earnings_date": pl.Date, "source": pl.String, **VINTAGE},
    date_column="earnings_date",
    partition_by=(),
)
INDEX_MEMBERSHIP = Table(
    "silver/index_membership",
    "Index membership intervals [member_from, member_until) ever listed, with when each was "
    "first seen and when a later snapshot stopped listing it (vintages).",
    {
        "index": pl.String,
        "ticker": pl.String,
        "name": pl.String,
        "member_from": pl.Date,
        "member_until": pl.Date,
        **VINTAGE,
    },
    date_column=None,
    partition_by=(),
)
UNIVERSE = Table(
    "silver/universe",
    "Index members on every NYSE session (point-in-time universe).",
    {"date": pl.Date, "index": pl.String, "ticker": pl.String, **MONTH},
)


# -- gold: features ---------------------------------------------------------------------------
def _gold_features_schema() -> dict[str, pl.DataType]:
    from stock_assets.gold.feature_set import SCHEMA  # column lists live with the features

    return SCHEMA


# version column -> the table a feature row was computed from, read at that Delta version
FEATURE_INPUTS = {
    "adjusted_bars_version": ADJUSTED_DAILY_BARS,
    "macro_indicators_version": MACRO_INDICATORS,
    "market_sentiment_version": MARKET_SENTIMENT,
    "earnings_calendar_version": EARNINGS_CALENDAR,
    "universe_version": UNIVERSE,
}
FEATURE_PROVENANCE = {
    "computed_from": pl.Date,  # first session of the run that wrote the row (OBV's anchor)
    **dict.fromkeys(FEATURE_INPUTS, pl.Int64),  # null: the table did not exist yet
    "obv_anchor_version": pl.Int64,  # gold/daily_features version the OBV anchor was read at
}
GOLD_DAILY_FEATURES = Table(
    "gold/daily_features",
    "Per instrument and session: TA-Lib indicators, Alpha158 factors, cross-sectional ranks and "
    "z-scores, and point-in-time context (macro, sentiment, earnings, universe); with the Delta "
    "versions of the inputs each row was computed from, so it can be recomputed exactly.",
    {**_gold_features_schema(), **FEATURE_PROVENANCE},
)


# -- gold: model outputs ----------------------------------------------------------------------
MODEL_COLUMNS = {
    "model_name": pl.String,
    "model_version": pl.String,  # the registered MLflow version, resolved once per run
}
# expected return and price with adaptive intervals (models/return_intervals): last in the
# schema, nullable (rows without 20 returns of history have none; older tables gain them as nulls)
INTERVAL_LEVELS = ("80", "90", "95")
PREDICTED_RETURN_COLUMNS = {
    "expected_return": pl.Float64,
    **{f"return_{s}_{v}": pl.Float64 for v in INTERVAL_LEVELS for s in ("lower", "upper")},
    "volatility": pl.Float64,
    "last_close": pl.Float64,
    "expected_price": pl.Float64,
    **{f"price_{s}_{v}": pl.Float64 for v in INTERVAL_LEVELS for s in ("lower", "upper")},
    "return_calibrated_until": pl.Date,
}
_RETURN_UNITS = "fraction over the model's horizon of h sessions (0.01 = +1%)"
_PRICE_UNITS = "currency of last_close"
GOLD_PREDICTIONS = Table(
    "gold/predictions",
    "Per ticker and session: the model's score (the label's units: the cross-sectional "
    "rank-gaussian of the h-session return, used for ranking and signals) with its conformal "
    "interval; the expected h-session return (a fraction: 0.01 = +1%) with conformal intervals "
    "at 80/90/95% that widen with the stock's trailing volatility, and the implied price "
    "last_close x (1 + return) in the currency of last_close, the traded close of the session "
    "(null without 20 returns of history); the model that made it and the table versions "
    "behind it; role champion, or challenger in shadow.",
    {
        "instrument": pl.String,
        "ticker": pl.String,
        "date": pl.Date,
        "role": pl.String,
        "prediction": pl.Float64,
        "lower": pl.Float64,
        "upper": pl.Float64,
        "interval_level": pl.Float64,
        "horizon": pl.Int32,
        "in_universe": pl.Boolean,
        **MODEL_COLUMNS,
        "mlflow_run_id": pl.String,
        "feature_table_version": pl.Int64,
        "adjusted_bars_version": pl.Int64,
        **MONTH,
        **PREDICTED_RETURN_COLUMNS,
    },
    columns={
        "prediction": "score, rank-gaussian units of the cross-sectional label (no return units)",
        "lower": "score interval's lower bound at interval_level (rank-gaussian units)",
        "upper": "score interval's upper bound at interval_level (rank-gaussian units)",
        "interval_level": "confidence level of lower..upper (0.9 = 90%)",
        "horizon": "sessions ahead the prediction looks (h)",
        "expected_return": f"expected return, {_RETURN_UNITS}",
        **{
            f"return_{s}_{v}": f"{s} bound of the {v}% return interval, {_RETURN_UNITS}"
            for v in INTERVAL_LEVELS
            for s in ("lower", "upper")
        },
        "volatility": "std of the last 20 daily returns times sqrt(h), a fraction over h sessions",
        "last_close": "traded (unadjusted) close of the session, currency of the bars",
        "expected_price": f"last_close x (1 + expected_return), {_PRICE_UNITS}",
        **{
            f"price_{s}_{v}": f"{s} bound of the {v}% price interval, {_PRICE_UNITS}"
            for v in INTERVAL_LEVELS
            for s in ("lower", "upper")
        },
        "return_calibrated_until": "latest session whose realised return the row's interval "
        "calibration used (always before date)",
    },
)
GOLD_SIGNALS = Table(
    "gold/signals",
    "Per session: the champion's predictions ranked over that day's universe, the side and "
    "weight each gets, and the rule that produced them.",
    {
        "instrument": pl.String,
        "ticker": pl.String,
        "date": pl.Date,
        "prediction": pl.Float64,
        "rank": pl.Int32,  # 1 = highest prediction
        "side": pl.String,  # long, short or none
        "weight": pl.Float64,  # signed share of capital
        "rule": pl.String,
        **MODEL_COLUMNS,
        **MONTH,
    },
)
GOLD_BACKTEST = Table(
    "gold/backtest",
    "Per session of gold/signals whose next session has bars: IC and rank IC of the champion's "
    "predictions, the stored signals' long leg and long-short book after costs, and buy-and-hold "
    "of the first session's members on adjusted closes. Thin sessions have no signals, no row.",
    {
        "date": pl.Date,
        "names": pl.Int64,  # members ranked that session
        "horizon": pl.Int64,  # sessions ahead the IC's outcome looks (the model's horizon)
        "ic": pl.Float64,
        "rank_ic": pl.Float64,
        "long_net": pl.Float64,
        "long_turnover": pl.Float64,
        "long_short_net": pl.Float64,
        "long_short_turnover": pl.Float64,
        "missing_outcomes": pl.Int64,  # held positions with no bar next session (in cash)
        "benchmark": pl.Float64,
        "model_versions": pl.String,
        **MONTH,
    },
)


def _source_quarantine(of: Table) -> Table:
    return Table(
        f"{of.path}_quarantine",
        f"Source rows {of.path} could not store, with the reason (a snapshot of the source).",
        SOURCE_QUARANTINE_SCHEMA,
        date_column=None,
        partition_by=(),
    )


MACRO_INDICATORS_QUARANTINE = _source_quarantine(MACRO_INDICATORS)
NEWS_SENTIMENT_QUARANTINE = _source_quarantine(NEWS_SENTIMENT)
EARNINGS_CALENDAR_QUARANTINE = _source_quarantine(EARNINGS_CALENDAR)
INDEX_MEMBERSHIP_QUARANTINE = _source_quarantine(INDEX_MEMBERSHIP)

CATALOG: dict[str, Table] = {t.path: t for t in list(globals().values()) if isinstance(t, Table)}


def table(path: str) -> Table:
    """The catalog entry for ``layer/name``; unknown paths are an error, not a new table."""
    try:
        return CATALOG[path]
    except KeyError:
        raise KeyError(f"{path!r} is not in the table catalog (stock_assets/tables.py)") from None
