"""The one place that assembles the code location."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from stock_assets.alerts.resource import NotifierResource  # alerts: docs/ALERTS.md
from stock_assets.alerts.sensors import ALERT_SENSORS
from stock_assets.bronze.market_bars import market_bars
from stock_assets.bronze.news_articles import news_articles
from stock_assets.gold.backtest import backtest
from stock_assets.models.challenger import challenger
from stock_assets.models.champion import champion
from stock_assets.models.drift import drift
from stock_assets.models.shadow_comparison import shadow_comparison
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import MlflowResource
from stock_assets.resources.sources import EarningsSource, MacroSource, MembershipSource, NewsSource
from stock_assets.schedules import (
    ALTDATA_JOBS,
    ALTDATA_SCHEDULES,
    backtest_job,
    backtest_nightly,
    daily_features_job,
    daily_features_nightly,
    model_refit_job,
    model_refit_monthly,
)
from stock_assets.sensors import (
    BAR_CHAIN_ASSETS,
    BAR_CHAIN_CHECKS,
    bar_chain_job,
    daily_bars_sensor,
    drift_refit_sensor,
    ingest_market_bars_job,
    ingest_news_articles_job,
    market_bars_kafka_sensor,
    news_articles_kafka_sensor,
)
from stock_assets.silver.earnings_calendar import EARNINGS_CHECKS, earnings_calendar
from stock_assets.silver.index_membership import MEMBERSHIP_CHECKS, index_membership
from stock_assets.silver.macro_indicators import MACRO_CHECKS, macro_indicators
from stock_assets.silver.market_sentiment import MARKET_SENTIMENT_CHECKS, market_sentiment
from stock_assets.silver.news_sentiment import NEWS_CHECKS, news_sentiment
from stock_assets.silver.universe import UNIVERSE_CHECKS, universe

CHECK_SUITES = [
    *BAR_CHAIN_CHECKS,
    MACRO_CHECKS,
    NEWS_CHECKS,
    MARKET_SENTIMENT_CHECKS,
    EARNINGS_CHECKS,
    MEMBERSHIP_CHECKS,
    UNIVERSE_CHECKS,
]


def build_executor() -> dg.ExecutorDefinition | None:
    """k8s_job_executor sized per step from ``STOCK_K8S_EXECUTOR_CONFIG`` (production: a pod per
    step, training heavier than ingestion); unset, Dagster's default (local runs and tests)."""
    path = os.environ.get("STOCK_K8S_EXECUTOR_CONFIG")
    if not path:
        return None
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(yaml.safe_load(Path(path).read_text()))


def build_resources() -> dict:
    return {
        "kafka": KafkaResource.from_env(),
        "lake": LakeResource.from_env(),
        "feast": FeastResource.from_env(),
        "mlflow_registry": MlflowResource.from_env(),
        "macro_source": MacroSource.from_env(),
        "news_source": NewsSource.from_env(),
        "earnings_source": EarningsSource.from_env(),
        "membership_source": MembershipSource.from_env(),
        "notifier": NotifierResource.from_env(),  # alerts: every channel off until configured
    }


defs = dg.Definitions(
    assets=dg.with_source_code_references(
        [
            market_bars,
            news_articles,
            *BAR_CHAIN_ASSETS,
            macro_indicators,
            news_sentiment,
            market_sentiment,
            earnings_calendar,
            index_membership,
            universe,
            challenger,
            champion,
            drift,
            shadow_comparison,
            backtest,
        ]
    ),
    asset_checks=[suite.asset_check() for suite in CHECK_SUITES],
    jobs=[
        ingest_market_bars_job,
        bar_chain_job,
        ingest_news_articles_job,
        daily_features_job,
        model_refit_job,
        backtest_job,
        *ALTDATA_JOBS,
    ],
    schedules=[
        *ALTDATA_SCHEDULES,
        daily_features_nightly,
        model_refit_monthly,
        backtest_nightly,
    ],
    sensors=[
        market_bars_kafka_sensor,
        daily_bars_sensor,
        news_articles_kafka_sensor,
        drift_refit_sensor,
        *ALERT_SENSORS,  # alerts: docs/ALERTS.md
    ],
    resources=build_resources(),
    executor=build_executor(),
)
