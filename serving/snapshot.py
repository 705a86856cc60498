"""What the service serves, as one immutable snapshot, and the loader that replaces it.

The champion and challenger aliases are resolved to fixed versions and their boosters loaded;
the gold tables are pinned at one Delta version each (`Outputs.pinned`) and the latest
predictions are serialised once per ticker here, so a request only joins bytes. A background
poll (`Loader.refresh`) builds a new snapshot when an alias or a table version moves and the
service swaps the reference: requests in flight finish on the snapshot they started with.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import orjson
import polars as pl

from serving.online import FeastReader, OnlineCache, ServedModel
from stock_assets import tables
from stock_assets.outputs import CHALLENGER, CHAMPION, RETURN_COLUMNS, ROLES, TRACKED, Outputs

log = logging.getLogger("serving")
FEATURES = tables.GOLD_DAILY_FEATURES.path
PREDICTIONS = tables.GOLD_PREDICTIONS.path


@dataclass(frozen=True)
class Snapshot:
    """Everything one moment of the pipeline gives the API; replaced whole, never changed."""

    loaded_at: dt.datetime | None = None
    outputs: Outputs | None = None  # pinned: every read sees this snapshot's versions
    versions: Mapping[str, int | None] = field(default_factory=dict)
    aliases: Mapping[str, str | None] = field(default_factory=dict)  # role -> version
    models: Mapping[str, ServedModel | None] = field(default_factory=dict)
    data_date: dt.date | None = None
    tickers: frozenset[str] = frozenset()
    latest: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)  # role -> ticker
    latest_versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # by role
    thin_after: tuple[dict, ...] = ()  # thin sessions newer than data_date (left out of latest)
    bodies: Mapping[str, bytes] = field(default_factory=dict)  # whole responses, by name
    quality: tuple[dict, ...] = ()  # realised rank IC per stored (role, version)
    backtest: pl.DataFrame | None = None  # daily rows, small: filtered in memory per request
    online: OnlineCache | None = None
    # the latest stored returns and prices by (model version, ticker, date), for on-demand rows
    # of the same session and version; each ticker's set-aside sessions since the oldest latest
    returns: Mapping[tuple[str, str, dt.date], dict] = field(default_factory=dict)
    set_aside: Mapping[str, tuple[tuple[dt.date, str], ...]] = field(default_factory=dict)
    headers: tuple[tuple[bytes, bytes], ...] = ()  # x-data-date, x-model-version

    @property
    def ready(self) -> bool:
        return self.models.get(CHAMPION) is not None and self.data_date is not None

    def model_ref(self, role: str) -> dict | None:
        model = self.models.get(role)
        return model and {"role": role, "name": model.card.name, "version": model.card.version}


class Loader:
    """Builds snapshots from the lake, the registry and the Feast online store."""

    def __init__(self, outputs: Outputs, feast: FeastReader | None, poll_s: float = 5.0):
        self.outputs = outputs  # unpinned: reads the latest versions
        self.feast = feast
        self.retry_online_s = max(30.0, 6 * poll_s)
        self.last_error: str | None = None
        self._online_attempt = -float("inf")  # monotonic time of the last online read
        self._tables: dict = {}  # path -> DeltaTable, kept open for incremental updates

    def aliases(self) -> dict[str, str | None]:
        """Both aliases in one registry call (None: unset, or no model registered yet)."""
        from mlflow.exceptions import MlflowException

        registry = self.outputs.registry
        try:
            found = registry.client().get_registered_model(registry.model_name).aliases
        except MlflowException:
            found = {}
        return {role: str(found[role]) if role in found else None for role in ROLES}

    def versions(self) -> dict[str, int | None]:
        """Each tracked table's latest version. The tables stay open between polls and only
        read the commits added since (opening five Delta logs cost ~45 ms of CPU per poll)."""
        versions = {}
        for path, table in TRACKED.items():
            delta = self._tables.get(path)
            if delta is None:
                delta = self._tables[path] = self.outputs.lake.delta(table)
            else:
                delta.update_incremental()
            versions[path] = delta.version() if delta is not None else None
        return versions

    def refresh(self, previous: Snapshot) -> Snapshot | None:
        """A new snapshot when anything it serves changed, else None."""
        versions, aliases = self.versions(), self.aliases()
        online_due = self._online_due(previous, versions)
        if previous.loaded_at and (versions, aliases) == (previous.versions, previous.aliases):
            if not online_due:
                return None
            online = self._read_online(previous, versions)
            return None if online is previous.online else _with_online(previous, online)
        return self.build(previous, versions, aliases, online_due)

    def build(self, previous: Snapshot, versions, aliases, online_due: bool = True) -> Snapshot:
        pinned = Outputs(self.outputs.lake, self.outputs.registry, versions)
        cards = pinned.models()
        models = {}
        for role in ROLES:
            card = cards.get(role)
            if card is None:
                models[role] = None
                continue
            known = [m for m in previous.models.values() if m and m.card.version == card.version]
            booster = known[0].booster if known else pinned.registry.load_booster(card.version)
            models[role] = ServedModel(card, booster)
        data_date = pinned.latest_session()  # the newest full cross-section
        known_tickers = pinned.tickers()
        frames = {role: pinned.latest_predictions(role=role) for role in ROLES}
        returns = {
            (row["model_version"], row["ticker"], row["date"]): {
                c: row.get(c) for c in RETURN_COLUMNS
            }
            for frame in frames.values()
            for row in frame.iter_rows(named=True)
        }
        oldest = min((f["date"].min() for f in frames.values() if f.height), default=None)
        set_aside: dict[str, tuple] = {}
        for row in pinned.set_aside(oldest).iter_rows(named=True):
            set_aside[row["ticker"]] = (
                *set_aside.get(row["ticker"], ()),
                (row["date"], row["set_aside"]),
            )
        latest = {role: _serialise_latest(frame, set_aside) for role, frame in frames.items()}
        latest_versions = {
            role: tuple(sorted(frame["model_version"].unique().to_list()))
            for role, frame in frames.items()
        }
        reuse_quality = previous.loaded_at and all(
            previous.versions.get(t) == versions.get(t)
            for t in (PREDICTIONS, tables.ADJUSTED_DAILY_BARS.path)
        )
        quality = previous.quality if reuse_quality else tuple(pinned.realised_quality().to_dicts())
        snapshot = Snapshot(
            loaded_at=dt.datetime.now(dt.UTC),
            outputs=pinned,
            versions=versions,
            aliases=aliases,
            models=models,
            data_date=data_date,
            tickers=frozenset(known_tickers["ticker"].to_list()),
            latest=latest,
            latest_versions=latest_versions,
            thin_after=tuple(pinned.thin_sessions(_after(data_date)).to_dicts()),
            bodies=_bodies(pinned, known_tickers, data_date, models, quality),
            quality=quality,
            backtest=pinned.backtest(),
            returns=returns,
            set_aside=set_aside,
            headers=_headers(data_date, models),
        )
        tickers_changed = snapshot.tickers != previous.tickers
        if self.feast is not None and (online_due or tickers_changed or previous.online is None):
            online = self._read_online(snapshot, versions)
        else:
            online = previous.online
        return _with_online(snapshot, online)

    # -- the online cache ------------------------------------------------------------------------
    def _online_due(self, previous: Snapshot, versions) -> bool:
        """Re-read when the feature table moved, or (every retry period) while the cache still
        carries an older feature version than the lake has: the online load lands after it."""
        cache = previous.online
        if self.feast is None:
            return False
        if cache is None:  # never read, or the last read failed: retry now and then
            return time.monotonic() - self._online_attempt >= self.retry_online_s
        lake = versions.get(FEATURES)
        if lake != cache.lake_version:
            return True
        behind = lake is not None and (cache.carried_version or -1) < lake
        return behind and time.monotonic() - cache.read_at >= self.retry_online_s

    def _read_online(self, snapshot: Snapshot, versions) -> OnlineCache | None:
        if not snapshot.tickers:
            return snapshot.online
        self._online_attempt = time.monotonic()
        try:
            return self.feast.load_cache(sorted(snapshot.tickers), versions.get(FEATURES))
        except Exception as error:  # the store may not exist yet: keep serving the rest
            log.warning("online store read failed: %s", error)
            self.last_error = f"online store: {error}"
            return snapshot.online


def _after(day: dt.date | None) -> dt.date | None:
    return day + dt.timedelta(days=1) if day else None


def _with_online(snapshot: Snapshot, online: OnlineCache | None) -> Snapshot:
    models = [m for m in snapshot.models.values() if m is not None]
    cache = online.with_models(models) if online is not None else None
    return replace(snapshot, online=cache)


def _serialise_latest(frame: pl.DataFrame, set_aside: Mapping) -> dict[str, bytes]:
    """One JSON object per ticker, serialised once (the hot path only joins them)."""
    items = {}
    for row in frame.iter_rows(named=True):
        signal = None
        if row["side"] is not None:
            signal = {k: row[k] for k in ("rank", "side", "weight", "rule")}
        model = {"role": row["role"], "name": row["model_name"], "version": row["model_version"]}
        item = {
            "ticker": row["ticker"],
            "instrument": row["instrument"],
            "date": row["date"],
            "prediction": row["prediction"],
            "lower": row["lower"],
            "upper": row["upper"],
            "interval_level": row["interval_level"],
            "horizon": row["horizon"],
            "in_universe": row["in_universe"],
            "model": model,
            "feature_table_version": row["feature_table_version"],
            "thin": row["thin"],
            **{c: row.get(c) for c in RETURN_COLUMNS},
            "set_aside": newer_set_aside(set_aside, row["ticker"], row["date"]),
            "signal": signal,
        }
        items[row["ticker"]] = orjson.dumps(item)
    return items


def set_aside_item(day: dt.date, reason: str) -> dict:
    return {"date": day, "reason": reason}


def newer_set_aside(set_aside: Mapping, ticker: str, after: dt.date | None) -> dict | None:
    """The ticker's newest set-aside session after ``after`` (any, when None), or None:
    why a latest prediction or an online row is older than the newest session."""
    sessions = set_aside.get(ticker, ())
    if sessions and (after is None or sessions[-1][0] > after):
        return set_aside_item(*sessions[-1])
    return None


def with_stored_returns(snapshot: Snapshot, version: str, items: list[dict]) -> list[dict]:
    """On-demand items with the stored return and price figures of the same ticker, session and
    model version (the same score; null when none is stored) and any newer set-aside session."""
    empty = dict.fromkeys(RETURN_COLUMNS)
    for item in items:
        day, ticker = item["feature_date"], item["ticker"]
        item.update(snapshot.returns.get((version, ticker, day), empty))
        item["set_aside"] = newer_set_aside(snapshot.set_aside, ticker, day)
    return items


def _bodies(pinned: Outputs, known: pl.DataFrame, data_date, models, quality) -> dict[str, bytes]:
    """Responses that do not depend on the request, serialised once."""
    stamp = {"data_date": data_date, "predictions_table_version": pinned.pins.get(PREDICTIONS)}
    champion = models.get(CHAMPION)
    stamp["champion_version"] = champion.card.version if champion else None
    signals = pinned.signals(data_date) if data_date else pinned.signals()
    signal_rows = signals.filter(pl.col("side") != "none").select(
        "ticker", "rank", "side", "weight", "prediction", "model_version"
    )
    rule = signals["rule"][0] if signals.height else None
    return {
        "tickers": orjson.dumps({**stamp, "tickers": known.to_dicts()}),
        "signals": orjson.dumps(
            {
                **stamp,
                "rule": rule,
                "session": pinned.session_status(data_date),  # thin: no positions that day
                "positions": signal_rows.to_dicts(),
            }
        ),
        "models": orjson.dumps(
            {
                **stamp,
                "models": {r: m and m.card.as_dict() for r, m in models.items()},
                "realised_quality": list(quality),
            }
        ),
    }


def _headers(data_date, models) -> tuple[tuple[bytes, bytes], ...]:
    champion, challenger = models.get(CHAMPION), models.get(CHALLENGER)
    return (
        (b"x-data-date", str(data_date or "").encode()),
        (b"x-model-version", (champion.card.version if champion else "").encode()),
        (b"x-challenger-version", (challenger.card.version if challenger else "").encode()),
    )
