"""Expected return and price intervals: mechanics on synthetic heteroscedastic rows, then the
real S&P 500 year (wider for volatile stocks; nothing after the calibration's labels is read)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import polars.testing
import pytest

from stock_assets.models import return_intervals as ri
from stock_assets.models.labels import forward_returns, normalise_cross_section

START = dt.date(2010, 1, 4)


# -- synthetic rows: the mechanics ------------------------------------------------------------
def heteroscedastic(rows: int, seed: int, first: dt.date = START) -> pl.DataFrame:
    """Rows whose return is sigma * (0.05 + 0.3 * score + noise): noise scales with sigma."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.004), np.log(0.06), rows))
    score = rng.normal(size=rows)
    realised = sigma * (0.05 + 0.3 * score + rng.standard_t(6, rows) / np.sqrt(1.5))
    day = [first + dt.timedelta(days=int(d)) for d in rng.integers(0, 28, rows)]
    return pl.DataFrame(
        {
            "instrument": [f"S{i % 400:03d}" for i in range(rows)],
            "date": day,
            "score": score,
            "volatility": sigma,
            "forward_return": realised,
            "last_close": rng.uniform(5, 500, rows),
        }
    ).with_columns(label_known_on=pl.col("date") + pl.duration(days=1))


def volatility_quintiles(frame: pl.DataFrame) -> pl.DataFrame:
    quintile = (pl.col("volatility").rank("ordinal") * 5 / pl.len()).ceil().cast(pl.Int32)
    return frame.with_columns(quintile=quintile)


def test_normalised_intervals_cover_every_volatility_bin_and_unconditional_ones_do_not():
    calibration = heteroscedastic(20_000, seed=1)
    predicted = heteroscedastic(30_000, seed=2, first=dt.date(2010, 3, 1))
    intervals = ri.return_intervals(calibration, predicted, horizon=1, unconditional=True)
    by_bin = ri.coverage_by(volatility_quintiles(intervals), ["quintile"])
    for level in ri.LEVELS:
        suffix = ri.level_suffix(level)
        normalised = by_bin[f"coverage_{suffix}"].to_numpy()
        flat = by_bin[f"unconditional_coverage_{suffix}"].to_numpy()
        assert np.all(np.abs(normalised - level) < 0.02), (level, normalised)
        assert flat[0] > level + 0.04 and flat[-1] < level - 0.1, (level, flat)  # calm, wild
    overall = ri.coverage_by(intervals)
    assert abs(overall["coverage_90"].item() - 0.9) < 0.01
    assert abs(overall["unconditional_coverage_90"].item() - 0.9) < 0.01  # only on average


def test_a_fitted_scale_covers_each_bin_when_residuals_grow_slower_than_volatility():
    def damped(rows: int, seed: int, first: dt.date = START) -> pl.DataFrame:
        frame = heteroscedastic(rows, seed, first)  # noise ~ sqrt(sigma) instead of sigma
        noise = frame["forward_return"] - frame["volatility"] * (0.05 + 0.3 * frame["score"])
        return frame.with_columns(
            forward_return=frame["volatility"] * (0.05 + 0.3 * frame["score"])
            + noise / frame["volatility"] * (frame["volatility"] * 0.02).sqrt()
        )

    calibration, predicted = damped(20_000, 8), damped(30_000, 9, dt.date(2010, 3, 1))
    by_scale = {}
    for scale in ("volatility", "fitted"):
        out = ri.return_intervals(calibration, predicted, horizon=1, scale=scale)
        by_scale[scale] = ri.coverage_by(volatility_quintiles(out), ["quintile"])["coverage_90"]
    assert np.all(np.abs(by_scale["fitted"].to_numpy() - 0.9) < 0.02), by_scale["fitted"]
    assert by_scale["volatility"][0] < 0.85 and by_scale["volatility"][-1] > 0.95  # d = 1: wrong


