"""Forward-return labels on the real S&P 500 year: calendar horizons, nulls, normalisation."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy.special import ndtri

from stock_assets.calendar import trading_days
from stock_assets.models.labels import (
    known_by,
    labelled_universe,
    normalise_cross_section,
    sessions_after,
)


def raw_close(sp500: pl.DataFrame, ticker: str, day: dt.date) -> float:
    return sp500.filter(pl.col("ticker") == ticker, pl.col("date") == day)["close"].item()


def label_of(labels: pl.DataFrame, instrument: str, day: dt.date) -> dict:
    rows = labels.filter(pl.col("instrument") == instrument, pl.col("date") == day)
    assert rows.height == 1
    return rows.row(0, named=True)


def test_forward_return_is_the_ratio_of_closes_h_sessions_later(sp500, labels):
    """Hand-computed from the raw closes: over a weekend, over Christmas, across GIS's split."""
    cases = [  # ticker, t, h, t+h (NYSE session), split ratio between them
        ("AAPL", dt.date(2010, 1, 4), 5, dt.date(2010, 1, 11), 1.0),
        ("MSFT", dt.date(2009, 12, 24), 1, dt.date(2009, 12, 28), 1.0),  # 25th: closed
        ("XOM", dt.date(2010, 7, 2), 1, dt.date(2010, 7, 6), 1.0),  # 5th: closed
        ("GIS", dt.date(2010, 6, 7), 5, dt.date(2010, 6, 14), 2.0),  # 2:1 split on 2010-06-09
    ]
    for ticker, day, h, later, split in cases:
        row = label_of(labels[h], ticker, day)
        expected = raw_close(sp500, ticker, later) * split / raw_close(sp500, ticker, day) - 1
        assert row["label_known_on"] == later
        assert row["forward_return"] == pytest.approx(expected, rel=1e-12)
    gis = label_of(labels[5], "GIS", dt.date(2010, 6, 7))["forward_return"]
    assert abs(gis) < 0.05  # not the -49% the raw prices would show


def test_a_missing_bar_at_t_plus_h_gives_null_not_the_next_row(sp500, labels):
    # AAPL has no bar on 2009-11-12 (a real missing stock-day) but has one on 2009-11-13
    aapl = sp500.filter(pl.col("ticker") == "AAPL")
    assert aapl.filter(pl.col("date") == dt.date(2009, 11, 12)).is_empty()
    assert not aapl.filter(pl.col("date") == dt.date(2009, 11, 13)).is_empty()
    row = label_of(labels[1], "AAPL", dt.date(2009, 11, 11))
    assert row["label_known_on"] == dt.date(2009, 11, 12)
    assert row["forward_return"] is None
    # the data set lacks 2009-09-08 for everyone: every label of 09-04 at h=1 is null
    friday = labels[1].filter(pl.col("date") == dt.date(2009, 9, 4))
    assert friday.height > 400 and friday["forward_return"].null_count() == friday.height
    # a row-count shift fills those: at h=1 ours is null exactly where the next row is not t+1
    shifted = (
        labels[1]
        .sort("instrument", "date")
        .with_columns(next_date=pl.col("date").shift(-1).over("instrument"))
    )
    mismatch = shifted.filter(pl.col("next_date") != pl.col("label_known_on"))
    assert mismatch.height > 1000  # ~270 missing stock-days and 7 missing sessions
    assert mismatch["forward_return"].null_count() == mismatch.height


def test_a_label_exists_exactly_when_the_instrument_has_a_bar_on_t_plus_h(adjusted, labels):
    bars = adjusted.select("instrument", pl.col("date").alias("label_known_on"))
    for frame in labels.values():
        has_bar = frame.join(bars, on=["instrument", "label_known_on"], how="semi")
        no_bar = frame.join(bars, on=["instrument", "label_known_on"], how="anti")
        assert has_bar["forward_return"].null_count() == 0
        assert no_bar["forward_return"].null_count() == no_bar.height > 0


