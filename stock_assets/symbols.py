"""Ticker symbols: one rule for every source (bars, news, earnings, index membership)."""

import re

TICKER_SYMBOL = r"[A-Z0-9][A-Z0-9.\-]{0,11}"
# polars/pandera use Rust regex, where `$` is the end of the text; Python's `re` (msgspec, the
# news parser) would let `$` accept a trailing newline, so it anchors with `\Z` instead.
TICKER_PATTERN = rf"^{TICKER_SYMBOL}$"
TICKER_PATTERN_PY = rf"^{TICKER_SYMBOL}\Z"
is_ticker = re.compile(TICKER_PATTERN_PY).match
