"""The alert sensors against real events: failed runs, drift reports, the delivered lake.

Channels are configured the way a deployment configures them (environment variables read by
`NotifierResource.from_env`) and point at the local SMTP and HTTP receivers. Every sensor is
ticked again with the cursor it left, as the daemon would, and must send nothing new.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import dagster as dg
import exchange_calendars as xcals
import numpy as np
import pandas as pd
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.alerts import events
from stock_assets.alerts.resource import NotifierResource
from stock_assets.alerts.sensors import (
    NO_CHANNEL,
    blocking_check_alert_sensor,
    drift_alert_sensor,
    stale_data_alert_sensor,
    strong_signal_alert_sensor,
)
from stock_assets.checks import CheckInput
from stock_assets.gold.predictions import PREDICTIONS_CHECKS
from stock_assets.models.drift import drift
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets.silver.earnings_calendar import EARNINGS_CHECKS
from stock_assets_tests.alerts.conftest import SMTP_PASSWORD, SMTP_USER

UI = "http://dagster.example:3000"
LAST_SESSION = dt.date(2010, 7, 30)  # the delivered state's newest session


@pytest.fixture
def channels(monkeypatch, smtp_server, http_receiver):
    """Every channel on, through the environment, each pointed at a local receiver."""
    http_receiver.statuses.update({"/v3/mail/send": 202, "/2010-04-01/": 201})
    env = {
        "STOCK_ALERT_SMTP_HOST": smtp_server.host,
        "STOCK_ALERT_SMTP_PORT": str(smtp_server.port),
        "STOCK_ALERT_SMTP_SECURITY": "none",
        "STOCK_ALERT_SMTP_USERNAME": SMTP_USER,
        "STOCK_ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
        "STOCK_ALERT_EMAIL_FROM": "alerts@example.org",
        "STOCK_ALERT_EMAIL_TO": "ops@example.org",
        "STOCK_ALERT_WEBHOOK_URL": f"{http_receiver.url}/hook",
        "STOCK_ALERT_SENDGRID_API_KEY": "SG.key",
        "STOCK_ALERT_SENDGRID_URL": http_receiver.url,
        "STOCK_ALERT_TWILIO_ACCOUNT_SID": "AC1",
        "STOCK_ALERT_TWILIO_AUTH_TOKEN": "tw-token",
        "STOCK_ALERT_TWILIO_FROM": "+15005550006",
        "STOCK_ALERT_TWILIO_TO": "+15550001111",
        "STOCK_ALERT_TWILIO_URL": http_receiver.url,
        "STOCK_DAGSTER_UI_URL": UI,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Sent(smtp_server, http_receiver)


class Sent:
    """What reached the receivers: one alert is one mail and three HTTP requests."""

    def __init__(self, smtp, http) -> None:
        self.smtp, self.http = smtp, http

    def webhooks(self) -> list[dict]:
        return [r.json() for r in self.http.requests if r.path == "/hook"]

    def count(self) -> tuple[int, int]:
        return len(self.smtp.mails), len(self.http.requests)

    def assert_every_channel_got(self, alerts: int) -> None:
        paths = sorted(r.path for r in self.http.requests)
        assert len(self.smtp.mails) == alerts
        assert paths == sorted(
            ["/hook", "/v3/mail/send", "/2010-04-01/Accounts/AC1/Messages.json"] * alerts
        )


def tick(sensor, instance, cursor=None, **resources):
    """One evaluation, as the daemon runs it: (result, the cursor it leaves)."""
    resources = {"notifier": NotifierResource.from_env(), **resources}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = sensor(ctx)
        return result, ctx.cursor


def test_without_channels_sensors_skip_and_keep_no_cursor(monkeypatch, tmp_path):
    for name in ("STOCK_ALERT_SMTP_HOST", "STOCK_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STOCK_ALERT_SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("STOCK_ALERT_TWILIO_ACCOUNT_SID", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    lake = LakeResource(root=str(tmp_path))
    for sensor, extra in [
        (blocking_check_alert_sensor, {}),
        (drift_alert_sensor, {}),
        (stale_data_alert_sensor, {"lake": lake}),
        (strong_signal_alert_sensor, {"lake": lake}),
    ]:
        result, cursor = tick(sensor, instance, **extra)
        assert result.skip_message == NO_CHANNEL and cursor is None


def corrupted_predictions(delivered, tmp_path) -> LakeResource:
    """The delivered newest session's predictions, AAPL's champion one outside its interval."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    day = delivered.lake.read_dates(tables.GOLD_PREDICTIONS, LAST_SESSION, LAST_SESSION)
    bad = day.with_columns(
        prediction=pl.when((pl.col("ticker") == "AAPL") & (pl.col("role") == "champion"))
        .then(pl.col("upper") + 1.0)
        .otherwise(pl.col("prediction"))
    )
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, bad, LAST_SESSION, LAST_SESSION)
    return lake


