"""TA-Lib indicators on real adjusted bars: TA-Lib's own values, reproducible from the lookback.

The oracle is TA-Lib called directly on each instrument's adjusted bars, read straight from the
adjusted frame (not through the feature code's sorting and splitting).
"""

import numpy as np
import polars as pl
import pytest
import talib

from stock_assets.bronze.replay import select_bars
from stock_assets.gold.bars import KEY, last_sessions
from stock_assets.gold.indicators import (
    CLOSE_ONLY_COLUMNS,
    INDICATOR_COLUMNS,
    INDICATORS,
    POINTS_SCALE,
    TOLERANCE,
    applicable_indicators,
    compute_indicators,
    indicator_lookback,
    latest_indicators,
)
from stock_assets.pit import adjust_bars
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated

LONG_SETS = ("us_megacaps_2000", "tsd_ohlcv", "msft_1986", "sp500_1990_adjclose")
PRICES = ["adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"]


def adjusted(name: str) -> pl.DataFrame:
    bars = select_bars(name)
    return adjust_bars(bars, build_corporate_actions(bars, load_curated()))


@pytest.fixture(scope="module")
def sp500_adjusted(sp500, events) -> pl.DataFrame:
    return adjust_bars(sp500, events)


@pytest.fixture(scope="module")
def sp500_indicators(sp500_adjusted) -> pl.DataFrame:
    return compute_indicators(sp500_adjusted)


@pytest.fixture(scope="module")
def long_sets() -> dict[str, pl.DataFrame]:
    return {name: adjusted(name) for name in LONG_SETS}


def direct_talib(one: pl.DataFrame, spec) -> list[np.ndarray]:
    """The public TA-Lib function on one instrument's bars in date order."""
    ordered = one.sort("date")
    args = [ordered[f"adj_{field}"].to_numpy().astype(np.float64) for field in spec.inputs]
    out = getattr(talib, spec.function)(*args, **dict(spec.params))
    return list(out) if isinstance(out, tuple) else [out]


def test_stored_values_are_talib_on_the_same_bars(sp500_adjusted, sp500_indicators, long_sets):
    """50 random S&P 500 instruments and the five megacaps: every value equals TA-Lib's."""
    rng = np.random.default_rng(2009)
    picked = rng.choice(sorted(sp500_adjusted["instrument"].unique()), 50, replace=False)
    megacaps = long_sets["us_megacaps_2000"]
    cases = [(sp500_adjusted, sp500_indicators, i) for i in picked] + [
        (megacaps, compute_indicators(megacaps), i) for i in sorted(megacaps["instrument"].unique())
    ]
    compared = 0
    for bars, stored, instrument in cases:
        one = bars.filter(pl.col("instrument") == instrument)
        mine = stored.filter(pl.col("instrument") == instrument)
        assert mine["date"].to_list() == sorted(one["date"].to_list())
        for spec in INDICATORS:
            for column, expected in zip(spec.columns, direct_talib(one, spec), strict=True):
                got = mine[column].to_numpy()
                np.testing.assert_array_equal(got, expected, err_msg=f"{instrument} {column}")
                # the declared TA-Lib lookback is where the first value appears
                if len(got) > spec.talib_lookback:
                    assert np.isnan(got[: spec.talib_lookback]).all(), column
                    assert not np.isnan(got[spec.talib_lookback]), (instrument, column)
                compared += int(np.isfinite(expected).sum())
    assert compared > 55 * 150 * len(INDICATOR_COLUMNS)


def _scale(spec, last_bars: pl.DataFrame) -> np.ndarray:
    if spec.unit == "price":
        return last_bars["adj_close"].to_numpy()
    if spec.unit == "volume":
        return last_bars["adj_volume"].to_numpy()
    return np.full(last_bars.height, POINTS_SCALE)


def _worst(
    latest: pl.DataFrame, bars: pl.DataFrame, full: pl.DataFrame, totals: bool = True
) -> dict[str, float]:
    """Per column: max |latest - full| / (TOLERANCE * (|full| + scale)); <= 1 means within.

    ``totals=False`` leaves out running totals (OBV), which need a stored previous value.
    """
    last_bars = bars.sort(KEY).group_by("instrument", maintain_order=True).tail(1)
    expected = full.join(last_bars.select(KEY), on=KEY)
    joined = last_bars.join(expected, on=KEY).join(latest, on=KEY, suffix="_latest")
    assert joined.height == last_bars.height == latest.height
    specs, _ = applicable_indicators(bars)
    worst = {}
    for spec in specs:
        if spec.cumulative and not totals:
            continue
        scale = _scale(spec, joined)
        for column in spec.columns:
            want, got = joined[column].to_numpy(), joined[f"{column}_latest"].to_numpy()
            assert (np.isnan(want) == np.isnan(got)).all(), column
            ok = ~np.isnan(want)
            error = np.abs(got[ok] - want[ok]) / (TOLERANCE * (np.abs(want[ok]) + scale[ok]))
            worst[column] = float(error.max(initial=0.0))
    return worst


