"""Point-in-time helpers: what was known on a given day, for features, training and serving.

Every join here looks backwards only. A value is visible on day t when it was known by t's
close: macro observations from their ``known_from``, corporate actions from
``max(effective_date, known_from)`` (an instrument is set aside while its event is undecided),
earnings dates from the previous release (and the next one
only once it would have been announced), index membership from its interval; earnings dates
and membership intervals only once first seen and until dropped (`known_on`, vintages).
Features, labels and the API import these; none of them imports an asset module.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from stock_assets.lake import month_column
from stock_assets.tables import ADJUSTED_BAR_PROVENANCE, ADJUSTED_DAILY_BARS, UNIVERSE

# Corporate-action statuses and actions that change prices (see silver/corporate_actions.py).
APPLIED = ("detected", "confirmed", "corrected")  # also: rejected, needs_review, not_observed
PRICE_ACTIONS = ("split", "reverse_split", "special_distribution")
SHARE_ACTIONS = ("split", "reverse_split")
PRICES = ["open", "high", "low", "close"]
ADJUSTED_COLUMNS = list(ADJUSTED_DAILY_BARS.schema)
UNIVERSE_COLUMNS = dict(UNIVERSE.schema)
ANNOUNCE_DAYS = 28  # companies confirm a release date about four weeks ahead


# -- instruments and adjustments -------------------------------------------------------------
def instrument_map(events: pl.DataFrame) -> dict[str, str]:
    """ticker -> instrument, from applied ticker changes (the instrument keeps its first name)."""
    changes = events.filter(pl.col("action") == "ticker_change", pl.col("status").is_in(APPLIED))
    mapping: dict[str, str] = {}
    for instrument, new_ticker in changes.select("instrument", "new_ticker").iter_rows():
        mapping[new_ticker] = instrument
        mapping.setdefault(instrument, instrument)
    return mapping


def with_instrument(bars: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    mapping = instrument_map(events)
    return bars.with_columns(
        instrument=pl.col("ticker").replace_strict(mapping, default=pl.col("ticker"))
    )


def _factor_steps(events: pl.DataFrame, as_of: dt.date | None) -> pl.DataFrame:
    """Per instrument, cumulative factors as step functions of the day each event applies from."""
    applied = events.filter(
        pl.col("status").is_in(APPLIED), pl.col("action").is_in(PRICE_ACTIONS)
    ).with_columns(applies_from=pl.max_horizontal("effective_date", "known_from"))
    if as_of is not None:
        applied = applied.filter(pl.col("known_from") <= as_of)
    share = pl.when(pl.col("action").is_in(SHARE_ACTIONS)).then(pl.col("ratio")).otherwise(1.0)
    return (
        applied.sort("instrument", "applies_from")
        .select(
            "instrument",
            pl.col("applies_from").alias("date"),
            cum_factor=pl.col("ratio").log().cum_sum().exp().over("instrument"),
            cum_volume_factor=share.log().cum_sum().exp().over("instrument"),
            events_applied=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("instrument"),
        )
        .unique(["instrument", "date"], keep="last", maintain_order=True)
    )


def undecided_spans(events: pl.DataFrame) -> pl.DataFrame:
    """Per instrument, the days its price jump was not decided yet, with the reason.

    A jump that nobody has explained (``needs_review``) is undecided from its effective date on;
    a decided one (applied or reviewed as genuine) from its effective date until ``known_from``.
    Rows in a span are set aside: no adjusted prices, so no features, and the reason says why.
    """
    jumps = events.filter(
        pl.col("action") != "ticker_change", pl.col("status") != "not_observed"
    ).with_columns(
        until=pl.when(pl.col("status") == "needs_review")
        .then(pl.lit(None, pl.Date))
        .otherwise(pl.col("known_from"))
    )
    # only what was known on the row's own day: the jump itself, not how it was later decided
    reason = pl.format(
        "price jump on {} (prev close / open {}) undecided: awaits review or volume evidence",
        pl.col("effective_date"),
        pl.col("detected_ratio").round(4).cast(pl.String).fill_null("unknown"),
    )
    return jumps.filter(
        pl.col("until").is_null() | (pl.col("until") > pl.col("effective_date"))
    ).select("instrument", pl.col("effective_date").alias("since"), "until", set_aside=reason)


def set_aside_reasons(bars: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """``bars`` (with ``instrument``) plus ``set_aside``: the reason, or null for a usable row."""
    spans = undecided_spans(events)
    if spans.is_empty():
        return bars.with_columns(set_aside=pl.lit(None, pl.String))
    inside = (
        bars.select("instrument", "date")
        .join(spans, on="instrument")
        .filter(
            pl.col("date") >= pl.col("since"),
            pl.col("until").is_null() | (pl.col("date") < pl.col("until")),
        )
        .group_by("instrument", "date")
        .agg(pl.col("set_aside").sort().str.join("; "))
    )
    return bars.join(inside, on=["instrument", "date"], how="left")


def adjust_bars(
    bars: pl.DataFrame, events: pl.DataFrame, as_of: dt.date | None = None
) -> pl.DataFrame:
    """Raw bars -> ADJUSTED_COLUMNS; ``as_of`` drops rows and events not yet known on that day.

    Rows of an instrument whose jump is undecided that day keep raw prices and factors but get
    null adjusted prices and volume, with the reason in ``set_aside``.
    """
    if as_of is not None:
        bars = bars.filter(pl.col("date") <= as_of)
    if "source" not in bars.columns:
        bars = bars.with_columns(source=pl.lit(None, pl.String))
    for column, dtype in ADJUSTED_BAR_PROVENANCE.items():  # the asset records the versions read
        if column not in bars.columns:
            bars = bars.with_columns(pl.lit(None, dtype).alias(column))
    for column in ("high", "low"):
        if column not in bars.columns:
            bars = bars.with_columns(pl.col("close").alias(column))
    bars = with_instrument(bars, events).sort("date")
    steps = _factor_steps(events, as_of).sort("date")
    joined = bars.join_asof(
        steps, on="date", by="instrument", strategy="backward", check_sortedness=False
    )
    joined = set_aside_reasons(
        joined.with_columns(
            pl.col("cum_factor", "cum_volume_factor").fill_null(1.0),
            pl.col("events_applied").fill_null(0),
        ),
        events,
    )
    usable = pl.col("set_aside").is_null()
    return (
        joined.with_columns(
            *(
                pl.when(usable).then(pl.col(p) * pl.col("cum_factor")).alias(f"adj_{p}")
                for p in PRICES
            ),
            adj_volume=pl.when(usable).then(pl.col("volume") / pl.col("cum_volume_factor")),
        )
        .with_columns(month_column())
        .select(ADJUSTED_COLUMNS)
        .sort("date", "instrument")
    )


def back_adjust(adjusted: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The conventional back-adjusted view as known on ``as_of``: uses rows <= as_of only.

    Prices are in the share basis of each instrument's last row on or before ``as_of``; that
    row's back-adjusted prices equal its raw prices.
    """
    known = adjusted.filter(pl.col("date") <= as_of).sort("instrument", "date")
    last = pl.col("cum_factor").last().over("instrument")
    last_volume = pl.col("cum_volume_factor").last().over("instrument")
    return known.with_columns(
        *((pl.col(f"adj_{p}") / last).alias(f"back_{p}") for p in PRICES),
        back_volume=pl.col("adj_volume") * last_volume,
    )


