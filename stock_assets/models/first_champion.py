"""``make run``'s first models: refit the latest months in order, then predict, signal, backtest.

The monthly schedule refits one month at a time from now on; a fresh lake of replayed history
has none, so the local stack runs the same assets for the last few months that have a broad
universe, oldest first (each month's gate compares with the champion before it), recorded in
the Dagster instance like any run. Predictions then cover those months, each session scored by
the model of its month.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from stock_assets import tables
from stock_assets.gold.backtest import backtest
from stock_assets.gold.predictions import PREDICTIONS_CHECKS, predictions
from stock_assets.gold.signals import SET_SHARE_CAP, signals, tickers_seen
from stock_assets.lake import LakeIO
from stock_assets.models.challenger import challenger
from stock_assets.models.champion import champion
from stock_assets.partitions import range_tags

# sessions with fewer index members make a thin cross-section to rank; at most half the
# tickers the features hold by that session (as the signals' floor), so a 20-name set refits on
# sessions with 10 members, and never fewer than two (one name has no order: a one-ticker set
# trains nothing)
MIN_MEMBERS = 100
MIN_TO_RANK = 2


def member_floors(lake: LakeIO) -> pl.DataFrame:
    """``date, floor``: `MIN_MEMBERS` capped at half the tickers with features on or before
    the session (no later ticker sizes an earlier floor), at least `MIN_TO_RANK`."""
    rows = lake.scan(tables.GOLD_DAILY_FEATURES).select("ticker", "date").collect()
    first = rows.group_by("ticker").agg(pl.col("date").min())["date"]
    cap = (pl.col("set_size").cast(pl.Float64) * SET_SHARE_CAP).ceil().cast(pl.Int64)
    return tickers_seen(first, rows["date"]).select(
        "date", floor=pl.min_horizontal(pl.lit(MIN_MEMBERS), cap).clip(lower_bound=MIN_TO_RANK)
    )


def months_to_refit(lake: LakeIO, count: int = 3) -> list[dt.date]:
    """First days of the last ``count`` months whose sessions have a broad universe."""
    members = (
        lake.scan(tables.GOLD_DAILY_FEATURES)
        .filter(pl.col("in_universe"))
        .group_by("date")
        .len()
        .collect()
        .join(member_floors(lake), on="date")
        .filter(pl.col("len") >= pl.col("floor"))
        .select(pl.col("date").dt.month_start().unique().sort())
    )
    return members["date"].to_list()[-count:]


def first_champion(resources: dict, instance: dg.DagsterInstance, count: int = 3, say=print) -> str:
    """Refit, promote, predict, signal and backtest; returns a one-line summary (progress lines
    go to ``say``)."""
    lake = resources["lake"]
    months = months_to_refit(lake, count)
    if not months:
        floor = member_floors(lake)["floor"].max()
        return f"models: no month has {floor} index members a session; nothing trained"
    for month in months:
        result = dg.materialize(
            [challenger, champion],
            resources=resources,
            instance=instance,
            partition_key=month.isoformat(),
            raise_on_error=False,
        )
        gate = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        say(f"  refit {month:%Y-%m}: gate {gate}")
    last_session = (
        lake.scan(tables.GOLD_DAILY_FEATURES)
        .filter(pl.col("date") < months[-1] + dt.timedelta(days=31))
        .select(pl.col("date").max())
        .collect()
        .item()
    )
    tags = range_tags(months[0].isoformat(), last_session.isoformat())
    scored = dg.materialize(
        [predictions, signals, PREDICTIONS_CHECKS.asset_check()],
        resources=resources,
        instance=instance,
        tags=tags,
        raise_on_error=False,
    )
    if not scored.success:
        return "models: predictions failed (no month passed its gate?); see the runs in the UI"
    tested = dg.materialize(
        [backtest], resources=resources, instance=instance, raise_on_error=False
    )
    if not tested.success:
        return "models: predictions stored; the backtest failed, see its run in the UI"
    return _headline(resources, months[0], last_session, tested)


def _headline(resources: dict, first: dt.date, last: dt.date, tested) -> str:
    """The backtest's rank IC over its sessions (thin ones have none) with its Newey-West t."""
    metadata = {
        k: v.value
        for k, v in tested.asset_materializations_for_node("gold__backtest")[0].metadata.items()
    }
    thin = metadata["thin_sessions_left_out"]
    return (
        f"models: champion {resources['mlflow_registry'].version_for('champion')}, predictions "
        f"{first}..{last}, backtest rank IC {metadata['rank_ic_mean']:+.4f} "
        f"({metadata['t_stat_shown']} {metadata['rank_ic_nw_t_stat']:+.2f}) over "
        f"{metadata['sessions']} sessions ({thin} thin sessions left out)"
    )
