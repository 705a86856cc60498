"""Alternative-data schedules: cadence, running by default, and the partitions they request.

Market data has no schedule: Kafka sensors drive it (test_sensors.py).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from stock_assets.definitions import defs
from stock_assets.schedules import (
    ALTDATA_SCHEDULES,
    earnings_calendar_schedule,
    index_membership_schedule,
    macro_indicators_schedule,
    news_sentiment_schedule,
    universe_schedule,
)

UTC = dt.UTC


def tick(schedule: dg.ScheduleDefinition, when: dt.datetime):
    context = dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context)


@pytest.mark.parametrize(
    ("schedule", "when", "partition"),
    [
        (macro_indicators_schedule, dt.datetime(2010, 3, 15, 23, 0, tzinfo=UTC), "2010-03-01"),
        (macro_indicators_schedule, dt.datetime(2010, 3, 31, 23, 0, tzinfo=UTC), "2010-03-01"),
        (macro_indicators_schedule, dt.datetime(1959, 1, 2, 23, 0, tzinfo=UTC), "1959-01-01"),
        (news_sentiment_schedule, dt.datetime(2017, 2, 7, 23, 30, tzinfo=UTC), "2017-02-01"),
        (universe_schedule, dt.datetime(2010, 6, 28, 10, 0, tzinfo=UTC), "2010-06-01"),
        (universe_schedule, dt.datetime(2010, 7, 1, 10, 0, tzinfo=UTC), "2010-07-01"),
    ],
)
def test_daily_schedules_refresh_the_month_in_progress(schedule, when, partition):
    data = tick(schedule, when)
    assert [r.partition_key for r in data.run_requests] == [partition]
    job = defs.resolve_job_def(schedule.job_name)
    assert job.partitions_def.has_partition_key(partition)


def test_a_tick_before_the_first_partition_is_skipped_not_failed():
    data = tick(news_sentiment_schedule, dt.datetime(2015, 6, 1, 23, 30, tzinfo=UTC))
    assert not data.run_requests and "not a partition" in data.skip_message


@pytest.mark.parametrize("schedule", [earnings_calendar_schedule, index_membership_schedule])
def test_reference_snapshots_refresh_weekly_without_partitions(schedule):
    data = tick(schedule, dt.datetime(2010, 6, 28, 6, 0, tzinfo=UTC))
    assert len(data.run_requests) == 1 and data.run_requests[0].partition_key is None


def test_altdata_schedules_are_declared_running_with_their_cadence():
    schedules = {s.name: s for s in defs.schedules}
    assert {s.name for s in ALTDATA_SCHEDULES} <= set(schedules)
    cadence = {name: schedules[name].cron_schedule for name in (s.name for s in ALTDATA_SCHEDULES)}
    assert cadence == {
        "macro_indicators_daily": "0 23 * * *",
        "news_sentiment_daily": "30 23 * * *",
        "universe_daily": "0 10 * * *",
        "earnings_calendar_weekly": "0 6 * * 1",
        "index_membership_weekly": "0 6 * * 1",
    }
    for schedule in ALTDATA_SCHEDULES:
        assert schedules[schedule.name].default_status == dg.DefaultScheduleStatus.RUNNING
        assert schedules[schedule.name].execution_timezone == "UTC"
