"""Reference tables that vendors revise retroactively, kept as vintages instead of replaced.

Each run merges the source's snapshot into the stored entries: an entry seen for the first time
gets ``first_seen`` = the run's day; an entry the source no longer lists gets ``dropped_on`` =
that day (it stays in the table); ``first_seen`` of a stored entry is never rewritten. A change
to an entry (a moved date, a closed interval) is the old entry dropped and a new one first seen.
`stock_assets.pit` reads an entry on day t only when ``first_seen <= t`` and it was not dropped
by t, so a recomputation of the past sees what was known then, not today's vintage.

The first snapshot a lake receives (or the first after an upgrade from whole replacements) is
history with no vintages of its own: its entries are stamped as known from the day the table's
point-in-time rule already assumes (``backdated``).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from stock_assets.pit import DROPPED_ON, FIRST_SEEN


def merge_vintage(
    stored: pl.DataFrame,
    snapshot: pl.DataFrame,
    key: list[str],
    today: dt.date,
    backdated: pl.Expr,
) -> pl.DataFrame:
    """The table after today's ``snapshot``: stored entries kept, new ones first seen today,
    vanished ones dropped today. ``backdated`` stamps ``first_seen`` on a lake's first snapshot."""
    if stored.is_empty() or FIRST_SEEN not in stored.columns:  # first snapshot, or a lake
        return snapshot.with_columns(
            backdated.cast(pl.Date).alias(FIRST_SEEN), pl.lit(None, pl.Date).alias(DROPPED_ON)
        )
    live = pl.col(DROPPED_ON).is_null()
    current = stored.filter(live).select(key)
    gone = current.join(snapshot.select(key), on=key, how="anti", nulls_equal=True)
    dropped = (
        stored.join(gone.with_columns(__gone=pl.lit(True)), on=key, how="left", nulls_equal=True)
        .with_columns(
            pl.when(live & pl.col("__gone").fill_null(False))
            .then(pl.lit(today))
            .otherwise(pl.col(DROPPED_ON))
            .alias(DROPPED_ON)
        )
        .drop("__gone")
    )
    new = snapshot.join(current, on=key, how="anti", nulls_equal=True).with_columns(
        pl.lit(today).alias(FIRST_SEEN), pl.lit(None, pl.Date).alias(DROPPED_ON)
    )
    return pl.concat([dropped.select(new.columns), new])


def vintage_summary(table: pl.DataFrame, today: dt.date) -> dict[str, int]:
    """What a run changed: entries first seen and dropped today, and entries live."""
    return {
        "entries_first_seen_today": table.filter(pl.col(FIRST_SEEN) == today).height,
        "entries_dropped_today": table.filter(pl.col(DROPPED_ON) == today).height,
        "entries_live": table.filter(pl.col(DROPPED_ON).is_null()).height,
    }
