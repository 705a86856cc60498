"""Conformal intervals on the real year: calibrated after training, covered on later data."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from stock_assets.models.conformal import (
    BoosterRegressor,
    calibrate,
    coverage,
    predict_intervals,
    rolling_intervals,
)
from stock_assets.models.walk_forward import (
    SplitConfig,
    feature_matrix,
    train_fold,
    training_rows,
    walk_forward_folds,
)
from stock_assets_tests.models.conftest import HORIZON, LAST


@pytest.fixture(scope="module")
def fold_model(features, labels):
    fold = walk_forward_folds(sorted(features["date"].unique().to_list()), SplitConfig())[1]
    return fold, train_fold(features, labels[HORIZON], fold)


def test_coverage_on_the_test_slice_is_close_to_the_nominal_level(labelled, fold_model):
    fold, trained = fold_model
    calibration = training_rows(labelled, fold, "validation")
    model = calibrate(trained.booster, calibration, confidence_level=0.9)
    assert model.calibration_end == fold.validation_end < fold.test_start
    assert model.calibration_rows == calibration.height > 8_000
    test = fold.rows(labelled, "test")
    intervals = predict_intervals(model, test)
    assert intervals.height == test.height
    assert (intervals["lower"] <= intervals["prediction"]).all()
    assert (intervals["prediction"] <= intervals["upper"]).all()
    width = (intervals["upper"] - intervals["lower"]).to_numpy()
    np.testing.assert_allclose(width, 2 * model.half_width, rtol=1e-9)  # absolute score
    summary, daily = coverage(intervals, test)
    assert summary.start > model.calibration_end  # measured after calibration only
    assert summary.rows == test.height
    assert 0.8 <= summary.coverage <= 0.97, summary
    assert daily.height == 20 and daily["coverage"].min() > 0.6
    # coverage follows the level asked for: not just wide intervals
    half = predict_intervals(calibrate(trained.booster, calibration, 0.5), test)
    assert 0.4 <= coverage(half, test)[0].coverage <= 0.6
    assert (half["upper"] - half["lower"]).mean() < 0.6 * width.mean()


def test_the_wrapper_is_the_booster_and_refuses_to_refit(features, fold_model):
    _, trained = fold_model
    rows = features.filter(pl.col("date") == dt.date(2010, 6, 1))
    regressor = BoosterRegressor(trained.booster, trained.best_iteration)
    matrix = feature_matrix(rows, trained.feature_names)
    np.testing.assert_array_equal(
        regressor.predict(matrix),
        trained.booster.predict(matrix, num_iteration=trained.best_iteration),
    )
    assert regressor.n_features_in_ == len(trained.feature_names)
    with pytest.raises(TypeError):
        regressor.fit(matrix, np.zeros(matrix.shape[0]))


def test_rolling_recalibration_uses_only_labels_known_before_each_block(
    features, labelled, fold_model
):
    fold, trained = fold_model
    after_training = labelled.filter(pl.col("date") >= fold.validation_start)
    members = features.filter(pl.col("in_universe"))
    days = sorted(members.filter(pl.col("date") >= fold.test_start)["date"].unique().to_list())
    intervals = rolling_intervals(
        trained.booster, after_training, members, days, calibration_sessions=20
    )
    assert intervals["date"].min() == fold.test_start and intervals["date"].max() == LAST
    known_on = labelled.select(
        pl.col("date").alias("calibrated_until"), pl.col("label_known_on").alias("known")
    ).unique()
    used = intervals.join(known_on, on="calibrated_until")
    assert (used["known"] < used["date"]).all()  # every calibration label known beforehand
    summary, _ = coverage(intervals, labelled)
    assert summary.start == fold.test_start and summary.rows > 30_000
    assert 0.8 <= summary.coverage <= 0.97, summary