@pytest.mark.parametrize("name", LONG_SETS)
def test_last_date_from_the_lookback_alone_matches_full_history(long_sets, name):
    """Incremental exactness: the last `indicator_lookback()` bars reproduce the full history.

    OBV continues the previous stored value. With a quarter of the lookback the recursive
    indicators miss the tolerance, so the lookback is needed, not just sufficient.
    """
    bars = long_sets[name]
    full = compute_indicators(bars)
    lookback = indicator_lookback()
    dates = sorted(bars["date"].unique().to_list())
    cuts = dates[lookback + 20 :: (len(dates) - lookback) // 12]
    short_misses = 0
    for cut in cuts:
        known = bars.filter(pl.col("date") <= cut)
        tail = last_sessions(known, lookback)
        assert tail.group_by("instrument").len()["len"].max() <= lookback
        previous = full.filter(pl.col("date") < cut)
        worst = _worst(latest_indicators(tail, previous=previous), known, full)
        assert max(worst.values()) <= 1.0, {c: w for c, w in worst.items() if w > 1}
        if "obv" in worst:
            assert latest_indicators(tail)["obv"].null_count() == tail["instrument"].n_unique()
        short_tail = last_sessions(known, lookback // 4)
        short = _worst(latest_indicators(short_tail), known, full, totals=False)
        short_misses += short["ema_60"] > 1.0
    assert len(cuts) >= 10
    assert short_misses >= len(cuts) // 2


def test_row_order_does_not_matter(sp500_adjusted, sp500_indicators):
    shuffled = sp500_adjusted.sample(fraction=1.0, shuffle=True, seed=7)
    assert not shuffled.select(KEY).equals(sp500_indicators.select(KEY))
    assert compute_indicators(shuffled).equals(sp500_indicators)


def test_close_only_set_gets_only_what_the_close_defines(long_sets):
    bars = long_sets["sp500_1990_adjclose"]
    _, skipped = applicable_indicators(bars)
    assert {spec.function for spec in skipped} == {
        "ATR", "OBV", "STOCH", "WILLR", "CCI", "ADX", "MFI"
    }  # fmt: skip
    out = compute_indicators(bars)
    assert out.columns == [*KEY, *CLOSE_ONLY_COLUMNS]
    one = bars.filter(pl.col("instrument") == "AAPL")
    mine = out.filter(pl.col("instrument") == "AAPL")
    for spec in INDICATORS:
        if spec.close_only:
            for column, expected in zip(spec.columns, direct_talib(one, spec), strict=True):
                np.testing.assert_array_equal(mine[column].to_numpy(), expected)
    mixed = pl.concat([bars.head(100), long_sets["msft_1986"].head(100)])
    with pytest.raises(ValueError, match="close-only"):
        compute_indicators(mixed)


def test_duplicate_or_missing_inputs_are_refused(sp500_adjusted):
    """A duplicated bar or a null price would silently change what a window means."""
    head = sp500_adjusted.head(500)
    with pytest.raises(ValueError, match="duplicate"):
        compute_indicators(pl.concat([head, head.head(1)]))
    hole = pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("adj_close"))
    with pytest.raises(ValueError, match="null"):
        compute_indicators(head.with_columns(hole.alias("adj_close")))
    with pytest.raises(ValueError, match="null"):
        compute_indicators(head.with_columns(pl.col("adj_volume") * float("nan")))


def _first_gap(bars: pl.DataFrame, min_before: int) -> tuple[str, object, object]:
    """(instrument, missing session, the bar after it) of a real missing stock-day."""
    calendar = {d: i for i, d in enumerate(sorted(bars["date"].unique().to_list()))}
    for instrument, one in bars.sort(KEY).group_by("instrument", maintain_order=True):
        days = one["date"].to_list()
        for k in range(min_before, len(days)):
            if calendar[days[k]] - calendar[days[k - 1]] > 1:
                missing = sorted(calendar)[calendar[days[k - 1]] + 1]
                return instrument[0], missing, days[k]
    raise AssertionError("no missing stock-day found")


def test_a_missing_stock_day_is_not_forward_filled(sp500_adjusted, sp500_indicators):
    instrument, missing, after = _first_gap(sp500_adjusted, min_before=30)
    one = sp500_adjusted.filter(pl.col("instrument") == instrument).sort("date")
    rows = sp500_indicators.filter(pl.col("instrument") == instrument)
    assert rows["date"].to_list() == one["date"].to_list()
    assert missing not in rows["date"].to_list()
    closes = one.filter(pl.col("date") <= after)["adj_close"].to_numpy()
    sma = rows.filter(pl.col("date") == after)["sma_5"].item()
    assert sma == pytest.approx(closes[-5:].mean(), rel=1e-12)
    carried = np.append(closes[-4:-1], [closes[-2], closes[-1]])  # the gap filled from before
    assert sma != pytest.approx(carried.mean(), rel=1e-9)


def test_no_value_depends_on_a_later_bar(sp500_adjusted, sp500_indicators):
    """Perturbing every bar after day t changes nothing on or before t."""
    t = sorted(sp500_adjusted["date"].unique().to_list())[150]
    rng = np.random.default_rng(11)
    noise = pl.Series("noise", rng.uniform(0.5, 1.5, sp500_adjusted.height))
    later = pl.col("date") > t
    perturbed = sp500_adjusted.with_columns(noise).with_columns(
        pl.when(later).then(pl.col(c) * pl.col("noise")).otherwise(pl.col(c)).alias(c)
        for c in PRICES
    )
    out = compute_indicators(perturbed)
    assert out.filter(~later).equals(sp500_indicators.filter(~later))
    assert not out.filter(later).equals(sp500_indicators.filter(later))
