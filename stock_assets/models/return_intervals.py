"""From the model's rank score to an expected return and price, with intervals per stock and day.

The model predicts a per-day cross-sectional rank-gauss score (`labels.normalise_cross_section`),
which has no return units. Here the score becomes an expected h-session return by scaling it with
the stock's own trailing volatility:

    expected_return = sigma_i,t * (a + b * score)

``sigma_i,t`` is the standard deviation of the stock's last 20 daily returns (adjusted closes
dated <= t only) times sqrt(h). ``a`` and ``b`` are an ordinary least-squares fit of the
normalised return r / sigma on the score over the calibration rows (equivalently a weighted fit
of r, weights 1 / sigma^2, so calm and wild stocks count alike). ``a`` carries the calibration
window's average market move in sigma units, ``b`` how much of a return the score explains.

Intervals are split conformal with a normalised conformity score |r - r_hat| / scale (MAPIE's
`ResidualNormalisedScore`): one quantile q per level, and every row gets r_hat +- q * scale_i,t,
so a volatile stock on a volatile day gets a wider interval. ``scale="volatility"``: the scale
is sigma itself (the residual model is the sigma column, nothing fitted). ``scale="fitted"``:
exp(c) * sigma^d, c and d fitted by MAPIE on a quarter of the calibration rows (log residuals
on log sigma), the other rows conformalizing. MAPIE applies the finite-sample (n+1) correction
to the quantile. The unconditional interval (absolute residuals, one width for every row) is
kept for comparison. Calibration rows must have labels known before the first predicted day
(`check_no_overlap`); the fit of ``a`` and ``b`` and the conformity scores use the same rows (two
parameters on thousands of rows: the small optimism this adds is measured, not assumed, by the
bench's coverage on later months). Split conformal assumes exchangeable rows; returns drift, so
callers recalibrate: on each refit's gate slice, or every day on the latest sessions whose
labels are known (bench/return_intervals.py measures both). What ships (``SHIPPED_MODE``,
``SHIPPED_SCALE``): every day on the latest known sessions, with the fitted scale
(`rolling_return_intervals`, called by gold/predictions and by the bench alike).

Units: returns are fractions over h sessions (0.01 = +1%); prices are in the currency of
``last_close``, the traded close of the predicted day. No Dagster import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from mapie.conformity_scores import AbsoluteConformityScore, ResidualNormalisedScore
from mapie.regression import SplitConformalRegressor
from sklearn.base import BaseEstimator, RegressorMixin

LEVELS = (0.8, 0.9, 0.95)
VOLATILITY_SESSIONS = 20
CALIBRATION_COLUMNS = ["instrument", "date", "label_known_on", "score", "volatility"]
PREDICTED_COLUMNS = ["instrument", "date", "score", "volatility", "last_close"]
Scale = Literal["volatility", "fitted"]
# what ships (gold/predictions) and the bench's default variant: recalibrated every predicted day
# on the latest CALIBRATION_SESSIONS sessions of known labels, with the fitted residual scale
SHIPPED_MODE = "rolling"
SHIPPED_SCALE: Scale = "fitted"
CALIBRATION_SESSIONS = 20


def level_suffix(level: float) -> str:
    """0.9 -> "90": the column suffix of a confidence level."""
    return f"{round(level * 100):d}"


def trailing_volatility(
    bars: pl.DataFrame, horizon: int, sessions: int = VOLATILITY_SESSIONS
) -> pl.DataFrame:
    """``instrument, date, volatility``: std of the last ``sessions`` daily returns of
    ``adj_close`` ending at ``date``, times sqrt(horizon) (a fraction over h sessions).

    Uses bars dated <= date only (a trailing window); null until ``sessions`` returns exist.
    Sorted by (instrument, date) before the rolling window, which is order-sensitive.
    """
    ordered = bars.select("instrument", "date", "adj_close").sort("instrument", "date")
    daily = (pl.col("adj_close") / pl.col("adj_close").shift(1) - 1.0).over("instrument")
    rolling = pl.col("daily").rolling_std(sessions, min_samples=sessions).over("instrument")
    return (
        ordered.with_columns(daily=daily)
        .with_columns(volatility=rolling * np.sqrt(horizon))
        .select("instrument", "date", "volatility")
    )


class ScaledScoreRegressor(RegressorMixin, BaseEstimator):
    """A prefit regressor on X = [score, sigma]: sigma * (a + b * score), for MAPIE."""

    def __init__(self, intercept: float = 0.0, slope: float = 0.0):
        self.intercept = intercept
        self.slope = slope
        self.n_features_in_ = 2

    def fit(self, X, y):
        raise TypeError("fit the mapping with `fit_mapping`; this regressor is prefit")

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X[:, 1] * (self.intercept + self.slope * X[:, 0])


class LogVolatilityScale(RegressorMixin, BaseEstimator):
    """log|residual| = c + d * log(sigma): the residual scale exp(c) * sigma^d, fitted by MAPIE
    (its `ResidualNormalisedScore` fits the log residual and exponentiates the prediction).

    Why: trailing volatility over-states how much wider a volatile stock's residual is (part of
    every residual is the day's shared market move), so a power d < 1 can fit better than d = 1.
    """

    def fit(self, X, y):
        log_sigma = np.log(np.asarray(X, dtype=np.float64)[:, 1])
        self.coef_ = np.polyfit(log_sigma, np.asarray(y, dtype=np.float64), 1)
        self.n_features_in_ = 2
        return self

    def predict(self, X) -> np.ndarray:
        return np.polyval(self.coef_, np.log(np.asarray(X, dtype=np.float64)[:, 1]))


class VolatilityColumn(RegressorMixin, BaseEstimator):
    """The residual scale of `ResidualNormalisedScore`: the sigma column of X, not a model.

    MAPIE's normalised score divides |r - r_hat| by a residual estimator's prediction; the
    trailing volatility is that scale, known at t, so the 'estimator' just returns it.
    """

    def __init__(self):
        self.n_features_in_ = 2

    def fit(self, X, y):
        raise TypeError("the volatility column is not fitted")

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, 1]


def fit_mapping(score: np.ndarray, normalised_return: np.ndarray) -> tuple[float, float]:
    """(a, b) of r / sigma = a + b * score by least squares."""
    design = np.column_stack([np.ones_like(score), score])
    (intercept, slope), *_ = np.linalg.lstsq(design, normalised_return, rcond=None)
    return float(intercept), float(slope)


@dataclass
class ReturnIntervalModel:
    """The score-to-return mapping and its conformal calibrations, and where they came from."""

    intercept: float  # a, in sigma units
    slope: float  # b, sigma units of return per unit of score
    horizon: int
    levels: tuple[float, ...]
    normalised: SplitConformalRegressor  # |r - r_hat| / sigma: width follows sigma
    unconditional: SplitConformalRegressor  # |r - r_hat|: one width for every row
    calibration_rows: int
    calibration_start: dt.date
    calibration_end: dt.date
    labels_known_until: dt.date  # the latest label_known_on of the calibration rows

    def summary(self) -> dict:
        """What the calibration learnt, JSON-ready: the mapping, the normalised conformity
        quantile per level (half-width / scale), the fitted scale's exp(c) * sigma^d (if any),
        and where the rows came from."""
        probe = np.array([[0.0, 1.0]])  # sigma = 1: the scale is exp(c) (fitted) or 1
        half = np.diff(self.normalised.predict_interval(probe)[1][0], axis=0)[0] / 2
        estimator = self.normalised._mapie_regressor.conformity_score_function_
        fitted = getattr(estimator, "residual_estimator_", None)
        coef = getattr(fitted, "coef_", None)
        scale_at_one = float(np.exp(coef[1])) if coef is not None else 1.0
        return {
            "a": self.intercept,
            "b": self.slope,
            "horizon": self.horizon,
            "quantiles": {
                level_suffix(v): float(h / scale_at_one)
                for v, h in zip(self.levels, half, strict=True)
            },
            "scale": "fitted" if coef is not None else "volatility",
            "scale_c": float(coef[1]) if coef is not None else 0.0,
            "scale_d": float(coef[0]) if coef is not None else 1.0,
            "calibration_rows": self.calibration_rows,
            "calibration_start": self.calibration_start.isoformat(),
            "calibration_end": self.calibration_end.isoformat(),
            "labels_known_until": self.labels_known_until.isoformat(),
        }


def _matrix(rows: pl.DataFrame) -> np.ndarray:
    return rows.select(pl.col("score", "volatility").cast(pl.Float64)).to_numpy()


def usable_calibration(calibration: pl.DataFrame) -> pl.DataFrame:
    """Calibration rows with a finite score, volatility > 0 and realised forward return."""
    return calibration.filter(
        pl.col("score").is_finite()
        & pl.col("volatility").is_finite()
        & (pl.col("volatility") > 0)
        & pl.col("forward_return").is_finite()
    )


def normalised_score(scale: Scale) -> ResidualNormalisedScore:
    """``"volatility"``: |r - r_hat| / sigma. ``"fitted"``: |r - r_hat| / (exp(c) * sigma^d),
    c and d fitted on a random quarter of the calibration rows, the rest conformalizing."""
    if scale == "volatility":
        return ResidualNormalisedScore(VolatilityColumn(), prefit=True)
    if scale == "fitted":
        return ResidualNormalisedScore(LogVolatilityScale(), split_size=0.25, random_state=0)
    raise ValueError(f"unknown scale {scale!r}")


class TooFewCalibrationRows(ValueError):
    """The calibration cannot give every level: MAPIE needs at least 1 / (1 - level)
    conformalizing rows (more than 20 at 95%; the fitted scale conformalizes on three quarters
    of the rows), so a 20-session calibration of one or a few names is refused. Decided by the
    row count alone, never by an outcome."""


MAPIE_TOO_FEW = "Number of samples of the score is too low"


def calibrate(
    calibration: pl.DataFrame,
    horizon: int,
    levels: Sequence[float] = LEVELS,
    scale: Scale = "volatility",
) -> ReturnIntervalModel:
    """Fit the mapping and both conformal calibrations on ``calibration`` rows
    (``CALIBRATION_COLUMNS`` + ``forward_return``, the realised h-session return)."""
    rows = usable_calibration(calibration)
    if rows.height < 2:
        raise TooFewCalibrationRows(f"{rows.height} usable calibration rows (at least 2)")
    try:
        model = _calibrated(rows, horizon, levels, scale)
        probe = np.array([[0.0, 1.0]])  # MAPIE counts its conformalizing rows when predicting
        model.normalised.predict_interval(probe)
        model.unconditional.predict_interval(probe)
        return model
    except ValueError as error:
        if MAPIE_TOO_FEW in str(error):
            raise TooFewCalibrationRows(
                f"{rows.height} usable calibration rows are too few for {max(levels):.0%} "
                f"with the {scale} scale"
            ) from error
        raise


def _calibrated(
    rows: pl.DataFrame, horizon: int, levels: Sequence[float], scale: Scale
) -> ReturnIntervalModel:
    X, returns = _matrix(rows), rows["forward_return"].to_numpy()
    intercept, slope = fit_mapping(X[:, 0], returns / X[:, 1])
    base = ScaledScoreRegressor(intercept, slope)
    levels = tuple(levels)
    normalised = SplitConformalRegressor(
        base,
        confidence_level=list(levels),
        conformity_score=normalised_score(scale),
        prefit=True,
    ).conformalize(X, returns)
    unconditional = SplitConformalRegressor(
        base, confidence_level=list(levels), conformity_score=AbsoluteConformityScore(), prefit=True
    ).conformalize(X, returns)
    return ReturnIntervalModel(
        intercept,
        slope,
        horizon,
        levels,
        normalised,
        unconditional,
        rows.height,
        rows["date"].min(),
        rows["date"].max(),
        rows["label_known_on"].max(),
    )


def predict(
    model: ReturnIntervalModel, predicted: pl.DataFrame, unconditional: bool = False
) -> pl.DataFrame:
    """Per row of ``predicted`` (``PREDICTED_COLUMNS``): ``expected_return`` and
    ``return_lower_<level>`` / ``return_upper_<level>`` (fractions over ``model.horizon``
    sessions), ``expected_price`` and ``price_lower/upper_<level>`` (``last_close`` x (1 +
    return), in ``last_close``'s currency). With ``unconditional``, also
    ``unconditional_lower/upper_<level>`` in return units. Null volatility or score: nulls.
    Raises if a predicted day is not after ``model.labels_known_until``.
    """
    if predicted.height and predicted["date"].min() <= model.labels_known_until:
        raise ValueError(
            f"predicting {predicted['date'].min()} with a calibration whose labels run to "
            f"{model.labels_known_until}: the calibration overlaps the predicted days"
        )
    ok = (
        pl.col("score").is_finite() & pl.col("volatility").is_finite() & (pl.col("volatility") > 0)
    ).fill_null(False)
    usable, rest = predicted.filter(ok), predicted.filter(~ok)
    columns: dict[str, np.ndarray] = {}
    if usable.height:
        X = _matrix(usable)
        points, intervals = model.normalised.predict_interval(X)
        flat = model.unconditional.predict_interval(X)[1] if unconditional else None
        columns["expected_return"] = points
        for index, level in enumerate(model.levels):
            suffix = level_suffix(level)
            columns[f"return_lower_{suffix}"] = intervals[:, 0, index]
            columns[f"return_upper_{suffix}"] = intervals[:, 1, index]
            if flat is not None:
                columns[f"unconditional_lower_{suffix}"] = flat[:, 0, index]
                columns[f"unconditional_upper_{suffix}"] = flat[:, 1, index]
    names = ["expected_return"] + [
        f"{kind}_{side}_{level_suffix(level)}"
        for level in model.levels
        for kind in (("return", "unconditional") if unconditional else ("return",))
        for side in ("lower", "upper")
    ]
    scored = usable.with_columns(
        pl.Series(name, columns.get(name, np.empty(0)), dtype=pl.Float64) for name in names
    )
    both = pl.concat([scored, rest], how="diagonal_relaxed")
    prices = [
        (pl.col("last_close") * (1.0 + pl.col(name))).alias(name.replace("return", "price"))
        for name in names
        if name.startswith(("expected_return", "return_"))
    ]
    return both.with_columns(prices).sort("date", "instrument")


def check_no_overlap(calibration: pl.DataFrame, predicted: pl.DataFrame) -> None:
    """Raise if a calibration row's label was not known before the first predicted day.

    A row dated t has its h-session return known at the close of ``label_known_on`` (t+h);
    it may calibrate predictions of days strictly after that session only.
    """
    first = predicted["date"].min()
    late = calibration.filter(pl.col("label_known_on") >= first)
    if late.height:
        raise ValueError(
            f"{late.height} calibration rows have labels known on or after the first predicted "
            f"day {first} (latest {late['label_known_on'].max()}): they overlap the predicted days"
        )


def return_intervals(
    calibration: pl.DataFrame,
    predicted: pl.DataFrame,
    horizon: int,
    levels: Sequence[float] = LEVELS,
    unconditional: bool = False,
    scale: Scale = "volatility",
) -> pl.DataFrame:
    """`predict` of ``predicted`` with a model calibrated on ``calibration``, after
    `check_no_overlap` (raises ValueError when a calibration label is not known in time)."""
    check_no_overlap(calibration, predicted)
    return predict(calibrate(calibration, horizon, levels, scale), predicted, unconditional)


def latest_known(
    pool: pl.DataFrame, day: dt.date, sessions: int = CALIBRATION_SESSIONS
) -> pl.DataFrame:
    """The rows of ``pool`` whose label was known before ``day`` (``label_known_on`` < day),
    from their latest ``sessions`` dates, sorted by (date, instrument): the fitted scale's
    random split then does not depend on the order rows were read in."""
    known = pool.filter(pl.col("label_known_on") < day)
    recent = known["date"].unique().sort().tail(sessions)
    return known.filter(pl.col("date").is_in(recent.implode())).sort("date", "instrument")


def rolling_return_intervals(
    pool: pl.DataFrame,
    predicted: pl.DataFrame,
    horizon: int,
    levels: Sequence[float] = LEVELS,
    unconditional: bool = False,
    scale: Scale = SHIPPED_SCALE,
    sessions: int = CALIBRATION_SESSIONS,
    refused: list[dt.date] | None = None,
) -> Iterator[tuple[ReturnIntervalModel, pl.DataFrame]]:
    """Per predicted day (oldest first): the model calibrated on `latest_known` rows of
    ``pool`` (rows scored out of sample with their realised ``forward_return``), checked by
    `check_no_overlap`, and that day's `predict` output. The calibration follows drifting
    returns with a lag of ``horizon`` sessions. With a ``refused`` list, a day whose calibration
    has `TooFewCalibrationRows` is appended to it and skipped (its rows get no interval)
    instead of raising; an overlap always raises."""
    for day in predicted["date"].unique().sort():
        rows = predicted.filter(pl.col("date") == day)
        known = latest_known(pool, day, sessions)
        check_no_overlap(known, rows)
        try:
            model = calibrate(known, horizon, levels, scale)
        except TooFewCalibrationRows:
            if refused is None:
                raise
            refused.append(day)
            continue
        yield model, predict(model, rows, unconditional)


def coverage_by(
    intervals: pl.DataFrame, by: Sequence[str] = (), levels: Sequence[float] = LEVELS
) -> pl.DataFrame:
    """Share of realised ``forward_return`` inside each interval and its mean width (return
    units), per group of ``by`` (none: one row), for the normalised interval and, when
    ``intervals`` has them, the unconditional one. Rows without a realised return are left out.
    """
    rows = intervals.filter(
        pl.col("forward_return").is_finite() & pl.col("expected_return").is_finite()
    )
    realised = pl.col("forward_return")
    aggregations = [pl.len().alias("rows")]
    for level in levels:
        suffix = level_suffix(level)
        kinds = [("return", "")]
        if f"unconditional_lower_{suffix}" in rows.columns:
            kinds.append(("unconditional", "unconditional_"))
        for kind, prefix in kinds:
            lower, upper = pl.col(f"{kind}_lower_{suffix}"), pl.col(f"{kind}_upper_{suffix}")
            aggregations += [
                realised.is_between(lower, upper).mean().alias(f"{prefix}coverage_{suffix}"),
                (upper - lower).mean().alias(f"{prefix}width_{suffix}"),
            ]
    if not by:
        return rows.select(aggregations)
    return rows.group_by(list(by)).agg(aggregations).sort(list(by))
