"""``gold/backtest``: the stored signals traded, and the champion's predictions scored.

The books trade exactly the rows of ``gold/signals`` (same rule, sizes and dates: the signals
asset is the one place that ranks), rebalanced at each close after 5 bp buy / 15 bp sell costs:
the long leg (+1/k each) and the long-short book (+1/k, -1/k). A session of gold/signals is a
backtest day once its next NYSE session has bars. Every ranked member is held as ranked: a
position whose instrument has no bar on the next session earns its return up to its last price
(0 that session), then sits in cash and is sold at the next rebalance; those positions are
counted per day (``missing_outcomes``) and in the metadata, never dropped before ranking.

Thin sessions (too few names to rank, see `gold.signals`) have no signals, hence no backtest
day; the metadata lists the predicted sessions left out. The benchmark is equal-weight
buy-and-hold of the first day's ranked members on adjusted closes, across holes.

Realised returns are labels, so they are built here in memory from the adjusted bars and never
stored. The IC and rank IC score the ranked rows whose h-session outcome is known (the model's
horizon; rows without a bar at t+h are counted, not scored), with Newey-West t's of at least h
lags. The sanity runs (the label itself scored as a prediction, and the label shuffled within
each day) go through the same code.
"""

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.gold.signals import champion_members
from stock_assets.models.challenger import MODELS_GROUP
from stock_assets.models.evaluation import (
    book_returns,
    buy_and_hold_returns,
    daily_ic,
    ic_report,
    label_as_prediction,
    portfolio_report,
    shuffled_prediction,
    t_label,
)
from stock_assets.models.labels import forward_returns, normalise_cross_section, sessions_after
from stock_assets.resources.lake import LakeResource
from stock_assets.table_assets import table_asset

KEY = ["instrument", "date"]
FROM_PREDICTIONS = ["horizon", "lower", "upper", "interval_level"]


def traded_rows(signals: pl.DataFrame, predictions: pl.DataFrame, bars: pl.DataFrame):
    """The stored signal rows of sessions whose next session has bars, with the prediction's
    horizon and interval, the realised 1-session return ``next_return`` (null: no bar next
    session) and the h-session ``forward_return`` and its normalised ``label`` (null: unknown)."""
    bar_dates = set(bars["date"].unique().to_list())
    following = sessions_after(sorted(signals["date"].unique().to_list()), 1)
    known = [day for day, after in following.items() if after in bar_dates]
    rows = signals.filter(pl.col("date").is_in(known)).join(
        champion_members(predictions).select(*KEY, *FROM_PREDICTIONS), on=KEY, how="left"
    )
    if rows.is_empty():
        return rows
    horizon = int(rows["horizon"].max())
    one = forward_returns(bars, 1).select(*KEY, next_return="forward_return")
    ahead = forward_returns(bars, horizon).select(*KEY, "forward_return")
    rows = rows.join(one, on=KEY, how="left").join(ahead, on=KEY, how="left")
    rows = rows.with_columns(pl.col("next_return", "forward_return").fill_nan(None))
    return normalise_cross_section(rows, "forward_return", "rank_gauss", "label")


