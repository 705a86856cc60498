"""Qlib's Alpha158 factor family as polars expressions over split-adjusted daily bars.

Each factor is a polars expression over bars sorted by (instrument, date), so the whole family
runs as one lazy query and the definitions read as formulas. They follow Qlib's operators
(docs/FEATURES.md lists each formula and every deliberate difference):

- windows count the instrument's own bars; a missing stock-day is neither filled nor counted;
- a factor is null until its window is full (Qlib returns partial-window values instead);
- ``Std`` is the sample standard deviation (ddof 1), ``Rank`` the average-tie percentile of
  today's value within the window, ``IdxMax``/``IdxMin`` the 1-based position (oldest = 1) of
  the first extreme, ``Quantile`` linearly interpolated, ``Slope``/``Rsquare``/``Resi`` an
  ordinary least-squares fit on positions 1..N;
- denominators get Qlib's ``+1e-12`` where Qlib adds it, and regression fit quality and
  correlations are null when a window's standard deviation is within 2e-5 of zero, as in Qlib;
- VWAP0 is absent: our bars carry no VWAP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from stock_assets.gold.bars import COLUMN, KEY, available_fields, last_sessions, prepare

WINDOWS = (5, 10, 20, 30, 60)
EPS = 1e-12  # Qlib's guard on denominators that can be zero (flat bar, flat window)
FLAT_STD = 2e-5  # a window whose std is this close to 0 has no trend fit or correlation
ABSENT = {"VWAP0": "the bars have no VWAP field (volume-weighted price) to divide by the close"}

OPEN, HIGH, LOW, CLOSE, VOLUME = (
    pl.col(COLUMN[f]) for f in ("open", "high", "low", "close", "volume")
)


@dataclass(frozen=True)
class Factor:
    """One Alpha158 column: the fields it reads and the bars of history (today included)."""

    name: str
    fields: frozenset[str]
    history: int
    expr: pl.Expr  # over one instrument's date-ordered bars; null until history bars exist


F = frozenset


def _prev(x: pl.Expr) -> pl.Expr:
    return x.shift(1)


def _sum(x: pl.Expr, d: int) -> pl.Expr:
    """Window sum recomputed from the window's own values (a dot product with ones).

    A running sum carries round-off from bars that left the window: a flat window then sums to
    1e-16 instead of 0, which a ``+1e-12`` denominator turns into a visible value, and the
    result depends on how much history was read. Recomputing makes each value a function of
    its window alone, so an incremental computation reproduces it. (The weighted kernel takes
    no nulls; the only ones come from ``shift`` at the head of the frame, in rows that the
    history mask drops.)
    """
    return x.fill_null(0.0).rolling_sum(d, weights=[1.0] * d)


def _over(x: pl.Expr, d: float) -> pl.Expr:
    """``x / d`` for a constant ``d``, as one multiplication by ``1 / d``.

    Polars divides a column by a literal sometimes as a true division and sometimes as a
    multiplication by the reciprocal, depending on how the work was split into chunks (with
    more than one thread, on the row count): the two differ in the last bit, so a day's value
    moved when rows after it were dropped. A multiplication is exact-rounded on every path.
    """
    return x * (1.0 / d)


def _mean(x: pl.Expr, d: int) -> pl.Expr:
    return _over(_sum(x, d), d)


@dataclass(frozen=True)
class Running:
    """Polars' rolling std/var/corr update each window from the previous one (accurate to
    ~1e-15 even across instruments of very different scale, but not bitwise independent of
    the bars before the window). ``per_instrument`` runs them as one window function per
    instrument, so a value depends on its own instrument's earlier bars only and perturbing
    another instrument changes no bit of it; the incremental path, whose frame holds no bar
    after the day it computes, runs them down the whole column (hundreds of tiny window
    functions cost more than the whole rest of the query)."""

    per_instrument: bool

    def _run(self, expr: pl.Expr) -> pl.Expr:
        return expr.over("instrument") if self.per_instrument else expr

    def std(self, x: pl.Expr, d: int) -> pl.Expr:
        """Sample std (ddof 1)."""
        return self._run(x.rolling_std(d))

    def var(self, x: pl.Expr, d: int) -> pl.Expr:
        return self._run(x.rolling_var(d))

    def corr(self, a: pl.Expr, b: pl.Expr, d: int) -> pl.Expr:
        """Null when either side is flat (std within FLAT_STD of 0), as in Qlib."""
        flat = (self.std(a, d) <= FLAT_STD) | (self.std(b, d) <= FLAT_STD)
        return pl.when(~flat).then(self._run(pl.rolling_corr(a, b, window_size=d)))


def _fit(x: pl.Expr, d: int) -> tuple[pl.Expr, pl.Expr, float]:
    """Least squares of x on positions 1..d: (window mean, sum of centred x*pos, sum pos^2)."""
    weighted = x.rolling_sum(d, weights=[float(i) for i in range(1, d + 1)])
    mean = _mean(x, d)
    return mean, weighted - (d + 1) / 2 * d * mean, d * (d * d - 1) / 12


def _slope(x: pl.Expr, d: int) -> pl.Expr:
    _, sxy, sxx = _fit(x, d)
    return _over(sxy, sxx)


def _rsquare(x: pl.Expr, d: int, run: Running) -> pl.Expr:
    _, sxy, sxx = _fit(x, d)
    var = run.var(x, d)
    return pl.when(var.sqrt() > FLAT_STD).then(sxy * sxy / (sxx * (d - 1) * var))


def _resi(x: pl.Expr, d: int) -> pl.Expr:
    """Today's residual from the fit: x - (intercept + slope * d)."""
    mean, sxy, sxx = _fit(x, d)
    return x - mean - _over(sxy, sxx) * ((d - 1) / 2)


