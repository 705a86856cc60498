"""``silver/market_sentiment``: market-wide tone per publication day.

Daily sentiment for day d is ``known_from`` d + 1: most articles carry no time of day, so an
article dated d may have appeared after the close, and a feature for day d must not see it.
"""

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput, CheckSuite, frame_check, schema_rule, unique_rule
from stock_assets.lake import month_column
from stock_assets.partitions import run_dates
from stock_assets.resources.lake import LakeResource
from stock_assets.silver import ALTDATA_GROUP, DAILY_REFRESH
from stock_assets.silver.news_sentiment import NEWS_PARTITIONS
from stock_assets.table_assets import table_asset


def daily_sentiment(scored: pl.DataFrame) -> pl.DataFrame:
    """Market-wide tone per publication day; usable from the next day (see module docstring)."""
    return (
        scored.group_by("date")
        .agg(
            pl.len().cast(pl.Int32).alias("articles"),
            pl.col("positive").sum().cast(pl.Int64).alias("positive"),
            pl.col("negative").sum().cast(pl.Int64).alias("negative"),
            pl.col("polarity").mean().alias("mean_polarity"),
            pl.col("subjectivity").mean().alias("mean_subjectivity"),
        )
        .with_columns(
            ((pl.col("positive") - pl.col("negative")) / (pl.col("positive") + pl.col("negative")))
            .fill_nan(0.0)
            .alias("net_tone"),
            (pl.col("date") + pl.duration(days=1)).alias("known_from"),
            month_column(),
        )
        .sort("date")
    )


MARKET_SENTIMENT_CHECKS = CheckSuite(
    "market_sentiment_checks",
    tables.MARKET_SENTIMENT,
    [
        schema_rule(
            "market_sentiment_schema",
            pa.DataFrameSchema(
                {
                    "date": pa.Column(pl.Date),
                    "articles": pa.Column(pl.Int32, pa.Check.gt(0)),
                    "net_tone": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0)),
                    "mean_polarity": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0)),
                    "known_from": pa.Column(pl.Date),
                },
                checks=[
                    frame_check(
                        pl.col("known_from") > pl.col("date"), "known_after_publication_day"
                    )
                ],
                name="market_sentiment",
            ),
            "tone in range, known later",
        ),
        unique_rule("market_sentiment_unique_date", ["date"]),
    ],
    NEWS_PARTITIONS,
)


@table_asset(
    tables.MARKET_SENTIMENT,
    group=ALTDATA_GROUP,
    deps=[tables.NEWS_SENTIMENT],
    partitions_def=NEWS_PARTITIONS,
    freshness_policy=DAILY_REFRESH,
)
def market_sentiment(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Daily market-wide sentiment from the scored articles of the selected months."""
    start, end = run_dates(context)
    daily = daily_sentiment(lake.read_dates(tables.NEWS_SENTIMENT, start, end))
    checked = MARKET_SENTIMENT_CHECKS.gate(CheckInput(daily, lake, start, end))
    version = lake.overwrite_dates(tables.MARKET_SENTIMENT, daily, start, end)
    return dg.MaterializeResult(
        metadata={
            "days": daily.height,
            "date_range": f"{start}..{end}",
            "articles": int(daily["articles"].sum() or 0),
            "delta_version": version,
            **checked,
        }
    )
