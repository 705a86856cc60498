"""Calibrated prediction intervals around a trained booster (split conformal, MAPIE 1.6).

Split conformal takes the absolute residuals |y - prediction| of a calibration slice the model
never trained on and widens every later prediction by their finite-sample (1 - alpha) quantile.
Its guarantee assumes the calibration rows and the rows predicted are exchangeable. Returns are
not: volatility regimes come and go, so residuals drift, and the guarantee only holds
approximately. Hence: calibrate on a slice strictly after the training window (a fold's
validation slice, whose labels are known before its test slice starts) and always measure
coverage on data after the calibration slice, never on it. Calibrating on the per-date
normalised label (`labels.normalise_cross_section`) helps: its scale is the same every day, so
a calm calibration month does not make intervals too narrow for a volatile test month, as it
would with raw returns. `rolling_intervals` recalibrates on the latest known labels as time
moves on, for long test periods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from mapie.regression import SplitConformalRegressor
from sklearn.base import BaseEstimator, RegressorMixin

from stock_assets.models.walk_forward import feature_matrix

if TYPE_CHECKING:
    import lightgbm as lgb


class BoosterRegressor(RegressorMixin, BaseEstimator):
    """A trained LightGBM booster as a fitted scikit-learn regressor (for MAPIE's prefit mode).

    MAPIE checks that a prefit estimator looks fitted (``n_features_in_``) and can predict one
    row of zeros; fitting again is refused: this wrapper never retrains.
    """

    def __init__(self, booster: lgb.Booster | None = None, num_iteration: int | None = None):
        self.booster = booster
        self.num_iteration = num_iteration
        if booster is not None:
            self.n_features_in_ = booster.num_feature()

    def fit(self, X, y):
        raise TypeError("BoosterRegressor wraps a trained booster; train with walk_forward")

    def predict(self, X) -> np.ndarray:
        matrix = np.asarray(X, dtype=np.float64)
        return self.booster.predict(matrix, num_iteration=self.num_iteration)


@dataclass
class ConformalModel:
    """A booster with its conformal calibration, and where the calibration came from."""

    regressor: SplitConformalRegressor
    feature_names: list[str]
    confidence_level: float
    calibration_rows: int
    calibration_start: dt.date
    calibration_end: dt.date
    half_width: float  # the conformity-score quantile: intervals are prediction +- this


def calibrate(
    booster: lgb.Booster,
    calibration: pl.DataFrame,
    confidence_level: float = 0.9,
    target: str = "label",
    num_iteration: int | None = None,
) -> ConformalModel:
    """Conformalize ``booster`` on ``calibration`` rows (features and ``target``, non-null).

    ``calibration`` must come after the booster's training window and before whatever the
    intervals are used on (e.g. `walk_forward.training_rows(labelled, fold, "validation")`).
    """
    rows = calibration.filter(pl.col(target).is_not_null())
    if rows.is_empty():
        raise ValueError("no calibration rows with a known target")
    names = booster.feature_name()
    iteration = num_iteration or booster.best_iteration or None
    regressor = SplitConformalRegressor(
        BoosterRegressor(booster, iteration), confidence_level=confidence_level, prefit=True
    ).conformalize(feature_matrix(rows, names), rows[target].to_numpy())
    _, bounds = regressor.predict_interval(np.zeros((1, len(names))))
    return ConformalModel(
        regressor,
        names,
        confidence_level,
        rows.height,
        rows["date"].min(),
        rows["date"].max(),
        float((bounds[0, 1, 0] - bounds[0, 0, 0]) / 2),
    )


def predict_intervals(model: ConformalModel, features: pl.DataFrame) -> pl.DataFrame:
    """``instrument, ticker, date, prediction, lower, upper`` for every row of ``features``."""
    if features.is_empty():
        schema = {c: features.schema[c] for c in ("instrument", "ticker", "date")}
        extra = dict.fromkeys(("prediction", "lower", "upper"), pl.Float64)
        return pl.DataFrame(schema={**schema, **extra})
    points, intervals = model.regressor.predict_interval(
        feature_matrix(features, model.feature_names)
    )
    return features.select("instrument", "ticker", "date").with_columns(
        prediction=pl.Series(points, dtype=pl.Float64),
        lower=pl.Series(intervals[:, 0, 0], dtype=pl.Float64),
        upper=pl.Series(intervals[:, 1, 0], dtype=pl.Float64),
    )


@dataclass(frozen=True)
class Coverage:
    """Share of realised targets inside their interval, and the mean interval width."""

    coverage: float
    mean_width: float
    rows: int
    start: dt.date | None
    end: dt.date | None


def coverage(
    intervals: pl.DataFrame, realised: pl.DataFrame, target: str = "label"
) -> tuple[Coverage, pl.DataFrame]:
    """Empirical coverage of `predict_intervals` output against ``realised`` targets.

    Joined on (instrument, date); rows without a realised target are left out. Returns the
    overall figure and the per-date one (``date, coverage, mean_width, rows``), which shows
    drift: coverage falling over the test period means the calibration went stale.
    """
    joined = intervals.join(
        realised.select("instrument", "date", pl.col(target).alias("__y")),
        on=["instrument", "date"],
        how="inner",
    ).filter(pl.col("__y").is_not_null())
    inside = (pl.col("__y") >= pl.col("lower")) & (pl.col("__y") <= pl.col("upper"))
    width = pl.col("upper") - pl.col("lower")
    daily = (
        joined.group_by("date")
        .agg(coverage=inside.mean(), mean_width=width.mean(), rows=pl.len())
        .sort("date")
    )
    if joined.is_empty():
        return Coverage(float("nan"), float("nan"), 0, None, None), daily
    overall = joined.select(inside.mean().alias("c"), width.mean().alias("w")).row(0)
    summary = Coverage(
        float(overall[0]),
        float(overall[1]),
        joined.height,
        joined["date"].min(),
        joined["date"].max(),
    )
    return summary, daily


def rolling_intervals(
    booster: lgb.Booster,
    labelled: pl.DataFrame,
    features: pl.DataFrame,
    sessions: Sequence[dt.date],
    calibration_sessions: int = 20,
    recalibrate_every: int = 5,
    confidence_level: float = 0.9,
    target: str = "label",
) -> pl.DataFrame:
    """Intervals for ``features`` on ``sessions``, recalibrated every ``recalibrate_every``
    sessions on the rows of the latest ``calibration_sessions`` dates whose label is known
    before the block starts (``label_known_on`` < first session of the block).

    ``labelled``: rows with features, ``label_known_on`` and ``target`` (`labelled_universe`);
    only dates after the booster's training window should be in it. A simple adaptive scheme:
    the calibration window follows the data, so drifting residuals are tracked with a lag.
    """
    sessions = sorted(sessions)
    parts = []
    for start in range(0, len(sessions), recalibrate_every):
        block = sessions[start : start + recalibrate_every]
        known = labelled.filter(pl.col("label_known_on") < block[0])
        recent = sorted(known["date"].unique().to_list())[-calibration_sessions:]
        if not recent:
            continue
        model = calibrate(
            booster, known.filter(pl.col("date").is_in(recent)), confidence_level, target
        )
        rows = features.filter(pl.col("date").is_in(block))
        parts.append(predict_intervals(model, rows).with_columns(calibrated_until=recent[-1]))
    if not parts:
        raise ValueError("no block had known labels to calibrate on")
    return pl.concat(parts).sort("date", "instrument")
