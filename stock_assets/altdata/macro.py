"""Macro and market-context indicators, long format, with the date each value became known.

``silver/macro_indicators`` holds one row per series and observation period: the period (its
first day), the value, and ``known_from``, the first day a model may use it. ``known_from`` is the
period's last day plus a conservative release lag per series (``SERIES``): a join on day t through
`as_of` then sees only what had been published by the close of day t.

The table is partitioned by the month of ``known_from`` (Delta column ``month``): a run for month M
writes exactly the observations that became known in M, so a daily refresh of the open month adds
the new daily values and any monthly or quarterly release whose lag has just run out.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import polars as pl

from stock_assets.altdata import ALTDATA_GROUP
from stock_assets.altdata.common import (
    first_failure,
    month_window,
    monthly_partitions,
    quarantine_frame,
    write_quarantine,
)
from stock_assets.altdata.resources import MacroSource, today_utc
from stock_assets.resources.lake import LakeResource, month_column

MACRO_TABLE = "silver/macro_indicators"
MACRO_QUARANTINE = "silver/macro_indicators_quarantine"
MACRO_KEY = dg.AssetKey(["silver", "macro_indicators"])
MACRO_PARTITIONS = monthly_partitions("1959-01-01")  # first statsmodels quarter is 1959Q1


@dataclass(frozen=True)
class Series:
    frequency: str  # "quarterly" | "monthly" | "daily"
    lag_days: int  # days after the period's last day before the value may be used
    unit: str
    why: str  # the release practice that justifies the lag


_NIPA = "BEA national accounts: advance ~30 d, third estimate ~90 d after quarter end; +120 d"
_MONTHLY_IN_Q = "last monthly release of the quarter (CPI, jobs, H.6) ~2-4 weeks after; +45 d"
_MARKET = "market rate observed at that day's close"
SERIES: dict[str, Series] = {
    **{
        f"us_{name}": Series("quarterly", 120, unit, _NIPA)
        for name, unit in {
            "realgdp": "bn chained 2005 USD, SAAR",
            "realcons": "bn chained 2005 USD, SAAR",
            "realinv": "bn chained 2005 USD, SAAR",
            "realgovt": "bn chained 2005 USD, SAAR",
            "realdpi": "bn chained 2005 USD, SAAR",
            "pop": "millions",
        }.items()
    },
    **{
        f"us_{name}": Series("quarterly", 45, unit, _MONTHLY_IN_Q)
        for name, unit in {
            "cpi": "index, end of quarter",
            "m1": "bn USD, end of quarter",
            "tbilrate": "percent, quarterly average",
            "unemp": "percent",
            "infl": "percent, annualized",
            "realint": "percent (tbilrate - infl)",
        }.items()
    },
    "us_core_cpi": Series(
        "monthly", 30, "index 1982-84=100, SA", "BLS CPI ~10-15 d after month end; +30 d"
    ),
    "moodys_aaa_yield": Series("monthly", 2, "percent", "monthly average of daily yields; +2 d"),
    "moodys_baa_yield": Series("monthly", 2, "percent", "monthly average of daily yields; +2 d"),
    "vix_close": Series("daily", 0, "index points", _MARKET),
    "wti_spot": Series(
        "daily", 1, "USD per barrel", "EIA spot assessment, published after the session; +1 d"
    ),
    **{
        f"treasury_{tenor}": Series("daily", 0, "fraction (0.05 = 5%)", _MARKET)
        for tenor in [
            "1month",
            "3month",
            "6month",
            "1year",
            "2year",
            "3year",
            "5year",
            "7year",
            "10year",
            "20year",
            "30year",
        ]  # fmt: skip
    },
}
FREQUENCY_MONTHS = {"quarterly": 3, "monthly": 1}

MACRO_SCHEMA = {
    "series": pl.String,
    "frequency": pl.String,
    "period": pl.Date,
    "period_end": pl.Date,
    "value": pl.Float64,
    "unit": pl.String,
    "known_from": pl.Date,
    "release_lag_days": pl.Int32,
    "source": pl.String,
    "month": pl.String,
}


def series_rules() -> pl.DataFrame:
    return pl.DataFrame(
        [(name, s.frequency, s.lag_days, s.unit) for name, s in SERIES.items()],
        schema={
            "series": pl.String,
            "frequency": pl.String,
            "release_lag_days": pl.Int32,
            "unit": pl.String,
        },
        orient="row",
    )


def not_observed(raw: pl.DataFrame) -> pl.Series:
    """FRED-style "no observation" markers: a blank value or ``.`` (market holidays, tenors not
    issued). They are counted and reported, not stored and not quarantined: they are no value."""
    value = raw["value"].str.strip_chars()
    return value.is_null() | value.is_in(["", "."])


def parse_observations(raw: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed, lagged observations and the quarantined raw rows (with their reason).

    Rows flagged by `not_observed` must be removed by the caller first (and counted).
    """
    rules = series_rules()
    work = raw.with_row_index("__row").join(rules, on="series", how="left")
    period = pl.col("period").str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    value = pl.col("value").str.strip_chars().cast(pl.Float64, strict=False)
    work = work.with_columns(period.alias("__period"), value.alias("__value"))
    months = pl.col("frequency").replace_strict(FREQUENCY_MONTHS, default=0)
    reasons = work.select(
        first_failure(
            (pl.col("frequency").is_null(), "no release-lag rule for this series"),
            (pl.col("__period").is_null(), "period is not a YYYY-MM-DD calendar date"),
            (pl.col("__period") > pl.lit(today), "period lies in the future"),
            (pl.col("__value").is_null(), "value is not a number"),
            (~pl.col("__value").is_finite(), "value is not finite"),
            (
                (months > 0)
                & (
                    (pl.col("__period").dt.day() != 1)
                    | ((pl.col("__period").dt.month() - 1) % months.clip(1) != 0)
                ),
                "period does not start a month or quarter of the series' frequency",
            ),
            (
                pl.int_range(pl.len()).over("series", "__period") > 0,
                "duplicate observation for this series and period",
            ),
        )
    ).to_series()
    bad = quarantine_frame(raw, reasons, "source")
    good = work.filter(reasons.is_null())
    period_end = (
        pl.when(pl.col("frequency") == "daily")
        .then(pl.col("__period"))
        .otherwise(
            pl.col("__period").dt.offset_by(pl.format("{}mo", months.clip(1))).dt.offset_by("-1d")
        )
    )
    typed = (
        good.with_columns(period_end.alias("period_end"))
        .with_columns(
            (pl.col("period_end") + pl.duration(days=pl.col("release_lag_days"))).alias(
                "known_from"
            )
        )
        .select(
            "series",
            "frequency",
            pl.col("__period").alias("period"),
            "period_end",
            pl.col("__value").alias("value"),
            "unit",
            "known_from",
            "release_lag_days",
            "source",
            month_column("known_from"),
        )
        .cast(MACRO_SCHEMA)
        .sort("known_from", "series", "period")
    )
    return typed, bad