@dg.asset(key=["silver", "earnings_calendar"])
def earnings_with_a_duplicate(lake: LakeResource):
    """The real earnings gate on a calendar that lists one release twice."""
    twice = pl.DataFrame(
        {
            "ticker": ["AAPL", "AAPL"],
            "earnings_date": [dt.date(2010, 7, 20)] * 2,
            "source": "x",
            "first_seen": [dt.date(2010, 6, 22)] * 2,
            "dropped_on": [None, None],
        },
        schema_overrides={"dropped_on": pl.Date},
    )
    EARNINGS_CHECKS.gate(CheckInput(twice, lake))


@dg.asset(key=["silver", "macro_indicators"])
def unreachable_source():
    raise ConnectionError("vendor feed unreachable")  # a failure, but not a check's


def test_each_run_stopped_by_blocking_checks_is_alerted_once(delivered, channels, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    result, cursor = tick(blocking_check_alert_sensor, instance)
    assert result.skip_message.startswith("watching run failures after event")
    assert channels.count() == (0, 0)

    lake = corrupted_predictions(delivered, tmp_path)
    audit = dg.materialize(
        [PREDICTIONS_CHECKS.asset_check()],
        selection=dg.AssetSelection.all_asset_checks(),
        resources={"lake": lake},
        instance=instance,
        tags=range_tags(LAST_SESSION.isoformat(), LAST_SESSION.isoformat()),
        raise_on_error=False,
    )
    gate = dg.materialize(
        [earnings_with_a_duplicate], resources={"lake": lake}, instance=instance,
        raise_on_error=False,
    )  # fmt: skip
    other = dg.materialize([unreachable_source], instance=instance, raise_on_error=False)
    assert not (audit.success or gate.success or other.success)

    result, cursor = tick(blocking_check_alert_sensor, instance, cursor)
    channels.assert_every_channel_got(2)
    first, second = channels.webhooks()
    assert first["key"] == f"check_failed:{audit.run_id}"
    assert first["severity"] == "error"
    assert first["facts"]["failures"] == [
        {
            "asset": "gold/predictions",
            "check": "predictions_inside_interval",
            "stage": "audit",
            "detail": "rows_outside_their_interval=1",
        }
    ]
    assert first["links"] == [f"{UI}/runs/{audit.run_id}", f"{UI}/assets/gold/predictions"]
    assert second["key"] == f"check_failed:{gate.run_id}"
    [refused] = second["facts"]["failures"]
    assert (refused["asset"], refused["stage"]) == ("silver/earnings_calendar", "gate")
    assert "nothing was written: earnings_calendar_unique" in refused["detail"]
    subjects = [m.message["Subject"].strip() for m in channels.smtp.mails]  # folded: > 78 chars
    assert subjects == [
        "[stock-assets] error: blocking checks failed on gold/predictions",
        "[stock-assets] error: blocking checks failed on silver/earnings_calendar",
    ]
    assert result.skip_message.count("-> email, webhook, sendgrid, twilio") == 2

    again, same = tick(blocking_check_alert_sensor, instance, cursor)
    assert again.skip_message == "no run failed since the last tick" and same == cursor
    channels.assert_every_channel_got(2)


def run_drift(delivered, instance, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [drift],
        resources={"lake": delivered.lake, "mlflow_registry": delivered.registry},
        instance=instance,
        run_config={"ops": {"models__drift": {"config": config}}},
    )


def test_a_drift_report_asking_for_a_refit_is_alerted_once(delivered, channels):
    instance = dg.DagsterInstance.ephemeral()
    _, cursor = tick(drift_alert_sensor, instance)
    shifted = run_drift(delivered, instance, max_shifted_share=-1.0)  # any share is too much
    calm = run_drift(delivered, instance, max_shifted_share=2.0, max_prediction_psi=1e9)
    reports = [
        r.asset_materializations_for_node("models__drift")[0].metadata for r in (shifted, calm)
    ]
    assert [m["refit_requested"].value for m in reports] == [True, False]

    _, cursor = tick(drift_alert_sensor, instance, cursor)
    channels.assert_every_channel_got(1)
    [alert] = channels.webhooks()
    report = reports[0]
    assert alert["kind"] == "drift" and alert["facts"]["refit_requested"] is True
    for name in ("champion_version", "prediction_psi", "shifted_share", "recent_window"):
        assert alert["facts"][name] == report[name].value
    assert alert["facts"]["top_feature_psi"] == report["top_feature_psi"].value
    assert alert["subject"] == "drift: refit requested for champion 1"
    assert alert["links"] == [f"{UI}/assets/models/drift"]
    stored = instance.fetch_materializations(drift.key, limit=2).records
    assert alert["key"] == f"drift:{stored[-1].storage_id}"  # the older one: the shifted report

    again, same = tick(drift_alert_sensor, instance, cursor)
    assert again.skip_message == "no new drift report" and same == cursor
    run_drift(delivered, instance, max_shifted_share=-1.0)
    tick(drift_alert_sensor, instance, cursor)
    channels.assert_every_channel_got(2)  # a new report is a new event


def due_now() -> dt.date:
    """Independently of the code under test: the last session closed four hours ago."""
    calendar = xcals.get_calendar("XNYS")
    now = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=4)
    closes = calendar.schedule["close"]
    return closes[closes <= now].index[-1].date()


