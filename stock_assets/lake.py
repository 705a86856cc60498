"""The Delta lake, read and written by the project itself (no Dagster here).

dagster-deltalake's IO manager was measured to lose data on range reads and multi-partition writes,
so every write goes through this class: appends that carry Kafka offsets as Delta application
transactions, overwrites bounded by an explicit date predicate, and whole-table replaces for small
snapshots. Tables are catalog entries (`stock_assets.tables`); the API and the app read through the
same class. `stock_assets.resources.lake.LakeResource` is its Dagster face.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Field, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from stock_assets.tables import Table

COMMIT_ATTEMPTS = 8
FENCED_ROUNDS = 200  # rounds a fenced append may lose to other writers before giving up
Frame = pl.DataFrame | pa.Table


def kafka_app_id(topic: str, partition: int) -> str:
    """Delta application-transaction id under which a topic-partition's last offset is stored."""
    return f"{topic}-{partition}"


@dataclass(frozen=True)
class FencedAppend:
    version: int | None  # the committed version; None when other writers had stored everything
    rows_written: int
    rows_already_stored: int  # rows of this batch another writer committed first


class SchemaMismatch(ValueError):
    """A frame does not match its table's catalog schema (caught before anything is written)."""


def month_column(date_column: str = "date") -> pl.Expr:
    """Delta partition column: a month holds many tickers and days, not one tiny file each."""
    return pl.col(date_column).dt.strftime("%Y-%m").alias("month")


def _arrow(data: Frame) -> pa.Table:
    return data.to_arrow() if isinstance(data, pl.DataFrame) else data


def conform(table: Table, data: Frame) -> pa.Table:
    """The frame as Arrow, after checking names and types against the catalog schema."""
    frame = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
    if table.schema:
        expected = dict(table.schema)
        actual = dict(frame.schema)
        if list(actual) != list(expected) or any(
            actual[name] != dtype for name, dtype in expected.items()
        ):
            diff = {
                name: (str(actual.get(name)), str(expected.get(name)))
                for name in dict.fromkeys([*expected, *actual])
                if actual.get(name) != expected.get(name)
            }
            order = "" if diff else f" (column order {list(actual)})"
            raise SchemaMismatch(f"{table.path}: (got, expected) {diff}{order}")
    return _arrow(data)