def test_mapping_recovers_the_scale_and_the_quantile_has_the_finite_sample_correction():
    calibration = heteroscedastic(5_001, seed=3)
    model = ri.calibrate(calibration, horizon=1)
    assert model.intercept == pytest.approx(0.05, abs=0.03)
    assert model.slope == pytest.approx(0.3, abs=0.03)
    rows = calibration.with_columns(date=pl.col("date") + pl.duration(days=60))
    out = ri.predict(model, rows)

    def mapped(frame: pl.DataFrame) -> np.ndarray:
        return (frame["volatility"] * (model.intercept + model.slope * frame["score"])).to_numpy()

    np.testing.assert_allclose(out["expected_return"], mapped(out), rtol=1e-12)
    residuals = np.abs(calibration["forward_return"].to_numpy() - mapped(calibration))
    scores = np.sort(residuals / calibration["volatility"].to_numpy())
    n = len(scores)
    for level in ri.LEVELS:
        q = scores[int(np.ceil((n + 1) * level)) - 1]  # the (n+1)-corrected order statistic
        suffix = ri.level_suffix(level)
        half = (out[f"return_upper_{suffix}"] - out[f"return_lower_{suffix}"]) / 2
        np.testing.assert_allclose(half / out["volatility"], q, rtol=1e-9)


def test_prices_are_the_last_close_times_one_plus_the_return_and_bounds_are_ordered():
    calibration = heteroscedastic(2_000, seed=4)
    predicted = heteroscedastic(500, seed=5, first=dt.date(2010, 3, 1))
    predicted = predicted.with_columns(
        volatility=pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise("volatility")
    )
    out = ri.return_intervals(calibration, predicted, horizon=5)
    assert out.height == predicted.height  # rows without a volatility are kept, with nulls
    assert out.filter(pl.col("volatility").is_null())["expected_return"].null_count() == 3
    known = out.filter(pl.col("volatility").is_not_null())
    for name in ["expected_return"] + [c for c in out.columns if c.startswith("return_")]:
        price = name.replace("return", "price")
        np.testing.assert_allclose(known[price], known["last_close"] * (1 + known[name]))
    for level in ri.LEVELS:
        s = ri.level_suffix(level)
        assert (known[f"return_lower_{s}"] < known["expected_return"]).all()
        assert (known["expected_return"] < known[f"return_upper_{s}"]).all()
        assert (known[f"price_lower_{s}"] < known[f"price_upper_{s}"]).all()
    suffixes = [ri.level_suffix(v) for v in ri.LEVELS]
    widths = [(known[f"return_upper_{s}"] - known[f"return_lower_{s}"]).mean() for s in suffixes]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_calibration_labels_known_on_or_after_the_first_predicted_day_raise():
    predicted = heteroscedastic(100, seed=6, first=dt.date(2010, 3, 1))
    first = predicted["date"].min()
    calibration = heteroscedastic(1_000, seed=7)
    one_late = pl.concat(
        [calibration, calibration.head(1).with_columns(label_known_on=pl.lit(first))]
    )
    with pytest.raises(ValueError, match="overlap the predicted days"):
        ri.return_intervals(one_late, predicted, horizon=1)
    with pytest.raises(ValueError, match="overlaps the predicted days"):
        ri.predict(ri.calibrate(one_late, horizon=1), predicted)  # the model remembers too
    just_in_time = calibration.head(1).with_columns(label_known_on=pl.lit(first - dt.timedelta(1)))
    ri.return_intervals(pl.concat([calibration, just_in_time]), predicted, horizon=1)


def one_name(first: dt.date, sessions: int) -> pl.DataFrame:
    """One instrument's rows on ``sessions`` consecutive days: a 20-session calibration of one
    name holds 20 rows, fewer than MAPIE conformalizes at 95% with the fitted scale."""
    frame = heteroscedastic(sessions, seed=9)
    days = [first + dt.timedelta(days=d) for d in range(sessions)]
    return frame.with_columns(
        instrument=pl.lit("ONE"),
        date=pl.Series(days),
        label_known_on=pl.Series(days) + pl.duration(days=1),
    )


def test_a_calibration_of_too_few_rows_is_refused_by_name_and_skipped_only_when_asked():
    pool = one_name(START, 20)
    predicted = one_name(START + dt.timedelta(days=21), 2)
    with pytest.raises(ri.TooFewCalibrationRows, match="too few for 95%"):
        ri.calibrate(pool, horizon=1, scale="fitted")
    with pytest.raises(ri.TooFewCalibrationRows):
        list(ri.rolling_return_intervals(pool, predicted, horizon=1))
    refused: list[dt.date] = []
    assert list(ri.rolling_return_intervals(pool, predicted, 1, refused=refused)) == []
    assert refused == predicted["date"].to_list()
    many = heteroscedastic(400, seed=10)  # enough rows: calibrated, nothing refused
    assert ri.calibrate(many, horizon=1, scale="fitted").calibration_rows == 400


