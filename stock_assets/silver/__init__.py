"""Silver: validated, typed tables, one module per table (the module name is the table name)."""

import datetime as _dt

import dagster as _dg

MARKET_GROUP = "market"
ALTDATA_GROUP = "altdata"

# Alternative data refreshed by a daily schedule / a weekly snapshot.
DAILY_REFRESH = _dg.FreshnessPolicy.time_window(
    fail_window=_dt.timedelta(hours=48), warn_window=_dt.timedelta(hours=26)
)
WEEKLY_REFRESH = _dg.FreshnessPolicy.time_window(
    fail_window=_dt.timedelta(days=8), warn_window=_dt.timedelta(days=7, hours=2)
)
