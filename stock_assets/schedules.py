"""Schedules for the alternative data, one per source, each matching its source's cadence.

Market data needs none: Kafka sensors drive it (sensors.py).

The partitioned assets are partitioned by calendar month and the current month stays open
(``end_offset=1``): a daily schedule rewrites the month in progress, so values published today
(a daily market close, a CPI release whose lag has run out, today's articles) land tonight.
Reference tables (earnings calendar, index membership) are snapshots refreshed weekly. A
backfill of history is one run per asset (``BackfillPolicy.single_run``), not one per month.

Times are UTC: macro and news run at 23:00/23:30, after the US close (20:00 or 21:00 UTC);
the universe runs at 10:00, before the open, so a member added today is in today's universe.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from stock_assets import tables
from stock_assets.calendar import EXCHANGE_TIMEZONE, sessions_before
from stock_assets.feast.daily_features_online import FEAST_ASSETS
from stock_assets.models.challenger import CHALLENGER_KEY
from stock_assets.models.champion import CHAMPION_KEY
from stock_assets.models.drift import DRIFT_KEY
from stock_assets.models.shadow_comparison import SHADOW_KEY
from stock_assets.partitions import month_key, range_tags, trading_day_partitions
from stock_assets.silver.macro_indicators import MACRO_PARTITIONS
from stock_assets.silver.news_sentiment import NEWS_PARTITIONS
from stock_assets.silver.universe import UNIVERSE_PARTITIONS
from stock_assets.table_assets import table_key

macro_indicators_job = dg.define_asset_job(
    "macro_indicators_job",
    selection=dg.AssetSelection.assets(table_key(tables.MACRO_INDICATORS)),
    description="Macro and market-context observations that became known in the month.",
)
news_sentiment_job = dg.define_asset_job(
    "news_sentiment_job",
    selection=dg.AssetSelection.assets(
        table_key(tables.NEWS_SENTIMENT), table_key(tables.MARKET_SENTIMENT)
    ),
    description="Score the month's articles, then the daily market sentiment.",
)
universe_job = dg.define_asset_job(
    "universe_job",
    selection=dg.AssetSelection.assets(table_key(tables.UNIVERSE)),
    description="Point-in-time index members for every session of the month.",
)
earnings_calendar_job = dg.define_asset_job(
    "earnings_calendar_job", selection=dg.AssetSelection.assets(table_key(tables.EARNINGS_CALENDAR))
)
index_membership_job = dg.define_asset_job(
    "index_membership_job", selection=dg.AssetSelection.assets(table_key(tables.INDEX_MEMBERSHIP))
)


def _open_month_schedule(name: str, cron: str, job, partitions_def) -> dg.ScheduleDefinition:
    """A schedule that refreshes the month containing its tick (the month in progress)."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def refresh_open_month(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        key = month_key(when.astimezone(dt.UTC))
        if not partitions_def.has_partition_key(key):
            return dg.SkipReason(f"{key} is not a partition of {job.name}")
        return dg.RunRequest(run_key=f"{key}@{when.isoformat()}", partition_key=key)

    return refresh_open_month


def _snapshot_schedule(name: str, cron: str, job) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def refresh_snapshot(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        return dg.RunRequest(run_key=f"{job.name}@{when.isoformat()}")

    return refresh_snapshot


macro_indicators_schedule = _open_month_schedule(
    "macro_indicators_daily", "0 23 * * *", macro_indicators_job, MACRO_PARTITIONS
)
news_sentiment_schedule = _open_month_schedule(
    "news_sentiment_daily", "30 23 * * *", news_sentiment_job, NEWS_PARTITIONS
)
universe_schedule = _open_month_schedule(
    "universe_daily", "0 10 * * *", universe_job, UNIVERSE_PARTITIONS
)
earnings_calendar_schedule = _snapshot_schedule(
    "earnings_calendar_weekly", "0 6 * * 1", earnings_calendar_job
)
index_membership_schedule = _snapshot_schedule(
    "index_membership_weekly", "0 6 * * 1", index_membership_job
)

# -- features: the nightly batch path ---------------------------------------------------------
NIGHTLY_FEATURE_SESSIONS = 20  # trailing sessions recomputed each night over their full lookback
daily_features_job = dg.define_asset_job(
    "daily_features_job",
    selection=dg.AssetSelection.assets(table_key(tables.GOLD_DAILY_FEATURES), *FEAST_ASSETS),
    description="Recompute a range of feature sessions from their full lookback and reload them "
    "into Feast (the batch path; the sensor chain computes new sessions as bars arrive).",
)


@dg.schedule(
    job=daily_features_job,
    cron_schedule="30 22 * * 1-5",
    execution_timezone=EXCHANGE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_features_nightly(context: dg.ScheduleEvaluationContext):
    """Recompute the trailing sessions, so late context (a macro release, membership) lands."""
    when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    partitions = trading_day_partitions()
    keys = partitions.get_partition_keys(current_time=when)
    today = when.astimezone(ZoneInfo(EXCHANGE_TIMEZONE)).date().isoformat()  # the exchange's day
    sessions = [k for k in keys if k <= today]
    if not sessions:
        return dg.SkipReason("no session partition yet")
    end = sessions[-1]
    start = sessions_before(dt.date.fromisoformat(end), NIGHTLY_FEATURE_SESSIONS - 1).isoformat()
    return dg.RunRequest(run_key=f"features@{end}", tags=range_tags(start, end))


ALTDATA_JOBS = [
    macro_indicators_job,
    news_sentiment_job,
    universe_job,
    earnings_calendar_job,
    index_membership_job,
]
ALTDATA_SCHEDULES = [
    macro_indicators_schedule,
    news_sentiment_schedule,
    universe_schedule,
    earnings_calendar_schedule,
    index_membership_schedule,
]


# -- models: monthly refit, nightly backtest ---------------------------------------------------
model_refit_job = dg.define_asset_job(
    "model_refit_job",
    selection=dg.AssetSelection.assets(CHALLENGER_KEY, CHAMPION_KEY),
    description="Refit the month's challenger (monthly, or decided at a drift report's session "
    "and serving from the next) and promote it to champion if its blocking checks pass (gate "
    "rank IC above the floor, beats the champion on the same out-of-sample days).",
)


@dg.schedule(
    job=model_refit_job,
    cron_schedule="0 6 1 * *",
    execution_timezone=EXCHANGE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def model_refit_monthly(context: dg.ScheduleEvaluationContext):
    """Before the month's first open: the model that will predict the new month."""
    when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    month = month_key(when.astimezone(ZoneInfo(EXCHANGE_TIMEZONE)))
    return dg.RunRequest(run_key=f"refit@{month}", partition_key=month)


backtest_job = dg.define_asset_job(
    "backtest_job",
    selection=dg.AssetSelection.assets(table_key(tables.GOLD_BACKTEST), DRIFT_KEY, SHADOW_KEY),
    description="Score every stored champion prediction whose outcome is known, compare shadow "
    "challengers with the champion on the same days, and measure drift against the champion's "
    "training window (a shifted report requests a refit).",
)
backtest_nightly = dg.ScheduleDefinition(
    job=backtest_job,
    cron_schedule="0 23 * * 1-5",
    execution_timezone=EXCHANGE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