def test_stale_tables_are_alerted_once_per_newest_session(delivered, channels):
    instance = dg.DagsterInstance.ephemeral()
    result, cursor = tick(stale_data_alert_sensor, instance, lake=delivered.lake)
    channels.assert_every_channel_got(1)
    [alert] = channels.webhooks()
    due = due_now()
    behind = len(xcals.get_calendar("XNYS").sessions_in_range(LAST_SESSION, due)) - 1
    watched = ["silver/adjusted_daily_bars", "gold/predictions", "gold/signals"]
    assert alert["facts"]["tables"] == [
        {
            "table": path,
            "newest_session": "2010-07-30",
            "due_session": due.isoformat(),
            "sessions_behind": behind,
        }
        for path in watched
    ]
    assert alert["key"] == "stale_data:" + ";".join(f"{p}@2010-07-30" for p in watched)
    assert json.loads(cursor) == dict.fromkeys(watched, "2010-07-30")

    again, cursor = tick(stale_data_alert_sensor, instance, cursor, lake=delivered.lake)
    assert again.skip_message == "still stale, already reported"
    channels.assert_every_channel_got(1)


def test_staleness_counts_sessions_of_the_exchange_calendar(delivered, tmp_path):
    def stale_at(utc: str, allowed: int = 1) -> list[tuple[str, int]]:
        now = dt.datetime.fromisoformat(utc).replace(tzinfo=dt.UTC)
        found = events.stale_tables(delivered.lake, now, allowed)
        return [(s.path, s.sessions_behind) for s in found]

    # Friday 2010-07-30 is the newest session. Monday's close (20:00 UTC) plus four hours:
    assert stale_at("2010-08-02T23:59") == []  # Friday is still the session due
    assert stale_at("2010-08-03T00:00") == []  # Monday is due: one session behind, allowed
    assert stale_at("2010-08-03T23:00") == []  # Tuesday closed, within its four hours
    two = stale_at("2010-08-04T00:30")  # Tuesday due: two sessions behind
    assert two == [(t.path, 2) for t in events.WATCHED_TABLES]
    assert stale_at("2010-08-04T00:30", allowed=2) == []
    # over the weekend and a holiday: Friday 2010-09-03, Labor Day Monday, so Tuesday is next
    assert events.due_session(dt.datetime(2010, 9, 7, 12, tzinfo=dt.UTC)) == dt.date(2010, 9, 3)
    # a table never written is not stale: nothing has run yet
    assert events.stale_tables(LakeResource(root=str(tmp_path)), dt.datetime.now(dt.UTC), 0) == []


