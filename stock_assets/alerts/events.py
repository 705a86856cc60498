"""What deserves an alert, decided from stored outputs alone (no Dagster here).

Each function turns what the lake or a Dagster event says into an `Alert` with a key naming the
event, so the sensors can send each event once: stale tables (against the NYSE calendar), strong
signals of the newest session, a drift report that asks for a refit, a run stopped by blocking
checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import polars as pl

from stock_assets import tables
from stock_assets.alerts.notifiers import Alert
from stock_assets.calendar import nyse, session_numbers
from stock_assets.lake import LakeIO

DAGSTER_UI_DEFAULT = "http://127.0.0.1:3000"
# Bars reach the lake minutes after the close when the feed is live; four hours leaves room for
# the chain (features, predictions, signals) before a session counts as due.
CLOSE_GRACE = dt.timedelta(hours=4)
WATCHED_TABLES = (tables.ADJUSTED_DAILY_BARS, tables.GOLD_PREDICTIONS, tables.GOLD_SIGNALS)


def asset_url(base: str, key_path: Sequence[str]) -> str:
    """The asset's page in the Dagster UI."""
    return f"{base.rstrip('/')}/assets/{'/'.join(key_path)}"


def run_url(base: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/runs/{run_id}"


# -- stale data -------------------------------------------------------------------------------
def due_session(now: dt.datetime, grace: dt.timedelta = CLOSE_GRACE) -> dt.date:
    """The newest NYSE session whose close was at least ``grace`` before ``now`` (aware)."""
    calendar = nyse()
    day = pd.Timestamp(now.astimezone(dt.UTC).date())
    session = calendar.date_to_session(day, direction="previous")
    while calendar.session_close(session).to_pydatetime() + grace > now:
        session = calendar.previous_session(session)
    return session.date()


def newest_date(lake: LakeIO, table: tables.Table) -> dt.date | None:
    """The newest value of the table's date column (None when the table is empty or absent).

    Only the newest month partition is read (the Delta log lists them), so a tick stays cheap on
    decades of history.
    """
    delta = lake.delta(table)
    if delta is None:
        return None
    scan = lake.scan(table)
    if "month" in table.partition_by:
        months = [p["month"] for p in delta.partitions()]
        if not months:
            return None
        scan = scan.filter(pl.col("month") == max(months))
    return scan.select(pl.col(table.date_column).max()).collect().item()


@dataclass(frozen=True)
class StaleTable:
    path: str
    newest: dt.date
    due: dt.date
    sessions_behind: int


def stale_tables(
    lake: LakeIO,
    now: dt.datetime,
    max_sessions_behind: int,
    watched: Sequence[tables.Table] = WATCHED_TABLES,
) -> list[StaleTable]:
    """Watched tables whose newest session is more than ``max_sessions_behind`` sessions older
    than the session due by ``now``; a table never written is not reported (nothing runs yet)."""
    due = due_session(now)
    found = []
    for table in watched:
        newest = newest_date(lake, table)
        if newest is None:
            continue
        numbers = session_numbers([newest, due])
        behind = numbers[due] - numbers[newest]
        if behind > max_sessions_behind:
            found.append(StaleTable(table.path, newest, due, behind))
    return found


def stale_alert(stale: Sequence[StaleTable], ui: str) -> Alert:
    lines = [
        f"{s.path}: newest session {s.newest}, {s.sessions_behind} sessions behind {s.due}"
        for s in stale
    ]
    return Alert(
        kind="stale_data",
        key="stale_data:" + ";".join(f"{s.path}@{s.newest}" for s in stale),
        subject=f"stale data in {len(stale)} table{'s' if len(stale) > 1 else ''}",
        body="The newest stored session lags the NYSE calendar:\n" + "\n".join(lines),
        severity="error",
        links=tuple(asset_url(ui, s.path.split("/")) for s in stale),
        facts={
            "tables": [
                {
                    "table": s.path,
                    "newest_session": s.newest.isoformat(),
                    "due_session": s.due.isoformat(),
                    "sessions_behind": s.sessions_behind,
                }
                for s in stale
            ]
        },
    )


# -- strong signals ---------------------------------------------------------------------------
def newest_signals(lake: LakeIO) -> pl.DataFrame:
    """The newest session's rows of gold/signals (empty when there are none)."""
    if not lake.exists(tables.GOLD_SIGNALS):
        return pl.DataFrame(schema=dict(tables.GOLD_SIGNALS.schema))
    scan = lake.scan(tables.GOLD_SIGNALS)
    return scan.filter(pl.col("date") == pl.col("date").max()).collect()


def strong_signals(session: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """Rows of one session whose prediction z-score (against that session's mean and sample
    standard deviation) exceeds ``threshold`` in absolute value, strongest first."""
    if session.height < 3:
        return session.with_columns(z=pl.lit(None, pl.Float64)).clear()
    z = (pl.col("prediction") - pl.col("prediction").mean()) / pl.col("prediction").std()
    return (
        session.with_columns(z=z)
        .filter(pl.col("z").abs() > threshold)
        .sort(pl.col("z").abs(), descending=True)
    )


def strong_signal_alert(strong: pl.DataFrame, day: dt.date, threshold: float, ui: str) -> Alert:
    rows = strong.select("ticker", "side", "rank", "prediction", "z", "model_version").to_dicts()
    lines = [
        f"{r['ticker']}: z {r['z']:+.2f}, prediction {r['prediction']:+.4f}, rank {r['rank']}, "
        f"side {r['side']}"
        for r in rows
    ]
    return Alert(
        kind="strong_signals",
        key=f"strong_signals:{day.isoformat()}",
        subject=f"{len(rows)} strong signal{'s' if len(rows) > 1 else ''} on {day} "
        f"(|z| > {threshold:g})",
        body=f"Champion predictions far from the session's mean on {day}:\n" + "\n".join(lines),
        severity="info",
        links=(asset_url(ui, tables.GOLD_SIGNALS.key_path),),
        facts={"session": day.isoformat(), "threshold": threshold, "signals": rows},
    )


# -- drift ------------------------------------------------------------------------------------
def drift_alert(report: Mapping[str, object], event_id: int, ui: str) -> Alert | None:
    """An alert for a `models/drift` report that asks for a refit (None when it does not)."""
    if not report.get("refit_requested"):
        return None
    shifted = report.get("top_feature_psi") or {}
    lines = [
        f"champion version {report.get('champion_version')}, trained on "
        f"{report.get('training_window')}, compared with {report.get('recent_window')}",
        f"prediction PSI {report.get('prediction_psi')}, "
        f"{report.get('features_shifted')} of {report.get('features_compared')} features "
        f"shifted (share {report.get('shifted_share')})",
        *(f"{name}: PSI {value}" for name, value in list(dict(shifted).items())[:10]),
    ]
    return Alert(
        kind="drift",
        key=f"drift:{event_id}",
        subject=f"drift: refit requested for champion {report.get('champion_version')}",
        body="\n".join(lines),
        severity="warning",
        links=(asset_url(ui, ["models", "drift"]),),
        facts=dict(report),
    )


# -- blocking checks --------------------------------------------------------------------------
@dataclass(frozen=True)
class FailedCheck:
    asset: str  # "gold/predictions"
    check: str  # a check name, or the gate's rules
    stage: str  # "audit" (a check on committed rows) or "gate" (refused before the commit)
    detail: str


def check_failure_alert(run_id: str, job: str, failures: Sequence[FailedCheck], ui: str) -> Alert:
    lines = [f"{f.asset} {f.check} ({f.stage}): {f.detail}" for f in failures]
    assets = list(dict.fromkeys(f.asset for f in failures))
    return Alert(
        kind="check_failed",
        key=f"check_failed:{run_id}",
        subject=f"blocking checks failed on {', '.join(assets)}",
        body=f"Run {run_id} of {job} stopped at blocking checks:\n" + "\n".join(lines),
        severity="error",
        links=(run_url(ui, run_id), *(asset_url(ui, a.split("/")) for a in assets)),
        facts={
            "run_id": run_id,
            "job": job,
            "failures": [
                {"asset": f.asset, "check": f.check, "stage": f.stage, "detail": f.detail}
                for f in failures
            ],
        },
    )
