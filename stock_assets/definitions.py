"""The one place that assembles the code location."""

from __future__ import annotations

import dagster as dg

from stock_assets.ingestion.assets import market_bars
from stock_assets.ingestion.sensors import (
    daily_bars_job,
    daily_bars_sensor,
    ingest_market_bars_job,
    market_bars_kafka_sensor,
)
from stock_assets.market.assets import daily_bars
from stock_assets.market.checks import daily_bars_checks
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)


def build_resources() -> dict:
    return {"kafka": KafkaResource.from_env(), "lake": LakeResource.from_env()}


defs = dg.Definitions(
    assets=[market_bars, daily_bars],
    asset_checks=[daily_bars_checks],
    jobs=[ingest_market_bars_job, daily_bars_job],
    sensors=[
        market_bars_kafka_sensor,
        daily_bars_sensor,
        automation_sensor,
    ],
    resources=build_resources(),
)
