"""The chain behind one stored prediction, from the model back to the Kafka offsets.

No Dagster: the CLI (``stock-assets audit TICKER DATE``) and the API call `prediction_chain`.
Every link is read at a recorded version: the features at the version the prediction read, the
adjusted bars at the version that feature row was computed from (stored on the row), silver
bars at the version current when those adjusted bars were committed, bronze at the version
current when that silver version was. So a bar re-published later (a correction) does not
change the chain: it still names the Kafka offsets that fed the prediction.
`reproduce` (``stock-assets audit --reproduce``, models/reproduce.py) recomputes the row.
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
    versions: dict[str, int]  # the Delta version each link was read at

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
            f"{self.adjusted_bars['date'].max()}; {self.silver_bars.height} silver rows "
            f"(silver/daily_bars v{self.versions['silver/daily_bars']}), "
            f"{self.bronze_bars.height} bronze rows "
            f"(bronze/market_bars v{self.versions['bronze/market_bars']})",
        ]
        if self.features.height:
            row = self.features.row(0, named=True)
            inputs = ", ".join(
                f"{table.path} v{row[column]}" for column, table in tables.FEATURE_INPUTS.items()
            )
            lines.append(f"feature inputs (run from {row['computed_from']}): {inputs}")
        for topic, partition, first, last, count in self.kafka.iter_rows():
            lines.append(f"kafka {topic}[{partition}] offsets {first}..{last} ({count} messages)")
        return "\n".join(lines)


def stored_prediction(lake: LakeIO, ticker: str, day: dt.date, role: str = "champion") -> dict:
    """The stored ``role`` prediction row of ``ticker`` on ``day``; LookupError if none."""
    stored = lake.read_dates(tables.GOLD_PREDICTIONS, day, day).filter(
        (pl.col("ticker") == ticker) & (pl.col("role") == role)
    )
    if stored.is_empty():
        raise LookupError(f"no {role} prediction stored for {ticker} on {day}")
    return stored.row(0, named=True)


def prediction_chain(
    lake: LakeIO, registry, ticker: str, day: dt.date, role: str = "champion"
) -> PredictionChain:
    """The chain of the stored ``role`` prediction for ``ticker`` on ``day``."""
    prediction = stored_prediction(lake, ticker, day, role)
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
    silver_version = version_when(
        lake,
        tables.DAILY_BARS,
        tables.ADJUSTED_DAILY_BARS,
        prediction["adjusted_bars_version"],
    )
    first = adjusted["date"].min()
    silver = lake.read_dates(tables.DAILY_BARS, first, day, silver_version).join(
        ticker_days, on=["ticker", "date"]
    )
    bronze_version = version_when(
        lake, tables.BRONZE_MARKET_BARS, tables.DAILY_BARS, silver_version
    )
    bronze = (
        lake.read_dates(tables.BRONZE_MARKET_BARS, first, day, bronze_version)
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
    versions = {
        "gold/daily_features": prediction["feature_table_version"],
        "silver/adjusted_daily_bars": prediction["adjusted_bars_version"],
        "silver/daily_bars": silver_version,
        "bronze/market_bars": bronze_version,
    }
    return PredictionChain(prediction, model, features, adjusted, silver, bronze, kafka, versions)


def commit_times(lake: LakeIO, table: tables.Table) -> dict[int, int]:
    """Delta version -> commit timestamp (ms) of every version the log still holds."""
    delta = lake.delta(table)
    history = delta.history() if delta is not None else []
    return {entry["version"]: entry["timestamp"] for entry in history if "timestamp" in entry}


def version_when(lake: LakeIO, table: tables.Table, later: tables.Table, later_version: int) -> int:
    """The last version of ``table`` committed before ``later`` at ``later_version`` was: what
    a computation that read ``table`` and then wrote ``later`` had seen."""
    committed = commit_times(lake, later).get(later_version)
    if committed is None:
        raise LookupError(f"the Delta log of {later.path} no longer holds v{later_version}")
    before = [v for v, when in commit_times(lake, table).items() if when <= committed]
    if not before:
        raise LookupError(f"{table.path} has no version older than {later.path} v{later_version}")
    return max(before)
