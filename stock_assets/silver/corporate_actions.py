"""``silver/corporate_actions``: detected from the bars, confirmed / corrected / rejected by review.

Unadjusted prices turn a 2:1 split into a fake -50% return that poisons features and labels.
Detection works on instruments (tickers joined across detected ticker changes, e.g. ETFC traded
as ETFCD for a month) and proposes:

- ``ticker_change`` when a ticker whose name extends another (ETFCD) trades exactly while the
  other (ETFC) is silent;
- ``split`` / ``reverse_split`` when the overnight gap ``prev_close / open`` sits within 6% of a
  k:1 or 1:k ratio AND volume moves the same way (share counts change with splits);
- ``unexplained_gap`` (status ``needs_review``) for any other |overnight return| > 40%.

``ratio`` is new shares per old share as a price factor: 2.0 for 2:1, 0.1 for 1:10, 2.661 for
WY's special distribution (price only; volumes are adjusted only by share-count events).
``known_from`` is the first day the event could be known: a detected event the day of its first
post-event bar, a curated one the date in the table. A blocking check fails while any extreme gap
is unexplained, so bad data stops before adjusted bars, features and labels.
"""

import math
import statistics
from pathlib import Path

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.checks import CheckInput, CheckSuite, Rule, markdown
from stock_assets.lake import LakeIO, month_column
from stock_assets.pit import (
    APPLIED,
    PRICE_ACTIONS,
    adjust_bars,
    undecided_spans,
    with_instrument,
)
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import CorporateActionSource
from stock_assets.silver import MARKET_GROUP
from stock_assets.table_assets import table_asset

CURATED_PATH = Path(__file__).with_name("curated_corporate_actions.csv")
# 3:2 is left to the curated table: a -33% news crash with a volume spike looks the same
# (two false 3:2 "splits" in NVDA 2004-08-06 and 2008-07-03 when it was allowed).
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0, 0.5, 1 / 3, 0.25, 0.2, 0.1)
RATIO_TOLERANCE = 0.06
EXTREME_GAP = 0.40
VOLUME_WINDOW = 10
EXPLAINED_CHECK = "corporate_actions_explain_extreme_gaps"

EVENT_SCHEMA = dict(tables.CORPORATE_ACTION_SCHEMA)
CURATED_SCHEMA = {
    "instrument": pl.String,
    "action": pl.String,
    "effective_date": pl.Date,
    "ratio": pl.Float64,
    "new_ticker": pl.String,
    "status": pl.String,
    "known_from": pl.Date,
    "note": pl.String,
}
REVIEW_SOURCES = ("curated", "vendor")  # reviewed rows take precedence over detection
VENDOR_ACTIONS = ("split", "reverse_split", "special_distribution", "ticker_change")


def load_curated(path: Path = CURATED_PATH) -> pl.DataFrame:
    curated = pl.read_csv(path, schema=CURATED_SCHEMA)
    bad = curated.filter(~pl.col("status").is_in(["confirmed", "corrected", "rejected"]))
    if bad.height:
        raise ValueError(f"curated statuses must be confirmed/corrected/rejected: {bad.rows()}")
    return curated.with_columns(
        pl.col("known_from").fill_null(pl.col("effective_date")), source=pl.lit("curated")
    )


def parse_vendor(raw: pl.DataFrame) -> pl.DataFrame:
    """A vendor's records (text rows, `CorporateActionSource`) as reviewed rows that override.

    A record applies from the day the vendor published it (``known_from``; blank means it was
    announced by its effective date, as splits are).
    """
    typed = raw.select(
        pl.col("instrument").str.strip_chars(),
        pl.col("action").str.strip_chars(),
        pl.col("effective_date").str.strptime(pl.Date, "%Y-%m-%d", strict=False),
        pl.col("ratio").str.strip_chars().cast(pl.Float64, strict=False),
        pl.col("new_ticker").str.strip_chars().replace("", None),
        status=pl.lit("corrected"),
        known_from=pl.col("known_from").str.strptime(pl.Date, "%Y-%m-%d", strict=False),
        note=pl.format("vendor: {}", pl.col("note").fill_null("")),
    ).with_columns(pl.col("known_from").fill_null(pl.col("effective_date")))
    bad = typed.filter(
        ~pl.col("action").is_in(VENDOR_ACTIONS)
        | pl.col("effective_date").is_null()
        | ~(pl.col("ratio") > 0).fill_null(False)
        | ((pl.col("action") == "ticker_change") & pl.col("new_ticker").is_null())
    )
    if bad.height:
        raise ValueError(f"vendor corporate actions that cannot be read: {bad.rows()}")
    return typed.with_columns(source=pl.lit("vendor"))


