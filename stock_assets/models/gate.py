"""The promotion rule: a challenger replaces the champion only on evidence, out of sample.

Both models are scored on the same rows, which neither was fitted, early-stopped or gated on:
the challenger's gate slice (`training`), minus every day whose label shares a return with a
label the champion learnt from. On those days the paired difference of their daily rank ICs is
tested with a Newey-West t (labels of h sessions overlap by h-1 days, so neighbouring
differences are correlated). The challenger is promoted when that t reaches ``min_t`` over at
least ``min_days`` days; with fewer shared days there is no evidence, and the champion stays.

`false_promotion_rate` measures what the rule costs when the two models are equally good: how
often the t reaches the threshold anyway (the bench prints it for the shipped settings).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from stock_assets.models.evaluation import daily_ic, newey_west_t
from stock_assets.models.labels import sessions_after

MIN_T = 2.0  # the t the paired difference must reach
MIN_DAYS = 10  # shared out-of-sample days below which there is no evidence
MIN_LAGS = 2


def paired_lags(horizon: int) -> int:
    """Newey-West lags of the paired test: the horizon, at least ``MIN_LAGS``. Fixed here, not
    taken from a shared default, so the rule (and its false-promotion rate) cannot move."""
    return max(int(horizon), MIN_LAGS)


@dataclass(frozen=True)
class PairedComparison:
    """Daily rank IC of two models on the same days, and the HAC t of their difference."""

    days: int
    challenger_rank_ic: float
    champion_rank_ic: float
    mean_difference: float
    t_stat: float
    lags: int
    first_day: dt.date | None
    last_day: dt.date | None

    def as_metadata(self) -> dict[str, float | int | str]:
        return {
            k: (v.isoformat() if isinstance(v, dt.date) else "none" if v is None else v)
            for k, v in asdict(self).items()
        }


def paired_rank_ic(
    scored: pl.DataFrame,
    horizon: int,
    challenger: str = "prediction",
    champion: str = "champion_prediction",
    label: str = "label",
) -> PairedComparison:
    """`PairedComparison` of two prediction columns of ``scored`` (one row per instrument and
    date) against ``label``; days where either rank IC is undefined are left out."""
    mine = daily_ic(scored, challenger, label).select("date", "rank_ic")
    theirs = daily_ic(scored, champion, label).select("date", champion_ic="rank_ic")
    days = mine.join(theirs, on="date").drop_nulls().sort("date")
    difference = (days["rank_ic"] - days["champion_ic"]).to_numpy()
    lags = paired_lags(horizon)
    if days.is_empty():
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan, lags, None, None)
    return PairedComparison(
        days.height,
        float(days["rank_ic"].mean()),
        float(days["champion_ic"].mean()),
        float(difference.mean()),
        newey_west_t(difference, lags),
        lags,
        days["date"].min(),
        days["date"].max(),
    )


def promotes(
    comparison: PairedComparison, min_t: float = MIN_T, min_days: int = MIN_DAYS
) -> tuple[bool, str]:
    """The rule, with the reason in words."""
    if comparison.days < min_days:
        return False, f"{comparison.days} shared out-of-sample days < {min_days}: no evidence"
    verdict = (
        f"rank IC {comparison.challenger_rank_ic:+.4f} vs {comparison.champion_rank_ic:+.4f} "
        f"over {comparison.days} days, paired Newey-West t ({comparison.lags} lags) "
        f"{comparison.t_stat:+.2f}"
    )
    if np.isfinite(comparison.t_stat) and comparison.t_stat >= min_t:
        return True, f"{verdict} >= {min_t}"
    return False, f"{verdict} < {min_t}"


def unseen_by(rows: pl.DataFrame, cut: dt.date, horizon: int) -> pl.DataFrame:
    """Rows dated on or after the session the label of ``cut`` became known: none of their
    labels shares a return with a label dated <= ``cut``."""
    known = sessions_after([cut], horizon)[cut]
    return rows.filter(pl.col("date") >= known) if known else rows.clear()


def false_promotion_rate(
    days: int,
    horizon: int,
    min_t: float = MIN_T,
    min_days: int = MIN_DAYS,
    persistence: float = 0.0,
    tail_df: float | None = None,
    trials: int = 20_000,
    seed: int = 0,
) -> float:
    """Share of ``trials`` in which `promotes` says yes while the true difference is zero.

    The null daily difference is a sum of ``horizon`` consecutive shocks (the overlap of
    h-session labels), optionally AR(1) with ``persistence`` (regimes), shocks standard normal
    or Student t with ``tail_df`` degrees of freedom (fat tails).
    """
    rng = np.random.default_rng(seed)
    size = (trials, days + horizon - 1 + 50)
    shocks = rng.standard_t(tail_df, size) if tail_df else rng.standard_normal(size)
    for step in range(1, size[1]):
        shocks[:, step] += persistence * shocks[:, step - 1]
    window = np.cumsum(shocks, axis=1)
    overlap = window[:, horizon - 1 :] - np.pad(window, ((0, 0), (1, 0)))[:, :-horizon]
    series = overlap[:, -days:]
    lags = paired_lags(horizon)
    promoted = sum(
        days >= min_days and (t := newey_west_t(row, lags)) >= min_t and np.isfinite(t)
        for row in series
    )
    return promoted / trials
