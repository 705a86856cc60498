"""``silver/data_quality``: a report per data set (the bars' ``source``): measured, not fixed.

The bundled sets have gaps and quirks that a model must not mistake for signal (docs/DATA.md):
whole NYSE sessions missing, stock-days missing inside a symbol's span, implausible volumes,
corporate actions, and stock-days set aside while a price jump was undecided. This asset counts
each one per data set so a person sees them in the asset's metadata, and keeps the summary as a
small Delta table.
"""

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.calendar import trading_days
from stock_assets.checks import markdown
from stock_assets.pit import APPLIED, set_aside_reasons, with_instrument
from stock_assets.resources.lake import LakeResource
from stock_assets.silver import MARKET_GROUP
from stock_assets.silver.corporate_actions import read_events
from stock_assets.table_assets import table_asset

VOLUME_SPIKE = 50.0  # a day's volume over 50x the symbol's median
LOW_DOLLAR_VOLUME = 1e6  # median daily dollar volume under $1M for a listed large cap


def dataset_name(source: pl.Expr) -> pl.Expr:
    """``sp500_1990_adjclose:close_only`` -> ``sp500_1990_adjclose``."""
    return source.fill_null("unknown").str.split(":").list.first()


def missing_sessions(dates: pl.Series) -> list:
    """NYSE sessions inside the set's span with no bar at all."""
    present = set(dates.to_list())
    return [d for d in trading_days(min(present), max(present)) if d not in present]


def missing_stock_days(bars: pl.DataFrame, dataset_days: set) -> pl.DataFrame:
    """Per instrument: days the data set has but the instrument lacks, inside its own span."""
    days = pl.DataFrame({"date": sorted(dataset_days)})
    spans = bars.group_by("instrument").agg(first=pl.col("date").min(), last=pl.col("date").max())
    expected = spans.join(days, how="cross").filter(pl.col("date").is_between("first", "last"))
    missing = expected.join(
        bars.select("instrument", "date"), on=["instrument", "date"], how="anti"
    )
    return missing.group_by("instrument").agg(missing=pl.len(), first_missing=pl.col("date").min())


def volume_findings(bars: pl.DataFrame) -> dict[str, int]:
    per = bars.with_columns(med=pl.col("volume").median().over("instrument"))
    dollar = bars.group_by("instrument").agg((pl.col("close") * pl.col("volume")).median())
    return {
        "zero_volume_days": bars.filter(pl.col("volume") == 0).height,
        "volume_spike_days": per.filter(
            pl.col("med") > 0, pl.col("volume") > VOLUME_SPIKE * pl.col("med")
        ).height,
        "low_dollar_volume_symbols": dollar.filter(pl.col("close") < LOW_DOLLAR_VOLUME).height,
    }


def quality_report(bars: pl.DataFrame, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one summary row per data set, per-instrument missing stock-days)."""
    bars = with_instrument(bars, events).with_columns(dataset=dataset_name(pl.col("source")))
    applied = events.filter(pl.col("status").is_in(APPLIED), pl.col("action") != "ticker_change")
    rows, gaps = [], []
    for (name,), part in bars.group_by("dataset", maintain_order=True):
        missing_days = missing_sessions(part["date"])
        stock_days = missing_stock_days(part, set(part["date"].unique().to_list()))
        instruments = part["instrument"].unique().implode()
        mine = events.filter(pl.col("instrument").is_in(instruments))
        in_span = pl.col("effective_date").is_between(part["date"].min(), part["date"].max())
        rows.append(
            {
                "dataset": name,
                "close_only": bool(part["source"].str.ends_with(":close_only").any()),
                "first_date": part["date"].min(),
                "last_date": part["date"].max(),
                "bars": part.height,
                "instruments": part["instrument"].n_unique(),
                "missing_trading_days": len(missing_days),
                "missing_trading_days_sample": ", ".join(str(d) for d in missing_days[:10]),
                "missing_stock_days": int(stock_days["missing"].sum()),
                "instruments_with_missing_days": stock_days.height,
                **volume_findings(part),
                "adjustments_applied": applied.filter(
                    pl.col("instrument").is_in(instruments), in_span
                ).height,
                "ticker_changes": mine.filter(
                    pl.col("action") == "ticker_change", pl.col("status").is_in(APPLIED), in_span
                ).height,
                "events_needing_review": mine.filter(
                    pl.col("status") == "needs_review", in_span
                ).height,
                "stock_days_set_aside": int(set_aside_reasons(part, events)["set_aside"].count()),
            }
        )
        gaps.append(stock_days.with_columns(dataset=pl.lit(name)))
    summary = pl.DataFrame(rows).sort("dataset") if rows else pl.DataFrame()
    return summary, (pl.concat(gaps) if gaps else pl.DataFrame())


@table_asset(
    tables.DATA_QUALITY, group=MARKET_GROUP, deps=[tables.DAILY_BARS, tables.CORPORATE_ACTIONS]
)
def data_quality(lake: LakeResource) -> dg.MaterializeResult:
    """Measure every data set in silver; the numbers go to the UI and to a small Delta table."""
    bars = (
        lake.scan(tables.DAILY_BARS)
        .select("ticker", "date", "open", "close", "volume", "source")
        .collect()
    )
    events = read_events(lake)
    summary, stock_days = quality_report(bars, events)
    version = lake.replace_table(
        tables.DATA_QUALITY, summary.with_columns(month=pl.col("last_date").dt.strftime("%Y-%m"))
    )
    applied = events.filter(pl.col("status").is_in(APPLIED)).select(
        "instrument", "ticker", "action", "effective_date", "ratio", "status"
    )
    return dg.MaterializeResult(
        metadata={
            "datasets": summary.height,
            "summary": markdown(summary, limit=40),
            "missing_stock_days_by_instrument": markdown(
                stock_days.sort("missing", descending=True), limit=40
            ),
            "adjustments_applied": markdown(applied, limit=40),
            "delta_version": version,
        }
    )
