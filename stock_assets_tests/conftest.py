"""Shared fixtures.

Embedded Kafka-protocol broker: one noida-db per test session, on a free port and its own data
dir, so tests talk Kafka for real without an installed cluster (DESIGN.md, "Kafka here and in
production"). Each test makes its own topics with `fresh_topic`, so tests never share data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import polars as pl
import pytest

from stock_assets.ingestion.replay import select_bars
from stock_assets.market.corporate_actions import build_corporate_actions, load_curated
from stock_assets.resources.broker import EmbeddedBroker, ensure_topic


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a broker that lives for the whole session (stopped cleanly at the end)."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka-broker"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


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
