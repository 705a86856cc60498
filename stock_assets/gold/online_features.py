"""The features in Feast: a parquet snapshot of ``gold/daily_features``, the applied repo and the
online store, each an asset that runs after the feature sessions it serves.

The three write the same files (snapshot months, file registry, online rows) and share one pool,
so only one run at a time touches them. Both feature paths run them: the sensor chain for new
sessions (streaming) and the nightly recompute (batch).
"""

import hashlib
import time

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.gold import feature_store as fs
from stock_assets.gold.daily_features import FEATURES_GROUP
from stock_assets.gold.feature_set import ONLINE_FEATURES
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.resources.feast import FeastResource
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_key

FEAST_POOL = "feast_store"
OFFLINE_KEY = dg.AssetKey(["feast", "daily_features_offline"])
REPO_KEY = dg.AssetKey(["feast", "feature_repo"])
ONLINE_KEY = dg.AssetKey(["feast", "daily_features_online"])
ONLINE_FRESH = "online_features_fresh"
DEFINITION_VERSION = hashlib.sha256(
    repr(sorted((name, str(t)) for name, t in ONLINE_FEATURES.items())).encode()
).hexdigest()[:12]


def snapshot_rows(lake: LakeResource, start, end) -> tuple[pl.DataFrame, int]:
    """Gold rows of ``start..end`` read at one Delta version, with that version on every row."""
    version = lake.version(tables.GOLD_DAILY_FEATURES)
    if version is None:
        raise FileNotFoundError("gold/daily_features has not been written yet")
    gold = lake.read_dates(tables.GOLD_DAILY_FEATURES, start, end, version=version)
    rows = gold.select(
        fs.ENTITY, "date", pl.lit(version, pl.Int64).alias(fs.VERSION), *ONLINE_FEATURES
    )
    return rows, version


@dg.asset(
    key=OFFLINE_KEY,
    deps=[table_key(tables.GOLD_DAILY_FEATURES)],
    partitions_def=trading_day_partitions(),
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=FEATURES_GROUP,
    kinds={"polars", "parquet", "feast"},
    pool=FEAST_POOL,
)
def daily_features_offline(
    context: dg.AssetExecutionContext, lake: LakeResource, feast: FeastResource
) -> dg.MaterializeResult:
    """Feast's offline source: DuckDB reads parquet, not Delta (its Delta reader downloads an
    extension at run time), so the sessions are copied with the Delta version they came from."""
    start, end = run_dates(context)
    rows, version = snapshot_rows(lake, start, end)
    settings = feast.settings()
    written = fs.write_offline_snapshot(settings, rows, start, end)
    return dg.MaterializeResult(
        metadata={
            "rows": rows.height,
            "tickers": rows[fs.ENTITY].n_unique(),
            "date_range": f"{start}..{end}",
            "feature_table_version": version,
            "month_files_written": len(written),
            "snapshot_glob": dg.MetadataValue.path(str(settings.snapshot_dir / "*.parquet")),
        }
    )


@dg.asset(
    key=REPO_KEY,
    group_name=FEATURES_GROUP,
    kinds={"feast"},
    pool=FEAST_POOL,
    code_version=DEFINITION_VERSION,
)
def feature_repo(feast: FeastResource) -> dg.MaterializeResult:
    """`feast apply` of the definitions generated from the feature set (a no-op when unchanged)."""
    settings = feast.settings()
    began = time.perf_counter()
    fs.build_store(settings, ONLINE_FEATURES)
    return dg.MaterializeResult(
        metadata={
            "project": settings.project,
            "feature_view": fs.VIEW,
            "entity": fs.ENTITY,
            "features": len(ONLINE_FEATURES),
            "online_store": settings.online,
            "feature_store_yaml": dg.MetadataValue.path(
                str(settings.repo_dir.resolve() / "feature_store.yaml")
            ),
            "definition_version": DEFINITION_VERSION,
            "apply_seconds": round(time.perf_counter() - began, 3),
        }
    )


def online_freshness(store, lake: LakeResource, settings) -> dg.AssetCheckResult:
    """Every ticker of the newest snapshot session reads online as of that session's close.

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
    tickers = lake.read_dates(tables.GOLD_DAILY_FEATURES, newest, newest)[fs.ENTITY].unique().sort()
    online = fs.online_features(store, tickers.to_list(), settings.ttl, now=fs.event_time(newest))
    behind = online.filter(pl.col(fs.EVENT_TS) != fs.event_time(newest))
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
    partitions_def=trading_day_partitions(),
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=FEATURES_GROUP,
    kinds={"feast"},
    pool=FEAST_POOL,
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
    start, _ = run_dates(context)
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
    yield online_freshness(store, lake, settings)


FEAST_ASSETS = [daily_features_offline, feature_repo, daily_features_online]
