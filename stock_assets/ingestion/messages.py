"""The market-bar message contract on Kafka, and the per-record verdict: store or quarantine.

A message is a JSON object keyed by ticker::

    {"schema_version": 1, "ticker": "AAPL", "date": "2010-01-04", "open": 213.43,
     "high": 214.5, "low": 212.38, "close": 214.01, "volume": 17633200, "source": "sp500_2009"}

Validation here is per record and cheap (it runs on the ingest hot path); cross-record rules
(duplicates, OHLC envelope) belong to the silver checks.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import orjson
import polars as pl

from stock_assets.ingestion.contract import InvalidRecord, TopicContract

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
PRICE_FIELDS = ("open", "high", "low", "close")
EARLIEST_BAR_DATE = dt.date(1900, 1, 1)
_is_ticker = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,11}").fullmatch


class InvalidBar(InvalidRecord):
    """A market-bar message that cannot be stored."""


def encode_bar(
    ticker: str,
    date: dt.date | str,
    open_: float,
    high: float,
    low: float,
    close: float,
    volume: int,
    source: str,
) -> bytes:
    payload = {
        "schema_version": SCHEMA_VERSION,
        "ticker": ticker,
        "date": str(date),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "source": source,
    }
    return orjson.dumps(payload)


def _price(message: dict, field: str) -> float:
    value = message.get(field)
    if value is None:
        raise InvalidBar(f"missing field {field!r}")
    if type(value) not in (int, float):
        raise InvalidBar(f"field {field!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidBar(f"field {field!r} must be a positive finite price, got {value!r}")
    return float(value)


def _date(value, today: dt.date) -> dt.date:
    if value is None:
        raise InvalidBar("missing field 'date'")
    if type(value) is not str or len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise InvalidBar(f"field 'date' must be YYYY-MM-DD, got {value!r}")
    try:
        date = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidBar(f"field 'date' is not a calendar date: {value!r}") from exc
    if date < EARLIEST_BAR_DATE or date > today + dt.timedelta(days=1):
        raise InvalidBar(f"field 'date' out of range: {value}")
    return date


# A feed repeats the same few dates across hundreds of tickers: validate each string once.
_valid_dates: dict[tuple[str, dt.date], dt.date] = {}


def _cached_date(value, today: dt.date) -> dt.date:
    key = (value, today)
    date = _valid_dates.get(key) if type(value) is str else None
    if date is None:
        date = _date(value, today)  # raises for anything invalid, which is never cached
        if len(_valid_dates) > 50_000:
            _valid_dates.clear()
        _valid_dates[key] = date
    return date


def parse_bar(raw: bytes | None, today: dt.date) -> tuple:
    """Return ``(ticker, date, open, high, low, close, volume, source, schema_version)``.

    Raises InvalidBar with the reason when the record must be quarantined.
    """
    if raw is None:
        raise InvalidBar("empty message (tombstone)")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8 and NaN/Infinity literals
        raise InvalidBar(f"not JSON: {exc}") from exc
    if type(message) is not dict:
        raise InvalidBar(f"not a JSON object: {type(message).__name__}")
    version = message.get("schema_version")
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidBar(f"unknown schema_version {version!r}")
    ticker = message.get("ticker")
    if type(ticker) is not str or not _is_ticker(ticker):
        raise InvalidBar(f"field 'ticker' must be an upper-case symbol, got {ticker!r}")
    date = _cached_date(message.get("date"), today)
    get = message.get
    open_, high, low, close = get("open"), get("high"), get("low"), get("close")
    if not (  # fast path: four positive finite floats; anything else gets the precise reason
        type(open_) is float
        and type(high) is float
        and type(low) is float
        and type(close) is float
        and 0.0 < open_ < math.inf
        and 0.0 < high < math.inf
        and 0.0 < low < math.inf
        and 0.0 < close < math.inf
    ):
        open_, high, low, close = (_price(message, field) for field in PRICE_FIELDS)
    if high < low:
        raise InvalidBar(f"high {high} < low {low}")
    volume = message.get("volume")
    if type(volume) is float and volume.is_integer():
        volume = int(volume)
    if type(volume) is not int or volume < 0:
        raise InvalidBar(f"field 'volume' must be a non-negative integer, got {volume!r}")
    source = message.get("source")
    if source is not None and type(source) is not str:
        raise InvalidBar(f"field 'source' must be a string, got {type(source).__name__}")
    return ticker, date, open_, high, low, close, volume, source, version


MARKET_BARS = TopicContract(
    name="market_bars",
    bronze_table="bronze/market_bars",
    quarantine_table="bronze/market_bars_quarantine",
    columns={
        "ticker": pl.String,
        "date": pl.Date,
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Int64,
        "source": pl.String,
        "schema_version": pl.Int32,
    },
    parse=parse_bar,
)
