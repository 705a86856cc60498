"""The refit's slices and the promotion rule on the real year: nothing judged in sample."""

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from stock_assets.calendar import session_numbers
from stock_assets.models import gate
from stock_assets.models.challenger import against_champion
from stock_assets.models.labels import forward_returns, labelled_universe, sessions_after
from stock_assets.models.training import (
    SHIPPED_SPLIT,
    fold_for_month,
    prepare_month,
    train_month,
    train_prepared,
)
from stock_assets.models.walk_forward import (
    LightGBMConfig,
    SplitConfig,
    train_labelled,
    training_rows,
    walk_forward_folds,
)

JUNE, JUNE_END = dt.date(2010, 6, 1), dt.date(2010, 6, 30)
MAY, MAY_END = dt.date(2010, 5, 3), dt.date(2010, 5, 28)
FAST = LightGBMConfig(num_boost_round=40, early_stopping_rounds=10)
PARTS = ("train", "validation", "gate")


@pytest.fixture(scope="module")
def june(features, adjusted):
    return train_month(features, adjusted, JUNE, JUNE_END, SHIPPED_SPLIT, FAST, 0.9)


def assert_slices_apart(fold, labelled, horizon: int) -> None:
    """Row dates of train, early stopping and gate: disjoint, in order, gaps >= horizon in
    NYSE sessions, and every slice's labels known before the next slice's first row."""
    slices = [training_rows(labelled, fold, part) for part in PARTS]
    assert all(part.height > 1000 for part in slices)
    number = session_numbers(sorted(labelled["date"].unique().to_list()))
    for before, after in zip(slices, slices[1:], strict=False):
        last, first = before["date"].max(), after["date"].min()
        assert number[first] - number[last] - 1 >= horizon
        assert before["label_known_on"].max() < first
        assert not set(before["date"].unique()) & set(after["date"].unique())
    assert slices[-1]["label_known_on"].max() < fold.test_start


@pytest.mark.parametrize("horizon", [1, 5])
def test_a_months_train_stop_and_gate_slices_are_disjoint_with_gaps_of_the_horizon(
    features, adjusted, horizon
):
    split = dataclasses.replace(SHIPPED_SPLIT, horizon=horizon)
    inputs = prepare_month(features, adjusted, JUNE, JUNE_END, split, {})
    assert inputs.fold.gate_end < JUNE and inputs.data_cut == inputs.fold.gate_end
    assert_slices_apart(inputs.fold, inputs.labelled, horizon)
    # the research folds (the evaluation bench's) use the same layout
    labelled = labelled_universe(features, forward_returns(adjusted, horizon))
    folds = walk_forward_folds(sorted(features["date"].unique().to_list()), split)
    assert len(folds) >= 3 and JUNE in {f.test_start for f in folds}
    for fold in folds:
        assert_slices_apart(fold, labelled, horizon)


def test_a_refit_without_a_gate_slice_is_refused(features):
    split = SplitConfig(horizon=1, gate_sessions=0)
    with pytest.raises(ValueError, match="gate slice"):
        fold_for_month(features["date"].unique().to_list(), JUNE, JUNE_END, split)


def test_calibration_rows_are_the_gate_slice_never_the_early_stopping_rows(june):
    fold = june.trained.fold
    stopping = set(training_rows(june.inputs.labelled, fold, "validation")["date"].unique())
    calibration = set(june.calibration["date"].unique())
    assert calibration and not calibration & stopping
    assert june.conformal.calibration_start == fold.gate_start
    assert june.conformal.calibration_end == fold.gate_end
    assert june.conformal.calibration_rows == june.calibration.height
    assert june.slice_dates()["calibration_dates"] == f"{fold.gate_start}..{fold.gate_end}"


def test_the_booster_is_the_same_without_any_gate_row(june):
    """Fitting and early stopping never read the gate slice: with every row after the early-
    stopping slice removed, the trees are bit-identical (and the gate slice is not empty)."""
    fold, labelled = june.trained.fold, june.inputs.labelled
    without_gate = labelled.filter(pl.col("date") <= fold.validation_end)
    assert labelled.height - without_gate.height >= june.calibration.height > 5000
    again = train_labelled(without_gate, fold, FAST)
    assert again.booster.model_to_string() == june.trained.booster.model_to_string()


