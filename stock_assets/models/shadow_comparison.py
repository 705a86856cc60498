"""``models/shadow_comparison``: the challenger against the champion on the same live days.

While a challenger differs from the champion, `gold/predictions` stores its scores in shadow
next to the champion's. Once those days' outcomes are known, both are scored on exactly the same
rows: daily rank IC per model, and the paired difference with its t-statistic. Promotion reads
the result: a challenger that did worse live than the champion over enough shared days is not
promoted, whatever its validation said.
"""

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.models.evaluation import daily_ic, summarize_ic
from stock_assets.models.labels import forward_returns, normalise_cross_section
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_key

SHADOW_KEY = dg.AssetKey(["models", "shadow_comparison"])
MIN_SHARED_DAYS = 10
KEY = ["instrument", "date"]


def compare(predictions: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Per (challenger version, champion version): shared days and realised rank ICs."""
    shadow = predictions.filter(pl.col("role") == "challenger")
    if shadow.is_empty():
        return pl.DataFrame()
    horizon = int(shadow["horizon"].max())
    realised = forward_returns(bars, horizon).select(*KEY, "forward_return")
    pairs = (
        shadow.select(*KEY, "in_universe", "model_version", "prediction")
        .join(
            predictions.filter(pl.col("role") == "champion").select(
                *KEY, pl.col("model_version").alias("champion_version"),
                pl.col("prediction").alias("champion_prediction"),
            ),
            on=KEY,
        )
        .join(realised, on=KEY)
        .filter(pl.col("in_universe").fill_null(False) & pl.col("forward_return").is_not_null())
    )  # fmt: skip
    labelled = normalise_cross_section(pairs, "forward_return", "rank_gauss", "label")
    rows = []
    for (challenger, champion), group in labelled.group_by("model_version", "champion_version"):
        mine = daily_ic(group, "prediction", "label").select("date", "rank_ic")
        theirs = daily_ic(group, "champion_prediction", "label").select(
            "date", pl.col("rank_ic").alias("champion_rank_ic")
        )
        days = mine.join(theirs, on="date").drop_nulls()
        difference = summarize_ic(days["rank_ic"] - days["champion_rank_ic"], horizon - 1)
        rows.append(
            {
                "challenger_version": challenger,
                "champion_version": champion,
                "shared_days": days.height,
                "challenger_rank_ic": days["rank_ic"].mean(),
                "champion_rank_ic": days["champion_rank_ic"].mean(),
                "difference_t_stat": difference.t_stat,
                "difference_nw_t_stat": difference.nw_t_stat,  # overlapping labels
            }
        )
    return pl.DataFrame(rows).sort("challenger_version", "champion_version")


def shadow_results(lake: LakeResource) -> pl.DataFrame:
    """The shadow comparison as of now (empty before any prediction)."""
    if not lake.exists(tables.GOLD_PREDICTIONS):
        return pl.DataFrame()
    predictions = lake.read(tables.GOLD_PREDICTIONS)
    if predictions.filter(pl.col("role") == "challenger").is_empty():
        return pl.DataFrame()
    first = predictions["date"].min()
    bars = lake.scan(tables.ADJUSTED_DAILY_BARS).filter(pl.col("date") >= first).collect()
    return compare(predictions, bars)


def live_verdict(comparison: pl.DataFrame, version: str) -> tuple[bool, str]:
    """Whether shadow evidence allows promoting ``version`` (no evidence allows it)."""
    if comparison.is_empty():
        return True, "no shadow days"
    mine = comparison.filter(
        (pl.col("challenger_version") == version) & (pl.col("shared_days") >= MIN_SHARED_DAYS)
    )
    if mine.is_empty():
        return True, f"fewer than {MIN_SHARED_DAYS} shadow days with known outcomes"
    worse = mine.filter(pl.col("challenger_rank_ic") < pl.col("champion_rank_ic"))
    if worse.is_empty():
        return True, "not worse than the champion on the shadow days"
    row = worse.row(0, named=True)
    return False, (
        f"worse live than champion v{row['champion_version']} over {row['shared_days']} days: "
        f"rank IC {row['challenger_rank_ic']:+.4f} vs {row['champion_rank_ic']:+.4f}"
    )


@dg.asset(
    key=SHADOW_KEY,
    deps=[
        dg.AssetDep(table_key(t), partition_mapping=dg.AllPartitionMapping())
        for t in (tables.GOLD_PREDICTIONS, tables.ADJUSTED_DAILY_BARS)
    ],
    group_name=MODELS_GROUP,
    kinds={"polars"},
)
def shadow_comparison(lake: LakeResource) -> dg.MaterializeResult:
    """Realised rank IC of each shadow challenger against the champion on the same rows."""
    comparison = shadow_results(lake)
    return dg.MaterializeResult(
        metadata={
            "pairs": comparison.height,
            "comparison": dg.MetadataValue.json(comparison.to_dicts()),
        }
    )
