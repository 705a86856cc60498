"""Walk-forward folds and LightGBM training on the real year's gold features: no leakage."""

import dataclasses
import datetime as dt
import time

import numpy as np
import polars as pl
import pytest

from stock_assets.calendar import session_numbers
from stock_assets.gold.feature_set import MODEL_FEATURES
from stock_assets.models.labels import forward_returns
from stock_assets.models.walk_forward import (
    Fold,
    LightGBMConfig,
    SplitConfig,
    predict,
    train_fold,
    walk_forward,
    walk_forward_folds,
)
from stock_assets_tests.models.conftest import HORIZON, year_features

SPLIT = SplitConfig(horizon=HORIZON, min_train_sessions=100, validation_sessions=20)


@pytest.fixture(scope="module")
def sessions(features) -> list[dt.date]:
    return sorted(features["date"].unique().to_list())


@pytest.fixture(scope="module")
def first_fold(sessions) -> Fold:
    return walk_forward_folds(sessions, SPLIT)[0]


@pytest.fixture(scope="module")
def trained(features, labels, first_fold):
    started = time.perf_counter()
    result = train_fold(features, labels[HORIZON], first_fold)
    return result, time.perf_counter() - started


# -- folds ----------------------------------------------------------------------------------------
def test_folds_are_ordered_with_gaps_of_the_horizon_and_test_slices_that_tile(sessions):
    folds = walk_forward_folds(sessions, SPLIT)
    assert len(folds) >= 5
    position = {d: i for i, d in enumerate(sessions)}
    calendar = session_numbers(sessions)
    for fold in folds:
        parts = [fold.bounds(p) for p in ("train", "validation", "test")]
        assert all(start <= end for start, end in parts)
        assert parts[0][1] < parts[1][0] and parts[1][1] < parts[2][0]  # strictly after
        for (_, end), (start, _) in zip(parts, parts[1:], strict=False):
            assert position[start] - position[end] - 1 >= HORIZON  # sessions left out
            assert calendar[start] - calendar[end] - 1 >= HORIZON  # NYSE sessions too
        assert position[fold.validation_end] - position[fold.validation_start] + 1 == 20
        assert position[fold.train_end] - position[fold.train_start] + 1 >= 100
    for before, after in zip(folds, folds[1:], strict=False):
        assert position[after.test_start] == position[before.test_end] + 1  # no overlap, no hole
        assert after.train_start == before.train_start == sessions[0]  # expanding
        assert after.train_end > before.train_end
    assert folds[-1].test_end == sessions[-1]


def test_every_training_label_is_known_before_validation_and_validation_before_test(
    sessions, labels
):
    for fold in walk_forward_folds(sessions, SPLIT):
        train = fold.rows(labels[HORIZON], "train").drop_nulls("forward_return")
        valid = fold.rows(labels[HORIZON], "validation").drop_nulls("forward_return")
        assert train["label_known_on"].max() < fold.validation_start
        assert valid["label_known_on"].max() < fold.test_start
        # and it is tight: the gap is exactly the horizon, so the last label lands just before
        assert train["label_known_on"].max() >= fold.validation_start - dt.timedelta(days=7)


def test_rolling_and_monthly_layouts(sessions):
    rolling = walk_forward_folds(
        sessions, dataclasses.replace(SPLIT, window="rolling", rolling_sessions=100)
    )
    position = {d: i for i, d in enumerate(sessions)}
    lengths = {position[f.train_end] - position[f.train_start] + 1 for f in rolling}
    assert lengths == {100} and len({f.train_start for f in rolling}) == len(rolling)
    monthly = walk_forward_folds(sessions, dataclasses.replace(SPLIT, refit_every="monthly"))
    # the first test session could be 2010-03-09 (130 sessions in): the next month start
    assert [f.test_start for f in monthly] == [
        dt.date(2010, 4, 1), dt.date(2010, 5, 3), dt.date(2010, 6, 1), dt.date(2010, 7, 1),
        dt.date(2010, 8, 2),
    ]  # fmt: skip
    assert all(f.test_end.month == f.test_start.month for f in monthly)
    with pytest.raises(ValueError, match="leak"):
        SplitConfig(horizon=5, gap=4)


# -- training -------------------------------------------------------------------------------------
def test_train_fold_uses_known_labels_of_universe_members_and_is_fast(
    trained, labelled, first_fold
):
    result, seconds = trained
    expected_train = first_fold.rows(labelled, "train").filter(
        pl.col("label_known_on") < first_fold.validation_start
    )
    assert result.train_rows == expected_train.height > 30_000
    assert result.validation_rows == first_fold.rows(labelled, "validation").height > 8_000
    assert result.feature_names == list(MODEL_FEATURES)
    assert 1 <= result.best_iteration <= LightGBMConfig().num_boost_round
    assert result.validation["rank_ic"].days == 20
    assert -1 < result.validation["rank_ic"].mean < 1
    assert set(result.metrics()) >= {"best_iteration", "validation_rank_ic_mean"}
    assert seconds < 60  # a few seconds with 2 threads on an idle machine


