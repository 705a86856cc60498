"""Everything the API and the app read, built once through the real pipeline.

Real bars of 40 S&P 500 names (AAPL among them), January..July 2010, go Kafka -> sensor ->
bronze -> the bar chain (silver, adjusted bars, features, the Feast online store). June is refit
and promoted (champion, version 1); July is refit and left as the challenger (version 2), so the
two aliases differ. June and July are predicted (champion, and July's challenger in shadow),
then signals and the backtest. The state sits under one folder, as a deployment's would.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.bronze.replay import replay
from stock_assets.feast.feature_store import FeatureStoreSettings
from stock_assets.gold.backtest import backtest
from stock_assets.gold.predictions import PREDICTIONS_CHECKS, predictions
from stock_assets.gold.signals import signals
from stock_assets.models.challenger import challenger
from stock_assets.models.champion import champion
from stock_assets.partitions import range_tags
from stock_assets.pit import members_on
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import MlflowResource
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.silver.index_membership import parse_intervals
from stock_assets_tests.conftest import (
    bars_between,
    build_silver_from_sensor,
    feast_beside,
    ingest_from_sensor,
    mlflow_beside,
)

FIRST_DAY, LAST_DAY = dt.date(2010, 1, 4), dt.date(2010, 7, 30)
JUNE, JULY = "2010-06-01", "2010-07-01"
SMALL = {  # 40 names and seven months: a smaller model than the defaults assume
    "min_validation_rank_ic": -1.0,
    "min_train_sessions": 60,
    "validation_sessions": 10,
    "min_data_in_leaf": 20,
}
# 40 of the index's ~500 members: every session would be thin under the default floor
SMALL_CROSS_SECTION = {"min_names": 20, "min_universe_share": 0.0}


@dataclass
class Delivered:
    """A built state: its lake, model registry and feature store, and the bars behind them."""

    root: Path
    lake: LakeResource
    registry: MlflowResource
    feast: FeatureStoreSettings
    bars: pl.DataFrame
    topic: str

    @property
    def env(self) -> dict[str, str]:
        """The environment a process reading this state (API, app) is started with."""
        return {
            "STOCK_LAKE_ROOT": self.lake.root,
            "STOCK_MLFLOW_TRACKING_URI": self.registry.tracking_uri,
            "STOCK_MLFLOW_ARTIFACTS": self.registry.artifact_location,
            "STOCK_FEAST_REPO": str(self.feast.repo_dir),
            "STOCK_MARKET_TOPIC": self.topic,
        }


def build_delivered(root: Path, kafka_bootstrap: str, topic: str, sp500: pl.DataFrame):
    """Run the pipeline into ``root``; ``topic`` must be empty and named in STOCK_MARKET_TOPIC."""
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(root / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    names = sorted(sp500.filter(pl.col("date") == FIRST_DAY)["ticker"])[:39]
    bars = bars_between(sp500, FIRST_DAY, LAST_DAY, [*names, "AAPL"])
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    days = sorted(bars["date"].unique())
    lake.overwrite_dates(tables.UNIVERSE, members_on(intervals, days), days[0], days[-1])
    assert replay(kafka, topic, bars, "sp500_2009").failed == 0
    ingest_from_sensor(instance, kafka, lake)
    build_silver_from_sensor(instance, lake)

    registry = mlflow_beside(lake)
    resources = {"lake": lake, "mlflow_registry": registry}
    training = {"ops": {"models__challenger": {"config": SMALL}}}
    june = dg.materialize(
        [challenger, champion], resources=resources, partition_key=JUNE, run_config=training
    )
    assert june.success
    july = dg.materialize(  # its promotion checks may fail: it stays the challenger either way
        [challenger], resources=resources, partition_key=JULY, run_config=training,
        raise_on_error=False,
    )  # fmt: skip
    assert july.asset_materializations_for_node("models__challenger")
    scored = dg.materialize(
        [predictions, signals, PREDICTIONS_CHECKS.asset_check()],
        resources=resources,
        tags=range_tags(JUNE, LAST_DAY.isoformat()),
        run_config={"ops": {"gold__signals": {"config": SMALL_CROSS_SECTION}}},
    )
    assert scored.success
    assert dg.materialize([backtest], resources={"lake": lake}).success
    return Delivered(root, lake, registry, feast_beside(lake).settings(), bars, topic)
