"""Standard technical indicators, computed by TA-Lib itself on split-adjusted daily bars.

One declarative list (``INDICATORS``) says what is computed; column names, the close-only
subset and the history a date needs all derive from it. Values are TA-Lib's raw outputs (no
normalisation), so a stored value can be checked against a direct TA-Lib call.

Recursive indicators (EMA, RSI, MACD, ATR, ADX) start from a seed whose error decays by a fixed
factor per session; ``Indicator.lookback`` is how many of an instrument's bars make that error
smaller than ``TOLERANCE`` (relative to the value's own scale), so computing only the last
``indicator_lookback()`` bars reproduces a full-history value. OBV is a running total from an
instrument's first bar: no window reproduces it, so the incremental path continues the previous
stored value instead (``latest_indicators``).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import talib
from talib import abstract

from stock_assets.gold.bars import COLUMN, KEY, available_fields, last_sessions, prepare

TOLERANCE = 1e-9  # |incremental - full| <= TOLERANCE * (|full| + scale), scale per Indicator.unit
POINTS_SCALE = 100.0  # RSI, STOCH, WILLR, CCI, ADX, MFI (0..100) and ROC (percent)


@dataclass(frozen=True)
class Indicator:
    """One TA-Lib call: its inputs (TA-Lib argument order), parameters and output columns."""

    name: str
    function: str
    inputs: tuple[str, ...]
    params: tuple[tuple[str, int | float], ...] = ()
    outputs: tuple[str, ...] = ()
    unit: str = "price"  # "price" (scale: the close), "points" (100), "volume" (the volume)
    decay: float | None = None  # per-session factor of the slowest recursive smoother
    stages: int = 1  # cascaded smoothers sharing that factor (ADX smooths twice)
    cumulative: bool = False  # a running total from the first bar (OBV)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.outputs or (self.name,)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.inputs)

    @property
    def close_only(self) -> bool:
        """Defined by the close alone, so it is meaningful on close-only data sets."""
        return self.fields == {"close"}

    @property
    def talib_lookback(self) -> int:
        """Bars TA-Lib consumes before its first output (its outputs before that are NaN)."""
        return abstract.Function(self.function, **dict(self.params)).lookback

    @property
    def settle(self) -> int:
        """Sessions after the first output until the seed's error is below TOLERANCE.

        The seed is off by at most the value's scale; s cascaded smoothers with factor d leave
        an error bounded by C(n+s-1, s-1) * d**n after n sessions.
        """
        if self.decay is None:
            return 0
        n = 0
        while math.comb(n + self.stages - 1, self.stages - 1) * self.decay**n > TOLERANCE:
            n += 1
        return n

    @property
    def lookback(self) -> int | None:
        """Bars of an instrument the last date needs; None for a running total."""
        if self.cumulative:
            return None
        return self.talib_lookback + self.settle + 1


def _ema(period: int) -> float:
    return 1 - 2 / (period + 1)


WILDER_14 = 13 / 14  # Wilder's smoothing over 14 sessions
SMA_EMA = tuple(
    Indicator(f"{kind.lower()}_{p}", kind, ("close",), (("timeperiod", p),), decay=decay)
    for kind in ("SMA", "EMA")
    for p in (5, 10, 20, 60)
    for decay in [None if kind == "SMA" else _ema(p)]
)
INDICATORS: tuple[Indicator, ...] = (
    *SMA_EMA,
    Indicator("rsi_14", "RSI", ("close",), (("timeperiod", 14),), unit="points",
              decay=WILDER_14),
    Indicator("macd_12_26_9", "MACD", ("close",),
              (("fastperiod", 12), ("slowperiod", 26), ("signalperiod", 9)),
              ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"), decay=_ema(26)),
    Indicator("bbands_20_2", "BBANDS", ("close",),
              (("timeperiod", 20), ("nbdevup", 2.0), ("nbdevdn", 2.0), ("matype", 0)),
              ("bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2")),
    Indicator("atr_14", "ATR", ("high", "low", "close"), (("timeperiod", 14),),
              decay=WILDER_14),
    Indicator("obv", "OBV", ("close", "volume"), unit="volume", cumulative=True),
    Indicator("stoch_14_3_3", "STOCH", ("high", "low", "close"),
              (("fastk_period", 14), ("slowk_period", 3), ("slowk_matype", 0),
               ("slowd_period", 3), ("slowd_matype", 0)),
              ("stoch_slowk_14_3_3", "stoch_slowd_14_3_3"), unit="points"),
    Indicator("roc_10", "ROC", ("close",), (("timeperiod", 10),), unit="points"),
    Indicator("stddev_20", "STDDEV", ("close",), (("timeperiod", 20), ("nbdev", 1.0))),
    Indicator("willr_14", "WILLR", ("high", "low", "close"), (("timeperiod", 14),),
              unit="points"),
    Indicator("cci_14", "CCI", ("high", "low", "close"), (("timeperiod", 14),),
              unit="points"),
    Indicator("adx_14", "ADX", ("high", "low", "close"), (("timeperiod", 14),),
              unit="points", decay=WILDER_14, stages=2),
    Indicator("mfi_14", "MFI", ("high", "low", "close", "volume"), (("timeperiod", 14),),
              unit="points"),
)  # fmt: skip
INDICATOR_COLUMNS = tuple(c for spec in INDICATORS for c in spec.columns)
CLOSE_ONLY_COLUMNS = tuple(c for spec in INDICATORS if spec.close_only for c in spec.columns)


_C_FUNCTIONS = {spec.function: inspect.unwrap(getattr(talib, spec.function)) for spec in INDICATORS}


def indicator_lookback() -> int:
    """Bars per instrument an incremental computation reads (the largest finite lookback)."""
    return max(spec.lookback for spec in INDICATORS if spec.lookback is not None)


def applicable_indicators(bars: pl.DataFrame) -> tuple[list[Indicator], list[Indicator]]:
    """(computed, skipped) for this frame: close-only sets get what the close alone defines."""
    fields = available_fields(bars)
    computed = [spec for spec in INDICATORS if spec.fields <= fields]
    return computed, [spec for spec in INDICATORS if spec not in computed]


def schema(specs: list[Indicator]) -> dict[str, pl.DataType]:
    """Output columns and dtypes for these specs (the key, then Float64 values)."""
    return {"instrument": pl.String, "date": pl.Date} | {
        column: pl.Float64 for spec in specs for column in spec.columns
    }


def call(spec: Indicator, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """TA-Lib on one instrument's date-ordered float64 arrays, one array per output column.

    Calls the C function behind ``talib.<NAME>`` directly: the public name only adds a check
    for pandas/polars arguments, which costs as much as a short indicator itself.
    """
    out = _C_FUNCTIONS[spec.function](*(arrays[f] for f in spec.inputs), **dict(spec.params))
    return out if isinstance(out, tuple) else (out,)


def _segments(instruments: pl.Series) -> list[tuple[int, int]]:
    """[start, stop) row ranges of each instrument in a frame sorted by instrument."""
    lengths = instruments.rle().struct.field("len").to_numpy()
    stops = np.cumsum(lengths)
    return list(zip((stops - lengths).tolist(), stops.tolist(), strict=True))


def compute_indicators(bars: pl.DataFrame) -> pl.DataFrame:
    """One row per input bar: (instrument, date) + every applicable indicator, null in warm-up.

    Rows are sorted by (instrument, date) first, whatever order they came in. TA-Lib runs on
    each instrument's own bars, so a missing stock-day is neither filled nor counted.
    """
    specs, _ = applicable_indicators(bars)
    fields = frozenset().union(*(spec.fields for spec in specs))
    frame = prepare(bars, fields)
    arrays = {f: np.ascontiguousarray(frame[COLUMN[f]].to_numpy()) for f in fields}
    results = []  # per instrument, one array per output column
    for start, stop in _segments(frame["instrument"]):
        window = {f: a[start:stop] for f, a in arrays.items()}
        results.append([values for spec in specs for values in call(spec, window)])
    columns = [c for spec in specs for c in spec.columns]
    if not results:
        return pl.DataFrame(schema=schema(specs))
    values = [
        pl.Series(c, np.concatenate([r[j] for r in results]), dtype=pl.Float64, nan_to_null=True)
        for j, c in enumerate(columns)
    ]  # one concatenation per column: far cheaper than a slice assignment per instrument
    return frame.select(KEY).with_columns(values)


def latest_indicators(bars: pl.DataFrame, previous: pl.DataFrame | None = None) -> pl.DataFrame:
    """Each instrument's last date from its last ``indicator_lookback()`` bars only.

    Running totals (OBV) continue ``previous`` (stored indicator rows of earlier dates): the
    new value is the stored value on the instrument's previous bar plus TA-Lib's step for this
    bar. Without a stored value for exactly that bar the total is null, never restarted.
    """
    tail = last_sessions(bars, indicator_lookback())
    computed = compute_indicators(tail)
    latest = computed.group_by("instrument", maintain_order=True).tail(1)
    specs, _ = applicable_indicators(bars)
    totals = [c for spec in specs if spec.cumulative for c in spec.columns]
    if not totals:
        return latest
    if previous is None:
        return latest.with_columns(pl.lit(None, pl.Float64).alias(c) for c in totals)
    steps = (
        computed.group_by("instrument", maintain_order=True)
        .tail(2)
        .group_by("instrument", maintain_order=True)
        .agg(
            pl.col("date").first().alias("prior_date"),
            pl.len().alias("bars"),
            *(pl.col(c).last().sub(pl.col(c).first()).alias(f"step_{c}") for c in totals),
        )
    )
    stored = previous.select("instrument", pl.col("date").alias("prior_date"), *totals)
    joined = latest.drop(totals).join(steps, on="instrument", how="left", maintain_order="left")
    joined = joined.join(stored, on=["instrument", "prior_date"], how="left", maintain_order="left")
    continued = (
        pl.when(pl.col("bars") == 2).then(pl.col(c) + pl.col(f"step_{c}")).alias(c) for c in totals
    )
    return joined.with_columns(continued).select(latest.columns)
