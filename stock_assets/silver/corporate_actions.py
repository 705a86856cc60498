"""``silver/corporate_actions``: detected from the bars, confirmed / corrected / rejected by review.

Unadjusted prices turn a 2:1 split into a fake -50% return that poisons features and labels.
Detection works on instruments (tickers joined across detected ticker changes, e.g. ETFC traded
as ETFCD for a month) and proposes:

- ``ticker_change`` when a ticker whose name extends another (ETFCD) trades exactly while the
  other (ETFC) is silent;
- ``split`` / ``reverse_split`` when the overnight gap ``prev_close / open`` sits within 6% of a
  k:1 or 1:k ratio AND volume moves the same way (share counts change with splits): on each of
  the first 10 bars from the event day, the median volume since the event day (no later bar)
  against the median of the 10 bars before;
- ``unexplained_gap`` (status ``needs_review``) for any other |overnight return| > 40%, and for a
  split-like gap whose volume has not agreed (yet).

``ratio`` is new shares per old share as a price factor: 2.0 for 2:1, 0.1 for 1:10, 2.661 for
WY's special distribution (price only; volumes are adjusted only by share-count events).
``known_from`` is the first day the event could be known from data dated up to that day: a
detected split the day its volume confirmed it, a gap awaiting review its own day, a curated or
vendor row the date in its table (curated review beats a vendor record, both beat detection).
Until an instrument's jump is decided it is set aside (`stock_assets.pit.undecided_spans`): no
adjusted prices or features, a reason in ``silver/adjusted_daily_bars.set_aside``; the other
instruments go on. The blocking check fails on an extreme gap left on a usable row.
"""

import math
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
from stock_assets.silver.corporate_action_detection import (
    EVENT_SCHEMA,
    EXTREME_GAP,
    detect_price_events,
    detect_ticker_changes,
    overnight_gaps,
)
from stock_assets.table_assets import table_asset

CURATED_PATH = Path(__file__).with_name("curated_corporate_actions.csv")
EXPLAINED_CHECK = "corporate_actions_explain_extreme_gaps"

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


def read_events(lake: LakeIO, version: int | None = None) -> pl.DataFrame:
    """The stored events, at the latest version or at ``version``."""
    if version is None:
        return lake.read(tables.CORPORATE_ACTIONS).select(list(EVENT_SCHEMA))
    return lake.scan(tables.CORPORATE_ACTIONS, version).select(list(EVENT_SCHEMA)).collect()


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