def test_a_hand_built_fold_without_gap_still_drops_labels_unknown_at_validation(
    features, labels, first_fold, trained
):
    """train_fold filters on label_known_on itself: a fold with no gap learns nothing newer."""
    sessions = sorted(features["date"].unique().to_list())
    end = sessions.index(first_fold.validation_start) - 1
    no_gap = dataclasses.replace(first_fold, train_end=sessions[end])
    config = LightGBMConfig(num_boost_round=5, early_stopping_rounds=5)
    result = train_fold(features, labels[HORIZON], no_gap, config)
    assert result.train_rows == trained[0].train_rows  # the extra 5 sessions had no known label


def test_predict_returns_one_row_per_feature_row(trained, features):
    result, _ = trained
    day = features.filter(pl.col("date") == dt.date(2010, 3, 9))
    out = predict(result.booster, day)
    assert out.columns == ["instrument", "ticker", "date", "prediction"]
    assert out.height == day.height and out["prediction"].null_count() == 0
    assert out["prediction"].n_unique() > 10


def test_perturbing_every_bar_after_t_leaves_the_model_and_predictions_up_to_t_unchanged(
    adjusted, universe, features, labels, first_fold, trained
):
    """t = the session the last validation label is known. Every adjusted price and volume
    after t is multiplied by a random factor; features and labels are rebuilt from the
    perturbed bars and the fold trained again: identical trees, identical predictions <= t."""
    result, _ = trained
    sessions = sorted(features["date"].unique().to_list())
    t = sessions[sessions.index(first_fold.validation_end) + HORIZON]
    assert t < first_fold.test_start
    rng = np.random.default_rng(7)
    factor = pl.Series(rng.uniform(0.5, 1.5, adjusted.height))
    volume_factor = pl.Series(rng.uniform(0.2, 5.0, adjusted.height))
    later = pl.col("date") > t
    perturbed = adjusted.with_columns(
        *(
            pl.when(later).then(pl.col(c) * factor).otherwise(pl.col(c))
            for c in ("adj_open", "adj_high", "adj_low", "adj_close")
        ),
        adj_volume=pl.when(later)
        .then(pl.col("adj_volume") * volume_factor)
        .otherwise(pl.col("adj_volume")),
    )
    changed_features = year_features(perturbed, universe)
    changed_labels = forward_returns(perturbed, HORIZON)
    again = train_fold(changed_features, changed_labels, first_fold)
    assert again.booster.model_to_string() == result.booster.model_to_string()
    assert again.best_iteration == result.best_iteration
    upto = pl.col("date") <= t
    before = predict(result.booster, features.filter(upto))
    after = predict(again.booster, changed_features.filter(upto))
    assert before.height > 60_000
    assert before.equals(after)
    # the perturbation is real: later features, and the predictions made from them, differ
    later_before = predict(result.booster, features.filter(later))
    later_after = predict(again.booster, changed_features.filter(later))
    assert not later_before["prediction"].equals(later_after["prediction"])
    # and a fold whose training reaches past t learns from it (the test can fail)
    at = sessions.index(t)
    leaky = Fold(
        0, first_fold.train_start, sessions[at + 3],  # training rows reach past t
        sessions[at + HORIZON + 4], sessions[at + HORIZON + 23],
        sessions[at + 2 * HORIZON + 24], sessions[at + 2 * HORIZON + 30],
    )  # fmt: skip
    config = LightGBMConfig(num_boost_round=3, early_stopping_rounds=3)
    base = train_fold(features, labels[HORIZON], leaky, config)
    moved = train_fold(changed_features, changed_labels, leaky, config)
    assert base.booster.model_to_string() != moved.booster.model_to_string()


def test_walk_forward_predicts_each_member_once_per_test_session(features, labels):
    """Out-of-sample predictions of all folds: one per universe member and session, in order."""
    split = SplitConfig(horizon=HORIZON, min_train_sessions=100, validation_sessions=20,
                        refit_every=60)  # fmt: skip
    config = LightGBMConfig(num_boost_round=5, early_stopping_rounds=5)
    names = ["ROC5", "ROC20", "MA20", "STD20", "rsi_14", "cs_rank_ROC20", "cs_z_STD20"]
    folds, predictions = walk_forward(features, labels[HORIZON], split, config, names)
    assert len(folds) == 2 and [f.fold.number for f in folds] == [0, 1]
    members = features.filter(pl.col("in_universe"), pl.col("date") >= folds[0].fold.test_start)
    assert predictions.height == members.height
    assert predictions.select("instrument", "date").is_duplicated().sum() == 0
    for trained in folds:
        dates = predictions.filter(pl.col("fold") == trained.fold.number)["date"]
        assert dates.min() == trained.fold.test_start and dates.max() == trained.fold.test_end
        assert trained.feature_names == names
