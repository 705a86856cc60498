"""Alpha158 against Qlib itself (pyqlib) on real adjusted S&P 500 bars, plus its own promises.

The bars are written in Qlib's binary layout (calendars/day.txt, instruments/all.txt,
features/<instrument>/<field>.day.bin: float32 little-endian, first element the calendar index
of the first value) and Qlib's Alpha158 expressions are evaluated by ``qlib.data.D.features``.
Qlib stores float32, so our side gets the same float32-rounded bars.
"""

import numpy as np
import pandas as pd
import polars as pl
import pytest
from qlib.data.storage.file_storage import FileFeatureStorage

from stock_assets.bronze.replay import select_bars
from stock_assets.gold.alpha158 import (
    ABSENT,
    ALPHA158_COLUMNS,
    CLOSE_ONLY_COLUMNS,
    FACTORS,
    alpha158_lookback,
    applicable_factors,
    compute_alpha158,
    latest_alpha158,
)
from stock_assets.gold.bars import KEY, last_sessions
from stock_assets.gold.qlib_binary import init_qlib_client, write_qlib_provider
from stock_assets.pit import adjust_bars
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated

PRICES = ["adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"]
RTOL, ATOL = 1e-6, 1e-9
# Deliberate differences from Qlib (docs/FEATURES.md), each handled by the comparison below.
DIFFERENCES = {
    "VWAP0": ABSENT["VWAP0"],
    "partial windows": "Qlib (pandas min_periods=1) gives values from an instrument's first bar; "
    "ours are null until the window is full, so rows are compared once our window is full",
    "missing stock-days": "Qlib's window is N calendar sessions with the missing day as NaN; "
    "ours is the instrument's last N bars, so rows whose window spans a missing day differ",
    "non-finite": "Qlib keeps NaN/inf; ours stores null (both count as missing here)",
}
# Not a definition difference: Qlib evaluates these in float32 (its stored dtype) before the
# window statistic, close/prev close ~ 1 +- 6e-8 and log(volume) ~ 15 +- 1e-6, which moves a
# correlation of small deviations by up to ~2e-5. Compared loosely against stock Qlib and at
# RTOL against Qlib reading the same files as float64 (test_float32_sensitive_factors_...).
FLOAT32_SENSITIVE = {"CORR": (0.0, 1e-4), "CORD": (0.0, 1e-4), "WVMA": (1e-4, ATOL)}


class WideFeatureStorage(FileFeatureStorage):
    """Qlib's own file storage, values handed on as float64 (same stored float32 numbers)."""

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return out.astype(np.float64) if isinstance(out, pd.Series) else out


def init_qlib(provider, storage: type | None = None) -> None:
    """``qlib.init`` minus its experiment recorder, with every cache off, one worker."""
    init_qlib_client(provider, kernels=1, storage=storage)


def qlib_alpha158(provider, span, instruments, names=None, storage=None) -> pl.DataFrame:
    from qlib.contrib.data.loader import Alpha158DL
    from qlib.data import D

    fields, all_names = Alpha158DL.get_feature_config()
    assert set(all_names) - set(ALPHA158_COLUMNS) == set(ABSENT)
    wanted = [(f, n) for f, n in zip(fields, all_names, strict=True) if n not in ABSENT]
    wanted = [(f, n) for f, n in wanted if names is None or n in names]
    init_qlib(provider, storage)
    frame = D.features(instruments, [f for f, _ in wanted], *span, freq="day")
    frame.columns = [n for _, n in wanted]
    frame = pl.from_pandas(frame.reset_index()).rename({"datetime": "date"})
    return frame.with_columns(pl.col("date").cast(pl.Date))


@pytest.fixture(scope="module")
def sp500_adjusted(sp500, events) -> pl.DataFrame:
    return adjust_bars(sp500, events)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory, sp500_adjusted):
    """24 random instruments over the whole year: ours, stock Qlib, and the calendar."""
    rng = np.random.default_rng(158)
    picked = rng.choice(sorted(sp500_adjusted["instrument"].unique()), 24, replace=False)
    bars = sp500_adjusted.filter(pl.col("instrument").is_in(picked.tolist()))
    bars = bars.with_columns(pl.col(PRICES).cast(pl.Float32).cast(pl.Float64))
    provider = tmp_path_factory.mktemp("qlib")
    span, _ = write_qlib_provider(provider, bars)
    calendar = {d: i for i, d in enumerate(sorted(sp500_adjusted["date"].unique().to_list()))}
    ours = compute_alpha158(bars)
    theirs = qlib_alpha158(provider, span, sorted(picked.tolist()))
    return {"provider": provider, "span": span, "bars": bars, "ours": ours, "theirs": theirs,
            "calendar": calendar}  # fmt: skip


