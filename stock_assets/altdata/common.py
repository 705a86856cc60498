"""Shared pieces of the alternative-data assets: partitions, quarantine tables, snapshot writes."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import orjson
import polars as pl

from stock_assets.resources.lake import LakeResource

QUARANTINE_SCHEMA = {
    "source": pl.String,
    "record": pl.String,  # the raw row as JSON, exactly as the connector returned it
    "reason": pl.String,
    "detected_at": pl.Datetime("us", "UTC"),
}


def monthly_partitions(start: str) -> dg.MonthlyPartitionsDefinition:
    """Calendar months, with the current (open) month addressable so daily refreshes land."""
    return dg.MonthlyPartitionsDefinition(start_date=start, end_offset=1)


def month_window(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the month range this run materializes."""
    window = context.partition_time_window
    return window.start.date(), window.end.date() - dt.timedelta(days=1)


def month_key(when: dt.datetime | dt.date) -> str:
    return f"{when.year:04d}-{when.month:02d}-01"


def quarantine_frame(raw: pl.DataFrame, reasons: pl.Series, source_column: str) -> pl.DataFrame:
    """Rows of ``raw`` whose ``reasons`` entry is not null, as quarantine records."""
    bad = raw.with_columns(reasons.alias("__reason")).filter(pl.col("__reason").is_not_null())
    records = [
        orjson.dumps(row, default=str).decode()
        for row in bad.drop("__reason").iter_rows(named=True)
    ]
    return pl.DataFrame(
        {
            "source": bad[source_column].cast(pl.String) if bad.height else [],
            "record": records,
            "reason": bad["__reason"],
            "detected_at": [dt.datetime.now(dt.UTC)] * bad.height,
        },
        schema=QUARANTINE_SCHEMA,
    )


def first_failure(*rules: tuple[pl.Expr, str]) -> pl.Expr:
    """The reason of the first rule whose condition is true, else null (the row is good)."""
    expr = pl.lit(None, dtype=pl.String)
    for condition, reason in reversed(rules):
        expr = pl.when(condition.fill_null(True)).then(pl.lit(reason)).otherwise(expr)
    return expr


def write_quarantine(lake: LakeResource, table: str, bad: pl.DataFrame) -> int:
    """The quarantine holds what the source currently offers and the asset could not store.

    File sources are re-read whole on every run, so the table is a snapshot (replaced each run),
    not an ever-growing log: a fixed source row leaves the quarantine on the next run.
    """
    return lake.replace_table(table, bad)