# -- macro indicators -------------------------------------------------------------------------
def macro_as_of(
    values: pl.DataFrame, dates: pl.DataFrame, series: list[str] | None = None
) -> pl.DataFrame:
    """For each ``date`` in ``dates`` and each series: the latest value known by that date.

    A point-in-time join on ``known_from`` (polars ``join_asof``, backward): a value whose
    ``known_from`` is after the date is invisible, however old its observation period is.
    Returns long rows ``date, series, value, period, known_from`` (nulls where nothing was known).
    """
    wanted = series or sorted(values["series"].unique().to_list())
    values = (
        values.filter(pl.col("series").is_in(wanted))
        .select("series", "known_from", "period", "value")
        .sort("known_from", "period")
    )
    grid = (
        dates.select(pl.col("date").cast(pl.Date))
        .unique()
        .join(pl.DataFrame({"series": wanted}), how="cross")
        .sort("date")
    )
    return grid.join_asof(
        values,
        left_on="date",
        right_on="known_from",
        by="series",
        strategy="backward",
        check_sortedness=False,  # sorted by known_from overall, hence within each series
    ).select("date", "series", "value", "period", "known_from")


def macro_as_of_wide(values: pl.DataFrame, dates: pl.DataFrame, series: list[str]) -> pl.DataFrame:
    """`macro_as_of` pivoted to one column per series, joined back onto ``dates``."""
    long = macro_as_of(values, dates, series)
    wide = long.pivot(on="series", index="date", values="value")
    return dates.join(wide.select("date", *series), on="date", how="left")


# -- earnings and index membership ------------------------------------------------------------
# Vintage columns of the revised reference tables (silver/vintages.py): when an entry became
# known, and when a later snapshot stopped listing it. Tables without them count as known.
FIRST_SEEN, DROPPED_ON = "first_seen", "dropped_on"


def known_on(day: pl.Expr) -> pl.Expr:
    """An entry is known on ``day``: first seen by then and not dropped by then."""
    return (pl.col(FIRST_SEEN) <= day) & (pl.col(DROPPED_ON).is_null() | (pl.col(DROPPED_ON) > day))


def _vintage_segments(calendar: pl.DataFrame, announce_days: int) -> list[dt.date]:
    """Days on which the set of earnings entries a day may see changes beyond the announcement
    rule: first sightings later than it assumes, and drops. Between two of them one as-of join
    with one set of entries is exact."""
    if FIRST_SEEN not in calendar.columns:
        return []
    late = calendar.filter(
        pl.col(FIRST_SEEN) > pl.col("earnings_date") - pl.duration(days=announce_days)
    )[FIRST_SEEN]
    return sorted(set(late.to_list()) | set(calendar[DROPPED_ON].drop_nulls().to_list()))