def comparable(ours: pl.DataFrame, calendar: dict) -> dict[int, np.ndarray]:
    """history -> rows whose last ``history`` bars are consecutive calendar sessions."""
    position = ours["date"].replace_strict(calendar, return_dtype=pl.Int64)
    frame = ours.select("instrument").with_columns(position.alias("at"))
    masks = {}
    for history in sorted({f.history for f in FACTORS}):
        back = pl.col("at").shift(history - 1).over("instrument")
        masks[history] = frame.select((pl.col("at") - back == history - 1).fill_null(False))
        masks[history] = masks[history].to_series().to_numpy()
    return masks


def test_matches_qlib_alpha158(oracle):
    ours, theirs = oracle["ours"], oracle["theirs"]
    joined = ours.join(theirs, on=KEY, how="left", suffix="_qlib", maintain_order="left")
    assert joined.height == ours.height  # Qlib has a row for every bar of ours
    # Qlib also has NaN rows for the sample's missing stock-days, which we omit
    assert theirs.height > ours.height, DIFFERENCES["missing stock-days"]
    masks = comparable(joined, oracle["calendar"])
    assert masks[61].sum() > 0.7 * ours.height and masks[61].sum() < masks[1].sum()
    failures = {}
    for factor in FACTORS:
        family = factor.name.rstrip("0123456789")
        rtol, atol = FLOAT32_SENSITIVE.get(family, (RTOL, ATOL))
        rows = masks[factor.history]
        mine = joined[factor.name].to_numpy()[rows]
        qlib = joined[f"{factor.name}_qlib"].to_numpy().astype(np.float64)[rows]
        qlib[~np.isfinite(qlib)] = np.nan  # DIFFERENCES["non-finite"]
        same = np.isclose(mine, qlib, rtol=rtol, atol=atol, equal_nan=True)
        if not same.all():
            failures[factor.name] = (int((~same).sum()), int(rows.sum()))
        assert np.isfinite(mine).sum() > 0.9 * rows.sum(), factor.name
    assert not failures, failures


def test_float32_sensitive_factors_match_qlib_in_float64(oracle):
    names = [f.name for f in FACTORS if f.name.rstrip("0123456789") in FLOAT32_SENSITIVE]
    instruments = sorted(oracle["ours"]["instrument"].unique().to_list())
    wide = qlib_alpha158(
        oracle["provider"], oracle["span"], instruments, names, storage=WideFeatureStorage
    )
    joined = oracle["ours"].join(wide, on=KEY, suffix="_qlib", maintain_order="left")
    masks = comparable(joined, oracle["calendar"])
    for factor in (f for f in FACTORS if f.name in names):
        rows = masks[factor.history]
        mine = joined[factor.name].to_numpy()[rows]
        qlib = joined[f"{factor.name}_qlib"].to_numpy().astype(np.float64)[rows]
        assert np.isclose(mine, qlib, rtol=RTOL, atol=ATOL, equal_nan=True).all(), factor.name


def test_partial_windows_are_null_where_qlib_has_values(oracle):
    """Each factor is null before its declared history and has values from there on."""
    joined = oracle["ours"].join(oracle["theirs"], on=KEY, suffix="_qlib", maintain_order="left")
    row = joined.select(pl.int_range(pl.len()).over("instrument")).to_series().to_numpy()
    for factor in FACTORS:
        early = row < factor.history - 1
        mine = joined[factor.name].to_numpy()
        assert np.isnan(mine[early]).all(), factor.name
        assert np.isfinite(mine[row == factor.history - 1]).any(), factor.name
        if factor.history > 2 and not factor.name.startswith("ROC"):  # Ref is NaN in Qlib too
            qlib = joined[f"{factor.name}_qlib"].to_numpy()
            assert np.isfinite(qlib[early]).any(), (factor.name, DIFFERENCES["partial windows"])