def test_trailing_volatility_is_the_std_of_the_last_returns_whatever_the_row_order():
    closes = [100.0, 101.0, 99.0, 102.0, 103.0, 101.5, 104.0]
    bars = pl.DataFrame(
        {
            "instrument": ["A"] * 7 + ["B"] * 7,
            "date": [START + dt.timedelta(days=d) for d in range(7)] * 2,
            "adj_close": closes + [c * 2 for c in reversed(closes)],
        }
    )
    shuffled = bars.sample(fraction=1.0, shuffle=True, seed=0)
    out = ri.trailing_volatility(shuffled, horizon=4, sessions=3).sort("instrument", "date")
    daily = np.diff(closes) / np.array(closes[:-1])
    expected = [None] * 3 + [np.std(daily[i - 3 : i], ddof=1) * 2 for i in range(3, 7)]
    got = out.filter(pl.col("instrument") == "A")["volatility"].to_list()
    assert got[:3] == [None] * 3
    np.testing.assert_allclose(got[3:], expected[3:], rtol=1e-12)


# -- the real year ----------------------------------------------------------------------------
def real_inputs(bars: pl.DataFrame, predicted_day: dt.date):
    """Calibration rows (labels known before ``predicted_day``) and that day's rows, from
    ``bars`` alone: a 5-session reversal score ranked per day, 1-session returns."""
    bars = bars.sort("instrument", "date")
    reversal = -(pl.col("adj_close") / pl.col("adj_close").shift(5) - 1).over("instrument")
    scored = normalise_cross_section(
        bars.with_columns(reversal=reversal).filter(pl.col("reversal").is_finite()),
        "reversal",
        output="score",
    ).select("instrument", "date", "score", last_close="close")
    volatility = ri.trailing_volatility(bars, horizon=1)
    rows = scored.join(volatility, on=["instrument", "date"])
    labels = forward_returns(bars, 1).select(
        "instrument", "date", "label_known_on", "forward_return"
    )
    calibration = rows.join(labels, on=["instrument", "date"]).filter(
        (pl.col("date") >= predicted_day - dt.timedelta(days=30))
        & (pl.col("label_known_on") < predicted_day)
    )
    return calibration, rows.filter(pl.col("date") == predicted_day)


def test_real_intervals_widen_with_volatility_and_read_nothing_after_what_was_known(adjusted):
    day = dt.date(2010, 4, 1)
    months = adjusted.filter(pl.col("date").is_between(dt.date(2010, 1, 4), dt.date(2010, 5, 28)))
    calibration, predicted = real_inputs(months, day)
    assert calibration["label_known_on"].max() == dt.date(2010, 3, 31)
    assert calibration.height > 8_000 and predicted.height > 450
    out = ri.return_intervals(calibration, predicted, horizon=1)
    width = (out["return_upper_90"] - out["return_lower_90"]).to_numpy()
    calm, wild = np.quantile(out["volatility"], [0.2, 0.8])
    assert width[out["volatility"] >= wild].mean() > 2 * width[out["volatility"] <= calm].mean()
    assert np.corrcoef(width, out["volatility"])[0, 1] > 0.99  # width follows each stock's sigma
    # remove every bar after the predicted day: the same figures, though fewer rows exist
    cut = months.filter(pl.col("date") <= day)
    assert cut.height < months.height
    again_cal, again_pred = real_inputs(cut, day)
    pl.testing.assert_frame_equal(ri.return_intervals(again_cal, again_pred, horizon=1), out)
    # and the calibration itself reads nothing after its last label session
    known = months.filter(pl.col("date") <= calibration["label_known_on"].max())
    model = ri.calibrate(real_inputs(known, day)[0], horizon=1)
    reference = ri.calibrate(calibration, horizon=1)
    assert (model.intercept, model.slope) == (reference.intercept, reference.slope)
    assert model.calibration_rows == reference.calibration_rows
