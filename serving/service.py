"""The running service's state: keys, buckets, metrics, the current snapshot and the rollout.

One `Service` per app. The snapshot is replaced whole by the poll (`poll_forever`), never
mutated, so a request reads one consistent `Snapshot` through a single attribute load. The
challenger's share of on-demand traffic is the only mutable setting; it changes through the
admin endpoint or the watched rollout file, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import time
from dataclasses import dataclass

import orjson

from serving.explanations import Boosters
from serving.gate import AddressBuckets, TokenBucket, key_table
from serving.metrics import Metrics
from serving.online import FeastReader
from serving.settings import ApiKey, Settings
from serving.snapshot import Loader, Snapshot
from stock_assets.outputs import CHALLENGER, CHAMPION, Outputs

log = logging.getLogger("serving")


@dataclass(frozen=True)
class Rollout:
    challenger_share: float  # percent of API keys, 0..100
    source: str  # env, admin or file
    updated_at: dt.datetime

    @property
    def threshold(self) -> int:
        """Buckets below this (of 0..9999) go to the challenger."""
        return round(self.challenger_share * 100)


class Service:
    def __init__(self, settings: Settings, outputs: Outputs | None = None, feast=None) -> None:
        self.settings = settings
        self.keys = key_table(settings.keys)
        self.buckets = {k.key_id: TokenBucket(k.rate_per_s, k.burst) for k in settings.keys}
        self.anonymous = AddressBuckets(settings.anonymous_rate_per_s, settings.anonymous_burst)
        self.metrics = Metrics()
        self.snapshot = Snapshot()
        self.rollout = Rollout(settings.challenger_share, "env", dt.datetime.now(dt.UTC))
        self.metrics.challenger_share.set(settings.challenger_share)
        self.started_at = dt.datetime.now(dt.UTC)
        self._outputs, self._feast = outputs, feast
        self.loader: Loader | None = None
        self.boosters = Boosters()  # older versions' boosters, for explanations
        self.feast: FeastReader | None = None
        self.last_error: str | None = None
        self._rollout_stamp: tuple | None = None
        self._quality_labels: set[tuple[str, str]] = set()

    # -- A/B --------------------------------------------------------------------------------------
    def role_for(self, key: ApiKey, snapshot: Snapshot) -> str:
        """The challenger for keys whose bucket is under the share (sticky per key id), when a
        challenger other than the champion is loaded; else the champion."""
        challenger, champion = snapshot.models.get(CHALLENGER), snapshot.models.get(CHAMPION)
        if challenger is None or (champion and champion.card.version == challenger.card.version):
            return CHAMPION
        return CHALLENGER if key.bucket < self.rollout.threshold else CHAMPION

    def set_share(self, share: float, source: str) -> Rollout:
        if not 0 <= share <= 100:
            raise ValueError(f"challenger share {share}: a percentage, 0..100")
        self.rollout = Rollout(float(share), source, dt.datetime.now(dt.UTC))
        self.metrics.challenger_share.set(share)
        log.info("challenger share set to %s%% (%s)", share, source)
        return self.rollout

    def watch_rollout_file(self) -> None:
        """Apply the rollout file when its content changed (a ConfigMap in Kubernetes)."""
        path = self.settings.rollout_file
        if path is None:
            return
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._rollout_stamp:
            return
        self._rollout_stamp = stamp
        try:
            share = float(orjson.loads(path.read_bytes())["challenger_share"])
            self.set_share(share, "file")
        except (ValueError, KeyError, TypeError) as error:
            self.last_error = f"rollout file {path}: {error}"
            log.warning(self.last_error)

    # -- snapshots --------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the readers (imports and connections happen here, not at import time)."""
        outputs = self._outputs or Outputs.from_env()
        self.feast = self._feast or FeastReader()
        self.loader = Loader(outputs, self.feast, self.settings.poll_s)

    def poll_once(self) -> bool:
        """One poll (in a worker thread): True when a new snapshot was swapped in."""
        try:
            fresh = self.loader.refresh(self.snapshot)
        except Exception as error:
            self.last_error = f"{type(error).__name__}: {error}"
            self.metrics.loads.labels("error").inc()
            log.exception("snapshot refresh failed")
            return False
        if fresh is None:
            self.metrics.loads.labels("unchanged").inc()
            return False
        self.swap(fresh)
        return True

    def swap(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        # Move what is loaded out of the collector's way: with ~450k long-lived objects (MLflow,
        # Feast, the snapshot), one full collection took ~450 ms, stalling every request. Once
        # per swap: collect the old snapshot's cycles, then freeze the survivors.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.last_error = None
        if self.loader is not None and self.loader.last_error:  # e.g. the online store failed
            self.last_error, self.loader.last_error = self.loader.last_error, None
        m = self.metrics
        m.loads.labels("swapped").inc()
        for role in (CHAMPION, CHALLENGER):
            model = snapshot.models.get(role)
            m.alias_version.labels(role).set(float(model.card.version) if model else -1)
        for table, version in snapshot.versions.items():
            m.table_version.labels(table).set(-1 if version is None else version)
        if snapshot.data_date:
            midnight = dt.datetime.combine(snapshot.data_date, dt.time(), dt.UTC)
            m.data_date.set(midnight.timestamp())
        current = {(row["role"], row["model_version"]): row for row in snapshot.quality}
        for labels in self._quality_labels - set(current):  # versions no longer stored
            for gauge in (m.realised_rank_ic, m.realised_days):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        for labels, row in current.items():
            m.realised_days.labels(*labels).set(row["days"])
            m.realised_rank_ic.labels(*labels).set(
                row["rank_ic"] if row["rank_ic"] is not None else float("nan")
            )
        self._quality_labels = set(current)
        m.online_rows.set(snapshot.online.frame.height if snapshot.online else 0)
        log.info(
            "snapshot: data %s, champion %s, challenger %s, tables %s",
            snapshot.data_date,
            snapshot.aliases.get(CHAMPION),
            snapshot.aliases.get(CHALLENGER),
            dict(snapshot.versions),
        )

    async def poll_forever(self) -> None:
        """The background poll: refresh, then the rollout file, every ``poll_s`` seconds."""
        while True:
            started = time.monotonic()
            await asyncio.to_thread(self.poll_once)
            self.watch_rollout_file()
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.1, self.settings.poll_s - elapsed))
