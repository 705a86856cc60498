"""One monthly refit: the fold that ends where a month begins, trained and conformalized.

The month's model may only know what was known before its first session: features dated before
it, and labels whose target session closed before the validation slice (train) or before the
month (validation). Labels are built here from the adjusted bars, in memory, and dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from stock_assets.models import conformal
from stock_assets.models.evaluation import ic_report
from stock_assets.models.labels import forward_returns, labelled_universe
from stock_assets.models.walk_forward import (
    Fold,
    LightGBMConfig,
    SplitConfig,
    TrainedFold,
    predict,
    train_labelled,
    training_rows,
)


@dataclass
class MonthlyModel:
    trained: TrainedFold
    calibration: conformal.ConformalModel
    validation: pl.DataFrame  # the labelled validation rows (for comparing with the champion)


def fold_for_month(
    sessions: list[dt.date], month_start: dt.date, month_end: dt.date, split: SplitConfig
) -> Fold:
    """train -> gap -> validation -> gap -> the month, over the feature sessions before it."""
    before = sorted(d for d in set(sessions) if d < month_start)
    gap, validation = split.gap_sessions, split.validation_sessions
    validation_end = len(before) - 1 - gap
    validation_start = validation_end - validation + 1
    train_end = validation_start - gap - 1
    train_start = 0
    if split.window == "rolling" and split.rolling_sessions:
        train_start = max(0, train_end - split.rolling_sessions + 1)
    if train_end - train_start + 1 < split.min_train_sessions:
        raise ValueError(
            f"{len(before)} feature sessions before {month_start}: a refit needs at least "
            f"{split.min_train_sessions} to train plus {validation} to validate and two gaps of "
            f"{gap}"
        )
    return Fold(
        0,
        before[train_start],
        before[train_end],
        before[validation_start],
        before[validation_end],
        month_start,
        month_end,
    )


def train_month(
    features: pl.DataFrame,
    bars: pl.DataFrame,
    month_start: dt.date,
    month_end: dt.date,
    split: SplitConfig,
    config: LightGBMConfig,
    confidence_level: float,
) -> MonthlyModel:
    """Train on what was known before ``month_start``; calibrate intervals on validation."""
    features = features.filter(pl.col("date") < month_start)
    bars = bars.filter(pl.col("date") < month_start)
    fold = fold_for_month(features["date"].unique().to_list(), month_start, month_end, split)
    labelled = labelled_universe(features, forward_returns(bars, split.horizon))
    trained = train_labelled(labelled, fold, config)
    validation = training_rows(labelled, fold, "validation")
    calibration = conformal.calibrate(trained.booster, validation, confidence_level)
    return MonthlyModel(trained, calibration, validation)


def rank_ic_on(booster, rows: pl.DataFrame) -> float:
    """Mean daily rank IC of ``booster`` on labelled ``rows`` (the comparison the gate uses)."""
    scored = rows.join(predict(booster, rows), on=["instrument", "ticker", "date"])
    return ic_report(scored)["rank_ic"].mean