def test_the_champion_is_compared_only_on_days_it_never_saw(features, adjusted, june):
    may = train_month(features, adjusted, MAY, MAY_END, SHIPPED_SPLIT, FAST, 0.9)
    horizon = SHIPPED_SPLIT.horizon
    comparison, rows = against_champion(june, may.trained.booster, may.inputs.data_cut, horizon)
    first_unseen = sessions_after([may.inputs.data_cut], horizon)[may.inputs.data_cut]
    assert rows["date"].min() >= first_unseen > may.inputs.data_cut
    assert set(rows["date"].unique()) <= set(june.calibration["date"].unique())
    assert comparison.days == rows["date"].n_unique() >= gate.MIN_DAYS
    assert comparison.first_day >= first_unseen and comparison.lags == gate.paired_lags(1)
    # a champion whose cut lies inside the gate slice loses those days from the comparison
    late_cut = june.trained.fold.gate_start + dt.timedelta(days=14)
    later, fewer = against_champion(june, may.trained.booster, late_cut, horizon)
    assert 0 < later.days < comparison.days and fewer["date"].min() > late_cut


def test_paired_rank_ic_and_the_rule_on_a_hand_made_example():
    rng = np.random.default_rng(3)
    days = [dt.date(2010, 1, 4) + dt.timedelta(days=i) for i in range(30)]
    frame = pl.DataFrame(
        {
            "date": pl.Series([d for d in days for _ in range(50)], dtype=pl.Date),
            "instrument": np.tile(np.arange(50), 30),
            "label": rng.standard_normal(1500),
        }
    )
    noise = rng.standard_normal(1500)
    frame = frame.with_columns(
        prediction=pl.col("label") + pl.Series(noise),  # informative
        champion_prediction=pl.Series(rng.standard_normal(1500)),  # noise
    )
    better = gate.paired_rank_ic(frame, horizon=1)
    assert better.days == 30 and better.challenger_rank_ic > 0.5 > abs(better.champion_rank_ic)
    assert better.t_stat > 10 and gate.promotes(better)[0]
    swapped = gate.paired_rank_ic(frame, 1, "champion_prediction", "prediction")
    assert swapped.t_stat == pytest.approx(-better.t_stat)
    assert not gate.promotes(swapped)[0]
    short = gate.paired_rank_ic(frame.filter(pl.col("date") < days[5]), 1)
    allowed, why = gate.promotes(short)
    assert not allowed and "no evidence" in why


def test_the_rules_false_promotion_rate_under_no_difference():
    """Equal models: with threshold 0 half the trials promote; the shipped threshold rarely."""
    assert 0.45 < gate.false_promotion_rate(20, 1, min_t=0.0, trials=4000) < 0.55
    assert 0.02 < gate.false_promotion_rate(20, 1, trials=4000) < 0.08
    assert gate.false_promotion_rate(5, 1, min_t=-99, trials=200) == 0  # too few days


def test_a_refit_on_the_same_inputs_has_the_same_digest_and_new_inputs_a_new_one(
    features, adjusted, june
):
    settings = {"lightgbm": FAST.__dict__, "confidence_level": 0.9}
    same = prepare_month(features, adjusted, JUNE, JUNE_END, SHIPPED_SPLIT, settings)
    assert same.digest == june.inputs.digest
    cut = same.data_cut
    moved = features.with_columns(
        rsi_14=pl.when(pl.col("date") == cut).then(pl.col("rsi_14") + 1).otherwise("rsi_14")
    )
    changed = prepare_month(moved, adjusted, JUNE, JUNE_END, SHIPPED_SPLIT, settings)
    assert changed.digest != same.digest
    other = prepare_month(features, adjusted, JUNE, JUNE_END, SHIPPED_SPLIT, {"seed": 1})
    assert other.digest != same.digest
    assert train_prepared(same, FAST, 0.9).trained.booster.model_to_string() == (
        june.trained.booster.model_to_string()
    )
