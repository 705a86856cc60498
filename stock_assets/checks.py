"""The one way to validate a table: rules, run before the commit and again as asset checks.

A `Rule` turns a frame into ``(passed, metadata)``; pandera (polars API) schemas, uniqueness and
quarantine counts are rules. A `CheckSuite` groups a table's rules and uses them twice:

- write-audit-publish: an asset calls `CheckSuite.gate` on the frame it is about to commit; a failed
  blocking rule raises before anything is written, so no reader ever sees rows a check rejects;
- audit: `CheckSuite.asset_check` is the Dagster check on the committed rows of the run's range
  (blocking ones stop downstream assets in the same run), visible in the UI with what failed where.

Suites are unpartitioned checks on purpose: Dagster 1.13 writes one planned-check row per partition,
which made a 3,270-session backfill spend 80 s before any work; one result per run covers exactly
the range the run wrote (`rows_written`). Row rules (`row_reasons`) decide per row what goes to a
quarantine table, with the reason, instead of failing a whole run.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg
import orjson
import pandera.polars as pa
import polars as pl

from stock_assets.lake import LakeIO
from stock_assets.partitions import partition_date
from stock_assets.resources.lake import LakeResource
from stock_assets.tables import SOURCE_QUARANTINE_SCHEMA, Table

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


@dataclass(frozen=True)
class CheckInput:
    frame: pl.DataFrame
    lake: LakeIO
    start: dt.date | None = None  # the range the frame covers, when the run has one
    end: dt.date | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    evaluate: Callable[[CheckInput], tuple[bool, dict]]
    blocking: bool = True


def markdown(frame: pl.DataFrame, limit: int = 20) -> dg.MetadataValue:
    if frame.is_empty():
        return dg.MetadataValue.md("_none_")
    return dg.MetadataValue.md(frame.head(limit).to_pandas().to_markdown(index=False))


def frame_check(expr: pl.Expr, name: str) -> pa.Check:
    """A pandera check from a polars boolean expression over the whole frame."""
    return pa.Check(lambda data: data.lazyframe.select(expr), name=name)


def schema_rule(
    name: str, schema: pa.DataFrameSchema, description: str, blocking: bool = True
) -> Rule:
    def evaluate(data: CheckInput) -> tuple[bool, dict]:
        try:
            schema.validate(data.frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            return False, {
                "failure_cases": cases.height,
                "failed_checks": sorted(set(cases["check"].cast(pl.String).to_list())),
                "sample": markdown(cases),
            }
        return True, {"rows": data.frame.height}

    return Rule(name, description, evaluate, blocking)


def unique_rule(name: str, keys: Sequence[str]) -> Rule:
    def evaluate(data: CheckInput) -> tuple[bool, dict]:
        dupes = data.frame.group_by(list(keys)).len().filter(pl.col("len") > 1)
        sample = [" ".join(str(v) for v in row[:-1]) for row in dupes.head(10).iter_rows()]
        return dupes.is_empty(), {"duplicates": dupes.height, "sample": sample}

    return Rule(name, f"one row per {', '.join(keys)}", evaluate)


def quarantine_rule(
    name: str,
    quarantine: Table,
    window: Callable[[dt.date, dt.date], tuple[dt.date, dt.date]] | None = None,
) -> Rule:
    """Warns while the quarantine holds rows: a person should look, downstream is not poisoned.

    With a range, only quarantine rows dated in ``window(start, end)`` (default the range itself)
    count, so a run reports what it set aside, not the whole history.
    """

    def evaluate(data: CheckInput) -> tuple[bool, dict]:
        rows = data.lake.read(quarantine)
        if data.start is not None and quarantine.date_column in rows.columns:
            first, last = window(data.start, data.end) if window else (data.start, data.end)
            rows = rows.filter(pl.col(quarantine.date_column).is_between(first, last))
        reasons = dict(rows.group_by("reason").len().iter_rows()) if rows.height else {}
        return rows.is_empty(), {
            "quarantine_table": quarantine.path,
            "rows": rows.height,
            "reasons": dg.MetadataValue.json(reasons),
        }

    return Rule(name, f"no rows set aside in {quarantine.path}", evaluate, blocking=False)


class ChecksFailed(dg.Failure):
    """A blocking rule failed on a frame before its commit; nothing was written."""


class CheckSuite:
    """The rules of one table, as a pre-commit gate and as an unpartitioned Dagster check."""

    def __init__(
        self,
        name: str,
        table: Table,
        rules: Sequence[Rule],
        partitions_def: dg.PartitionsDefinition | None = None,
        whole_table: bool = False,
    ) -> None:
        """``whole_table``: the asset rewrites the whole table in every run, so its audit reads
        all of it even inside a ranged run (a range tag says nothing about what it wrote)."""
        self.name, self.table, self.rules = name, table, list(rules)
        self.partitions_def, self.whole_table = partitions_def, whole_table
        self.asset_key = dg.AssetKey(table.key_path)

    def evaluate(self, data: CheckInput) -> list[dg.AssetCheckResult]:
        results = []
        for rule in self.rules:
            passed, metadata = rule.evaluate(data)
            results.append(
                dg.AssetCheckResult(
                    asset_key=self.asset_key,
                    check_name=rule.name,
                    passed=passed,
                    severity=ERROR if rule.blocking else WARN,
                    metadata=metadata,
                )
            )
        return results

    def gate(self, data: CheckInput) -> dict:
        """Raise `ChecksFailed` if a blocking rule fails on ``data``; else metadata to record.

        Only blocking rules run here (the warnings are reported by the audit after the commit).
        """
        blocking = CheckSuite(self.name, self.table, [r for r in self.rules if r.blocking])
        results = blocking.evaluate(data)
        failed = [r for r in results if not r.passed]
        if failed:
            raise ChecksFailed(
                description=f"{self.table.path}: blocking checks failed before the commit, "
                f"nothing was written: {', '.join(r.check_name for r in failed)}",
                metadata={f"{r.check_name}.{k}": v for r in failed for k, v in r.metadata.items()},
            )
        return {"checked_before_commit": [r.check_name for r in results]}

    def asset_check(self) -> dg.AssetChecksDefinition:
        @dg.multi_asset_check(
            name=self.name,
            specs=[
                dg.AssetCheckSpec(
                    rule.name,
                    asset=self.asset_key,
                    description=rule.description,
                    blocking=rule.blocking,
                )
                for rule in self.rules
            ],
            compute_kind="pandera",
        )
        def audit(context: dg.AssetCheckExecutionContext, lake: LakeResource):
            data = rows_written(
                context, lake, self.table, self.partitions_def, whole_table=self.whole_table
            )
            context.log.info(f"auditing {data.frame.height} rows of {self.table.path}")
            yield from self.evaluate(data)

        audit.__doc__ = f"Audit what the run committed to {self.table.path}."
        return audit


def rows_written(
    context: dg.AssetCheckExecutionContext,
    lake: LakeIO,
    table: Table,
    partitions_def: dg.PartitionsDefinition | None = None,
    whole_table: bool = False,
) -> CheckInput:
    """The rows of ``table`` in the run's partition range (the whole table outside a range)."""
    op_context = context.op_execution_context
    if whole_table or table.date_column is None or not op_context.has_partition_key_range:
        frame = lake.read(table)
        return CheckInput(frame, lake)
    keys = op_context.partition_key_range
    start, end = partition_date(keys.start), partition_date(keys.end)
    if isinstance(partitions_def, dg.MonthlyPartitionsDefinition):
        end = (end.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    return CheckInput(lake.read_dates(table, start, end), lake, start, end)


# -- row rules and quarantine -------------------------------------------------------------------
def row_reasons(*rules: tuple[pl.Expr, str]) -> pl.Expr:
    """The reason of the first rule whose condition holds, else null (the row is good)."""
    expr = pl.lit(None, dtype=pl.String)
    for condition, reason in reversed(rules):
        expr = pl.when(condition.fill_null(True)).then(pl.lit(reason)).otherwise(expr)
    return expr


def source_quarantine(raw: pl.DataFrame, reasons: pl.Series, source_column: str) -> pl.DataFrame:
    """Rows of ``raw`` whose ``reasons`` entry is not null, as source-quarantine records."""
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
        schema=SOURCE_QUARANTINE_SCHEMA,
    )