@pytest.mark.parametrize("name", ["us_megacaps_2000", "msft_1986", "sp500_1990_adjclose"])
def test_last_date_from_the_lookback_alone_matches_full_history(name):
    """Within 1e-9 * max(|value|, 1) (every factor is a ratio of order 1); one bar less drops
    the factors that need the full lookback."""
    bars = select_bars(name)
    bars = adjust_bars(bars, build_corporate_actions(bars, load_curated()))
    full = compute_alpha158(bars)
    lookback = alpha158_lookback()
    longest = [f.name for f in applicable_factors(bars)[0] if f.history == lookback]
    dates = sorted(bars["date"].unique().to_list())
    cuts = dates[lookback + 5 :: len(dates) // 15]
    for cut in cuts:
        known = bars.filter(pl.col("date") <= cut)
        latest = latest_alpha158(last_sessions(known, lookback))
        expected = full.join(latest.select(KEY), on=KEY)
        joined = expected.join(latest, on=KEY, suffix="_latest")
        assert joined.height == known["instrument"].n_unique()
        for column in full.columns[2:]:
            want, got = joined[column].to_numpy(), joined[f"{column}_latest"].to_numpy()
            assert (np.isnan(want) == np.isnan(got)).all(), (cut, column)
            scale = np.maximum(np.abs(want), 1.0)
            assert np.nanmax(np.abs(got - want) / scale, initial=0) <= 1e-9, (cut, column)
        short = latest_alpha158(last_sessions(known, lookback - 1))
        assert short.select(pl.col(longest).is_null().all()).row(0) == (True,) * len(longest)
        assert not expected.select(pl.col(longest).is_null().all()).row(0)[0]
    assert len(cuts) >= 10


def test_row_order_does_not_matter(sp500_adjusted):
    first = compute_alpha158(sp500_adjusted)
    shuffled = sp500_adjusted.sample(fraction=1.0, shuffle=True, seed=3)
    assert compute_alpha158(shuffled).equals(first)


def test_close_only_set_gets_only_what_the_close_defines():
    bars = select_bars("sp500_1990_adjclose", tickers=["AAPL", "KO"])
    bars = adjust_bars(bars, build_corporate_actions(bars, load_curated()))
    out = compute_alpha158(bars)
    assert out.columns == [*KEY, *CLOSE_ONLY_COLUMNS]
    assert len(CLOSE_ONLY_COLUMNS) == 15 * 5 and "KMID" not in out.columns
    assert {f.name.rstrip("0123456789") for f in applicable_factors(bars)[1]} >= {
        "KMID", "OPEN", "MAX", "MIN", "RSV", "IMAX", "CORR", "VMA", "VSUMP"
    }  # fmt: skip
    assert out["MA20"].drop_nulls().len() > 8000


def test_a_missing_stock_day_is_not_filled(sp500_adjusted):
    calendar = sorted(sp500_adjusted["date"].unique().to_list())
    position = {d: i for i, d in enumerate(calendar)}
    out = compute_alpha158(sp500_adjusted)
    by_instrument = sp500_adjusted.sort(KEY).group_by("instrument", maintain_order=True)
    for (instrument,), one in by_instrument:  # noqa: B007 (the first with a gap is used below)
        days = one["date"].to_list()
        gaps = [k for k in range(10, len(days)) if position[days[k]] - position[days[k - 1]] > 1]
        if gaps:
            break
    k = gaps[0]
    rows = out.filter(pl.col("instrument") == instrument)
    assert rows["date"].to_list() == days  # no row invented for the missing session
    closes = one["adj_close"].to_numpy()
    ma5 = rows.filter(pl.col("date") == days[k])["MA5"].item()
    assert ma5 == pytest.approx(closes[k - 4 : k + 1].mean() / closes[k], rel=1e-12)
    roc5 = rows.filter(pl.col("date") == days[k])["ROC5"].item()
    assert roc5 == pytest.approx(closes[k - 5] / closes[k], rel=1e-12)


def test_no_value_depends_on_a_later_bar(sp500_adjusted):
    t = sorted(sp500_adjusted["date"].unique().to_list())[120]
    rng = np.random.default_rng(5)
    noise = pl.Series("noise", rng.uniform(0.5, 1.5, sp500_adjusted.height))
    later = pl.col("date") > t
    perturbed = sp500_adjusted.with_columns(noise).with_columns(
        pl.when(later).then(pl.col(c) * pl.col("noise")).otherwise(pl.col(c)).alias(c)
        for c in PRICES
    )
    before, after = compute_alpha158(sp500_adjusted), compute_alpha158(perturbed)
    assert after.filter(~later).equals(before.filter(~later))
    assert not after.filter(later).equals(before.filter(later))
