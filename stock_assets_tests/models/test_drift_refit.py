"""A refit decided inside a month (drift) on the real S&P 500 year: its cut is the last session
whose label is known at the decision's close, its slices keep the monthly layout, and nothing
dated after the decision can change it."""

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from stock_assets.calendar import sessions_before
from stock_assets.models.training import (
    SHIPPED_SPLIT,
    month_decision,
    next_session,
    prepare_month,
    train_prepared,
)
from stock_assets.models.walk_forward import LightGBMConfig, predict, training_rows
from stock_assets_tests.models.test_gate import assert_slices_apart

JUNE, JUNE_END = dt.date(2010, 6, 1), dt.date(2010, 6, 30)
JULY, JULY_END = dt.date(2010, 7, 1), dt.date(2010, 7, 31)
DECISION = dt.date(2010, 6, 15)  # a Tuesday, mid-June
FAST = LightGBMConfig(num_boost_round=40, early_stopping_rounds=10)
SETTINGS = {"lightgbm": dataclasses.asdict(FAST), "confidence_level": 0.9}


@pytest.mark.parametrize("horizon", [1, 5])
def test_a_mid_month_refit_is_cut_where_labels_stop_being_known_at_its_decision(
    features, adjusted, horizon
):
    split = dataclasses.replace(SHIPPED_SPLIT, horizon=horizon)
    inputs = prepare_month(features, adjusted, JUNE, JUNE_END, split, {}, DECISION)
    assert inputs.decision == DECISION and inputs.serves_from == dt.date(2010, 6, 16)
    assert inputs.fold.test_start == inputs.serves_from
    # the session h before the decision: its label is known at the decision's close
    assert inputs.data_cut == inputs.fold.gate_end == sessions_before(DECISION, horizon)
    gate = training_rows(inputs.labelled, inputs.fold, "gate")
    assert gate["date"].max() == inputs.data_cut and gate["label_known_on"].max() == DECISION
    assert inputs.labelled["date"].max() <= DECISION  # nothing after the decision was read
    assert_slices_apart(inputs.fold, inputs.labelled, horizon)  # train | stop | gate, gaps >= h
    monthly = prepare_month(features, adjusted, JUNE, JUNE_END, split, {})
    assert monthly.decision == month_decision(JUNE) == dt.date(2010, 5, 28)
    assert monthly.serves_from == JUNE and monthly.data_cut < JUNE
    assert inputs.data_cut > monthly.data_cut and inputs.digest != monthly.digest


def test_a_refit_decided_on_a_months_eve_is_that_months_refit(features, adjusted):
    """Decided at June's last close, it serves July from its first session: the same cut and
    rows as July's scheduled refit, hence the same digest (which then registers nothing)."""
    eve = prepare_month(features, adjusted, JULY, JULY_END, SHIPPED_SPLIT, SETTINGS, JUNE_END)
    monthly = prepare_month(features, adjusted, JULY, JULY_END, SHIPPED_SPLIT, SETTINGS)
    assert eve.serves_from == monthly.serves_from == JULY
    assert eve.fold == monthly.fold and eve.digest == monthly.digest
    with pytest.raises(ValueError, match="refit the month 2010-07"):
        prepare_month(features, adjusted, JUNE, JUNE_END, SHIPPED_SPLIT, SETTINGS, JUNE_END)
    with pytest.raises(ValueError, match="no features for the decision session"):
        august = dt.date(2010, 8, 1), dt.date(2010, 8, 31)
        prepare_month(features, adjusted, *august, SHIPPED_SPLIT, {}, dt.date(2010, 8, 24))
    assert next_session(dt.date(2010, 7, 2)) == dt.date(2010, 7, 6)  # over July 4th


def perturbed_after(frame: pl.DataFrame, day: dt.date, columns: list[str], seed: int):
    """Rows after ``day``: every other one dropped, the rest scaled by noise (so the row count
    changes too, not only the values)."""
    later = frame.filter(pl.col("date") > day)
    later = later.with_row_index("_n").filter(pl.col("_n") % 2 == 0).drop("_n")
    noise = pl.Series(np.random.default_rng(seed).uniform(0.5, 1.5, later.height))
    later = later.with_columns(pl.col(c) * noise for c in columns)
    return pl.concat([frame.filter(pl.col("date") <= day), later])


def test_the_refit_is_identical_with_every_row_after_its_decision_removed_or_perturbed(
    features, adjusted
):
    def refit(feats, bars):
        inputs = prepare_month(feats, bars, JUNE, JUNE_END, SHIPPED_SPLIT, SETTINGS, DECISION)
        return inputs, train_prepared(inputs, FAST, 0.9)

    inputs, model = refit(features, adjusted)
    probe = features.filter(pl.col("date") == JUNE_END)  # a day the refit serves
    expected = predict(model.trained.booster, probe)["prediction"]
    upto = pl.col("date") <= DECISION
    noisy_features = perturbed_after(features, DECISION, ["rsi_14", "roc_10", "KMID"], 1)
    noisy_bars = perturbed_after(adjusted, DECISION, ["adj_close"], 2)
    for feats, bars in [
        (features.filter(upto), adjusted.filter(upto)),
        (noisy_features, noisy_bars),
    ]:
        again, retrained = refit(feats, bars)
        assert again.digest == inputs.digest and again.fold == inputs.fold
        assert retrained.conformal.half_width == model.conformal.half_width
        assert predict(retrained.trained.booster, probe)["prediction"].equals(expected)
    # the decision session's own close is known at the decision: it feeds the cut's label
    noise = pl.Series(np.random.default_rng(3).uniform(0.9, 1.1, adjusted.height))
    moved = adjusted.with_columns(
        adj_close=pl.when(pl.col("date") == DECISION)
        .then(pl.col("adj_close") * noise)
        .otherwise(pl.col("adj_close"))
    )
    assert refit(features, moved)[0].digest != inputs.digest
