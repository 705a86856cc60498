"""The chain behind one stored prediction, from the model back to the Kafka offsets.

No Dagster: the CLI (``stock-assets audit TICKER DATE``) and the API call `prediction_chain`.
Every link is read at the version recorded on the row above it, never guessed from times: the
features at the version the prediction read, the adjusted bars at the version the feature row
was computed from, each adjusted row's silver bar at the ``daily_bars_version`` on that row,
each silver bar's bronze record at the ``bronze_version`` on the silver row, by the Kafka topic,
partition and offset silver kept. A bar re-published later (a correction) therefore leaves the
chain unchanged: it still names the Kafka record and values that fed the prediction. A version
the lake can no longer read (vacuumed data files, a cleaned-up log) raises `VersionGone`.
`reproduce` (``stock-assets audit --reproduce``, models/reproduce.py) recomputes every link.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import polars as pl
from deltalake.exceptions import DeltaError

from stock_assets import tables
from stock_assets.calendar import sessions_before
from stock_assets.gold.assemble import LOOKBACK_SESSIONS
from stock_assets.lake import LakeIO

SILVER_KEYS = ["ticker", "date"]
KAFKA_KEYS = ["kafka_partition", "kafka_offset"]  # with kafka_topic where silver recorded it


class VersionGone(LookupError):
    """A Delta version recorded on a row that the lake can no longer read."""


@dataclass
class PredictionChain:
    prediction: dict
    model: dict  # version, MLflow run, refit month, the Delta versions training read
    features: pl.DataFrame  # the feature row, at the version the prediction read
    adjusted_bars: pl.DataFrame  # the bars the features' lookback used, at that version
    silver_bars: pl.DataFrame  # the same ticker-days in silver, with their Kafka coordinates
    bronze_bars: pl.DataFrame  # the bronze rows at those coordinates
    kafka: pl.DataFrame  # topic, partition, first and last offset, message count
    versions: dict[str, list[int]]  # the Delta versions each link was read at

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
            f"(silver/daily_bars {versions_text(self.versions['silver/daily_bars'])}), "
            f"{self.bronze_bars.height} bronze rows "
            f"(bronze/market_bars {versions_text(self.versions['bronze/market_bars'])})",
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


def versions_text(versions: list[int]) -> str:
    if len(versions) == 1:
        return f"v{versions[0]}"
    return f"v{versions[0]}..v{versions[-1]} ({len(versions)} versions, as recorded per row)"


def not_recorded(table: tables.Table, recorded_by: str) -> LookupError:
    return LookupError(
        f"{recorded_by} records no {table.path} version (written before versions were "
        "recorded): re-materialize it to audit"
    )


def read_recorded(
    lake: LakeIO, table: tables.Table, start: dt.date, end: dt.date, version, recorded_by: str
) -> pl.DataFrame:
    """Rows of ``table`` dated ``start..end`` at the ``version`` ``recorded_by`` names.

    A null version (a row written before its inputs' versions were kept) and a version whose
    files or log entry are gone are errors that say so: the chain is never read elsewhere.
    """
    if version is None:
        raise not_recorded(table, recorded_by)
    if not lake.exists(table):
        raise LookupError(f"{table.path} does not exist, yet {recorded_by} records v{version}")
    try:
        return lake.read_dates(table, start, end, int(version))
    except FileNotFoundError as error:
        raise VersionGone(
            f"{table.path} v{version}, recorded by {recorded_by}, can no longer be read: its "
            f"data files were removed (VACUUM) [{error}]"
        ) from None
    except DeltaError as error:
        raise VersionGone(
            f"{table.path} v{version}, recorded by {recorded_by}, is no longer in its Delta log "
            f"(log cleaned up) [{error}]"
        ) from None


def rows_at_recorded_versions(
    lake: LakeIO,
    rows: pl.DataFrame,
    version_column: str,
    table: tables.Table,
    keys: list[str],
    recorded_by: str,
) -> tuple[pl.DataFrame, list[int]]:
    """For every row of ``rows``: the ``table`` row with the same ``keys``, read at the version
    in the row's ``version_column``. LookupError when a row's link is missing there."""
    if version_column not in rows.columns:  # read at a version before the column existed
        raise not_recorded(table, recorded_by)
    found, versions = [], []
    for (version,), group in rows.group_by(version_column, maintain_order=True):
        stored = read_recorded(
            lake, table, group["date"].min(), group["date"].max(), version, recorded_by
        )
        linked = stored.join(group.select(keys).unique(), on=keys, how="semi")
        if linked.height != group.height:
            raise LookupError(
                f"{table.path} v{version} holds {linked.height} of the {group.height} rows "
                f"{recorded_by} was computed from"
            )
        found.append(linked)
        versions.append(int(version))
    return pl.concat(found, how="diagonal_relaxed"), sorted(versions)


def kafka_keys(silver: pl.DataFrame) -> list[str]:
    """The columns naming a silver bar's Kafka record: topic too once silver recorded it."""
    has_topic = "kafka_topic" in silver.columns and silver["kafka_topic"].null_count() == 0
    return [*SILVER_KEYS, *(["kafka_topic"] if has_topic else []), *KAFKA_KEYS]


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
    what = f"the {role} prediction of {ticker} on {day}"
    features = read_recorded(
        lake, tables.GOLD_DAILY_FEATURES, day, day, prediction["feature_table_version"], what
    ).filter(pl.col("instrument") == instrument)
    if features.is_empty():
        raise LookupError(
            f"gold/daily_features v{prediction['feature_table_version']} holds no row of "
            f"{instrument} on {day}, which {what} read"
        )
    adjusted_version = features["adjusted_bars_version"].item()
    adjusted = (
        read_recorded(
            lake,
            tables.ADJUSTED_DAILY_BARS,
            sessions_before(day, LOOKBACK_SESSIONS),
            day,
            adjusted_version,
            f"the feature row of {instrument} on {day}",
        )
        .filter(pl.col("instrument") == instrument)
        .sort("date")
    )
    silver, silver_versions = rows_at_recorded_versions(
        lake,
        adjusted,
        "daily_bars_version",
        tables.DAILY_BARS,
        SILVER_KEYS,
        f"silver/adjusted_daily_bars v{adjusted_version} ({instrument})",
    )
    silver = silver.sort("date")
    keys = kafka_keys(silver)
    bronze, bronze_versions = rows_at_recorded_versions(
        lake,
        silver,
        "bronze_version",
        tables.BRONZE_MARKET_BARS,
        keys,
        f"silver/daily_bars {versions_text(silver_versions)} ({instrument})",
    )
    bronze = bronze.sort("kafka_partition", "kafka_offset")
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
        "gold/daily_features": [prediction["feature_table_version"]],
        "silver/adjusted_daily_bars": [adjusted_version],
        "silver/daily_bars": silver_versions,
        "bronze/market_bars": bronze_versions,
    }
    return PredictionChain(prediction, model, features, adjusted, silver, bronze, kafka, versions)