def expected_strong(delivered, threshold: float) -> dict[str, float]:
    """Recomputed here with numpy: ticker -> z of the newest session's signals."""
    rows = delivered.lake.read(tables.GOLD_SIGNALS).filter(pl.col("date") == LAST_SESSION)
    values = rows["prediction"].to_numpy()
    z = (values - values.mean()) / values.std(ddof=1)
    return {t: float(v) for t, v in zip(rows["ticker"], z, strict=True) if abs(v) > threshold}


def test_strong_signals_of_the_newest_session_are_alerted_once(delivered, channels, monkeypatch):
    monkeypatch.setenv("STOCK_ALERT_SIGNAL_Z", "1.5")
    expected = expected_strong(delivered, 1.5)
    assert 0 < len(expected) < 20  # the threshold picks out a few of the 40 names
    instance = dg.DagsterInstance.ephemeral()
    _, cursor = tick(strong_signal_alert_sensor, instance, lake=delivered.lake)
    channels.assert_every_channel_got(1)
    [alert] = channels.webhooks()
    assert alert["key"] == "strong_signals:2010-07-30"
    assert alert["facts"]["session"] == "2010-07-30" and alert["facts"]["threshold"] == 1.5
    got = {s["ticker"]: s["z"] for s in alert["facts"]["signals"]}
    assert got.keys() == expected.keys()
    assert all(got[t] == pytest.approx(expected[t], abs=1e-9) for t in expected)
    zs = [abs(s["z"]) for s in alert["facts"]["signals"]]
    assert zs == sorted(zs, reverse=True)
    stored = delivered.lake.read(tables.GOLD_SIGNALS).filter(pl.col("date") == LAST_SESSION)
    sides = dict(zip(stored["ticker"], stored["side"], strict=True))
    assert {s["ticker"]: s["side"] for s in alert["facts"]["signals"]} == {
        t: sides[t] for t in expected
    }
    [sms] = [r for r in channels.http.requests if r.path.endswith("Messages.json")]
    [body] = urllib.parse.parse_qs(sms.body.decode())["Body"]
    assert body.startswith(f"[stock-assets] info: {len(expected)} strong signals on 2010-07-30")

    again, same = tick(strong_signal_alert_sensor, instance, cursor, lake=delivered.lake)
    assert again.skip_message == "session 2010-07-30 was already looked at" and same == cursor
    channels.assert_every_channel_got(1)


def test_a_session_without_strong_signals_sends_nothing(delivered, channels, monkeypatch):
    top = max(abs(v) for v in expected_strong(delivered, 0.0).values())
    monkeypatch.setenv("STOCK_ALERT_SIGNAL_Z", str(np.ceil(top * 100) / 100))
    result, cursor = tick(
        strong_signal_alert_sensor, dg.DagsterInstance.ephemeral(), lake=delivered.lake
    )
    assert result.skip_message.startswith("no signal of 2010-07-30 beyond |z|")
    assert json.loads(cursor) == {"session": "2010-07-30"}
    assert channels.count() == (0, 0)
