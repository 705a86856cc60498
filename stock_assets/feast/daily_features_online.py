"""``feast/daily_features_online``: the online store, loaded after each feature range.

Online writes are last-write-wins, so a load always runs on to the newest snapshot session. The
asset checks its own result: Feast does not apply the TTL online.
"""

import time

import dagster as dg
import polars as pl

from stock_assets.feast import feature_store as fs
from stock_assets.feast.daily_features_offline import (
    OFFLINE_KEY,
    daily_features_offline,
    sessions_of_run,
)
from stock_assets.feast.feature_repo import REPO_KEY, feature_repo
from stock_assets.gold.daily_features import FEATURES_GROUP
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.lake import LakeResource

ONLINE_KEY = dg.AssetKey(["feast", "daily_features_online"])
ONLINE_FRESH = "online_features_fresh"


def online_freshness(store, settings: fs.FeatureStoreSettings) -> dg.AssetCheckResult:
    """Every ticker of the newest snapshot session reads online as of that session's close and
    from the Delta version the snapshot holds for it (a correction not yet loaded is behind).

    Feast does not enforce the TTL online, so the age is checked here against the data rather
    than the wall clock (a replayed history is old by the clock and still current).
    """
    newest = fs.snapshot_latest_date(settings)
    if newest is None:
        return dg.AssetCheckResult(
            check_name=ONLINE_FRESH,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"newest_session": "the snapshot is empty"},
        )
    expected = fs.snapshot_rows_on(settings, newest).select(fs.ENTITY, fs.VERSION).sort(fs.ENTITY)
    online = fs.online_features(
        store, expected[fs.ENTITY].to_list(), settings.ttl, now=fs.event_time(newest)
    )
    behind = online.filter(
        (pl.col(fs.EVENT_TS) != fs.event_time(newest)).fill_null(True)
        | (pl.col(fs.VERSION) != expected[fs.VERSION]).fill_null(True)
    )
    return dg.AssetCheckResult(
        check_name=ONLINE_FRESH,
        passed=behind.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "newest_session": newest.isoformat(),
            "tickers_checked": online.height,
            "tickers_missing": int((online["status"] == "missing").sum()),
            "tickers_behind": behind.height,
            "behind_sample": ", ".join(behind[fs.ENTITY].head(20).to_list()),
        },
    )


@dg.asset(
    key=ONLINE_KEY,
    deps=[OFFLINE_KEY, REPO_KEY],
    group_name=FEATURES_GROUP,
    kinds={"feast"},
    pool=fs.WRITER_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            ONLINE_FRESH,
            asset=ONLINE_KEY,
            description="each ticker of the newest session is online as of that close",
        )
    ],
)
def daily_features_online(
    context: dg.AssetExecutionContext, lake: LakeResource, feast: FeastResource
):
    """Load the online store from the first selected session through the newest one (online
    writes are last-write-wins, so an older range is followed by everything after it)."""
    start, _ = sessions_of_run(context, lake)
    settings = feast.settings()
    store = fs.open_store(settings)
    began = time.perf_counter()
    windows = fs.materialize(store, settings, start)
    seconds = time.perf_counter() - began
    yield dg.MaterializeResult(
        metadata={
            "loaded_from": start.isoformat(),
            "loaded_through": windows[-1][1].isoformat() if windows else "nothing to load",
            "windows": len(windows),
            "materialize_seconds": round(seconds, 3),
            "online_store": settings.online,
        }
    )
    yield online_freshness(store, settings)


# the snapshot, the registry and the online rows are one store: written together, in this order
FEAST_ASSETS = [daily_features_offline, feature_repo, daily_features_online]
