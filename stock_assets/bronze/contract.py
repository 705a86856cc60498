"""What a Kafka topic carries and where it lands: the seam every ingested stream plugs into.

A contract names the bronze and quarantine tables (catalog entries), parses one message into a
row (or raises InvalidRecord with the quarantine reason), and lists the parsed fields. Market bars
and news articles use it; a tick stream adds a contract, not a new ingest path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from stock_assets.lake import month_column
from stock_assets.tables import Table


class InvalidRecord(ValueError):
    """A record that cannot be stored; the message is the quarantine reason."""


@dataclass(frozen=True)
class TopicContract:
    name: str
    bronze: Table
    quarantine: Table
    fields: dict[str, pl.DataType]  # parsed fields, in the order ``parse`` returns them
    parse: Callable[[bytes | None, dt.date], tuple]  # raises InvalidRecord
    description: str  # what one record is, e.g. "market bar"

    def with_partition_columns(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Add the Delta partition column (``month``) when the bronze table partitions by it."""
        if "month" not in self.bronze.partition_by:
            return rows
        return rows.with_columns(month_column(self.bronze.date_column))
