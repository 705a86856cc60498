"""The Feast feature store as a Dagster resource: where the repo lives and which online store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from stock_assets.feast.feature_store import FeatureStoreSettings


class FeastResource(dg.ConfigurableResource):
    """SQLite online store locally; Redis (``host:port[,password=...]``) in production."""

    repo_dir: str = Field(description="feature_store.yaml, registry.db and the SQLite online store")
    offline_dir: str = Field(default="", description="parquet snapshot; default <repo>/offline")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str = Field(default="", description="Feast's redis connection string")
    ttl_days: int = Field(default=5, description="as-of reach of historical joins (long weekend+)")

    @classmethod
    def from_env(cls) -> FeastResource:
        """The same environment variables as ``FeatureStoreSettings.from_env``."""
        settings = FeatureStoreSettings.from_env()
        return cls(
            repo_dir=str(settings.repo_dir),
            online_store=settings.online,
            redis_connection_string=settings.online_location,
        )

    def settings(self) -> FeatureStoreSettings:
        repo = Path(self.repo_dir)
        return FeatureStoreSettings(
            repo_dir=repo,
            offline_dir=Path(self.offline_dir) if self.offline_dir else repo / "offline",
            online=self.online_store,
            online_location=self.redis_connection_string,
            ttl=dt.timedelta(days=self.ttl_days),
        )
