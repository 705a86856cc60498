"""Feature throughput: our indicators vs bare TA-Lib vs pandas, our Alpha158 vs Qlib's, one day.

    .venv/bin/python bench/features_throughput.py [--repeat 3] [--copies 10] [--qlib-sample 60]

Two bar sets, both real split-adjusted bars (silver's `adjust_bars` with the reviewed corporate
actions):

- `sp500`: the 524-ticker S&P 500 year (523 instruments: ETFC/ETFCD are one), 122,574 bars;
- `scaled`: that year stitched `--copies` times onto consecutive NYSE sessions from 2000-01-03,
  each copy's prices multiplied per instrument so its first open equals the previous copy's
  last close (no jump at the seams), volumes and missing stock-days kept: ~1.2M bars, ten years.

Timings are the best of `--repeat` runs (wall clock; CPU seconds beside, since other processes
share this machine). Qlib runs with its expression and dataset caches off and its in-process
memory cache cleared before every run (so nothing computed in one run is reused by the next),
on as many worker processes as this machine has cores; its binary data is written once,
untimed. On the scaled set Qlib runs on `--qlib-sample` instruments and is scaled by
instruments/sample (its work is per instrument); `--qlib-sample 0` runs it on all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stock_assets.bronze.replay import select_bars  # noqa: E402
from stock_assets.calendar import trading_days  # noqa: E402
from stock_assets.gold.alpha158 import (  # noqa: E402
    ABSENT,
    alpha158_lookback,
    compute_alpha158,
    latest_alpha158,
)
from stock_assets.gold.bars import KEY, sort_bars  # noqa: E402
from stock_assets.gold.indicators import (  # noqa: E402
    INDICATORS,
    compute_indicators,
    indicator_lookback,
    latest_indicators,
)
from stock_assets.gold.qlib_binary import init_qlib_client, write_qlib_provider  # noqa: E402
from stock_assets.pit import adjust_bars  # noqa: E402
from stock_assets.silver.corporate_actions import build_corporate_actions, load_curated  # noqa: E402

PRICES = ["adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"]


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run, last result)."""
    best, cpu, out = float("inf"), 0.0, None
    for _ in range(repeat):
        wall, proc = time.perf_counter(), time.process_time()
        out = fn()
        wall, proc = time.perf_counter() - wall, time.process_time() - proc
        if wall < best:
            best, cpu = wall, proc
    return best, cpu, out


def sp500_bars() -> pl.DataFrame:
    bars = select_bars("sp500_2009")
    return adjust_bars(bars, build_corporate_actions(bars, load_curated()))


def stitched(year: pl.DataFrame, copies: int) -> pl.DataFrame:
    """The year repeated on consecutive NYSE sessions, prices chained without a jump."""
    sessions = sorted(year["date"].unique().to_list())

    calendar = trading_days(dt.date(2000, 1, 3), dt.date(2025, 12, 31))[: len(sessions) * copies]
    step = {d: i for i, d in enumerate(sessions)}
    parts, factor = [], None
    for k in range(copies):
        part = year.with_columns(
            pl.col("date")
            .replace_strict(step, return_dtype=pl.Int64)
            .add(k * len(sessions))
            .replace_strict(dict(enumerate(calendar)), return_dtype=pl.Date)
        ).sort(KEY)
        if factor is not None:  # first open of this copy = last close of the previous copy
            first_open = part.group_by("instrument").agg(pl.col("adj_open").first().alias("o"))
            link = factor.join(first_open, on="instrument").select(
                "instrument", (pl.col("close") / pl.col("o")).alias("f")
            )
            part = (
                part.join(link, on="instrument")
                .with_columns(pl.col(PRICES[:4]) * pl.col("f"))
                .drop("f")
            )
        factor = part.group_by("instrument").agg(pl.col("adj_close").last().alias("close"))
        parts.append(part)
    return pl.concat(parts).sort(KEY)


def split_arrays(bars: pl.DataFrame) -> list[dict[str, np.ndarray]]:
    """Per instrument, date-ordered contiguous float64 arrays: the bare loop's input (untimed)."""
    ordered = bars.sort(KEY)
    return [
        {p.removeprefix("adj_"): np.ascontiguousarray(one[p].to_numpy()) for p in PRICES}
        for _, one in ordered.group_by("instrument", maintain_order=True)
    ]


