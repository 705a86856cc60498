"""``silver/macro_indicators``: macro and market-context series with the day each became known.

``silver/macro_indicators`` holds one row per series and observation period: the period (its
first day), the value, and ``known_from``, the first day a model may use it. ``known_from`` is the
period's last day plus a conservative release lag per series (``SERIES``): a join on day t through
`stock_assets.pit.macro_as_of` then sees only what had been published by the close of day t.

The table is partitioned by the month of ``known_from`` (Delta column ``month``): a run for month M
writes exactly the observations that became known in M, so a daily refresh of the open month adds
the new daily values and any monthly or quarterly release whose lag has just run out.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import pandera.polars as pa
import polars as pl

from stock_assets import tables
from stock_assets.checks import (
    CheckInput,
    CheckSuite,
    frame_check,
    quarantine_rule,
    row_reasons,
    schema_rule,
    source_quarantine,
    unique_rule,
)
from stock_assets.lake import month_column
from stock_assets.partitions import monthly_partitions, run_dates
from stock_assets.resources.lake import LakeResource
from stock_assets.resources.sources import MacroSource, today_utc
from stock_assets.silver import ALTDATA_GROUP, DAILY_REFRESH
from stock_assets.table_assets import table_asset

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

MACRO_SCHEMA = dict(tables.MACRO_INDICATORS.schema)


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
        row_reasons(
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
    bad = source_quarantine(raw, reasons, "source")
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


MACRO_CHECKS = CheckSuite(
    "macro_indicators_checks",
    tables.MACRO_INDICATORS,
    [
        schema_rule(
            "macro_indicators_schema",
            pa.DataFrameSchema(
                {
                    "series": pa.Column(pl.String, pa.Check.str_length(min_value=1)),
                    "frequency": pa.Column(pl.String, pa.Check.isin([*FREQUENCY_MONTHS, "daily"])),
                    "period": pa.Column(pl.Date),
                    "period_end": pa.Column(pl.Date),
                    "value": pa.Column(
                        pl.Float64,
                        pa.Check(
                            lambda d: d.lazyframe.select(pl.col(d.key).is_finite()), name="finite"
                        ),
                    ),
                    "known_from": pa.Column(pl.Date),
                    "release_lag_days": pa.Column(pl.Int32, pa.Check.ge(0)),
                },
                checks=[
                    frame_check(
                        pl.col("period_end") >= pl.col("period"), "period_end_not_before_period"
                    ),
                    frame_check(
                        pl.col("known_from") >= pl.col("period_end"), "known_only_after_period"
                    ),
                ],
                name="macro_indicators",
            ),
            "finite values, known after period",
        ),
        unique_rule("macro_indicators_unique_series_period", ["series", "period"]),
        quarantine_rule("macro_indicators_quarantine_empty", tables.MACRO_INDICATORS_QUARANTINE),
    ],
    MACRO_PARTITIONS,
)


@table_asset(
    tables.MACRO_INDICATORS,
    group=ALTDATA_GROUP,
    partitions_def=MACRO_PARTITIONS,
    freshness_policy=DAILY_REFRESH,
    extra_metadata={"quarantine_table": tables.MACRO_INDICATORS_QUARANTINE.path},
)
def macro_indicators(
    context: dg.AssetExecutionContext, macro_source: MacroSource, lake: LakeResource
) -> dg.MaterializeResult:
    """Observations that became known in the selected months, with their release lag applied."""
    start, end = run_dates(context)
    raw = macro_source.observations()
    missing = not_observed(raw)
    typed, bad = parse_observations(raw.filter(~missing), today_utc())
    rows = typed.filter(pl.col("known_from").is_between(start, end))
    checked = MACRO_CHECKS.gate(CheckInput(rows, lake, start, end))
    lake.replace_table(tables.MACRO_INDICATORS_QUARANTINE, bad)
    version = lake.overwrite_dates(tables.MACRO_INDICATORS, rows, start, end)
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
            **checked,
        }
    )