def reviewed_events(curated: pl.DataFrame, vendor: pl.DataFrame) -> pl.DataFrame:
    """Curated review and vendor records; on the same event the curated row wins."""
    both = pl.concat([curated, vendor.select(curated.columns)]).with_columns(family=_is_change())
    first = both.unique(
        ["instrument", "effective_date", "family"], keep="first", maintain_order=True
    )
    return first.drop("family")


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


def reconcile(detected: pl.DataFrame, curated: pl.DataFrame, gaps: pl.DataFrame) -> pl.DataFrame:
    """Curated rows win: confirm (keep detected values), correct (take curated), reject."""
    key = ["instrument", "effective_date"]
    family = pl.when(pl.col("action") == "ticker_change").then(pl.lit("t")).otherwise(pl.lit("p"))
    det = detected.with_columns(family=family, new_key=pl.col("new_ticker").fill_null(""))
    cur = curated.with_columns(family=family, new_key=pl.col("new_ticker").fill_null(""))
    on = [*key, "family", "new_key"]
    joined = det.join(cur, on=on, how="full", suffix="_cur", coalesce=True)
    measured = gaps.select(
        "instrument",
        pl.col("date").alias("effective_date"),
        pl.col("gap").alias("measured"),
        pl.col("ticker").alias("t2"),
    )
    joined = joined.join(measured, on=key, how="left")
    # detection that has not decided yet (no volume evidence so far) is not a disagreement
    decided = pl.col("action").is_not_null() & (pl.col("action") != "unexplained_gap")
    mismatch = joined.filter(
        pl.col("status_cur") == "confirmed",
        decided,
        (pl.col("action") != pl.col("action_cur"))
        | ((pl.col("ratio") / pl.col("ratio_cur") - 1).abs() > 1e-9),
    )
    if mismatch.height:
        raise ValueError(f"curated 'confirmed' rows disagree with detection: {mismatch.rows()}")
    take_curated = ~decided | pl.col("status_cur").is_in(["corrected", "rejected"])
    take_curated = pl.col("status_cur").is_not_null() & take_curated
    events = joined.select(
        "instrument",
        ticker=pl.coalesce("ticker", "t2", "instrument"),
        action=pl.when(take_curated).then("action_cur").otherwise("action"),
        effective_date="effective_date",
        ratio=pl.when(take_curated).then("ratio_cur").otherwise("ratio"),
        new_ticker=pl.coalesce("new_ticker", "new_ticker_cur"),
        detected_ratio=pl.coalesce("detected_ratio", "measured"),
        volume_ratio="volume_ratio",
        source=pl.when(take_curated).then("source_cur").otherwise(pl.lit("detected")),
        status=pl.coalesce("status_cur", "status"),
        known_from=pl.when(take_curated)
        .then(pl.col("known_from_cur"))
        .otherwise(pl.min_horizontal("known_from", "known_from_cur")),
        note=pl.concat_str(
            pl.col("note_cur").fill_null(""), pl.col("note").fill_null(""), separator=" | "
        ).str.strip_chars(" |"),
    )
    # a curated price event the bars do not show (already-adjusted data) must not be applied
    unseen = (
        pl.col("source").is_in(REVIEW_SOURCES)
        & pl.col("status").is_in(APPLIED)
        & pl.col("action").is_in(PRICE_ACTIONS)
        & ((pl.col("detected_ratio") / pl.col("ratio")).log().abs() > math.log(1.25)).fill_null(
            True
        )
    )
    events = events.with_columns(
        status=pl.when(unseen).then(pl.lit("not_observed")).otherwise("status")
    )
    return events.cast(EVENT_SCHEMA).sort("effective_date", "instrument", "action")


def build_corporate_actions(bars: pl.DataFrame, curated: pl.DataFrame) -> pl.DataFrame:
    """Every proposed, curated and reviewed event for the given bars (pure; no IO)."""
    bars = bars.select("ticker", "date", "open", "close", "volume")
    spans = bars.group_by(pl.col("ticker").alias("instrument")).agg(
        first=pl.col("date").min(), last=pl.col("date").max()
    )
    curated = (  # rows about other data sets or other years are not this data's business
        curated.join(spans, on="instrument")
        .filter(_is_change() | pl.col("effective_date").is_between("first", "last", closed="right"))
        .drop("first", "last")
    )
    changes = reconcile(detect_ticker_changes(bars), curated.filter(_is_change()), _no_gaps())
    gaps = overnight_gaps(with_instrument(bars, changes))
    price_events = reconcile(detect_price_events(gaps), curated.filter(~_is_change()), gaps)
    return pl.concat([changes, price_events]).sort("effective_date", "instrument", "action")


def _is_change() -> pl.Expr:
    return pl.col("action") == "ticker_change"


def _no_gaps() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"instrument": pl.String, "date": pl.Date, "gap": pl.Float64, "ticker": pl.String}
    )