class LakeIO:
    """Reads and writes of catalog tables under ``self.root`` with ``self.storage_options``.

    `Lake` is the plain object the API and the app use; `LakeResource` is the same behaviour with
    typed settings for Dagster. Subclasses provide ``root`` (str) and ``storage_options`` (dict;
    not annotated here, so pydantic does not take them for the resource's fields).
    """

    def uri(self, table: Table) -> str:
        return f"{self.root.rstrip('/')}/{table.path}"

    def delta(self, table: Table) -> DeltaTable | None:
        """The Delta table at its latest version, or None when it was never written."""
        try:
            return DeltaTable(self.uri(table), storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def exists(self, table: Table) -> bool:
        return self.delta(table) is not None

    def version(self, table: Table) -> int | None:
        delta = self.delta(table)
        return delta.version() if delta else None

    def ensure_table(self, table: Table, schema: pa.Schema) -> DeltaTable:
        """Create an empty table up front so concurrent first writers cannot race on creation.

        Creation is fenced like appends: only one creator can put version 0 (with retries, a
        losing creator was measured to re-commit its CREATE as version 1).
        """
        delta = self.delta(table)
        if delta is not None:
            return self._add_new_columns(table, delta, schema)
        # a creator that lost the race gets CommitFailedError; the winner's table opens below
        with contextlib.suppress(CommitFailedError):
            DeltaTable.create(
                self.uri(table),
                schema=schema,
                partition_by=list(table.partition_by) or None,
                mode="ignore",
                storage_options=self.storage_options or None,
                commit_properties=CommitProperties(max_commit_retries=0),
            )
        delta = self.delta(table)
        if delta is None:
            raise RuntimeError(f"could not create or open {self.uri(table)}")
        return delta

    def _add_new_columns(self, table: Table, delta: DeltaTable, schema: pa.Schema) -> DeltaTable:
        """Schema evolution: columns the catalog added after the table was written are added as
        nullable columns at the end (one commit; rows already stored read them as null)."""
        have = {field.name for field in delta.schema().fields}
        new = [Field.from_arrow(field) for field in schema if field.name not in have]
        if not new:
            return delta
        # a concurrent writer may add them first: then this commit fails and the reopen shows them
        with contextlib.suppress(CommitFailedError, DeltaError):
            delta.alter.add_columns(new)
        delta = self.delta(table)
        missing = {f.name for f in new} - {field.name for field in delta.schema().fields}
        if missing:
            raise RuntimeError(f"could not add columns {sorted(missing)} to {self.uri(table)}")
        return delta

    # -- reads ----------------------------------------------------------------------------------
    def scan(self, table: Table, version: int | None = None) -> pl.LazyFrame:
        """The table lazily, at its latest version or at ``version`` (Delta time travel)."""
        return pl.scan_delta(
            self.uri(table), version=version, storage_options=self.storage_options or None
        )

    def read(self, table: Table) -> pl.DataFrame:
        """The whole table; an empty frame with the catalog schema when it does not exist yet."""
        if not self.exists(table):
            return pl.DataFrame(schema=dict(table.schema))
        return self.scan(table).collect()

    def read_dates(
        self, table: Table, start: dt.date, end: dt.date, version: int | None = None
    ) -> pl.DataFrame:
        """Every row with ``start <= date <= end`` (inclusive both ends, as Dagster ranges are),
        at the latest version or at ``version``."""
        if not self.exists(table):
            raise FileNotFoundError(f"Delta table {self.uri(table)} does not exist yet")
        column = _date_column(table)
        filters = [pl.col(column).is_between(pl.lit(start), pl.lit(end), closed="both")]
        if "month" in table.partition_by:  # prune files by the partition column as well
            filters.append(pl.col("month").is_between(pl.lit(_month(start)), pl.lit(_month(end))))
        return self.scan(table, version).filter(*filters).collect()

    def transaction_versions(self, table: Table, app_ids: Sequence[str]) -> dict[str, int | None]:
        """Last version recorded per application id (for Kafka: last offset stored)."""
        delta = self.delta(table)
        return {app_id: delta.transaction_version(app_id) if delta else None for app_id in app_ids}

    # -- writes ---------------------------------------------------------------------------------
    def append_kafka(
        self, table: Table, rows: pl.DataFrame, topic: str, last_offsets: Mapping[int, int]
    ) -> FencedAppend:
        """Append Kafka records exactly once, whoever else is appending the same offsets.

        ``rows`` carry ``kafka_partition`` and ``kafka_offset``; ``last_offsets`` is the last
        offset this batch covers per partition (also for partitions whose records all went
        elsewhere). Each round opens the table at some version V, drops the rows whose offsets V
        already stores (application transaction per topic-partition), and commits the rest with
        the new last offsets at exactly V + 1 (``max_commit_retries=0`` on the snapshot that was
        checked; the commit file is put-if-absent, locally and on S3). If another writer took
        V + 1 first, the round is lost and repeated on the new version. An append by URI would
        re-read the table after the offsets were checked, and delta-rs accepts an application
        transaction already stored, so two ingests of one range would both commit it.
        """
        arrow = conform(table, rows)
        for attempt in range(FENCED_ROUNDS):
            delta = self.ensure_table(table, arrow.schema)
            stored = {p: delta.transaction_version(kafka_app_id(topic, p)) for p in last_offsets}
            pending = {
                p: last for p, last in last_offsets.items() if stored[p] is None or stored[p] < last
            }
            if not pending:
                return FencedAppend(None, 0, rows.height)
            floor = {p: -1 if stored[p] is None else stored[p] for p in pending}
            keep = rows.filter(
                pl.col("kafka_partition").is_in(list(pending))
                & (
                    pl.col("kafka_offset")
                    > pl.col("kafka_partition").replace_strict(
                        floor, default=None, return_dtype=pl.Int64
                    )
                )
            )
            txns = [Transaction(kafka_app_id(topic, p), last) for p, last in pending.items()]
            try:
                write_deltalake(
                    delta,  # not the URI: the commit must build on the snapshot just checked
                    conform(table, keep),
                    mode="append",
                    commit_properties=CommitProperties(max_commit_retries=0, app_transactions=txns),
                )
                return FencedAppend(delta.version(), keep.height, rows.height - keep.height)
            except CommitFailedError:
                # another writer committed first; its data files are left for VACUUM
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
        raise CommitFailedError(
            f"{self.uri(table)}: lost {FENCED_ROUNDS} commit rounds to other writers in a row"
        )

    def overwrite_dates(self, table: Table, data: Frame, start: dt.date, end: dt.date) -> int:
        """Replace exactly the rows with ``start <= date <= end``; rows outside are untouched.

        Concurrent overwrites of other dates can conflict at commit time; those are retried.
        """
        arrow = conform(table, data)
        column = _date_column(table)
        outside = arrow.filter(
            pc.or_(
                pc.less(arrow[column], pa.scalar(start)),
                pc.greater(arrow[column], pa.scalar(end)),
            )
        )
        if outside.num_rows:
            raise ValueError(f"{outside.num_rows} rows fall outside {start}..{end}")
        self.ensure_table(table, arrow.schema)
        predicate = f"{column} >= '{start.isoformat()}' AND {column} <= '{end.isoformat()}'"
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                write_deltalake(
                    self.uri(table),
                    arrow,
                    mode="overwrite",
                    predicate=predicate,
                    partition_by=list(table.partition_by) or None,
                    storage_options=self.storage_options or None,
                )
                return self.version(table)
            except CommitFailedError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def replace_table(self, table: Table, data: Frame) -> int:
        """Replace a small whole-history table (reference data, event lists, snapshots).

        One atomic overwrite: readers see the old or the new table, never a mix, and the schema
        may change between versions (``schema_mode="overwrite"``).
        """
        write_deltalake(
            self.uri(table),
            conform(table, data),
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=list(table.partition_by) or None,
            storage_options=self.storage_options or None,
        )
        return self.version(table)


class Lake(LakeIO):
    """A lake root (local path or deltalake URI such as ``s3://bucket/prefix``) and its options."""

    def __init__(self, root: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.storage_options = dict(storage_options or {})

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"


def _date_column(table: Table) -> str:
    if table.date_column is None:
        raise ValueError(f"{table.path} has no date column; read it whole")
    return table.date_column


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")
