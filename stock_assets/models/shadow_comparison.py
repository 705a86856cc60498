"""``models/shadow_comparison``: the challenger against the champion on the same live days.

While a challenger differs from the champion, `gold/predictions` stores its scores in shadow
next to the champion's. Both are scored on exactly the same rows, daily rank IC per model, with
the paired Newey-West t of the difference (`gate.paired_rank_ic`, the gate's own test). Only
days whose outcome was fully known before the decision date count (the label's h sessions
included): a verdict never reads an outcome that arrives at or after it. Promotion reads the
result: with enough such days, a challenger is promoted only if it beat the champion live by the
gate's threshold; "not lower" is not evidence.
"""

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.models import gate
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.models.labels import forward_returns, normalise_cross_section
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import today_utc
from stock_assets.table_assets import table_key

SHADOW_KEY = dg.AssetKey(["models", "shadow_comparison"])
MIN_SHARED_DAYS = 10
KEY = ["instrument", "date"]


def compare(predictions: pl.DataFrame, bars: pl.DataFrame, decision: dt.date) -> pl.DataFrame:
    """Per (challenger version, champion version): the paired comparison over the shadow days
    whose label was known before ``decision`` (rows and bars dated later are not read)."""
    predictions = predictions.filter(pl.col("date") < decision)
    shadow = predictions.filter(pl.col("role") == "challenger")
    if shadow.is_empty():
        return pl.DataFrame()
    horizon = int(shadow["horizon"].max())
    realised = forward_returns(bars.filter(pl.col("date") < decision), horizon).filter(
        pl.col("label_known_on") < decision
    )
    pairs = (
        shadow.select(*KEY, "in_universe", "model_version", "prediction")
        .join(
            predictions.filter(pl.col("role") == "champion").select(
                *KEY, pl.col("model_version").alias("champion_version"),
                pl.col("prediction").alias("champion_prediction"),
            ),
            on=KEY,
        )
        .join(realised.select(*KEY, "forward_return"), on=KEY)
        .filter(pl.col("in_universe").fill_null(False) & pl.col("forward_return").is_not_null())
    )  # fmt: skip
    labelled = normalise_cross_section(pairs, "forward_return", "rank_gauss", "label")
    rows = []
    for (challenger, champion), group in labelled.group_by("model_version", "champion_version"):
        paired = gate.paired_rank_ic(group, horizon)
        rows.append(
            {
                "challenger_version": challenger,
                "champion_version": champion,
                "shared_days": paired.days,
                "challenger_rank_ic": paired.challenger_rank_ic,
                "champion_rank_ic": paired.champion_rank_ic,
                "mean_difference": paired.mean_difference,
                "difference_nw_t_stat": paired.t_stat,
                "nw_lags": paired.lags,
                "first_day": str(paired.first_day),
                "last_day": str(paired.last_day),
                "decision_date": decision.isoformat(),
            }
        )
    return pl.DataFrame(rows).sort("challenger_version", "champion_version")


def shadow_results(lake: LakeResource, decision: dt.date | None = None) -> pl.DataFrame:
    """The shadow comparison as of ``decision`` (default today; empty before any shadow)."""
    decision = decision or today_utc()
    if not lake.exists(tables.GOLD_PREDICTIONS):
        return pl.DataFrame()
    predictions = lake.scan(tables.GOLD_PREDICTIONS).filter(pl.col("date") < decision).collect()
    if predictions.filter(pl.col("role") == "challenger").is_empty():
        return pl.DataFrame()
    window = pl.col("date").is_between(predictions["date"].min(), decision, closed="left")
    bars = lake.scan(tables.ADJUSTED_DAILY_BARS).filter(window).collect()
    return compare(predictions, bars, decision)


def live_verdict(
    comparison: pl.DataFrame,
    version: str,
    min_t: float = gate.MIN_T,
    min_days: int = MIN_SHARED_DAYS,
) -> tuple[bool, str]:
    """Whether shadow evidence allows promoting ``version``.

    The rule: with fewer than ``min_days`` known shadow days against a champion there is no
    live evidence and the out-of-sample gate's verdict stands; with enough, the paired t must
    reach ``min_t`` against every champion it shadowed that long.
    """
    if comparison.is_empty():
        return True, "no shadow days known before the decision"
    mine = comparison.filter(
        (pl.col("challenger_version") == version) & (pl.col("shared_days") >= min_days)
    )
    if mine.is_empty():
        return True, f"fewer than {min_days} shadow days with outcomes known before the decision"
    short = mine.filter(~(pl.col("difference_nw_t_stat") >= min_t))  # NaN counts as short
    row = (short if not short.is_empty() else mine).row(0, named=True)
    evidence = (
        f"against champion v{row['champion_version']} over {row['shared_days']} days before "
        f"{row['decision_date']}: rank IC {row['challenger_rank_ic']:+.4f} vs "
        f"{row['champion_rank_ic']:+.4f}, paired Newey-West t ({row['nw_lags']} lags) "
        f"{row['difference_nw_t_stat']:+.2f}"
    )
    if short.is_empty():
        return True, f"beat the champion live {evidence} >= {min_t}"
    return False, f"no live evidence of beating the champion {evidence} < {min_t}"


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
    decision = today_utc()
    comparison = shadow_results(lake, decision)
    return dg.MaterializeResult(
        metadata={
            "pairs": comparison.height,
            "outcomes_known_before": decision.isoformat(),
            "comparison": dg.MetadataValue.json(comparison.to_dicts()),
        }
    )
