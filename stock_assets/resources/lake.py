"""Delta Lake IO owned by the project.

dagster-deltalake's IO manager loses data on range reads and multi-partition writes (DESIGN.md),
so assets write through this resource instead: appends that carry Kafka offsets as Delta
application transactions, and partition overwrites bounded by an explicit date predicate.
The package still supplies the typed storage configuration (LocalConfig, S3Config, ...).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Mapping, Sequence

import dagster as dg
import polars as pl
import pyarrow as pa
from dagster_deltalake import AzureConfig, GcsConfig, LocalConfig, S3Config
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from pydantic import Field

from stock_assets import config

COMMIT_ATTEMPTS = 8


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives and how to reach it; tables are addressed as ``layer/name``."""

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

    def uri(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}"

    def storage_options(self) -> dict[str, str]:
        """Object-store options for delta-rs (booleans as "true"/"false", unset ones dropped)."""
        options = self.storage.model_dump(exclude={"provider"}, exclude_none=True)
        typed = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()}
        return {**typed, **self.extra_storage_options}

    def table(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table), storage_options=self.storage_options())
        except TableNotFoundError:
            return None

    def ensure_table(self, table: str, schema: pa.Schema, partition_by: Sequence[str]) -> None:
        """Create an empty table up front so concurrent first writers cannot race on creation."""
        if self.table(table) is not None:
            return
        try:
            DeltaTable.create(
                self.uri(table),
                schema=schema,
                partition_by=list(partition_by),
                mode="ignore",
                storage_options=self.storage_options(),
            )
        except CommitFailedError:
            if self.table(table) is None:  # lost the race to another creator: fine if it exists
                raise

    def transaction_versions(self, table: str, app_ids: Sequence[str]) -> dict[str, int | None]:
        """Last version recorded per application id (for Kafka: last offset stored)."""
        delta = self.table(table)
        return {app_id: delta.transaction_version(app_id) if delta else None for app_id in app_ids}

    def append(
        self,
        table: str,
        data: pa.Table,
        partition_by: Sequence[str],
        transactions: Mapping[str, int],
    ) -> int:
        """Append rows and record ``transactions`` in the same atomic commit; returns version."""
        self.ensure_table(table, data.schema, partition_by)
        txns = [Transaction(app_id=app_id, version=v) for app_id, v in transactions.items()]
        write_deltalake(
            self.uri(table),
            data,
            mode="append",
            partition_by=list(partition_by),
            storage_options=self.storage_options(),
            commit_properties=CommitProperties(app_transactions=txns),
        )
        return self.table(table).version()

    def overwrite_dates(
        self,
        table: str,
        data: pa.Table,
        start: dt.date,
        end: dt.date,
        partition_by: Sequence[str],
        date_column: str = "date",
    ) -> int:
        """Replace exactly the rows with ``start <= date <= end``; rows outside are untouched.

        Concurrent overwrites of other dates can conflict at commit time; those are retried.
        """
        outside = data.filter(
            pa.compute.or_(
                pa.compute.less(data[date_column], pa.scalar(start)),
                pa.compute.greater(data[date_column], pa.scalar(end)),
            )
        )
        if outside.num_rows:
            raise ValueError(f"{outside.num_rows} rows fall outside {start}..{end}")
        self.ensure_table(table, data.schema, partition_by)
        predicate = (
            f"{date_column} >= '{start.isoformat()}' AND {date_column} <= '{end.isoformat()}'"
        )
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                write_deltalake(
                    self.uri(table),
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    partition_by=list(partition_by),
                    storage_options=self.storage_options(),
                )
                return self.table(table).version()
            except CommitFailedError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def replace_table(
        self, table: str, data: pl.DataFrame, partition_by: Sequence[str] = ()
    ) -> int:
        """Replace a small whole-history table (reference data, event lists, snapshots).

        One atomic overwrite: readers see the old or the new table, never a mix, and the schema
        may change between versions (``schema_mode="overwrite"``).
        """
        write_deltalake(
            self.uri(table),
            data.to_arrow(),
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=list(partition_by) or None,
            storage_options=self.storage_options(),
        )
        return self.table(table).version()

    def scan(self, table: str) -> pl.LazyFrame:
        return pl.scan_delta(self.uri(table), storage_options=self.storage_options() or None)

    def read_dates(
        self, table: str, start: dt.date, end: dt.date, date_column: str = "date"
    ) -> pl.DataFrame:
        """Every row with ``start <= date <= end`` (inclusive both ends, as Dagster ranges are)."""
        if self.table(table) is None:
            raise FileNotFoundError(f"Delta table {self.uri(table)} does not exist yet")
        return (
            self.scan(table)
            .filter(
                pl.col(date_column).is_between(pl.lit(start), pl.lit(end), closed="both"),
                pl.col("month").is_between(pl.lit(_month(start)), pl.lit(_month(end))),
            )
            .collect()
        )


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def month_column(date_column: str = "date") -> pl.Expr:
    """Delta partition column: a month holds many tickers and days, not one tiny file each."""
    return pl.col(date_column).dt.strftime("%Y-%m").alias("month")
