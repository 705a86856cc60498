"""How good are the predictions: daily IC, a cost-aware top-k portfolio, and its risk metrics.

Pure functions over polars frames and numpy arrays (no Dagster, no MLflow), so the training
code, an asset and a notebook compute the same figures. The return metrics are written here in
numpy on purpose (one dependency fewer in the serving path); the tests pin each one to
empyrical's function on the same series.

Timing convention: a prediction dated t uses features known at the close of t; the portfolio
formed from it at that close earns the realised 1-session forward return of t (close t to close
t+1, `labels.forward_returns(bars, 1)`), so the return row dated t is earned over (t, t+1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

TRADING_DAYS = 252
BUY_COST = 5e-4  # 5 bp of the traded value on buys
SELL_COST = 15e-4  # 15 bp on sells (commission plus stamp duty / fees on the sell side)


# -- information coefficient ------------------------------------------------------------------
def daily_ic(
    frame: pl.DataFrame, prediction: str = "prediction", label: str = "label"
) -> pl.DataFrame:
    """Per date: Pearson IC, rank IC (Spearman: Pearson of average-tie ranks) and row count.

    Rows with a null prediction or label are left out; a date with fewer than three rows or a
    constant column gets null (no correlation is defined), which the summaries skip.
    """
    pair = frame.filter(pl.col(prediction).is_not_null() & pl.col(label).is_not_null())
    pred, real = pl.col(prediction), pl.col(label)
    return (
        pair.group_by("date")
        .agg(
            ic=pl.corr(pred, real),
            rank_ic=pl.corr(pred.rank("average"), real.rank("average")),
            rows=pl.len(),
        )
        .with_columns(
            pl.when((pl.col("rows") >= 3) & pl.col(c).is_finite()).then(pl.col(c)).alias(c)
            for c in ("ic", "rank_ic")
        )
        .sort("date")
    )


@dataclass(frozen=True)
class ICSummary:
    """Mean, std (ddof 1), ICIR = mean/std, t = mean/std*sqrt(n), over n days with a value.

    ``nw_t_stat`` is the same mean over its Newey-West standard error: h-day labels overlap, so
    neighbouring daily ICs share h-1 days of returns and the plain t overstates the evidence.
    """

    mean: float
    std: float
    icir: float
    t_stat: float
    days: int
    nw_t_stat: float = math.nan
    nw_lags: int = 0

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{name}": float(value) for name, value in asdict(self).items()}


def newey_west_variance(values: np.ndarray, lags: int) -> float:
    """HAC variance of the mean: Bartlett weights 1 - j/(lags+1), no small-sample factor."""
    n = values.size
    centred = values - values.mean()
    long_run = centred @ centred / n
    for j in range(1, min(lags, n - 1) + 1):
        long_run += 2 * (1 - j / (lags + 1)) * (centred[j:] @ centred[:-j]) / n
    return float(long_run / n)


def newey_west_t(values: np.ndarray, lags: int) -> float:
    """Mean over its HAC standard error (`newey_west_variance`)."""
    if values.size < 2:
        return math.nan
    variance = newey_west_variance(values, lags)
    return float(values.mean() / math.sqrt(variance)) if variance > 0 else math.nan


def summarize_ic(values: pl.Series | np.ndarray | list[float], lags: int = 0) -> ICSummary:
    """Summary of a daily IC series (nulls and NaN skipped); ``lags``: label horizon - 1."""
    series = pl.Series(values, dtype=pl.Float64).drop_nulls().drop_nans()
    days = series.len()
    if days == 0:
        return ICSummary(math.nan, math.nan, math.nan, math.nan, 0, math.nan, lags)
    mean = float(series.mean())
    std = float(series.std(ddof=1)) if days > 1 else math.nan
    icir = mean / std if std and std > 0 else math.nan
    nw = newey_west_t(series.to_numpy(), lags)
    return ICSummary(mean, std, icir, icir * math.sqrt(days), days, nw, lags)


def ic_report(
    frame: pl.DataFrame, prediction: str = "prediction", label: str = "label", lags: int = 0
) -> dict[str, ICSummary]:
    """`summarize_ic` of the daily IC and rank IC: {"ic": ..., "rank_ic": ...}."""
    daily = daily_ic(frame, prediction, label)
    return {
        "ic": summarize_ic(daily["ic"], lags),
        "rank_ic": summarize_ic(daily["rank_ic"], lags),
    }


# -- sanity predictions -----------------------------------------------------------------------
def label_as_prediction(
    frame: pl.DataFrame, label: str = "label", noise: float = 0.0, seed: int = 0
) -> pl.DataFrame:
    """The label itself (plus ``noise`` times a standard normal) as the prediction: an oracle.

    Its rank IC must be ~1; anything less means the evaluation misaligns rows or dates.
    """
    rng = np.random.default_rng(seed)
    jitter = pl.Series(rng.standard_normal(frame.height) * noise)
    return frame.with_columns(prediction=pl.col(label) + jitter)


def shuffled_prediction(frame: pl.DataFrame, label: str = "label", seed: int = 0) -> pl.DataFrame:
    """The label shuffled among the rows of each date: rank IC must be ~0 on average.

    Each date gets its own permutation (ordering by a random key): ``shuffle(seed).over("date")``
    applies one and the same permutation to every date of the same size, which on a fixed
    cross-section turned a null into rank IC -0.05 (t -18).
    """
    key = np.random.default_rng(seed).random(frame.height)
    return (
        frame.sort("date", "instrument")
        .with_columns(pl.Series("_shuffle_key", key))
        .with_columns(prediction=pl.col(label).sort_by("_shuffle_key").over("date"))
        .drop("_shuffle_key")
    )


# -- return metrics (annualised over 252 sessions, risk-free rate 0) --------------------------
def _clean(returns: np.ndarray | pl.Series | list[float]) -> np.ndarray:
    array = np.asarray(returns, dtype=np.float64)
    return array[~np.isnan(array)]


def cumulative_return(returns) -> float:
    """Compounded total return: prod(1 + r) - 1 (empyrical.cum_returns_final)."""
    r = _clean(returns)
    return float(np.prod(1.0 + r) - 1.0) if r.size else math.nan


def annual_return(returns, periods: int = TRADING_DAYS) -> float:
    """Compound annual growth rate: (1 + total)^(periods / n) - 1 (empyrical.annual_return)."""
    r = _clean(returns)
    return float((1.0 + cumulative_return(r)) ** (periods / r.size) - 1.0) if r.size else math.nan


def annual_volatility(returns, periods: int = TRADING_DAYS) -> float:
    """Sample std (ddof 1) times sqrt(periods) (empyrical.annual_volatility)."""
    r = _clean(returns)
    return float(np.std(r, ddof=1) * math.sqrt(periods)) if r.size > 1 else math.nan


def sharpe_ratio(returns, periods: int = TRADING_DAYS) -> float:
    """mean / std (ddof 1) * sqrt(periods), risk-free 0 (empyrical.sharpe_ratio)."""
    r = _clean(returns)
    if r.size < 2:
        return math.nan
    std = np.std(r, ddof=1)
    return float(np.mean(r) / std * math.sqrt(periods)) if std > 0 else math.nan


def max_drawdown(returns) -> float:
    """Worst fall of compounded wealth from its running peak, the start counting as a peak
    (a negative number, 0 when wealth never falls; empyrical.max_drawdown)."""
    r = _clean(returns)
    if not r.size:
        return math.nan
    wealth = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    peak = np.maximum.accumulate(wealth)
    return float(np.min((wealth - peak) / peak))


@dataclass(frozen=True)
class Performance:
    """Metrics of one daily net return series; ``mean_turnover`` counts the first day's build-up
    (1 for a long book, 2 for a long-short one)."""

    annual_return: float
    annual_volatility: float
    sharpe: float
    max_drawdown: float
    cumulative_return: float
    mean_turnover: float
    days: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{name}": float(value) for name, value in asdict(self).items()}


def performance(returns, turnover=None) -> Performance:
    """Every metric of one daily return series (``turnover``: the same days' turnover)."""
    r = _clean(returns)
    mean_turnover = float(np.mean(_clean(turnover))) if turnover is not None else math.nan
    return Performance(
        annual_return(r),
        annual_volatility(r),
        sharpe_ratio(r),
        max_drawdown(r),
        cumulative_return(r),
        mean_turnover,
        int(r.size),
    )


# -- portfolios -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Proportional costs on traded value: ``buy`` on weight increases, ``sell`` on decreases.

    Opening or adding to a short is a sell, covering one is a buy. The cost of the trades made
    at the close of t is subtracted from the return earned over (t, t+1]; the final liquidation
    is not charged.
    """

    buy: float = BUY_COST
    sell: float = SELL_COST


def _wide(frame: pl.DataFrame, column: str) -> tuple[list, list, np.ndarray]:
    """Dates x instruments matrix of ``column`` (NaN where a row is absent)."""
    wide = frame.pivot(on="instrument", index="date", values=column, sort_columns=True).sort("date")
    instruments = [c for c in wide.columns if c != "date"]
    matrix = wide.select(instruments).to_numpy().astype(np.float64)
    return wide["date"].to_list(), instruments, matrix


def simulate(weights: np.ndarray, returns: np.ndarray, costs: CostModel) -> dict[str, np.ndarray]:
    """Daily gross return, cost, net return and turnover of target weights held one session.

    Between rebalances the held weights drift with the returns (w_i (1 + r_i) / (1 + r_p)), so
    turnover is what must really be traded: sum |target - drifted| (buys plus sells, as a
    fraction of capital; a full switch of a long book is 2). A missing return counts as 0.
    """
    returns = np.nan_to_num(returns, nan=0.0)
    held = np.zeros(weights.shape[1])
    out = {name: np.zeros(weights.shape[0]) for name in ("gross", "cost", "net", "turnover")}
    for day, (target, realised) in enumerate(zip(weights, returns, strict=True)):
        trade = target - held
        bought, sold = trade[trade > 0].sum(), -trade[trade < 0].sum()
        gross = float(target @ realised)
        cost = bought * costs.buy + sold * costs.sell
        out["gross"][day], out["cost"][day] = gross, cost
        out["net"][day], out["turnover"][day] = gross - cost, bought + sold
        held = target * (1.0 + realised) / (1.0 + gross) if gross != -1.0 else target * 0.0
    return out


def top_k_weights(scores: np.ndarray, k: int, long_short: bool) -> np.ndarray:
    """Equal weights 1/k on the k highest scores of each row, and -1/k on the k lowest when
    ``long_short`` (k at most half the row then); ties go by column order; NaN is never held."""
    weights = np.zeros_like(scores)
    for day, row in enumerate(scores):
        valid = np.flatnonzero(~np.isnan(row))
        if valid.size == 0:
            continue
        take = min(k, valid.size // 2 if long_short else valid.size)
        order = valid[np.argsort(-row[valid], kind="stable")]
        weights[day, order[:take]] = 1.0 / take if take else 0.0
        if long_short and take:
            weights[day, order[::-1][:take]] = -1.0 / take
    return weights


def buy_and_hold_returns(first_day_members: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Equal weights on the first day's members, never rebalanced: each day's return is the
    value-weighted mean of the members' returns, the values drifting with them."""
    returns = np.nan_to_num(returns, nan=0.0)
    value = first_day_members.astype(np.float64)
    daily = np.zeros(returns.shape[0])
    for day, realised in enumerate(returns):
        daily[day] = float(value @ realised / value.sum())
        value = value * (1.0 + realised)
    return daily


def portfolio_returns(
    frame: pl.DataFrame,
    k: int,
    prediction: str = "prediction",
    realised: str = "forward_return",
    costs: CostModel | None = None,
) -> pl.DataFrame:
    """Daily returns of the top-k long book, the top-k minus bottom-k book and the benchmark.

    ``frame``: one row per (instrument, date) of the universe with ``prediction`` and the
    realised 1-session forward return ``realised``. Output per date: ``long_gross, long_cost,
    long_net, long_turnover``, the same for ``long_short_*`` (weights +1/k and -1/k, capital 1),
    and ``benchmark`` (`buy_and_hold_returns` of every instrument of the first date, no costs).
    """
    costs = costs or CostModel()
    dates, instruments, scores = _wide(frame, prediction)
    _, same, realised_returns = _wide(frame, realised)
    assert same == instruments
    columns: dict[str, object] = {"date": dates}
    for book, long_short in (("long", False), ("long_short", True)):
        result = simulate(top_k_weights(scores, k, long_short), realised_returns, costs)
        columns.update({f"{book}_{name}": values for name, values in result.items()})
    _, _, present = _wide(frame.with_columns(present=pl.lit(1.0)), "present")
    columns["benchmark"] = buy_and_hold_returns(~np.isnan(present[0]), realised_returns)
    return pl.DataFrame(columns)


def portfolio_report(daily: pl.DataFrame) -> dict[str, Performance]:
    """`performance` of the net long, net long-short and benchmark series of `portfolio_returns`."""
    return {
        "long": performance(daily["long_net"], daily["long_turnover"]),
        "long_short": performance(daily["long_short_net"], daily["long_short_turnover"]),
        "benchmark": performance(daily["benchmark"]),
    }
