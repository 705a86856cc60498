"""One refit: the fold that ends at its decision, trained, gated and conformalized.

A refit is decided at a session's close and serves from the next session. The monthly refit's
decision is the last session before the month (it runs before the month's first open); a refit
requested by drift is decided at the drift report's session, inside the month. Either way the
model may only know what was known at that close: its data cut is the last session whose
h-session label is known by then, h sessions before the decision. Up to the decision the
sessions are laid out ``train -> gap -> validation -> gap -> gate -> gap -> serving``
(`walk_forward.fold_before`), each gap at least the horizon:

- ``train``: the rows LightGBM fits;
- ``validation``: the early-stopping rows (they choose the round count: in sample);
- ``gate``: held out from both; the promotion gate and the conformal calibration read only
  these rows, so a model is never judged, and its intervals never sized, on rows it was fitted
  or stopped on.

Labels are built here from the adjusted bars, in memory, and dropped. `MonthlyInputs.digest`
identifies what a refit would learn from (the rows of every slice and the settings), so a refit
whose cut and inputs did not change is recognised before it trains.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass

import polars as pl

from stock_assets.calendar import owning_session, previous_session
from stock_assets.models import conformal
from stock_assets.models.labels import forward_returns, labelled_universe
from stock_assets.models.walk_forward import (
    Fold,
    LightGBMConfig,
    SplitConfig,
    TrainedFold,
    fold_before,
    train_labelled,
    training_rows,
)

# the layout that ships (the asset's defaults, and what the evaluation bench evaluates):
# 1-session labels, monthly refits, 20 early-stopping and 20 gate/calibration sessions
SHIPPED_SPLIT = SplitConfig(
    horizon=1,
    min_train_sessions=100,
    validation_sessions=20,
    refit_every="monthly",
    gate_sessions=20,
)


@dataclass
class MonthlyInputs:
    """What a refit learns from, before training: its decision, fold, rows and their digest."""

    fold: Fold
    labelled: pl.DataFrame  # every labelled member row up to the decision
    digest: str
    decision: dt.date  # the session at whose close the refit is decided
    serves_from: dt.date  # the next session: the first the model may predict

    @property
    def data_cut(self) -> dt.date:
        """The last session whose row (and label) the refit uses: the gate slice's end."""
        return self.fold.gate_end or self.fold.validation_end


@dataclass
class MonthlyModel:
    trained: TrainedFold
    conformal: conformal.ConformalModel
    calibration: pl.DataFrame  # the gate/calibration rows: labelled, never fitted or stopped on
    inputs: MonthlyInputs

    def slice_dates(self) -> dict[str, str]:
        """Every slice's first and last session (MLflow tags, Dagster metadata)."""
        fold = self.trained.fold
        return {
            "train_dates": f"{fold.train_start}..{fold.train_end}",
            "early_stopping_dates": f"{fold.validation_start}..{fold.validation_end}",
            "calibration_dates": f"{fold.gate_start}..{fold.gate_end}",
            "data_cut": self.inputs.data_cut.isoformat(),
            "decision_session": self.inputs.decision.isoformat(),
            "serves_from": self.inputs.serves_from.isoformat(),
        }


def month_decision(month_start: dt.date) -> dt.date:
    """The monthly refit's decision session: the last session before the month."""
    return previous_session(month_start) or month_start - dt.timedelta(days=1)


def next_session(day: dt.date) -> dt.date:
    """The first session after ``day``: a model decided at a close serves from the next open."""
    following = owning_session(day + dt.timedelta(days=1))
    if following is None:
        raise ValueError(f"no NYSE session after {day} in the calendar")
    return following