def bare_talib(arrays: list[dict[str, np.ndarray]]) -> list:
    """The same TA-Lib calls through the public functions, outputs kept, no frames: the floor."""
    return [
        getattr(talib, spec.function)(*(a[f] for f in spec.inputs), **dict(spec.params))
        for a in arrays
        for spec in INDICATORS
    ]


def _pandas_one(g: pd.DataFrame) -> pd.DataFrame:
    c, h, lo, v = g["adj_close"], g["adj_high"], g["adj_low"], g["adj_volume"]
    out = {}
    for p in (5, 10, 20, 60):
        out[f"sma_{p}"] = c.rolling(p).mean()
        out[f"ema_{p}"] = c.ewm(span=p, adjust=False).mean()
    delta = c.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    out["rsi_14"] = 100 - 100 / (1 + gain / loss)
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    out["macd"], out["macd_signal"] = macd, macd.ewm(span=9, adjust=False).mean()
    out["macd_hist"] = macd - out["macd_signal"]
    mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = mid + 2 * sd, mid, mid - 2 * sd
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    out["atr_14"] = tr.ewm(alpha=1 / 14, adjust=False).mean()
    out["obv"] = (np.sign(delta).fillna(0) * v).cumsum()
    lowest, highest = lo.rolling(14).min(), h.rolling(14).max()
    fastk = 100 * (c - lowest) / (highest - lowest)
    out["slowk"] = fastk.rolling(3).mean()
    out["slowd"] = out["slowk"].rolling(3).mean()
    out["roc_10"] = c.pct_change(10) * 100
    out["stddev_20"] = sd
    out["willr_14"] = -100 * (highest - c) / (highest - lowest)
    typical = (h + lo + c) / 3
    mad = typical.rolling(14).apply(lambda x: np.abs(x - x.mean()).mean(), raw=True)
    out["cci_14"] = (typical - typical.rolling(14).mean()) / (0.015 * mad)
    up, down = h.diff(), -lo.diff()
    plus = pd.Series(np.where((up > down) & (up > 0), up, 0.0), index=g.index)
    minus = pd.Series(np.where((down > up) & (down > 0), down, 0.0), index=g.index)
    atr = tr.ewm(alpha=1 / 14, adjust=False).mean()
    pdi = 100 * plus.ewm(alpha=1 / 14, adjust=False).mean() / atr
    mdi = 100 * minus.ewm(alpha=1 / 14, adjust=False).mean() / atr
    out["adx_14"] = (100 * (pdi - mdi).abs() / (pdi + mdi)).ewm(alpha=1 / 14, adjust=False).mean()
    flow = typical * v
    rising = typical.diff() > 0
    pos = flow.where(rising, 0.0).rolling(14).sum()
    neg = flow.where(~rising, 0.0).rolling(14).sum()
    out["mfi_14"] = 100 - 100 / (1 + pos / neg)
    return pd.DataFrame(out)


def pandas_indicators(frame: pd.DataFrame) -> pd.DataFrame:
    """A straightforward pandas version of the same indicators (groupby, rolling, ewm)."""
    ordered = frame.sort_values(["instrument", "date"])
    return ordered.groupby("instrument", group_keys=False)[PRICES].apply(_pandas_one)


def qlib_alpha158(root: Path, span: list[str], instruments: list[str]) -> pd.DataFrame:
    """D.features with Alpha158's expressions, caches off, recorder skipped (needs mlflow)."""
    from qlib.contrib.data.loader import Alpha158DL
    from qlib.data import D

    fields, names = Alpha158DL.get_feature_config()
    fields = [f for f, n in zip(fields, names, strict=True) if n not in ABSENT]
    init_qlib_client(root)
    return D.features(instruments, fields, *span, freq="day")


