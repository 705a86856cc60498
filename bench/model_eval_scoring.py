"""Scoring of one prediction series in `model_evaluation.py`: IC figures and the books.

Imported by plain name from bench/ (the entry script puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from model_eval_sets import KEY, Plan, SetData

from stock_assets.models.evaluation import (
    CostModel,
    Performance,
    daily_ic,
    hac_lags,
    newey_west_variance,
    performance,
    portfolio_report,
    portfolio_returns,
    simulate,
    summarize_ic,
)


@dataclass
class Score:
    """IC figures of one prediction series over the scored test rows that have a label.

    Cross-sectional sets: the daily IC / rank IC over that day's universe (`evaluation.daily_ic`),
    mean over days, ICIR, Newey-West t's (`evaluation.summarize_ic`). Few-name sets: per name,
    the correlation over time of its test rows (ranks for the rank IC), pooled over names
    weighted by rows, with Newey-West t's of the same figure. Every t is a Newey-West t:
    ``*_nw_t`` with ``nw_lags`` = `evaluation.hac_lags` (at least the horizon) of the test
    days, ``rank_ic_nw_long_t`` with ``long_lags`` (`Plan.long_lags`: 20 days, 252 rows of a
    name), for persistent predictors meeting slow regimes in returns (on MSFT a model trained
    on shuffled labels scored t -3.1 with 4 lags).
    """

    rank_ic: float
    rank_ic_nw_t: float
    rank_ic_nw_long_t: float
    icir: float
    ic: float
    ic_nw_t: float
    n: int  # days (cross-sectional) or rows (time series)
    unit: str
    nw_lags: int
    long_lags: int
    per_name: dict[str, dict[str, float]] = field(default_factory=dict)


def time_series_ic(
    frame: pl.DataFrame, lags: tuple[int, int], ranks: bool
) -> tuple[float, list[float], dict]:
    """(correlation, its Newey-West variances for each of ``lags``, per name) of prediction and
    label over time, per name: the mean of the products of both standardised (ranked first
    when ``ranks``), which is the Pearson (Spearman) correlation; pooled over names weighted
    by their rows."""
    pair = frame.filter(pl.col("prediction").is_not_null() & pl.col("label").is_not_null())
    per_name, total, weighted, variance = {}, 0, 0.0, np.zeros(len(lags))
    for (name,), one in pair.sort(KEY).group_by("instrument", maintain_order=True):
        x, y = (one[c].to_numpy().astype(np.float64) for c in ("prediction", "label"))
        if ranks:
            x, y = (pl.Series(v).rank("average").to_numpy() for v in (x, y))
        if x.size < 20 or x.std() == 0 or y.std() == 0:
            continue
        u = (x - x.mean()) / x.std() * (y - y.mean()) / y.std()
        v = np.array([newey_west_variance(u, lag) for lag in lags])
        t = u.mean() / np.sqrt(v)
        per_name[name] = {"ic": float(u.mean()), "nw_t": float(t[0]), "nw_long_t": float(t[1]),
                          "rows": int(u.size)}  # fmt: skip
        total += u.size
        weighted += u.mean() * u.size
        variance += v * u.size**2
    if not total:
        return math.nan, [math.nan, math.nan], per_name
    return weighted / total, list(variance / total**2), per_name


def score(frame: pl.DataFrame, plan: Plan) -> Score:
    """``frame``: instrument, date, prediction, label (the labelled test rows)."""
    days = frame.filter(pl.col("label").is_not_null())["date"].n_unique()
    lags = (hac_lags(plan.split.horizon, days), plan.long_lags)
    if plan.cross_sectional:
        daily = daily_ic(frame)
        rank, ic = summarize_ic(daily["rank_ic"], lags[0]), summarize_ic(daily["ic"], lags[0])
        return Score(
            rank.mean, rank.nw_t_stat, summarize_ic(daily["rank_ic"], lags[1]).nw_t_stat,
            rank.icir, ic.mean, ic.nw_t_stat, rank.days, "days", *lags,
        )  # fmt: skip
    rank, rank_var, per_name = time_series_ic(frame, lags, ranks=True)
    ic, ic_var, _ = time_series_ic(frame, lags, ranks=False)
    rows = sum(v["rows"] for v in per_name.values())
    return Score(
        rank, rank / math.sqrt(rank_var[0]), rank / math.sqrt(rank_var[1]), math.nan, ic,
        ic / math.sqrt(ic_var[0]), rows, "rows", *lags, per_name,
    )  # fmt: skip


# -- books ------------------------------------------------------------------------------------
def timing_book(frame: pl.DataFrame) -> dict[str, Performance]:
    """Few-name sets: each day equal weights on the names predicted to rise (else cash), and an
    always-long equal-weight book as the benchmark, both through `evaluation.simulate`."""
    wide_pred = frame.pivot(on="instrument", index="date", values="prediction", sort_columns=True)
    wide_pred = wide_pred.sort("date")
    names = [c for c in wide_pred.columns if c != "date"]
    realised = (
        frame.pivot(on="instrument", index="date", values="forward_return", sort_columns=True)
        .sort("date")
        .select(names)
        .to_numpy()
        .astype(np.float64)
    )
    scores = wide_pred.select(names).to_numpy().astype(np.float64)
    present = ~np.isnan(scores)
    count = np.maximum(present.sum(axis=1, keepdims=True), 1)
    long = np.where(present & (scores > 0), 1.0, 0.0) / count
    always = present / count
    result = {}
    for book, weights in (("long", long), ("benchmark", always)):
        run = simulate(weights, realised, CostModel())
        result[book] = performance(run["net"], run["turnover"])
    return result


def book_report(frame: pl.DataFrame, plan: Plan) -> dict[str, Performance]:
    """``frame``: universe rows of the test slices with prediction and 1-session return."""
    if plan.cross_sectional:
        return portfolio_report(portfolio_returns(frame, plan.k))
    return timing_book(frame)


def scored(data: SetData, pred: pl.DataFrame) -> tuple[Score, dict[str, Performance]]:
    """IC figures on the labelled test rows and the books on the test slices' members of a
    prediction series (``instrument, date, prediction``; rows it lacks count as missing)."""
    prediction = pred.select(*KEY, "prediction")
    on_labels = data.test_rows.select(*KEY, "fold", "label").join(prediction, on=KEY, how="left")
    on_book = data.book_rows.select(*KEY, "forward_return").join(prediction, on=KEY, how="left")
    return score(on_labels, data.plan), book_report(on_book, data.plan)
