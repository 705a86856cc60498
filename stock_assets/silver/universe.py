"""``silver/universe``: the index's members on every NYSE session (point-in-time universe).

`stock_assets.pit.restrict_to_members` keeps only the (ticker, date) rows whose ticker was in the
index that day, which is how training avoids survivorship bias (a universe fixed at one date keeps
only the survivors).
"""

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.calendar import trading_days
from stock_assets.checks import CheckInput, CheckSuite, Rule, schema_rule, unique_rule
from stock_assets.partitions import monthly_partitions, run_dates
from stock_assets.pit import members_on
from stock_assets.resources.lake import LakeResource
from stock_assets.silver import ALTDATA_GROUP, DAILY_REFRESH
from stock_assets.symbols import TICKER_PATTERN
from stock_assets.table_assets import table_asset

UNIVERSE_PARTITIONS = monthly_partitions("1990-01-01")  # the bundled price histories start 1990+
EXPECTED_MEMBERS = (450, 510)


def member_count(data: CheckInput) -> tuple[bool, dict]:
    low, high = EXPECTED_MEMBERS
    per_day = data.frame.group_by("date").len()
    odd = per_day.filter(~pl.col("len").is_between(low, high)).sort("date")
    return odd.is_empty(), {
        "sessions": per_day.height,
        "sessions_outside_range": odd.height,
        "expected_members": f"{low}..{high}",
        "sample": [f"{d}: {n}" for d, n in odd.head(10).iter_rows()],
    }


UNIVERSE_CHECKS = CheckSuite(
    "universe_checks",
    tables.UNIVERSE,
    [
        schema_rule(
            "universe_schema",
            pa.DataFrameSchema(
                {
                    "date": pa.Column(pl.Date, nullable=False),
                    "ticker": pa.Column(pl.String, pa.Check.str_matches(TICKER_PATTERN)),
                },
                name="universe",
            ),
            "symbols and dates well formed",
        ),
        unique_rule("universe_unique_member_day", ["date", "index", "ticker"]),
        Rule("universe_member_count", "450..510 members a session", member_count, False),
    ],
    UNIVERSE_PARTITIONS,
)


@table_asset(
    tables.UNIVERSE,
    group=ALTDATA_GROUP,
    deps=[tables.INDEX_MEMBERSHIP],
    partitions_def=UNIVERSE_PARTITIONS,
    freshness_policy=DAILY_REFRESH,
)
def universe(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Index members on every NYSE session of the selected months."""
    start, end = run_dates(context)
    membership_version = lake.version(tables.INDEX_MEMBERSHIP)
    intervals = (
        lake.read(tables.INDEX_MEMBERSHIP)  # empty: the table was never written
        if membership_version is None
        else lake.scan(tables.INDEX_MEMBERSHIP, membership_version).collect()
    )
    rows = members_on(intervals, trading_days(start, end))  # only intervals known each day
    checked = UNIVERSE_CHECKS.gate(CheckInput(rows, lake, start, end))
    version = lake.overwrite_dates(tables.UNIVERSE, rows, start, end)
    per_day = rows.group_by("date").len()
    return dg.MaterializeResult(
        metadata={
            "rows": rows.height,
            "sessions": per_day.height,
            "min_members": int(per_day["len"].min() or 0),
            "max_members": int(per_day["len"].max() or 0),
            "date_range": f"{start}..{end}",
            "index_membership_version": membership_version,
            "delta_version": version,
            **checked,
        }
    )
