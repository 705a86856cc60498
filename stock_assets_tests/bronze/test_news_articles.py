"""News on Kafka: the news.articles contract, and exactly-once ingest into bronze."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.bronze.news_articles import (
    NEWS_ARTICLES,
    InvalidArticle,
    encode_article,
    news_articles,
    parse_article,
)
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.sensors import news_articles_kafka_sensor
from stock_assets_tests.conftest import GOOD_ARTICLES, publish, run_kafka_sensor

TODAY = dt.date(2026, 1, 1)
BAD = [
    (b"not json", "not JSON"),
    (encode_article("v-4", "2017-02-07T10:00:00Z", ""), "headline"),
    (encode_article("v-5", "2017-02-07T10:00:00", "no offset"), "UTC offset"),
    (encode_article("v-6", "2017-02-07T10:00:00Z", "x", tickers=["aapl"]), "tickers"),
    (encode_article("v-7", "2999-01-01T00:00:00Z", "from the future"), "out of range"),
    (b'{"schema_version": 2, "article_id": "v-8"}', "schema_version"),
]


def test_parse_article_accepts_the_contract_and_rejects_with_reasons():
    row = parse_article(GOOD_ARTICLES[1], TODAY)
    assert row[0] == "vendor-2"
    assert row[1] == dt.datetime(2017, 2, 7, 14, 0, tzinfo=dt.UTC)  # normalised to UTC
    assert row[2] == dt.date(2017, 2, 7) and row[5] is None
    assert parse_article(GOOD_ARTICLES[0], TODAY)[5] == ["AAPL", "MSFT"]
    assert len(row) == len(NEWS_ARTICLES.fields)
    assert NEWS_ARTICLES.bronze == tables.BRONZE_NEWS_ARTICLES
    assert NEWS_ARTICLES.quarantine == tables.BRONZE_NEWS_ARTICLES_QUARANTINE
    for raw, reason in BAD:
        with pytest.raises(InvalidArticle, match=reason):
            parse_article(raw, TODAY)


def test_news_topic_is_ingested_exactly_once_and_bad_articles_quarantined(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    topic = fresh_topic(2)
    monkeypatch.setenv("STOCK_NEWS_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    messages = GOOD_ARTICLES + [raw for raw, _ in BAD]
    publish(kafka_bootstrap, topic, [(f"k{i}".encode(), value) for i, value in enumerate(messages)])
    publish(kafka_bootstrap, topic, [(b"gone", None)])  # a tombstone is quarantined too

    request, _ = run_kafka_sensor(instance, kafka, lake, sensor=news_articles_kafka_sensor)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["stock/topic"] == topic
    resources = {"kafka": kafka, "lake": lake}
    stored = []
    for _ in range(2):  # the second run (a retry of the same range) stores nothing new
        result = dg.materialize(
            [news_articles], run_config=request.run_config, resources=resources, instance=instance
        )
        assert result.success
        metadata = result.asset_materializations_for_node("news_articles")[0].metadata
        stored.append(metadata["rows_stored"].value)
    assert stored == [len(GOOD_ARTICLES), 0]
    bronze = lake.read(NEWS_ARTICLES.bronze)
    quarantine = lake.read(NEWS_ARTICLES.quarantine)
    assert sorted(bronze["article_id"].to_list()) == ["vendor-1", "vendor-2", "vendor-3"]
    assert quarantine.height == len(BAD) + 1 and quarantine["reason"].null_count() == 0
    assert bronze.filter(pl.col("article_id") == "vendor-1")["tickers"].to_list() == [
        ["AAPL", "MSFT"]
    ]
    assert set(bronze["month"]) == {"2017-02"}
    again, _ = run_kafka_sensor(instance, kafka, lake, sensor=news_articles_kafka_sensor)
    assert isinstance(again, dg.SkipReason) and "holds every offset" in again.skip_message