def fold_for_month(
    sessions: list[dt.date], serves_from: dt.date, month_end: dt.date, split: SplitConfig
) -> Fold:
    """The fold of a refit serving ``serves_from..month_end``, over the feature sessions
    before ``serves_from`` (`walk_forward.fold_before`)."""
    if not split.gate_sessions:
        raise ValueError("a refit needs a gate slice (gate_sessions > 0) to be judged on")
    before = sorted(d for d in set(sessions) if d < serves_from)
    fold = fold_before(before, serves_from, month_end, split)
    if fold is None:
        raise ValueError(
            f"{len(before)} feature sessions before {serves_from}: a refit needs at least "
            f"{split.sessions_before_test} ({split.min_train_sessions} to train, "
            f"{split.validation_sessions} to early-stop, {split.gate_sessions} to gate and "
            f"three gaps of {split.gap_sessions})"
        )
    return fold


def rows_digest(rows: pl.DataFrame) -> str:
    """sha256 of a frame's content, independent of row order (rows sorted first)."""
    ordered = rows.sort("date", "instrument").select(sorted(rows.columns))
    digest = hashlib.sha256(json.dumps(ordered.schema, default=str).encode())
    digest.update(ordered.hash_rows(seed=0).to_numpy().tobytes())
    digest.update(pl.__version__.encode())  # the row hash is stable within a polars version
    return digest.hexdigest()


def prepare_month(
    features: pl.DataFrame,
    bars: pl.DataFrame,
    month_start: dt.date,
    month_end: dt.date,
    split: SplitConfig,
    settings: dict,
    decision: dt.date | None = None,
) -> MonthlyInputs:
    """Fold and labelled rows of a refit of the month, and the digest of everything it would
    use (the rows of its three slices, the split and ``settings``).

    ``decision``: the session at whose close the refit is decided (a drift refit's; it must have
    features, and the next session must fall in the month); default the month's decision
    (`month_decision`). Nothing dated after it is read.
    """
    explicit = decision is not None
    decision = decision if explicit else month_decision(month_start)
    serves_from = next_session(decision)
    if not month_start <= serves_from <= month_end:
        raise ValueError(
            f"a refit decided on {decision} serves from {serves_from}, outside "
            f"{month_start}..{month_end}: refit the month {serves_from:%Y-%m} instead"
        )
    features = features.filter(pl.col("date") <= decision)
    bars = bars.filter(pl.col("date") <= decision)
    sessions = features["date"].unique().to_list()
    if explicit and decision not in sessions:
        raise ValueError(f"no features for the decision session {decision}")
    fold = fold_for_month(sessions, serves_from, month_end, split)
    labelled = labelled_universe(features, forward_returns(bars, split.horizon))
    used = pl.concat([training_rows(labelled, fold, p) for p in ("train", "validation", "gate")])
    digest = hashlib.sha256(rows_digest(used).encode())
    digest.update(json.dumps({"split": asdict(split), **settings}, sort_keys=True).encode())
    return MonthlyInputs(fold, labelled, digest.hexdigest(), decision, serves_from)


def train_prepared(
    inputs: MonthlyInputs, config: LightGBMConfig, confidence_level: float
) -> MonthlyModel:
    """Fit on train, early-stop on validation, calibrate intervals on the gate slice."""
    trained = train_labelled(inputs.labelled, inputs.fold, config)
    calibration = training_rows(inputs.labelled, inputs.fold, "gate")
    model = conformal.calibrate(trained.booster, calibration, confidence_level)
    return MonthlyModel(trained, model, calibration, inputs)


def train_month(
    features: pl.DataFrame,
    bars: pl.DataFrame,
    month_start: dt.date,
    month_end: dt.date,
    split: SplitConfig,
    config: LightGBMConfig,
    confidence_level: float,
    decision: dt.date | None = None,
) -> MonthlyModel:
    """Train on what was known at the decision (default: before ``month_start``;
    `prepare_month`, `train_prepared`)."""
    settings = {"lightgbm": asdict(config), "confidence_level": confidence_level}
    inputs = prepare_month(features, bars, month_start, month_end, split, settings, decision)
    return train_prepared(inputs, config, confidence_level)