def test_label_known_on_is_the_h_th_session_after_the_date(labels):
    for h, frame in labels.items():
        days = sorted(frame["date"].unique().to_list())
        expected = {d: trading_days(d, d + dt.timedelta(days=30))[h] for d in days}
        pairs = frame.select("date", "label_known_on").unique()
        assert all(expected[d] == k for d, k in pairs.iter_rows())
        # the year's last session: known next week, beyond the data, so unknown yet
        last = frame.filter(pl.col("date") == dt.date(2010, 8, 20))
        assert last["forward_return"].null_count() == last.height
        cutoff = dt.date(2010, 3, 1)
        assert known_by(frame, cutoff)["label_known_on"].max() <= cutoff
        assert known_by(frame, cutoff)["date"].max() == sessions_before_cutoff(cutoff, h)
    with pytest.raises(ValueError):
        sessions_after([dt.date(2010, 1, 2)], 1)  # a Saturday
    with pytest.raises(ValueError):
        sessions_after([dt.date(2010, 1, 4)], 0)


def sessions_before_cutoff(cutoff: dt.date, h: int) -> dt.date:
    return trading_days(cutoff - dt.timedelta(days=30), cutoff)[-1 - h]


def test_rank_gauss_keeps_each_days_order_with_mean_zero(labels):
    frame = normalise_cross_section(labels[5], "forward_return", "rank_gauss", "label")
    known = frame.filter(pl.col("forward_return").is_not_null())
    assert known["label"].null_count() == 0
    assert frame.filter(pl.col("forward_return").is_null())["label"].null_count() == (
        frame["forward_return"].null_count()
    )
    daily = known.group_by("date").agg(
        mean=pl.col("label").mean(),
        std=pl.col("label").std(),
        same_order=(
            pl.col("label").rank("average") == pl.col("forward_return").rank("average")
        ).all(),
        rows=pl.len(),
    )
    assert daily["same_order"].all()
    assert daily["mean"].abs().max() < 1e-5  # symmetric quantiles: zero up to tied ranks
    assert daily["std"].is_between(0.99, 1.0).all()
    # a hand-checked day of three: ranks 1, 2, 3 -> normal quantiles of 1/6, 1/2, 5/6
    tiny = pl.DataFrame({"date": [dt.date(2010, 1, 4)] * 3, "r": [0.3, -0.1, 0.05]})
    out = normalise_cross_section(tiny, "r", "rank_gauss", "g")["g"].to_numpy()
    np.testing.assert_allclose(out, [0.9674215661017010, -0.9674215661017010, 0.0], atol=1e-12)


def test_zscore_has_mean_zero_and_unit_std_per_date(labels):
    frame = normalise_cross_section(labels[1], "forward_return", "zscore", "label")
    daily = (
        frame.drop_nulls("label")
        .group_by("date")
        .agg(mean=pl.col("label").mean(), std=pl.col("label").std())
    )
    assert daily["mean"].abs().max() < 1e-12
    assert (daily["std"] - 1).abs().max() < 1e-12


def test_labelled_universe_ranks_only_that_days_members_with_a_label(adjusted, labels, membership):
    features = (
        adjusted.select("instrument", "ticker", "date")
        .join(membership, on=["date", "ticker"], how="left")
        .with_columns(pl.col("in_universe").fill_null(False))
    )
    out = labelled_universe(features, labels[5])
    expected = (
        features.filter("in_universe")
        .join(labels[5].drop("ticker"), on=["instrument", "date"])
        .filter(pl.col("forward_return").is_not_null())
    )
    assert out.height == expected.height
    assert 0 < out.height < features.height
    assert out["in_universe"].all() and out["label"].null_count() == 0
    # each date's label is a rank among exactly those rows: its largest is the top quantile
    top = out.group_by("date").agg(n=pl.len(), top=pl.col("label").max())
    np.testing.assert_allclose(top["top"], ndtri((top["n"] - 0.5) / top["n"]), rtol=1e-12)
