"""The market-bar message contract on Kafka, and the per-record verdict: store or quarantine.

A message is a JSON object keyed by ticker::

    {"schema_version": 1, "ticker": "AAPL", "date": "2010-01-04", "open": 213.43,
     "high": 214.5, "low": 212.38, "close": 214.01, "volume": 17633200, "source": "sp500_2009"}

Validation here is per record and cheap (it runs on the ingest hot path); cross-record rules
(duplicates, OHLC envelope) belong to the silver checks.
"""

import datetime as dt
from typing import Annotated, Literal

import msgspec
import polars as pl

from stock_assets.ingestion.contract import InvalidRecord, TopicContract
from stock_assets.symbols import TICKER_PATTERN_PY

SCHEMA_VERSION = 1
EARLIEST_BAR_DATE = dt.date(1900, 1, 1)

Price = Annotated[float, msgspec.Meta(gt=0)]


class BarV1(msgspec.Struct):
    """Schema version 1; msgspec checks types strictly in C (no "1.5" -> 1.5, no true -> 1)."""

    schema_version: Literal[1]
    ticker: Annotated[str, msgspec.Meta(pattern=TICKER_PATTERN_PY)]
    date: dt.date  # RFC 3339 full-date: YYYY-MM-DD and a real calendar day
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[int, msgspec.Meta(ge=0)]
    source: str | None = None


_decode_v1 = msgspec.json.Decoder(BarV1).decode
_encode = msgspec.json.Encoder().encode


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
    """Any values, valid or not: tests and replays of bad feeds publish through this too."""
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
    return _encode(payload)


def parse_bar(raw: bytes | None, today: dt.date) -> tuple:
    """Return ``(ticker, date, open, high, low, close, volume, source, schema_version)``.

    Raises InvalidBar with the reason when the record must be quarantined.
    """
    if raw is None:
        raise InvalidBar("empty message (tombstone)")
    try:
        bar = _decode_v1(raw)
    except msgspec.ValidationError as exc:
        raise InvalidBar(str(exc)) from exc
    except msgspec.DecodeError as exc:  # also invalid UTF-8 and NaN/Infinity literals
        raise InvalidBar(f"not JSON: {exc}") from exc
    if bar.high < bar.low:
        raise InvalidBar(f"high {bar.high} < low {bar.low}")
    if bar.date < EARLIEST_BAR_DATE or bar.date > today + dt.timedelta(days=1):
        raise InvalidBar(f"date out of range: {bar.date}")
    return (
        bar.ticker, bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.source,
        bar.schema_version,
    )  # fmt: skip


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
