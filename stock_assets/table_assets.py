"""Asset declarations from catalog entries: the key, path metadata and kinds come from the table."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from stock_assets.tables import Table


def table_key(table: Table) -> dg.AssetKey:
    """Asset keys mirror Delta paths: ``bronze/market_bars`` -> ``["bronze", "market_bars"]``."""
    return dg.AssetKey(table.key_path)


def table_asset(
    table: Table,
    *,
    group: str,
    deps: Sequence[Table | dg.AssetDep] = (),
    partitions_def: dg.PartitionsDefinition | None = None,
    freshness_policy: dg.FreshnessPolicy | None = None,
    extra_metadata: dict | None = None,
    **kwargs,
):
    """``@dg.asset`` for a table this project writes itself (Delta, polars, MaterializeResult).

    Partitioned tables are rebuilt in bulk as one run per range (single-run backfills), never
    one run per session.
    """
    metadata = {"delta_path": table.path, **(extra_metadata or {})}
    if table.schema:  # the catalog's columns, types and (where given) units, in the UI
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[
                dg.TableColumn(name, str(dtype), description=table.columns.get(name))
                for name, dtype in table.schema.items()
            ]
        )
    if table.partition_by:
        metadata["delta_partition_columns"] = list(table.partition_by)
    return dg.asset(
        key=table_key(table),
        deps=[dep if isinstance(dep, dg.AssetDep) else table_key(dep) for dep in deps],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        group_name=group,
        kinds={"polars", "delta"},
        freshness_policy=freshness_policy,
        metadata=metadata,
        **kwargs,
    )
