"""Corporate-action detection from bars alone (pure; no IO): ticker changes and price jumps.

Point in time: every decision about a day uses bars dated up to the day it is made. A gap on day
t is measured from t - 1's close and t's open; volume before it from the 10 bars before t; the
volume evidence for a split from t's bar and the bars after it, one at a time, so the event is
known on the first bar whose evidence agrees and never earlier (docs/CORPORATE_ACTIONS.md).
"""

import math
import statistics

import polars as pl

from stock_assets import tables

EVENT_SCHEMA = dict(tables.CORPORATE_ACTION_SCHEMA)
# 3:2 is left to the curated table: a -33% news crash with a volume spike looks the same
# (two false 3:2 "splits" in NVDA 2004-08-06 and 2008-07-03 when it was allowed).
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0, 0.5, 1 / 3, 0.25, 0.2, 0.1)
RATIO_TOLERANCE = 0.06
EXTREME_GAP = 0.40
VOLUME_WINDOW = 10


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def detect_ticker_changes(bars: pl.DataFrame) -> pl.DataFrame:
    """A ticker extending another's name that trades only while the other is silent: one issue."""
    spans = bars.group_by("ticker").agg(
        first=pl.col("date").min(), last=pl.col("date").max(), dates=pl.col("date")
    )
    by_ticker = {row["ticker"]: row for row in spans.iter_rows(named=True)}
    rows = []
    for new, span in by_ticker.items():
        for old in (new[:i] for i in range(len(new) - 1, 0, -1)):
            if old not in by_ticker:
                continue
            old_dates = sorted(by_ticker[old]["dates"])
            before = [d for d in old_dates if d < span["first"]]
            inside = [d for d in old_dates if span["first"] <= d <= span["last"]]
            if not before or inside or (span["first"] - before[-1]).days > 7:
                continue
            note = f"{old} last traded {before[-1]}, {new} first traded {span['first']}"
            rows.append((old, old, span["first"], new, note))
            after = [d for d in old_dates if d > span["last"]]
            if after and (after[0] - span["last"]).days <= 7:
                note = f"{new} last traded {span['last']}, {old} resumed {after[0]}"
                rows.append((old, new, after[0], old, note))
            break
    return pl.DataFrame(
        [
            {
                "instrument": inst,
                "ticker": ticker,
                "action": "ticker_change",
                "effective_date": day,
                "ratio": 1.0,
                "new_ticker": new,
                "detected_ratio": None,
                "volume_ratio": None,
                "source": "detected",
                "status": "detected",
                "known_from": day,
                "note": note,
            }  # fmt: skip
            for inst, ticker, day, new, note in rows
        ],
        schema=EVENT_SCHEMA,
    )


def overnight_gaps(bars: pl.DataFrame) -> pl.DataFrame:
    """Per instrument and day: prev close, gap = prev_close / open, median volume before.

    Everything here is known at the day's close: the gap from the previous close and the day's
    open, the volume median from the ``VOLUME_WINDOW`` bars before the day.
    """
    window = {"window_size": VOLUME_WINDOW, "min_samples": 3}
    volume = pl.when(pl.col("volume") > 0).then(pl.col("volume").cast(pl.Float64))
    return (
        bars.sort("instrument", "date")
        .with_columns(
            prev_close=pl.col("close").shift(1).over("instrument"),
            vol_before=volume.shift(1).rolling_median(**window).over("instrument"),
        )
        .with_columns(
            gap=pl.col("prev_close") / pl.col("open"),
            close_gap=pl.col("prev_close") / pl.col("close"),
            overnight_return=pl.col("open") / pl.col("prev_close") - 1,
        )
        .filter(pl.col("prev_close").is_not_null())
    )


def _nearest_split(gap: float, close_gap: float) -> tuple[float, float]:
    best = min(SPLIT_RATIOS, key=lambda k: abs(math.log(gap / k)))
    return best, min(abs(gap / best - 1), abs(close_gap / best - 1))


def volume_confirmation(
    days: list, volumes: list, vol_before: float | None, k: float
) -> tuple[object, float | None]:
    """(the first day volume confirms a k:1 event, the volume ratio then) or (None, last ratio).

    ``days`` and ``volumes`` are the instrument's bars from the event day on. On each of the
    first ``VOLUME_WINDOW`` bars, the median volume since the event day (that bar included, none
    after it) is compared with the median before: share counts scale with splits, so a split's
    volume rises and a reverse split's falls. The event is known on the first bar where it agrees.
    """
    ratio = None
    for seen in range(1, min(len(volumes), VOLUME_WINDOW) + 1):
        positive = [v for v in volumes[:seen] if v and v > 0]
        if not vol_before or not positive:
            continue
        ratio = statistics.median(positive) / vol_before
        if ratio > 1.2 if k > 1 else ratio < 1 / 1.2:
            return days[seen - 1], ratio
    return None, ratio


def detect_price_events(gaps: pl.DataFrame) -> pl.DataFrame:
    """Split-like gaps are proposed once volume agrees; other extreme gaps need review.

    ``known_from`` is the day the evidence exists: the day volume confirmed a split, the event
    day for a gap awaiting review. Nothing after a decision's day is read for it.
    """
    candidates = gaps.filter(
        (pl.col("gap").log().abs() > math.log(1.25)) | (pl.col("overnight_return").abs() > 0.4)
    )
    series = {
        name: part.sort("date")
        for (name,), part in gaps.filter(
            pl.col("instrument").is_in(candidates["instrument"].unique().implode())
        ).group_by("instrument")
    }
    rows = []
    for c in candidates.iter_rows(named=True):
        k, deviation = _nearest_split(c["gap"], c["close_gap"])
        after = series[c["instrument"]].filter(pl.col("date") >= c["date"])
        known, vr = volume_confirmation(
            after["date"].to_list(), after["volume"].to_list(), c["vol_before"], k
        )
        base = {
            "instrument": c["instrument"], "ticker": c["ticker"],
            "effective_date": c["date"], "new_ticker": None, "detected_ratio": c["gap"],
            "volume_ratio": vr, "source": "detected", "known_from": known or c["date"],
        }  # fmt: skip
        evidence = f"gap {c['gap']:.4f} (close gap {c['close_gap']:.4f}), volume x{vr or 0:.2f}"
        if deviation <= RATIO_TOLERANCE and known is not None:
            action = "split" if k > 1 else "reverse_split"
            rows.append({**base, "action": action, "ratio": k, "status": "detected",
                         "note": f"near {_ratio_text(k)}: {evidence}; known {known}"})  # fmt: skip
        elif deviation <= RATIO_TOLERANCE or abs(c["overnight_return"]) > EXTREME_GAP:
            rows.append({**base, "action": "unexplained_gap", "ratio": c["gap"],
                         "status": "needs_review", "note": evidence})  # fmt: skip
    return pl.DataFrame(rows, schema=EVENT_SCHEMA) if rows else _empty_events()


def _ratio_text(k: float) -> str:
    return f"{k:g}:1" if k >= 1 else f"1:{1 / k:g}"