def unexplained_gaps(bars: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Extreme overnight moves left after applying every decided event: a wrong ratio, a jump
    no event covers. Rows set aside (their jump undecided that day) are not judged; genuine
    moves reviewed as such are allowed."""
    adjusted = adjust_bars(bars, events).filter(pl.col("set_aside").is_null())
    adjusted = adjusted.drop("open", "close").rename({"adj_open": "open", "adj_close": "close"})
    gaps = overnight_gaps(
        adjusted.select("instrument", "ticker", "date", "open", "close", "volume")
    )
    extreme = gaps.filter(pl.col("overnight_return").abs() > EXTREME_GAP)
    return without_genuine_moves(extreme, events).select(
        "instrument", "ticker", "date", "prev_close", "open", "overnight_return"
    )


def without_genuine_moves(extreme: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Drop the extreme moves reviewed as real (``rejected``): on the event day, or on the first
    usable day after it when the review came later (the rows between are set aside)."""
    reviewed = events.filter(pl.col("status") == "rejected").select(
        "instrument",
        pl.col("effective_date").alias("since"),
        pl.max_horizontal("effective_date", "known_from").alias("until"),
    )
    covered = (
        extreme.select("instrument", "date")
        .join(reviewed, on="instrument")
        .filter(pl.col("date").is_between("since", "until"))
    )
    return extreme.join(covered, on=["instrument", "date"], how="anti")


def read_events(lake: LakeIO) -> pl.DataFrame:
    return lake.read(tables.CORPORATE_ACTIONS).select(list(EVENT_SCHEMA))


def read_bars(lake: LakeIO) -> pl.DataFrame:
    return (
        lake.scan(tables.DAILY_BARS).select("ticker", "date", "open", "close", "volume").collect()
    )


def gaps_explained(data: CheckInput) -> tuple[bool, dict]:
    """``data.frame`` holds the events; the bars are all of silver.

    An event awaiting review does not fail the check: its instrument is set aside from the
    event day (`stock_assets.pit.undecided_spans`) while every other instrument goes on.
    """
    events = data.frame
    pending = events.filter(pl.col("status") == "needs_review")
    left = unexplained_gaps(read_bars(data.lake), events)
    return left.is_empty(), {
        "unexplained_extreme_gaps": left.height,
        "threshold_abs_overnight_return": EXTREME_GAP,
        "sample": markdown(left.with_columns(pl.col("overnight_return").round(4))),
        "needs_review": pending.height,
        "set_aside_instruments": markdown(undecided_spans(events).sort("since", "instrument")),
    }


CORPORATE_ACTIONS_CHECKS = CheckSuite(
    "corporate_actions_checks",
    tables.CORPORATE_ACTIONS,
    [
        Rule(
            EXPLAINED_CHECK,
            f"every |overnight return| > {EXTREME_GAP:.0%} on a usable row is removed by an "
            "applied event or reviewed as genuine; undecided jumps are set aside, not failed",
            gaps_explained,
        )
    ],
    whole_table=True,
)


@table_asset(
    tables.CORPORATE_ACTIONS,
    group=MARKET_GROUP,
    deps=[tables.DAILY_BARS],
    extra_metadata={"curated_table": CURATED_PATH.name},
    resource_defs={"corporate_action_source": CorporateActionSource.from_env()},
)
def corporate_actions(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    corporate_action_source: CorporateActionSource,
) -> dg.MaterializeResult:
    """Rebuild the whole event table from all silver bars (a few hundred events at most)."""
    bars = read_bars(lake)
    vendor = parse_vendor(corporate_action_source.records())
    events = build_corporate_actions(bars, reviewed_events(load_curated(), vendor))
    checked = CORPORATE_ACTIONS_CHECKS.gate(CheckInput(events, lake))
    version = lake.replace_table(
        tables.CORPORATE_ACTIONS, events.with_columns(month_column("effective_date"))
    )
    counts = events.group_by("action", "status").len().sort("action", "status")
    spans = undecided_spans(events)
    context.log.info(f"{events.height} corporate-action rows from {bars.height} bars")
    return dg.MaterializeResult(
        metadata={
            "events": events.height,
            "applied": events.filter(pl.col("status").is_in(APPLIED)).height,
            "needs_review": events.filter(pl.col("status") == "needs_review").height,
            "vendor_records": vendor.height,
            "set_aside_instruments": markdown(spans.sort("since", "instrument")),
            "by_action_and_status": markdown(counts),
            "events_table": markdown(
                events.select(
                    "instrument",
                    "ticker",
                    "action",
                    "effective_date",
                    "known_from",
                    "ratio",
                    "detected_ratio",
                    "source",
                    "status",
                ),  # fmt: skip
                limit=50,
            ),
            "bars_scanned": bars.height,
            "delta_version": version,
            **checked,
        }
    )
