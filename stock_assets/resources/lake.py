"""The lake as a Dagster resource: typed storage settings plus the project's own Delta IO.

dagster-deltalake supplies the storage configuration classes (LocalConfig, S3Config, ...), so the
UI shows the lake's settings with secrets masked; the reads and writes are `stock_assets.lake`'s
(the API and the app use its plain `Lake`).
"""

from __future__ import annotations

import dagster as dg
from dagster_deltalake import AzureConfig, GcsConfig, LocalConfig, S3Config
from pydantic import Field

from stock_assets import config
from stock_assets.lake import LakeIO


class LakeResource(dg.ConfigurableResource, LakeIO):
    """Where the lake lives and how to reach it; tables are catalog entries (tables.py)."""

    root: str = Field(description="local path or deltalake URI such as s3://bucket/prefix")
    storage: LocalConfig | S3Config | AzureConfig | GcsConfig = Field(
        default_factory=LocalConfig, discriminator="provider"
    )
    extra_storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs options the typed config lacks, e.g. allow_http for MinIO",
    )

    @classmethod
    def from_env(cls) -> LakeResource:
        """``STOCK_LAKE_ROOT`` plus, for s3:// roots, the standard ``AWS_*`` variables."""
        root = config.lake_root()
        if root.startswith("s3://"):
            return cls(root=root, storage=S3Config())
        return cls(root=root)

    @property
    def storage_options(self) -> dict[str, str]:
        """Object-store options for delta-rs (booleans as "true"/"false", unset ones dropped)."""
        options = self.storage.model_dump(exclude={"provider"}, exclude_none=True)
        typed = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()}
        return {**typed, **self.extra_storage_options}
