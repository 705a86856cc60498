"""The chain behind one stored prediction, from the model back to the Kafka offsets.

No Dagster: the CLI (``stock-assets audit TICKER DATE``) and the API call `prediction_chain`.
Every link is read at the version the prediction recorded (Delta time travel for the features
and the adjusted bars), then followed by key: adjusted bars -> silver bars (the published version
silver kept, with its Kafka partition and offset) -> bronze rows -> topic, partition, offset.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import polars as pl

from stock_assets import tables
from stock_assets.calendar import sessions_before
from stock_assets.gold.assemble import LOOKBACK_SESSIONS
from stock_assets.lake import LakeIO


@dataclass
class PredictionChain:
    prediction: dict
    model: dict  # version, MLflow run, refit month, the Delta versions training read
    features: pl.DataFrame  # the feature row, at the version the prediction read
    adjusted_bars: pl.DataFrame  # the bars the features' lookback used, at that version
    silver_bars: pl.DataFrame  # the same ticker-days in silver, with their Kafka coordinates
    bronze_bars: pl.DataFrame  # the bronze rows at those coordinates
    kafka: pl.DataFrame  # topic, partition, first and last offset, message count

    def summary(self) -> str:
        p, m = self.prediction, self.model
        lines = [
            f"prediction {p['ticker']} {p['date']} ({p['role']}): {p['prediction']:+.4f} "
            f"[{p['lower']:+.4f}, {p['upper']:+.4f}] at {p['interval_level']:.0%}",
            f"model {p['model_name']} v{p['model_version']}, MLflow run {p['mlflow_run_id']}, "
            f"refit {m.get('refit_month')}, trained on {m.get('delta_versions')}",
            f"features: gold/daily_features v{p['feature_table_version']}, "
            f"{self.features.height} row",
            f"bars: silver/adjusted_daily_bars v{p['adjusted_bars_version']}, "
            f"{self.adjusted_bars.height} sessions {self.adjusted_bars['date'].min()}.."
            f"{self.adjusted_bars['date'].max()}; {self.silver_bars.height} silver rows, "
            f"{self.bronze_bars.height} bronze rows",
        ]
        for topic, partition, first, last, count in self.kafka.iter_rows():
            lines.append(f"kafka {topic}[{partition}] offsets {first}..{last} ({count} messages)")
        return "\n".join(lines)


def prediction_chain(
    lake: LakeIO, registry, ticker: str, day: dt.date, role: str = "champion"
) -> PredictionChain:
    """The chain of the stored ``role`` prediction for ``ticker`` on ``day``."""
    stored = lake.read_dates(tables.GOLD_PREDICTIONS, day, day).filter(
        (pl.col("ticker") == ticker) & (pl.col("role") == role)
    )
    if stored.is_empty():
        raise LookupError(f"no {role} prediction stored for {ticker} on {day}")
    prediction = stored.row(0, named=True)
    version = registry.client().get_model_version(
        prediction["model_name"], prediction["model_version"]
    )
    model = {
        "version": str(version.version),
        "mlflow_run_id": version.run_id,
        "refit_month": version.tags.get("refit_month"),
        "champion_from": version.tags.get("champion_from"),
        "delta_versions": json.loads(version.tags.get("delta_versions", "{}")),
    }
    instrument = prediction["instrument"]
    features = lake.read_dates(
        tables.GOLD_DAILY_FEATURES, day, day, prediction["feature_table_version"]
    ).filter(pl.col("instrument") == instrument)
    adjusted = (
        lake.read_dates(
            tables.ADJUSTED_DAILY_BARS,
            sessions_before(day, LOOKBACK_SESSIONS),
            day,
            prediction["adjusted_bars_version"],
        )
        .filter(pl.col("instrument") == instrument)
        .sort("date")
    )
    ticker_days = adjusted.select("ticker", "date")
    silver = lake.read_dates(tables.DAILY_BARS, adjusted["date"].min(), day).join(
        ticker_days, on=["ticker", "date"]
    )
    bronze = (
        lake.read_dates(tables.BRONZE_MARKET_BARS, adjusted["date"].min(), day)
        .join(
            silver.select("ticker", "date", "kafka_partition", "kafka_offset"),
            on=["ticker", "date", "kafka_partition", "kafka_offset"],
        )
        .sort("kafka_partition", "kafka_offset")
    )
    kafka = (
        bronze.group_by("kafka_topic", "kafka_partition")
        .agg(
            pl.col("kafka_offset").min().alias("first_offset"),
            pl.col("kafka_offset").max().alias("last_offset"),
            pl.len().alias("messages"),
        )
        .sort("kafka_topic", "kafka_partition")
    )
    return PredictionChain(prediction, model, features, adjusted, silver, bronze, kafka)
