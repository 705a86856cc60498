"""The feature set: every column of ``gold/daily_features``, its type and where it comes from.

One source of truth for names and types: the Delta table's catalog schema, the Feast feature view
and the model's feature list are all derived from these lists (no Dagster here).
"""

from __future__ import annotations

import polars as pl

from stock_assets.gold.alpha158 import ALPHA158_COLUMNS
from stock_assets.gold.indicators import INDICATOR_COLUMNS

# Cross-sectional rank (0..1) and z-score per date over that day's universe, for the factors a
# model compares across stocks rather than over time.
CROSS_SECTIONAL_SOURCES = (
    "ROC5", "ROC20", "ROC60", "MA20", "STD20", "BETA20", "RSQR20", "RSV20", "CORR20",
    "SUMP20", "VSTD20", "WVMA20", "rsi_14", "roc_10", "mfi_14",
)  # fmt: skip
CROSS_SECTIONAL_COLUMNS = tuple(
    f"cs_{kind}_{name}" for name in CROSS_SECTIONAL_SOURCES for kind in ("rank", "z")
)
# macro series as known on each date (stock_assets.pit.macro_as_of_wide)
MACRO_SERIES = (
    "vix_close", "treasury_3month", "treasury_10year", "moodys_baa_yield", "wti_spot",
    "us_unemp", "us_infl",
)  # fmt: skip
MACRO_COLUMNS = tuple(f"macro_{s}" for s in MACRO_SERIES)
CONTEXT_COLUMNS = (
    *MACRO_COLUMNS,
    "market_net_tone",  # market sentiment of the latest day known by this date
    "market_sentiment_age_days",  # how old that value is: as-of joins say how far they reach
    "days_to_earnings",  # null unless the next release is within its announcement horizon
    "days_since_earnings",
)
FLOAT_FEATURES = (
    *INDICATOR_COLUMNS,
    *ALPHA158_COLUMNS,
    *CROSS_SECTIONAL_COLUMNS,
    *CONTEXT_COLUMNS,
)
STATUS_COLUMNS = {
    "in_universe": pl.Boolean,  # an index member that day (survivorship-free universe)
    "close_only": pl.Boolean,  # the data set has close prices only: OHLCV features are null
    "sessions_since_previous_bar": pl.Int32,  # 1 when consecutive; more means a gap, not filled
}
MODEL_FEATURES = (*FLOAT_FEATURES, "in_universe", "sessions_since_previous_bar")
SCHEMA: dict[str, pl.DataType] = {
    "instrument": pl.String,
    "ticker": pl.String,
    "date": pl.Date,
    **dict.fromkeys(FLOAT_FEATURES, pl.Float64),
    **STATUS_COLUMNS,
    "month": pl.String,
}
# what Feast serves per ticker: the model's inputs plus the instrument behind the ticker
ONLINE_FEATURES: dict[str, pl.DataType] = {
    name: SCHEMA[name] for name in ("instrument", *FLOAT_FEATURES, *STATUS_COLUMNS)
}
