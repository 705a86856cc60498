"""Sensors that send alerts: once per event, never once per tick.

Event streams (runs stopped by blocking checks, drift reports) keep the storage id of the last
event they handled; the first tick only records where the stream stands, so turning alerts on
does not replay history. States (stale tables, the newest session's strong signals) keep the
state they last reported, and speak again only when it changes. Each sensor skips, without
touching its cursor, while no channel is configured. Delivery is at most once: a channel that
fails is logged on the tick (Dagster UI, sensor history) and the event is not sent again.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from stock_assets.alerts import events
from stock_assets.alerts.notifiers import Alert, Notifier, send_all
from stock_assets.alerts.resource import NotifierResource
from stock_assets.models.drift import DRIFT_KEY
from stock_assets.resources.lake import LakeResource

NO_CHANNEL = "no alert channel is configured (docs/ALERTS.md)"
BATCH = 100
CHECK_EVENTS = {dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.STEP_FAILURE}
GATE_ERROR = "ChecksFailed"  # stock_assets.checks: a gate refused a commit


def deliver(context: dg.SensorEvaluationContext, channels: list[Notifier], alert: Alert) -> str:
    """Send on every channel; failures go to the tick's log. Returns a one-line summary."""
    deliveries = send_all(channels, alert)
    for failed in (d for d in deliveries if not d.ok):
        context.log.error(f"alert {alert.key} not delivered on {failed.channel}: {failed.error}")
    sent = [d.channel for d in deliveries if d.ok]
    return f"{alert.key} -> {', '.join(sent) or 'no channel'}"


def _after(context: dg.SensorEvaluationContext) -> int | None:
    return json.loads(context.cursor)["after"] if context.cursor else None


def _plain(value: dg.MetadataValue) -> object:
    return value.value if isinstance(value, dg.MetadataValue) else value


def _summary(metadata: dict, limit: int = 4) -> str:
    """A short text of scalar metadata (tables and markdown are left to the UI)."""
    simple = {k: _plain(v) for k, v in metadata.items() if isinstance(_plain(v), str | int | float)}
    text = ", ".join(f"{k}={v}" for k, v in list(simple.items())[:limit])
    return text[:300] or "see the run"


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[events.FailedCheck]:
    """Blocking check failures of one run: failed ERROR checks, and gates that refused a commit."""
    found = []
    records = instance.get_records_for_run(run_id, of_type=CHECK_EVENTS).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue
            key = evaluation.asset_check_key
            found.append(
                events.FailedCheck(
                    key.asset_key.to_user_string(), key.name, "audit", _summary(evaluation.metadata)
                )
            )
        else:
            failure = event.step_failure_data
            if failure.error is None or failure.error.cls_name != GATE_ERROR:
                continue
            user = failure.user_failure_data
            found.append(
                events.FailedCheck(
                    event.step_key.replace("__", "/"),
                    "pre-commit gate",
                    "gate",
                    user.description if user else failure.error.message.strip(),
                )
            )
    return found


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def blocking_check_alert_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource):
    """One alert per failed run that a blocking check (audit or pre-commit gate) stopped."""
    channels = notifier.notifiers()
    if not channels:
        return dg.SkipReason(NO_CHANNEL)
    after = _after(context)
    if after is None:
        latest = context.instance.fetch_run_status_changes(
            dg.DagsterEventType.RUN_FAILURE, limit=1, ascending=False
        ).records
        start = latest[0].storage_id if latest else 0
        context.update_cursor(json.dumps({"after": start}))
        return dg.SkipReason(f"watching run failures after event {start}")
    result = context.instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=after
        ),
        limit=BATCH,
        ascending=True,
    )
    if not result.records:
        return dg.SkipReason("no run failed since the last tick")
    sent = []
    for record in result.records:
        entry = record.event_log_entry
        failures = failed_checks(context.instance, entry.run_id)
        if failures:
            job = entry.job_name or "job"
            alert = events.check_failure_alert(entry.run_id, job, failures, notifier.dagster_ui_url)
            sent.append(deliver(context, channels, alert))
    context.update_cursor(json.dumps({"after": result.records[-1].storage_id}))
    return dg.SkipReason("; ".join(sent) or "failed runs, none stopped by a blocking check")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def drift_alert_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource):
    """One alert per `models/drift` report that asks for a refit (its check failed as a warning)."""
    channels = notifier.notifiers()
    if not channels:
        return dg.SkipReason(NO_CHANNEL)
    after = _after(context)
    if after is None:
        latest = context.instance.fetch_materializations(DRIFT_KEY, limit=1).records
        start = latest[0].storage_id if latest else 0
        context.update_cursor(json.dumps({"after": start}))
        return dg.SkipReason(f"watching drift reports after event {start}")
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DRIFT_KEY, after_storage_id=after),
        limit=BATCH,
        ascending=True,
    )
    if not result.records:
        return dg.SkipReason("no new drift report")
    sent = []
    for record in result.records:
        metadata = record.asset_materialization.metadata
        report = {k: _plain(v) for k, v in metadata.items()}
        alert = events.drift_alert(report, record.storage_id, notifier.dagster_ui_url)
        if alert is not None:
            sent.append(deliver(context, channels, alert))
    context.update_cursor(json.dumps({"after": result.records[-1].storage_id}))
    return dg.SkipReason("; ".join(sent) or "new drift reports, none asks for a refit")


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def stale_data_alert_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, notifier: NotifierResource
):
    """Alert when a watched table's newest session falls behind the NYSE calendar; once per
    newest session, again only after the table moved on and fell behind anew."""
    channels = notifier.notifiers()
    if not channels:
        return dg.SkipReason(NO_CHANNEL)
    reported: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = dt.datetime.now(dt.UTC)
    stale = events.stale_tables(lake, now, notifier.max_stale_sessions)
    new = [s for s in stale if reported.get(s.path) != s.newest.isoformat()]
    context.update_cursor(json.dumps({s.path: s.newest.isoformat() for s in stale}))
    if not new:
        state = "still stale, already reported" if stale else "every watched table is current"
        return dg.SkipReason(state)
    return dg.SkipReason(
        deliver(context, channels, events.stale_alert(new, notifier.dagster_ui_url))
    )


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def strong_signal_alert_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, notifier: NotifierResource
):
    """One alert per session whose signals hold predictions beyond the z-score threshold."""
    channels = notifier.notifiers()
    if not channels:
        return dg.SkipReason(NO_CHANNEL)
    session = events.newest_signals(lake)
    if session.is_empty():
        return dg.SkipReason("gold/signals holds no session yet")
    day: dt.date = session["date"].max()
    if context.cursor and json.loads(context.cursor)["session"] >= day.isoformat():
        return dg.SkipReason(f"session {day} was already looked at")
    threshold = notifier.signal_z_threshold
    strong = events.strong_signals(session, threshold)
    context.update_cursor(json.dumps({"session": day.isoformat()}))
    if strong.is_empty():
        return dg.SkipReason(f"no signal of {day} beyond |z| {threshold:g}")
    alert = events.strong_signal_alert(strong, day, threshold, notifier.dagster_ui_url)
    return dg.SkipReason(deliver(context, channels, alert))


ALERT_SENSORS = [
    blocking_check_alert_sensor,
    drift_alert_sensor,
    stale_data_alert_sensor,
    strong_signal_alert_sensor,
]
