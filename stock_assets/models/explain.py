"""Why a prediction is what it is: LightGBM's own per-feature contributions (TreeSHAP).

``booster.predict(X, pred_contrib=True)`` returns one column per feature plus the bias (the
expected raw score, last column); each row sums to the raw score the booster predicts for it.
For the platform's regression objective the raw score is the stored ``prediction``, so an
explanation adds up exactly to the number it explains. The readers compute explanations on
request from the feature row the prediction was scored on (`Outputs.prediction_features`, or the
online row for an on-demand answer) with the booster of the version that made it.

A contribution includes the feature's share of its interactions: a market-wide column (the same
value for every ticker on a day, e.g. the macro series) contributes the same amount to every
ticker only when the model keeps it out of trees that also split on per-stock columns.

No Dagster, no MLflow: plain functions over a booster and a polars frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from stock_assets.models.walk_forward import feature_matrix

DEFAULT_TOP = 10


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float | None  # the input as the booster saw it (None: missing, NaN to LightGBM)
    contribution: float  # in the raw score's units (the label's: rank-gaussian return)

    def as_dict(self) -> dict:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


@dataclass(frozen=True)
class Explanation:
    """One row's raw score split into the bias, its ``top`` contributions and the rest."""

    raw_score: float
    bias: float
    top: tuple[Contribution, ...]
    rest: float  # the summed contributions of every feature not in ``top``
    features: int  # how many features the booster has

    def as_dict(self) -> dict:
        return {
            "raw_score": self.raw_score,
            "bias": self.bias,
            "top": [c.as_dict() for c in self.top],
            "rest": self.rest,
            "features": self.features,
        }


def best_iteration(booster) -> int | None:
    """The rounds the platform scores with (``walk_forward.predict``): the best iteration."""
    return booster.best_iteration or None


def contributions(booster, frame: pl.DataFrame, num_iteration: int | None = None) -> np.ndarray:
    """``rows x (features + 1)``: each feature's contribution, the bias last, in the booster's
    feature order; by default at the rounds the stored predictions use."""
    return _contrib(booster, feature_matrix(frame, booster.feature_name()), num_iteration)


def explain(
    booster,
    frame: pl.DataFrame,
    top: int = DEFAULT_TOP,
    num_iteration: int | None = None,
) -> list[Explanation]:
    """Per row of ``frame``: raw score, bias and the ``top`` contributions by absolute size
    (ties broken by feature name, so the answer is stable)."""
    return explain_matrix(
        booster, feature_matrix(frame, booster.feature_name()), top, num_iteration
    )


def explain_matrix(
    booster, matrix: np.ndarray, top: int = DEFAULT_TOP, num_iteration: int | None = None
) -> list[Explanation]:
    """`explain` for rows already in the booster's feature order (the serving cache's)."""
    names = booster.feature_name()
    contrib = _contrib(booster, matrix, num_iteration)
    return [_one(names, matrix[i], contrib[i], top) for i in range(contrib.shape[0])]


def _contrib(booster, matrix: np.ndarray, num_iteration: int | None) -> np.ndarray:
    rounds = best_iteration(booster) if num_iteration is None else num_iteration
    return np.asarray(booster.predict(matrix, num_iteration=rounds, pred_contrib=True))


def _one(names: Sequence[str], values: np.ndarray, row: np.ndarray, top: int) -> Explanation:
    features = row[:-1]
    order = sorted(range(len(names)), key=lambda j: (-abs(features[j]), names[j]))[: max(top, 0)]
    chosen = tuple(Contribution(names[j], _value(values[j]), float(features[j])) for j in order)
    rest = float(features.sum() - sum(c.contribution for c in chosen))
    return Explanation(float(row.sum()), float(row[-1]), chosen, rest, len(names))


def _value(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
