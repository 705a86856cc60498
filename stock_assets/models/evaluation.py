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

from stock_assets.models.ranking import position_weights  # the one ranking rule

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

    ``nw_t_stat`` is the same mean over its Newey-West standard error with ``nw_lags`` lags:
    h-day labels overlap, so neighbouring daily ICs share days of returns and the plain t
    overstates the evidence. The t shown to users is ``nw_t_stat`` (`hac_lags` picks the lags).
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

    @property
    def t_label(self) -> str:
        """How the shown t was computed, e.g. "Newey-West t, 5 lags"."""
        return t_label(self.nw_lags)


def t_label(lags: int) -> str:
    return f"Newey-West t, {lags} lag{'s' if lags != 1 else ''}"


def hac_lags(horizon: int, days: int) -> int:
    """Lags for the Newey-West t of a daily series of h-session outcomes: at least h (h-1 lags
    still overstated t by about a fifth on 5-session overlap), and at least the usual
    floor(4 (n/100)^(2/9)) bandwidth, so a 1-session label still gets a few lags."""
    rule_of_thumb = math.floor(4 * (max(days, 1) / 100) ** (2 / 9))
    return max(int(horizon), rule_of_thumb)


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


def summarize_ic(
    values: pl.Series | np.ndarray | list[float], lags: int = 0, horizon: int | None = None
) -> ICSummary:
    """Summary of a daily IC series (nulls and NaN skipped). The Newey-West t uses ``lags``, or
    with ``horizon`` given, `hac_lags` of that horizon and the number of days."""
    series = pl.Series(values, dtype=pl.Float64).drop_nulls().drop_nans()
    days = series.len()
    if horizon is not None:
        lags = hac_lags(horizon, days)
    if days == 0:
        return ICSummary(math.nan, math.nan, math.nan, math.nan, 0, math.nan, lags)
    mean = float(series.mean())
    std = float(series.std(ddof=1)) if days > 1 else math.nan
    icir = mean / std if std and std > 0 else math.nan
    nw = newey_west_t(series.to_numpy(), lags)
    return ICSummary(mean, std, icir, icir * math.sqrt(days), days, nw, lags)


def ic_report(
    frame: pl.DataFrame,
    prediction: str = "prediction",
    label: str = "label",
    lags: int = 0,
    horizon: int | None = None,
) -> dict[str, ICSummary]:
    """`summarize_ic` of the daily IC and rank IC: {"ic": ..., "rank_ic": ...}."""
    daily = daily_ic(frame, prediction, label)
    return {
        "ic": summarize_ic(daily["ic"], lags, horizon),
        "rank_ic": summarize_ic(daily["rank_ic"], lags, horizon),
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
    fraction of capital; a full switch of a long book is 2). A missing return (NaN) is a
    position whose instrument has no price at the session's end: it earns 0 (it is valued at
    its last price, in cash) and is sold at the next rebalance like any other position.
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


def buy_and_hold_returns(closes: np.ndarray) -> np.ndarray:
    """Equal-weight buy-and-hold on adjusted closes, never rebalanced.

    ``closes``: sessions x the first session's members (NaN where a bar is missing; the first
    row fully known). Row s of the result is the book's return from session s to s+1 (one row
    fewer than ``closes``). A missing close carries the last known one: across a hole the
    stock earns nothing until its next known close, which carries the whole move; a stock
    that stops trading sits in cash at its last price.
    """
    filled = closes.astype(np.float64).copy()
    for row in range(1, filled.shape[0]):
        gap = np.isnan(filled[row])
        filled[row, gap] = filled[row - 1, gap]
    value = (filled / filled[0]).mean(axis=1)
    return value[1:] / value[:-1] - 1.0


def book_returns(
    positions: pl.DataFrame,
    weight: str = "weight",
    realised: str = "next_return",
    costs: CostModel | None = None,
) -> pl.DataFrame:
    """Daily returns of the long leg and the long-short book of stored positions.

    ``positions``: one row per (instrument, date) ranked that day, with the signed ``weight``
    (+1/k long, -1/k short, 0 otherwise, as `gold/signals` stores it) and the realised
    1-session return ``realised`` (null when the instrument has no bar at the session's end;
    see `simulate`). Output per date: ``long_gross, long_cost, long_net, long_turnover`` (the
    positive weights alone, capital 1), the same for ``long_short_*``, and
    ``missing_outcomes``: held positions whose return is null.
    """
    costs = costs or CostModel()
    dates, instruments, signed = _wide(positions, weight)
    _, same, returns = _wide(positions, realised)
    assert same == instruments
    signed = np.nan_to_num(signed, nan=0.0)
    columns: dict[str, object] = {"date": dates}
    for book, weights in (("long", np.clip(signed, 0.0, None)), ("long_short", signed)):
        result = simulate(weights, returns, costs)
        columns.update({f"{book}_{name}": values for name, values in result.items()})
    columns["missing_outcomes"] = ((signed != 0) & np.isnan(returns)).sum(axis=1)
    return pl.DataFrame(columns)


def portfolio_returns(
    frame: pl.DataFrame,
    k: int,
    prediction: str = "prediction",
    realised: str = "forward_return",
    costs: CostModel | None = None,
) -> pl.DataFrame:
    """`book_returns` of the signals' ranking rule on ``prediction`` (top k long, bottom k
    short, `models.ranking.position_weights`), plus ``benchmark``: `buy_and_hold_returns` of
    every instrument of the first date on closes compounded from ``realised`` (from returns
    alone a missing one ends the holding: the stock sits in cash from there).

    ``frame``: one row per (instrument, date) of the universe with ``prediction`` and the
    realised 1-session forward return ``realised``.
    """
    ranked = position_weights(frame, k, prediction)
    daily = book_returns(ranked, "weight", realised, costs)
    dates, _, returns = _wide(frame, realised)
    growth = np.where(np.isnan(returns), np.nan, 1.0 + returns)
    closes = np.vstack([np.ones(returns.shape[1]), np.cumprod(growth, axis=0)])
    first = ~np.isnan(_wide(frame.with_columns(present=pl.lit(1.0)), "present")[2][0])
    benchmark = pl.DataFrame({"date": dates, "benchmark": buy_and_hold_returns(closes[:, first])})
    return daily.join(benchmark, on="date", how="left").sort("date")


def portfolio_report(daily: pl.DataFrame) -> dict[str, Performance]:
    """`performance` of the net long, net long-short and benchmark series of `book_returns`
    (with a ``benchmark`` column)."""
    return {
        "long": performance(daily["long_net"], daily["long_turnover"]),
        "long_short": performance(daily["long_short_net"], daily["long_short_turnover"]),
        "benchmark": performance(daily["benchmark"]),
    }
