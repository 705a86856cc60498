"""The malformed-message corpus: every kind of bad record gets a reason, good ones parse."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from stock_assets.ingestion.messages import InvalidBar, encode_bar, parse_bar

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
        "AAPL",
        dt.date(2010, 1, 4),
        213.43,
        214.5,
        212.38,
        214.01,
        17633200,
        "sp500",
        1,
    )


def test_integral_prices_and_float_volume_are_accepted():
    parsed = parse_bar(payload(open=66, volume=3200.0), TODAY)
    assert parsed[2] == 66.0 and isinstance(parsed[2], float)
    assert parsed[6] == 3200 and isinstance(parsed[6], int)


MALFORMED = {
    "not json": (b"{oops", "not JSON"),
    "not utf-8": (b"\xff\xfe\x00", "not JSON"),
    "json array": (b"[1, 2]", "not a JSON object"),
    "tombstone": (None, "empty message"),
    "unknown schema version": (payload(schema_version=2), "unknown schema_version 2"),
    "missing schema version": (payload(schema_version=...), "unknown schema_version None"),
    "schema version as string": (payload(schema_version="1"), "unknown schema_version '1'"),
    "missing ticker": (payload(ticker=...), "field 'ticker'"),
    "lower-case ticker": (payload(ticker="aapl"), "field 'ticker'"),
    "numeric ticker": (payload(ticker=7), "field 'ticker'"),
    "missing date": (payload(date=...), "missing field 'date'"),
    "compact date": (payload(date="20100104"), "YYYY-MM-DD"),
    "impossible date": (payload(date="2010-02-30"), "not a calendar date"),
    "future date": (payload(date="2031-01-02"), "out of range"),
    "ancient date": (payload(date="1850-01-02"), "out of range"),
    "missing close": (payload(close=...), "missing field 'close'"),
    "price as string": (payload(open="66.0"), "field 'open' must be a number, got str"),
    "price as bool": (payload(high=True), "field 'high' must be a number, got bool"),
    "zero price": (payload(low=0), "positive finite price"),
    "negative price": (payload(close=-1.5), "positive finite price"),
    "nan price": (
        b'{"schema_version":1,"ticker":"A","date":"2010-01-04","open":NaN,"high":2,"low":1,"close":1.5,"volume":1}',
        "not JSON",
    ),
    "high below low": (payload(high=65.0, low=65.6), "high 65.0 < low 65.6"),
    "negative volume": (payload(volume=-5), "field 'volume'"),
    "fractional volume": (payload(volume=10.5), "field 'volume'"),
    "missing volume": (payload(volume=...), "field 'volume'"),
    "source not a string": (payload(source=5), "field 'source'"),
}


@pytest.mark.parametrize("raw, reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidBar, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse_bar(raw, TODAY)