def benchmark_returns(rows: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """``date, benchmark``: buy-and-hold of the first day's ranked members on adjusted closes,
    the return of each backtest day t earned from t's close to the next session's."""
    first = rows["date"].min()
    members = rows.filter(pl.col("date") == first)["instrument"].unique().sort()
    closes = (
        bars.filter(pl.col("date") >= first, pl.col("instrument").is_in(members.implode()))
        .pivot(on="instrument", index="date", values="adj_close", sort_columns=True)
        .sort("date")
    )
    matrix = closes.drop("date").to_numpy()
    days = closes["date"]
    returns = pl.DataFrame({"date": days[:-1], "benchmark": buy_and_hold_returns(matrix)})
    return returns.filter(pl.col("date").is_in(rows["date"].unique().implode()))


def evaluate(rows: pl.DataFrame, bars: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """The daily table and the summary metadata (IC, books, coverage, sanity runs)."""
    horizon = int(rows["horizon"].max())
    scored = rows.filter(pl.col("label").is_not_null())
    ic = daily_ic(scored, "prediction", "label").select("date", "ic", "rank_ic")
    books = book_returns(rows, "weight", "next_return")
    per_day = rows.group_by("date").agg(
        names=pl.len().cast(pl.Int64),
        model_versions=pl.col("model_version").unique().sort().str.join(","),
    )
    daily = (
        books.join(benchmark_returns(rows, bars), on="date", how="left")
        .join(ic, on="date", how="left")
        .join(per_day, on="date", how="left")
        .with_columns(
            pl.col("missing_outcomes").cast(pl.Int64),
            horizon=pl.lit(horizon, pl.Int64),
            month=pl.col("date").dt.strftime("%Y-%m"),
        )
        .select(list(tables.GOLD_BACKTEST.schema))
    )
    summary = ic_report(scored, "prediction", "label", horizon=horizon)
    report = portfolio_report(daily)
    inside = scored.filter(pl.col("label").is_between(pl.col("lower"), pl.col("upper"))).height
    oracle = ic_report(label_as_prediction(scored, noise=0.1), "prediction", "label")["rank_ic"]
    shuffled = ic_report(shuffled_prediction(scored), "prediction", "label", horizon=horizon)
    held = rows.filter(pl.col("side") != "none")
    metadata = {
        "sessions": daily.height,
        "rows": rows.height,
        "positions": held.height,
        "positions_missing_next_bar": int(daily["missing_outcomes"].sum()),
        "rows_without_h_session_outcome": rows.height - scored.height,
        "horizon": horizon,
        "t_stat_shown": t_label(summary["rank_ic"].nw_lags),
        **{k: round(v, 6) for name, s in summary.items() for k, v in s.as_dict(name).items()},
        **{k: round(v, 6) for name, p in report.items() for k, v in p.as_dict(name).items()},
        "interval_coverage": round(inside / scored.height, 4) if scored.height else None,
        "interval_level": float(rows["interval_level"].max()),
        "sanity_label_as_prediction_rank_ic": round(oracle.mean, 4),
        "sanity_shuffled_label_rank_ic": round(shuffled["rank_ic"].mean, 4),
        "sanity_shuffled_label_rank_ic_nw_t": round(shuffled["rank_ic"].nw_t_stat, 2),
    }
    return daily, metadata


def thin_sessions(predictions: pl.DataFrame, signals: pl.DataFrame) -> pl.DataFrame:
    """``date, names``: predicted sessions (champion, index members) the signals did not rank."""
    names = champion_members(predictions).group_by("date").agg(names=pl.len())
    return names.join(signals.select("date").unique(), on="date", how="anti").sort("date")


@table_asset(
    tables.GOLD_BACKTEST,
    group=MODELS_GROUP,
    deps=[
        dg.AssetDep(dg.AssetKey(table.key_path), partition_mapping=dg.AllPartitionMapping())
        for table in (tables.GOLD_PREDICTIONS, tables.GOLD_SIGNALS, tables.ADJUSTED_DAILY_BARS)
    ],
)
def backtest(lake: LakeResource) -> dg.MaterializeResult:
    """Trade every stored signal whose next session has bars, and score the predictions."""
    predictions = lake.read(tables.GOLD_PREDICTIONS)
    signals = lake.read(tables.GOLD_SIGNALS)
    if signals.is_empty():
        raise dg.Failure("gold/signals holds no session yet (or every session was too thin)")
    first = signals["date"].min()
    bars = lake.scan(tables.ADJUSTED_DAILY_BARS).filter(pl.col("date") >= first).collect()
    rows = traded_rows(signals, predictions, bars)
    if rows.is_empty():
        raise dg.Failure("no signal session has its next session in the lake yet")
    daily, metadata = evaluate(rows, bars)
    thin = thin_sessions(predictions, signals)
    version = lake.replace_table(tables.GOLD_BACKTEST, daily)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "thin_sessions_left_out": thin.height,
            "thin_session_names": dg.MetadataValue.json({str(d): n for d, n in thin.iter_rows()}),
            "delta_version": version,
        }
    )