def one_new_day(scaled: pl.DataFrame, folder: Path, repeat: int) -> dict[str, float]:
    """Bars and stored indicators in Parquet; the new day reads only the lookback sessions."""
    sessions = sorted(scaled["date"].unique().to_list())
    day = sessions[-1]
    bars_path, store_path = folder / "bars.parquet", folder / "indicators.parquet"
    scaled.sort("date", "instrument").write_parquet(bars_path, row_group_size=50_000)
    stored = compute_indicators(scaled.filter(pl.col("date") < day)).sort("date", "instrument")
    stored.write_parquet(store_path, row_group_size=50_000)  # date order, as the lake keeps it
    need = max(indicator_lookback(), alpha158_lookback())
    since = sessions[-min(need, len(sessions))]  # from the calendar: no scan of the table

    def run():
        tail = pl.scan_parquet(bars_path).filter(pl.col("date") >= since).collect()
        tail = sort_bars(tail)  # once; both functions then find it sorted
        prior = pl.scan_parquet(store_path).filter(pl.col("date") == sessions[-2]).collect()
        return latest_indicators(tail, previous=prior), latest_alpha158(tail)

    wall, cpu, (ind, alpha) = timed(run, repeat)
    trading = scaled.filter(pl.col("date") == day).height  # the others' last bar is older
    assert ind.filter(pl.col("date") == day).height == trading
    assert alpha.filter(pl.col("date") == day).height == trading
    return {"wall": wall, "cpu": cpu, "instruments": trading, "rows_read": need}


def bench_set(name: str, bars: pl.DataFrame, args: argparse.Namespace) -> None:
    n_inst = bars["instrument"].n_unique()
    sessions = bars["date"].n_unique()
    print(f"\n== {name}: {bars.height:,} bars, {n_inst} instruments, {sessions} sessions")
    ours, ours_cpu, _ = timed(lambda: compute_indicators(bars), args.repeat)
    arrays = split_arrays(bars)
    bare, bare_cpu, _ = timed(lambda: bare_talib(arrays), args.repeat)
    frame = bars.select(*KEY, *PRICES).to_pandas()
    slow, slow_cpu, _ = timed(lambda: pandas_indicators(frame), 1)
    print(f"indicators  ours {ours:7.2f}s (cpu {ours_cpu:6.2f})")
    print(f"            bare {bare:7.2f}s (cpu {bare_cpu:6.2f})  ours/bare {ours / bare:.2f}")
    print(f"            pandas {slow:7.2f}s (cpu {slow_cpu:6.2f})  pandas/ours {slow / ours:.1f}")
    alpha, alpha_cpu, _ = timed(lambda: compute_alpha158(bars), args.repeat)
    sample = bars
    if name == "scaled" and args.qlib_sample:
        keep = sorted(bars["instrument"].unique().to_list())[:: n_inst // args.qlib_sample]
        sample = bars.filter(pl.col("instrument").is_in(keep))
    with tempfile.TemporaryDirectory() as tmp:
        span, instruments = write_qlib_provider(Path(tmp), sample)
        qlib, qlib_cpu, _ = timed(lambda: qlib_alpha158(Path(tmp), span, instruments), 1)
    scale = n_inst / len(instruments)
    note = "" if scale == 1 else f" = {len(instruments)} instruments x {scale:.2f}"
    print(f"alpha158    ours {alpha:7.2f}s (cpu {alpha_cpu:6.2f})")
    print(f"            qlib {qlib * scale:7.2f}s (cpu of the parent {qlib_cpu * scale:6.2f}{note})"
          f"  ours/qlib {alpha / (qlib * scale):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--qlib-sample", type=int, default=60)
    args = parser.parse_args()
    year = sp500_bars()
    scaled = stitched(year, args.copies)
    print(f"cores: {os.cpu_count()}, polars threads: {pl.thread_pool_size()}, Qlib workers: "
          f"{os.cpu_count()}; targets: ours/bare <= 2, pandas/ours >= 10, ours/qlib <= 0.5, "
          "one new day < 2 s")  # fmt: skip
    bench_set("sp500", year, args)
    bench_set("scaled", scaled, args)
    with tempfile.TemporaryDirectory() as tmp:
        day = one_new_day(scaled, Path(tmp), args.repeat)
    print(f"\none new day: {day['instruments']} instruments, last {day['rows_read']} sessions "
          f"read from Parquet, indicators + alpha158 in {day['wall']:.2f}s "
          f"(cpu {day['cpu']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