def as_of(
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


def as_of_wide(values: pl.DataFrame, dates: pl.DataFrame, series: list[str]) -> pl.DataFrame:
    """`as_of` pivoted to one column per series, joined back onto ``dates``."""
    long = as_of(values, dates, series)
    wide = long.pivot(on="series", index="date", values="value")
    return dates.join(wide.select("date", *series), on="date", how="left")


@dg.asset(
    key=MACRO_KEY,
    partitions_def=MACRO_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ALTDATA_GROUP,
    kinds={"polars", "delta"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=48), warn_window=dt.timedelta(hours=26)
    ),
    metadata={
        "delta_path": MACRO_TABLE,
        "delta_partition_column": "month (of known_from)",
        "quarantine_table": MACRO_QUARANTINE,
    },
)
def macro_indicators(
    context: dg.AssetExecutionContext, macro_source: MacroSource, lake: LakeResource
) -> dg.MaterializeResult:
    """Observations that became known in the selected months, with their release lag applied."""
    start, end = month_window(context)
    raw = macro_source.observations()
    missing = not_observed(raw)
    typed, bad = parse_observations(raw.filter(~missing), today_utc())
    write_quarantine(lake, MACRO_QUARANTINE, bad)
    rows = typed.filter(pl.col("known_from").is_between(start, end))
    version = lake.overwrite_dates(
        MACRO_TABLE, rows.to_arrow(), start, end, partition_by=["month"], date_column="known_from"
    )
    per_series = rows.group_by("series").len().sort("series")
    return dg.MaterializeResult(
        metadata={
            "rows": rows.height,
            "series": dg.MetadataValue.json(dict(per_series.iter_rows())),
            "known_from_range": f"{start}..{end}",
            "source_rows": raw.height,
            "source_rows_not_observed": int(missing.sum()),
            "rows_quarantined": bad.height,
            "quarantine_reasons": dg.MetadataValue.json(
                dict(bad.group_by("reason").len().iter_rows()) if bad.height else {}
            ),
            "delta_version": version,
        }
    )
