"""``gold/backtest``: how the stored champion predictions did, once the outcome is known.

Realised returns are labels, so they are built here in memory from the adjusted bars and never
stored next to the predictions. Every session whose next-session return is known gets its IC
and rank IC (against the prediction's own horizon) and the returns of two books rebalanced at
each close, after 5 bp buy / 15 bp sell costs: the top k, and top k minus bottom k; the benchmark
is equal-weight buy-and-hold of the first session's universe. The sanity runs (the label itself
scored as a prediction, and the label shuffled within each day) go through the same code.
"""

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.models.evaluation import (
    daily_ic,
    ic_report,
    label_as_prediction,
    portfolio_report,
    portfolio_returns,
    shuffled_prediction,
)
from stock_assets.models.labels import forward_returns, normalise_cross_section
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_asset

KEY = ["instrument", "date"]


class BacktestConfig(dg.Config):
    top_k: int = 20


def realised(predictions: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Champion rows of index members with their realised returns (1 session and the model's
    horizon) and the normalised label; rows whose outcome is not known yet are dropped."""
    horizon = int(predictions["horizon"].max())
    one = forward_returns(bars, 1).select(*KEY, pl.col("forward_return").alias("next_return"))
    ahead = forward_returns(bars, horizon).select(*KEY, "forward_return")
    rows = (
        predictions.filter((pl.col("role") == "champion") & pl.col("in_universe").fill_null(False))
        .join(one, on=KEY)
        .join(ahead, on=KEY)
        .filter(pl.col("next_return").is_not_null() & pl.col("forward_return").is_not_null())
    )
    return normalise_cross_section(rows, "forward_return", "rank_gauss", "label")


def evaluate(rows: pl.DataFrame, top_k: int) -> tuple[pl.DataFrame, dict]:
    """The daily table and the summary metadata (IC, books, coverage, sanity runs)."""
    ic = daily_ic(rows, "prediction", "label").select("date", "ic", "rank_ic")
    books = portfolio_returns(rows, top_k, realised="next_return")
    versions = rows.group_by("date").agg(
        pl.col("model_version").unique().sort().str.join(",").alias("model_versions")
    )
    daily = (
        books.join(ic, on="date", how="left")
        .join(versions, on="date", how="left")
        .with_columns(pl.col("date").dt.strftime("%Y-%m").alias("month"))
        .select(list(tables.GOLD_BACKTEST.schema))
    )
    lags = int(rows["horizon"].max()) - 1 if rows.height else 0  # overlapping labels
    summary = ic_report(rows, "prediction", "label", lags)
    report = portfolio_report(books)
    inside = rows.filter(pl.col("label").is_between(pl.col("lower"), pl.col("upper"))).height
    oracle = ic_report(label_as_prediction(rows, noise=0.1), "prediction", "label")["rank_ic"]
    shuffled = ic_report(shuffled_prediction(rows), "prediction", "label")["rank_ic"]
    metadata = {
        "sessions": daily.height,
        "rows": rows.height,
        **{k: round(v, 6) for name, s in summary.items() for k, v in s.as_dict(name).items()},
        **{k: round(v, 6) for name, p in report.items() for k, v in p.as_dict(name).items()},
        "interval_coverage": round(inside / rows.height, 4) if rows.height else None,
        "interval_level": float(rows["interval_level"].max()) if rows.height else None,
        "sanity_label_as_prediction_rank_ic": round(oracle.mean, 4),
        "sanity_shuffled_label_rank_ic": round(shuffled.mean, 4),
        "sanity_shuffled_label_rank_ic_t": round(shuffled.t_stat, 2),
    }
    return daily, metadata


@table_asset(
    tables.GOLD_BACKTEST,
    group=MODELS_GROUP,
    deps=[
        dg.AssetDep(
            dg.AssetKey(tables.GOLD_PREDICTIONS.key_path),
            partition_mapping=dg.AllPartitionMapping(),
        ),
        dg.AssetDep(
            dg.AssetKey(tables.ADJUSTED_DAILY_BARS.key_path),
            partition_mapping=dg.AllPartitionMapping(),
        ),
    ],
)
def backtest(config: BacktestConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Score every stored champion prediction whose outcome is known, and simulate the books."""
    predictions = lake.read(tables.GOLD_PREDICTIONS)
    if predictions.filter(pl.col("role") == "champion").is_empty():
        raise dg.Failure("gold/predictions holds no champion prediction yet")
    first = predictions["date"].min()
    bars = lake.scan(tables.ADJUSTED_DAILY_BARS).filter(pl.col("date") >= first).collect()
    rows = realised(predictions, bars)
    if rows.is_empty():
        raise dg.Failure("no prediction has a known outcome yet (next session not in the lake)")
    daily, metadata = evaluate(rows, config.top_k)
    version = lake.replace_table(tables.GOLD_BACKTEST, daily)
    return dg.MaterializeResult(metadata={**metadata, "delta_version": version})
