"""The malformed-message corpus: every kind of bad record gets a reason, good ones parse."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from stock_assets import tables
from stock_assets.bronze.market_bars import (
    EARLIEST_BAR_DATE,
    MARKET_BARS,
    InvalidBar,
    encode_bar,
    market_bars,
    parse_bar,
)
from stock_assets.table_assets import table_key

TODAY = dt.date(2026, 11, 26)
GOOD = {
    "schema_version": 1,
    "ticker": "BRK.B",
    "date": "2010-01-04",
    "open": 66.0,
    "high": 66.4,
    "low": 65.6,
    "close": 66.2,
    "volume": 3200,
    "source": "test",
}


def payload(**changes) -> bytes:
    message = {**GOOD, **changes}
    for key, value in changes.items():
        if value is ...:
            del message[key]
    return json.dumps(message).encode()


def test_encoded_bar_round_trips():
    raw = encode_bar("AAPL", dt.date(2010, 1, 4), 213.43, 214.5, 212.38, 214.01, 17633200, "sp500")
    assert parse_bar(raw, TODAY) == (
        "AAPL", dt.date(2010, 1, 4), 213.43, 214.5, 212.38, 214.01, 17633200, "sp500", 1
    )  # fmt: skip


def test_integral_prices_are_accepted_as_floats_and_source_is_optional():
    parsed = parse_bar(payload(open=66, source=...), TODAY)
    assert parsed[2] == 66.0 and isinstance(parsed[2], float)
    assert parsed[7] is None


def test_dates_from_the_first_nyse_partition_to_tomorrow_are_accepted():
    assert dt.date(1985, 1, 2) == EARLIEST_BAR_DATE  # the first session partition
    assert parse_bar(payload(date="1985-01-02"), TODAY)[1] == dt.date(1985, 1, 2)
    tomorrow = TODAY + dt.timedelta(days=1)
    assert parse_bar(payload(date=tomorrow.isoformat()), TODAY)[1] == tomorrow


def test_the_contract_parses_into_its_catalog_tables():
    assert MARKET_BARS.bronze == tables.BRONZE_MARKET_BARS
    assert MARKET_BARS.quarantine == tables.BRONZE_MARKET_BARS_QUARANTINE
    assert list(MARKET_BARS.fields) == list(tables.MARKET_BAR_FIELDS)
    assert len(parse_bar(payload(), TODAY)) == len(MARKET_BARS.fields)
    assert set(market_bars.keys) == {
        table_key(tables.BRONZE_MARKET_BARS),
        table_key(tables.BRONZE_MARKET_BARS_QUARANTINE),
    }


MALFORMED = {
    "not json": (b"{oops", "not JSON"),
    "not utf-8": (b"\xff\xfe\x00", "not JSON"),
    "json array": (b"[1, 2]", "Expected `object`, got `array`"),
    "tombstone": (None, "empty message"),
    "unknown schema version": (
        payload(schema_version=2),
        "Invalid enum value 2 - at `$.schema_version`",
    ),
    "missing schema version": (
        payload(schema_version=...),
        "missing required field `schema_version`",
    ),
    "schema version as string": (payload(schema_version="1"), "got `str` - at `$.schema_version`"),
    "missing ticker": (payload(ticker=...), "missing required field `ticker`"),
    "lower-case ticker": (payload(ticker="aapl"), "matching regex"),
    "ticker with a newline": (payload(ticker="AAPL\n"), "matching regex"),
    "numeric ticker": (payload(ticker=7), "Expected `str`, got `int` - at `$.ticker`"),
    "missing date": (payload(date=...), "missing required field `date`"),
    "compact date": (payload(date="20100104"), "Invalid RFC3339 encoded date - at `$.date`"),
    "impossible date": (payload(date="2010-02-30"), "Invalid RFC3339 encoded date"),
    "future date": (payload(date="2031-01-02"), "date out of range: 2031-01-02"),
    "day after tomorrow": (payload(date="2026-11-28"), "date out of range: 2026-11-28"),
    "ancient date": (payload(date="1850-01-02"), "date out of range: 1850-01-02"),
    "before the first partition": (payload(date="1984-12-31"), "date out of range: 1984-12-31"),
    "missing close": (payload(close=...), "missing required field `close`"),
    "price as string": (payload(open="66.0"), "Expected `float`, got `str` - at `$.open`"),
    "price as bool": (payload(high=True), "Expected `float`, got `bool` - at `$.high`"),
    "zero price": (payload(low=0), "Expected `float` > 0.0 - at `$.low`"),
    "negative price": (payload(close=-1.5), "Expected `float` > 0.0 - at `$.close`"),
    "nan price": (
        b'{"schema_version":1,"ticker":"A","date":"2010-01-04","open":NaN,"high":2,"low":1,'
        b'"close":1.5,"volume":1}',
        "not JSON",
    ),
    "high below low": (payload(high=65.0, low=65.6), "high 65.0 < low 65.6"),
    "negative volume": (payload(volume=-5), "Expected `int` >= 0 - at `$.volume`"),
    "fractional volume": (payload(volume=10.5), "Expected `int`, got `float` - at `$.volume`"),
    "volume as float": (payload(volume=3200.0), "Expected `int`, got `float` - at `$.volume`"),
    "missing volume": (payload(volume=...), "missing required field `volume`"),
    "source not a string": (payload(source=5), "got `int` - at `$.source`"),
}


@pytest.mark.parametrize("raw, reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidBar) as rejected:
        parse_bar(raw, TODAY)
    assert reason in str(rejected.value)