@cache  # one function object per (stat, d), so the query plan can share repeated uses
def _over_windows(stat: str, d: int) -> Callable[[pl.Series], pl.Series]:
    """A window statistic polars has no fast kernel for, vectorised over all windows at once.

    ``argmax``/``argmin``: 1-based position (oldest bar = 1) of the first extreme; ``rank``:
    today's average-tie rank among the window's d values, divided by d.
    """

    def apply(series: pl.Series) -> pl.Series:
        x = series.to_numpy()
        out = np.full(len(x), np.nan)
        if len(x) >= d:
            w = sliding_window_view(x, d)
            if stat == "rank":
                today = w[:, -1:]
                out[d - 1 :] = ((w < today).sum(1) + ((w == today).sum(1) + 1) / 2) / d
            else:  # first position equal to the extreme (a boolean argmax is much faster)
                extreme = w.max(1) if stat == "argmax" else w.min(1)
                out[d - 1 :] = (w == extreme[:, None]).argmax(1) + 1.0
        return pl.Series(out)

    return apply


def _idxmax(x: pl.Expr, d: int) -> pl.Expr:
    return x.map_batches(_over_windows("argmax", d), return_dtype=pl.Float64)


def _idxmin(x: pl.Expr, d: int) -> pl.Expr:
    return x.map_batches(_over_windows("argmin", d), return_dtype=pl.Float64)


def _rank(x: pl.Expr, d: int) -> pl.Expr:
    return x.map_batches(_over_windows("rank", d), return_dtype=pl.Float64)


def _share(part: pl.Expr, total: pl.Expr, d: int) -> pl.Expr:
    return _sum(part, d) / (_sum(total, d) + EPS)


