"""``feast/feature_repo``: the Feast repo generated from the feature set, applied.

Names and types come from `gold.feature_set.ONLINE_FEATURES`, the same lists the Delta schema
and the model use; the code version is their hash, so the UI shows when the definitions changed.
"""

import hashlib
import time

import dagster as dg

from stock_assets.feast import feature_store as fs
from stock_assets.gold.daily_features import FEATURES_GROUP
from stock_assets.gold.feature_set import ONLINE_FEATURES
from stock_assets.resources.feast import FeastResource

REPO_KEY = dg.AssetKey(["feast", "feature_repo"])
DEFINITION_VERSION = hashlib.sha256(
    repr(sorted((name, str(t)) for name, t in ONLINE_FEATURES.items())).encode()
).hexdigest()[:12]


@dg.asset(
    key=REPO_KEY,
    group_name=FEATURES_GROUP,
    kinds={"feast"},
    pool=fs.WRITER_POOL,
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
