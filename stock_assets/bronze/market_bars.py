"""``bronze/market_bars``: the market-bar message contract on Kafka and its exactly-once asset.

A message is a JSON object keyed by ticker::

    {"schema_version": 1, "ticker": "AAPL", "date": "2010-01-04", "open": 213.43,
     "high": 214.5, "low": 212.38, "close": 214.01, "volume": 17633200, "source": "sp500_2009"}

Validation here is per record and cheap (it runs on the ingest hot path); rules that need the
calendar or other records (sessions, corrections, duplicates) belong to silver/daily_bars.py.
"""

import datetime as dt
from typing import Annotated, Literal

import msgspec

from stock_assets import tables
from stock_assets.bronze.contract import InvalidRecord, TopicContract
from stock_assets.bronze.kafka_assets import build_ingest_assets
from stock_assets.calendar import first_trading_day
from stock_assets.symbols import TICKER_PATTERN_PY

SCHEMA_VERSION = 1
EARLIEST_BAR_DATE = first_trading_day()  # older bars would have no session partition

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
    bronze=tables.BRONZE_MARKET_BARS,
    quarantine=tables.BRONZE_MARKET_BARS_QUARANTINE,
    fields=tables.MARKET_BAR_FIELDS,
    parse=parse_bar,
    description="market bar",
)
market_bars = build_ingest_assets(MARKET_BARS, __file__)
