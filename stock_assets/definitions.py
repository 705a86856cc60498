"""The one place that assembles the code location."""

from __future__ import annotations

import dagster as dg

from stock_assets.altdata.checks import ALTDATA_CHECKS
from stock_assets.altdata.earnings import earnings_calendar
from stock_assets.altdata.macro import macro_indicators
from stock_assets.altdata.news import (
    ingest_news_articles_job,
    market_sentiment,
    news_articles,
    news_articles_kafka_sensor,
    news_sentiment,
)
from stock_assets.altdata.resources import (
    EarningsSource,
    MacroSource,
    MembershipSource,
    NewsSource,
)
from stock_assets.altdata.schedules import ALTDATA_JOBS, ALTDATA_SCHEDULES
from stock_assets.altdata.universe import index_membership, universe
from stock_assets.ingestion.assets import market_bars
from stock_assets.ingestion.sensors import (
    daily_bars_sensor,
    ingest_market_bars_job,
    market_bars_kafka_sensor,
    market_silver_job,
)
from stock_assets.market import MARKET_SILVER_ASSETS, MARKET_SILVER_CHECKS
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)


def build_resources() -> dict:
    return {
        "kafka": KafkaResource.from_env(),
        "lake": LakeResource.from_env(),
        "macro_source": MacroSource.from_env(),
        "news_source": NewsSource.from_env(),
        "earnings_source": EarningsSource.from_env(),
        "membership_source": MembershipSource.from_env(),
    }


defs = dg.Definitions(
    assets=[
        market_bars,
        *MARKET_SILVER_ASSETS,
        news_articles,
        macro_indicators,
        news_sentiment,
        market_sentiment,
        earnings_calendar,
        index_membership,
        universe,
    ],
    asset_checks=[
        *MARKET_SILVER_CHECKS,
        *ALTDATA_CHECKS,
    ],
    jobs=[ingest_market_bars_job, market_silver_job, ingest_news_articles_job, *ALTDATA_JOBS],
    schedules=ALTDATA_SCHEDULES,
    sensors=[
        market_bars_kafka_sensor,
        daily_bars_sensor,
        news_articles_kafka_sensor,
        automation_sensor,
    ],
    resources=build_resources(),
)
