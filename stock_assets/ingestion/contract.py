"""What a Kafka topic carries and where it lands: the seam every ingested stream plugs into.

A contract names the bronze and quarantine tables, parses one message into a row (or raises
InvalidRecord with the quarantine reason), and says how the bronze table is partitioned.
Market bars use it today; a news or tick stream adds a contract, not a new ingest path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from stock_assets.resources.lake import month_column


class InvalidRecord(ValueError):
    """A record that cannot be stored; the message is the quarantine reason."""


KAFKA_COLUMNS = {
    "kafka_topic": pl.String,
    "kafka_partition": pl.Int32,
    "kafka_offset": pl.Int64,
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
}
QUARANTINE_COLUMNS = {
    **KAFKA_COLUMNS,
    "kafka_key": pl.Binary,
    "payload": pl.Binary,
    "reason": pl.String,
}


@dataclass(frozen=True)
class TopicContract:
    name: str
    bronze_table: str
    quarantine_table: str
    columns: dict[str, pl.DataType]  # parsed fields, in the order ``parse`` returns them
    parse: Callable[[bytes | None, dt.date], tuple]  # raises InvalidRecord
    partition_by: tuple[str, ...] = ("month",)
    event_date_column: str = "date"  # reported per run so downstream knows which days changed

    def with_partition_columns(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Add the Delta partition column (``month``) when the contract partitions by it."""
        if "month" not in self.partition_by:
            return rows
        return rows.with_columns(month_column(self.event_date_column))