def _up_down(x: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    change = x - _prev(x)
    return change.clip(lower_bound=0), (-change).clip(lower_bound=0), change.abs()


def _rsv(d: int) -> pl.Expr:
    low = LOW.rolling_min(d)
    return (CLOSE - low) / (HIGH.rolling_max(d) - low + EPS)


def _wvma(d: int, run: Running) -> pl.Expr:
    return run.std(WEIGHTED_MOVE, d) / (_mean(WEIGHTED_MOVE, d) + EPS)


def _count_share(sign: int, d: int) -> pl.Expr:
    moved = (_prev(CLOSE) < CLOSE) if sign > 0 else (_prev(CLOSE) > CLOSE)
    return _mean(moved.cast(pl.Float64), d)


# Inputs of the per-instrument windows, computed once down the sorted column before the
# factors: a shift inside a per-instrument window is several times slower. On an instrument's
# first bar the previous-bar ones take a fixed value instead of reaching into the instrument
# sorted before it (every factor reading them needs one more bar, so that row is masked, but
# the running std/corr state passes through it and must not depend on another instrument).
RET, LOG_VOLUME_RATIO, LOG_VOLUME, WEIGHTED_MOVE = (
    pl.col(c) for c in ("_ret", "_log_volume_ratio", "_log_volume", "_weighted_move")
)
# name -> (fields, formula, value on an instrument's first bar or None if it needs no other bar)
INPUTS = {
    "_ret": (F({"close"}), CLOSE / _prev(CLOSE), 1.0),
    "_log_volume_ratio": (F({"volume"}), (VOLUME / _prev(VOLUME) + 1).log(), 0.0),
    "_log_volume": (F({"volume"}), (VOLUME + 1).log(), None),
    "_weighted_move": (F({"close", "volume"}), (CLOSE / _prev(CLOSE) - 1).abs() * VOLUME, 0.0),
}
UP, DOWN, MOVE = _up_down(CLOSE)
VUP, VDOWN, VMOVE = _up_down(VOLUME)
# name -> (fields, extra bars before the window, formula for window d and running kernels)
ROLLING: dict[str, tuple[frozenset[str], int, Callable[[int, Running], pl.Expr]]] = {
    "ROC": (F({"close"}), 1, lambda d, r: CLOSE.shift(d) / CLOSE),
    "MA": (F({"close"}), 0, lambda d, r: _mean(CLOSE, d) / CLOSE),
    "STD": (F({"close"}), 0, lambda d, r: r.std(CLOSE, d) / CLOSE),
    "BETA": (F({"close"}), 0, lambda d, r: _slope(CLOSE, d) / CLOSE),
    "RSQR": (F({"close"}), 0, lambda d, r: _rsquare(CLOSE, d, r)),
    "RESI": (F({"close"}), 0, lambda d, r: _resi(CLOSE, d) / CLOSE),
    "MAX": (F({"high", "close"}), 0, lambda d, r: HIGH.rolling_max(d) / CLOSE),
    "MIN": (F({"low", "close"}), 0, lambda d, r: LOW.rolling_min(d) / CLOSE),
    "QTLU": (F({"close"}), 0, lambda d, r: CLOSE.rolling_quantile(0.8, "linear", d) / CLOSE),
    "QTLD": (F({"close"}), 0, lambda d, r: CLOSE.rolling_quantile(0.2, "linear", d) / CLOSE),
    "RANK": (F({"close"}), 0, lambda d, r: _rank(CLOSE, d)),
    "RSV": (F({"high", "low", "close"}), 0, lambda d, r: _rsv(d)),
    "IMAX": (F({"high"}), 0, lambda d, r: _over(_idxmax(HIGH, d), d)),
    "IMIN": (F({"low"}), 0, lambda d, r: _over(_idxmin(LOW, d), d)),
    "IMXD": (F({"high", "low"}), 0, lambda d, r: _over(_idxmax(HIGH, d) - _idxmin(LOW, d), d)),
    "CORR": (F({"close", "volume"}), 0, lambda d, r: r.corr(CLOSE, LOG_VOLUME, d)),
    "CORD": (F({"close", "volume"}), 1, lambda d, r: r.corr(RET, LOG_VOLUME_RATIO, d)),
    "CNTP": (F({"close"}), 1, lambda d, r: _count_share(1, d)),
    "CNTN": (F({"close"}), 1, lambda d, r: _count_share(-1, d)),
    "CNTD": (F({"close"}), 1, lambda d, r: _count_share(1, d) - _count_share(-1, d)),
    "SUMP": (F({"close"}), 1, lambda d, r: _share(UP, MOVE, d)),
    "SUMN": (F({"close"}), 1, lambda d, r: _share(DOWN, MOVE, d)),
    "SUMD": (F({"close"}), 1, lambda d, r: _share(UP - DOWN, MOVE, d)),
    "VMA": (F({"volume"}), 0, lambda d, r: _mean(VOLUME, d) / (VOLUME + EPS)),
    "VSTD": (F({"volume"}), 0, lambda d, r: r.std(VOLUME, d) / (VOLUME + EPS)),
    "WVMA": (F({"close", "volume"}), 1, _wvma),
    "VSUMP": (F({"volume"}), 1, lambda d, r: _share(VUP, VMOVE, d)),
    "VSUMN": (F({"volume"}), 1, lambda d, r: _share(VDOWN, VMOVE, d)),
    "VSUMD": (F({"volume"}), 1, lambda d, r: _share(VUP - VDOWN, VMOVE, d)),
}
RANGE = HIGH - LOW + EPS
BODY_TOP, BODY_BOTTOM = pl.max_horizontal(OPEN, CLOSE), pl.min_horizontal(OPEN, CLOSE)
# name -> formula; each reads open/high/low/close (all equal on close-only bars: nothing there)
KBAR = {
    "KMID": (CLOSE - OPEN) / OPEN,
    "KLEN": (HIGH - LOW) / OPEN,
    "KMID2": (CLOSE - OPEN) / RANGE,
    "KUP": (HIGH - BODY_TOP) / OPEN,
    "KUP2": (HIGH - BODY_TOP) / RANGE,
    "KLOW": (BODY_BOTTOM - LOW) / OPEN,
    "KLOW2": (BODY_BOTTOM - LOW) / RANGE,
    "KSFT": (2 * CLOSE - HIGH - LOW) / OPEN,
    "KSFT2": (2 * CLOSE - HIGH - LOW) / RANGE,
    "OPEN0": OPEN / CLOSE,
    "HIGH0": HIGH / CLOSE,
    "LOW0": LOW / CLOSE,
}
OHLC = F({"open", "high", "low", "close"})


def _factors(run: Running) -> tuple[Factor, ...]:
    return (
        *(Factor(name, OHLC, 1, expr) for name, expr in KBAR.items()),
        *(
            Factor(f"{family}{d}", fields, d + extra, formula(d, run))
            for family, (fields, extra, formula) in ROLLING.items()
            for d in WINDOWS
        ),
    )


FACTORS = _factors(Running(per_instrument=True))
_LATEST = {f.name: f for f in _factors(Running(per_instrument=False))}
ALPHA158_COLUMNS = tuple(f.name for f in FACTORS)
CLOSE_ONLY_COLUMNS = tuple(f.name for f in FACTORS if f.fields <= {"close"})


def alpha158_lookback() -> int:
    """Bars per instrument the last date needs (the longest window plus one previous bar)."""
    return max(f.history for f in FACTORS)


def applicable_factors(bars: pl.DataFrame) -> tuple[list[Factor], list[Factor]]:
    """(computed, skipped) for this frame: close-only sets get what the close alone defines."""
    fields = available_fields(bars)
    computed = [f for f in FACTORS if f.fields <= fields]
    return computed, [f for f in FACTORS if f not in computed]


def alpha158_frame(bars: pl.DataFrame, factors: list[Factor]) -> pl.LazyFrame:
    """The frame the expressions run on: validated, sorted by (instrument, date), plus INPUTS."""
    fields = frozenset().union(*(f.fields for f in factors))
    first = (pl.col("instrument") != pl.col("instrument").shift(1)).fill_null(True)
    inputs = {
        name: expr if at_first is None else pl.when(first).then(at_first).otherwise(expr)
        for name, (needs, expr, at_first) in INPUTS.items()
        if needs <= fields
    }
    return prepare(bars, fields).lazy().with_columns(**inputs)


def alpha158_expressions(factors: list[Factor] | None = None) -> dict[str, pl.Expr]:
    """name -> expression over ``alpha158_frame`` (sorted by (instrument, date), with INPUTS).

    Stateless windows (shifts, recomputed sums, min/max, quantiles, ranks) run down the whole
    sorted column, much faster than one window function per instrument; a row is kept only
    once its instrument has ``history`` bars, so no kept value mixes two instruments. Values
    can be NaN or infinite where the formula is (a ratio to a zero volume);
    ``compute_alpha158`` turns those into null.
    """
    row = pl.int_range(pl.len()).over("instrument")
    chosen = FACTORS if factors is None else factors
    return {f.name: pl.when(row >= f.history - 1).then(f.expr).cast(pl.Float64) for f in chosen}


def compute_alpha158(bars: pl.DataFrame, per_instrument: bool = True) -> pl.DataFrame:
    """One row per input bar: (instrument, date) + every applicable factor, sorted by key.

    ``per_instrument=False`` is for frames with no bar after the day of interest (see Running).
    """
    factors, _ = applicable_factors(bars)
    if not per_instrument:
        factors = [_LATEST[f.name] for f in factors]
    values = alpha158_frame(bars, factors).select(*KEY, **alpha158_expressions(factors))
    finite = (pl.when(pl.col(f.name).is_finite()).then(pl.col(f.name)) for f in factors)
    return values.with_columns(finite).collect()


def latest_alpha158(bars: pl.DataFrame) -> pl.DataFrame:
    """Each instrument's last date computed from its last ``alpha158_lookback()`` bars only."""
    tail = last_sessions(bars, alpha158_lookback())
    latest = compute_alpha158(tail, per_instrument=False)
    return latest.group_by("instrument", maintain_order=True).tail(1)
