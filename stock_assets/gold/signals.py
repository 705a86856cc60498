"""``gold/signals``: the champion's predictions turned into positions, with the rule that did it.

Each session ranks the champion's predictions over that day's universe (index members only) and
goes long the top k and short the bottom k, equal weight, +1/k and -1/k of capital; the rest get
side "none" and weight 0. With fewer than 2k members, k shrinks to half of them.
"""

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.partitions import run_dates, trading_day_partitions
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_asset


class SignalConfig(dg.Config):
    top_k: int = 20


def rank_signals(predictions: pl.DataFrame, top_k: int) -> pl.DataFrame:
    """Champion rows of index members -> one signal row each (rank 1 = highest prediction)."""
    members = predictions.filter(
        (pl.col("role") == "champion") & pl.col("in_universe").fill_null(False)
    )
    count = pl.len().over("date")
    k = pl.min_horizontal(pl.lit(top_k), count // 2)
    rank = pl.col("prediction").rank("ordinal", descending=True).over("date").cast(pl.Int32)
    side = (
        pl.when((rank <= k) & (k > 0))
        .then(pl.lit("long"))
        .when((rank > count - k) & (k > 0))
        .then(pl.lit("short"))
        .otherwise(pl.lit("none"))
    )
    return (
        members.with_columns(rank=rank, k=k)
        .with_columns(side=side)
        .with_columns(
            weight=pl.when(pl.col("side") == "long")
            .then(1.0 / pl.col("k"))
            .when(pl.col("side") == "short")
            .then(-1.0 / pl.col("k"))
            .otherwise(0.0),
            rule=pl.format(
                "long top {} / short bottom {} of {} index members by champion prediction, "
                "equal weight",
                pl.col("k"),
                pl.col("k"),
                count,
            ),
        )
        .sort("date", "rank")
        .select(list(tables.GOLD_SIGNALS.schema))
    )


@table_asset(
    tables.GOLD_SIGNALS,
    group=MODELS_GROUP,
    deps=[tables.GOLD_PREDICTIONS],
    partitions_def=trading_day_partitions(),
)
def signals(
    context: dg.AssetExecutionContext, config: SignalConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """Rank the selected sessions' champion predictions into long/short positions."""
    start, end = run_dates(context)
    frame = rank_signals(lake.read_dates(tables.GOLD_PREDICTIONS, start, end), config.top_k)
    version = lake.overwrite_dates(tables.GOLD_SIGNALS, frame, start, end)
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "sessions": frame["date"].n_unique(),
            "long": int((frame["side"] == "long").sum()),
            "short": int((frame["side"] == "short").sum()),
            "rule": frame["rule"][0] if frame.height else "no champion predictions",
            "delta_version": version,
        }
    )