def earnings_proximity(
    frame: pl.DataFrame,
    calendar: pl.DataFrame,
    announce_days: int = ANNOUNCE_DAYS,
    date_column: str = "date",
    ticker_column: str = "ticker",
) -> pl.DataFrame:
    """Add previous/next earnings dates and day counts to ``(ticker, date)`` rows.

    ``previous_earnings_date`` is the last release on or before the date. ``next_earnings_date``
    is the first release after it, shown only when it is at most ``announce_days`` ahead: a date
    further out was usually not announced yet, and showing it would leak the future schedule.
    With vintage columns, a day sees only the entries known on it (`known_on`): an entry first
    seen later than the announcement rule assumes, or since dropped, splits the rows into
    segments, each joined with the entries known at its start.
    """
    boundaries = _vintage_segments(calendar, announce_days)
    if not boundaries:
        return _proximity(frame, calendar, announce_days, date_column, ticker_column)
    order = frame.with_row_index("__order").with_columns(
        __segment=pl.Series(boundaries, dtype=pl.Date).search_sorted(
            frame[date_column], side="right"
        )
    )
    early = pl.col(FIRST_SEEN) <= pl.col("earnings_date") - pl.duration(days=announce_days)
    parts = []
    for (_,), rows in order.group_by("__segment"):
        day = pl.lit(rows[date_column].min(), pl.Date)
        still_listed = pl.col(DROPPED_ON).is_null() | (pl.col(DROPPED_ON) > day)
        seen = calendar.filter(known_on(day) | (early & still_listed))
        rows = rows.drop("__segment")
        parts.append(_proximity(rows, seen, announce_days, date_column, ticker_column))
    return pl.concat(parts).sort("__order").drop("__order")


def _proximity(
    frame: pl.DataFrame,
    calendar: pl.DataFrame,
    announce_days: int,
    date_column: str,
    ticker_column: str,
) -> pl.DataFrame:
    events = calendar.select(
        pl.col("ticker").alias(ticker_column), pl.col("earnings_date").alias("__event")
    ).sort("__event")
    keyed = frame.with_row_index("__row").sort(date_column)
    previous = keyed.join_asof(
        events,
        left_on=date_column,
        right_on="__event",
        by=ticker_column,
        strategy="backward",
        check_sortedness=False,  # both sides sorted on the key overall, so within each ticker
    ).rename({"__event": "previous_earnings_date"})
    upcoming = (
        keyed.select("__row", ticker_column, date_column)
        .with_columns((pl.col(date_column) + pl.duration(days=1)).alias("__after"))
        .sort("__after")
        .join_asof(
            events,
            left_on="__after",
            right_on="__event",
            by=ticker_column,
            strategy="forward",
            check_sortedness=False,
        )
        .select("__row", pl.col("__event").alias("next_earnings_date"))
    )
    days_to_next = (pl.col("next_earnings_date") - pl.col(date_column)).dt.total_days()
    return (
        previous.join(upcoming, on="__row", how="left")
        .with_columns(
            pl.when(days_to_next <= announce_days).then(pl.col("next_earnings_date")),
        )
        .with_columns(
            (pl.col(date_column) - pl.col("previous_earnings_date"))
            .dt.total_days()
            .alias("days_since_earnings"),
            days_to_next.alias("days_to_earnings"),
        )
        .sort("__row")
        .drop("__row")
    )


def members_on(intervals: pl.DataFrame, days: list[dt.date]) -> pl.DataFrame:
    """One row per day and member: ``member_from <= day < member_until`` (open end = member),
    counting only the intervals known that day when the table keeps vintages (`known_on`)."""
    sessions = pl.DataFrame({"date": days}, schema={"date": pl.Date})
    known = known_on(pl.col("date")) if FIRST_SEEN in intervals.columns else pl.lit(True)
    return (
        sessions.join(intervals, how="cross")
        .filter(
            (pl.col("member_from") <= pl.col("date"))
            & (pl.col("member_until").is_null() | (pl.col("member_until") > pl.col("date")))
            & known
        )
        .unique(["date", "index", "ticker"])  # a ticker re-used by two companies at once
        .with_columns(month_column())
        .select(list(UNIVERSE_COLUMNS))
        .cast(UNIVERSE_COLUMNS)
        .sort("date", "ticker")
    )


def restrict_to_members(
    frame: pl.DataFrame,
    universe: pl.DataFrame,
    date_column: str = "date",
    ticker_column: str = "ticker",
) -> pl.DataFrame:
    """Only the rows of ``frame`` whose ticker was an index member on that row's date."""
    members = universe.select(
        pl.col("date").alias(date_column), pl.col("ticker").alias(ticker_column)
    ).unique()
    return frame.join(members, on=[date_column, ticker_column], how="semi")
