"""gold/backtest on the delivered state (real bars, real lake): it trades the stored signals, keeps
a position whose bars stop, leaves thin sessions out, and its benchmark is buy-and-hold on
adjusted closes across holes. Perturbations run on a copy of the lake and remove rows."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest

from stock_assets import tables
from stock_assets.gold.backtest import backtest
from stock_assets.gold.signals import signals
from stock_assets.models.evaluation import BUY_COST, SELL_COST
from stock_assets.outputs import Outputs
from stock_assets.partitions import range_tags
from stock_assets.resources.lake import LakeResource
from stock_assets_tests.delivered import SMALL_CROSS_SECTION


def copy_lake(delivered, tmp_path) -> LakeResource:
    shutil.copytree(delivered.lake.root, tmp_path / "lake")
    return LakeResource(root=str(tmp_path / "lake"))


def run_backtest(lake: LakeResource) -> dict:
    result = dg.materialize([backtest], resources={"lake": lake})
    metadata = result.asset_materializations_for_node("gold__backtest")[0].metadata
    return {k: v.value for k, v in metadata.items()}


def rerank(lake: LakeResource, start: dt.date, end: dt.date, config=SMALL_CROSS_SECTION) -> dict:
    result = dg.materialize(
        [signals],
        resources={"lake": lake},
        tags=range_tags(start.isoformat(), end.isoformat()),
        run_config={"ops": {"gold__signals": {"config": config}}},
    )
    return {
        k: v.value
        for k, v in result.asset_materializations_for_node("gold__signals")[0].metadata.items()
    }


def closes_by_session(bars: pl.DataFrame) -> tuple[list[dt.date], dict]:
    sessions = sorted(bars["date"].unique().to_list())
    return sessions, {
        (r["instrument"], r["date"]): r["adj_close"] for r in bars.iter_rows(named=True)
    }


def book_from_signals(lake: LakeResource, long_only: bool) -> dict[dt.date, float]:
    """Net daily return of the stored signals, recomputed in plain Python: weights of day t earn
    close(t) -> close(next session), 0 when the next bar is missing; drift and costs as traded."""
    stored = lake.read(tables.GOLD_SIGNALS)
    sessions, close = closes_by_session(lake.read(tables.ADJUSTED_DAILY_BARS))
    held: dict[str, float] = {}
    out = {}
    for day in sorted(stored["date"].unique().to_list()):
        later = sessions.index(day) + 1
        if later >= len(sessions):
            continue
        after = sessions[later]
        rows = stored.filter(pl.col("date") == day)
        target = {
            i: (max(w, 0.0) if long_only else w)
            for i, w in zip(rows["instrument"], rows["weight"], strict=True)
        }
        names = set(target) | set(held)
        trades = {i: target.get(i, 0.0) - held.get(i, 0.0) for i in names}
        cost = sum(t * BUY_COST for t in trades.values() if t > 0)
        cost += sum(-t * SELL_COST for t in trades.values() if t < 0)
        moves = {}
        for i in target:
            now, then = close.get((i, day)), close.get((i, after))
            moves[i] = then / now - 1 if then is not None else 0.0
        gross = sum(target[i] * moves[i] for i in target)
        out[day] = gross - cost
        held = {i: target[i] * (1 + moves[i]) / (1 + gross) for i in target}
    return out


def test_a_book_rebuilt_from_the_stored_signals_equals_the_backtest(delivered):
    daily = delivered.lake.read(tables.GOLD_BACKTEST).sort("date")
    stored = delivered.lake.read(tables.GOLD_SIGNALS)
    signal_days = sorted(stored["date"].unique().to_list())
    assert daily["date"].to_list() == signal_days[:-1]  # the last one's next session is unknown
    per_day = stored.group_by("date").agg(pl.len().alias("names")).sort("date")
    assert daily["names"].to_list() == per_day["names"].to_list()[:-1]
    for column, long_only in (("long_short_net", False), ("long_net", True)):
        rebuilt = book_from_signals(delivered.lake, long_only)
        np.testing.assert_allclose(
            daily[column].to_numpy(), [rebuilt[d] for d in daily["date"]], rtol=0, atol=1e-12
        )


def test_a_stock_whose_bars_stop_is_still_held_earns_to_its_last_price_then_cash(
    delivered, tmp_path
):
    lake = copy_lake(delivered, tmp_path)
    before = lake.read(tables.GOLD_BACKTEST).sort("date")
    stored = lake.read(tables.GOLD_SIGNALS)
    day = before["date"][len(before) // 2]
    held = stored.filter(pl.col("date") == day, pl.col("side") == "long").sort("rank")
    name, weight = held["instrument"][0], held["weight"][0]
    # the stock stops trading after `day`: its bars and predictions after it are removed
    bars = lake.read(tables.ADJUSTED_DAILY_BARS)
    kept = bars.filter((pl.col("instrument") != name) | (pl.col("date") <= day))
    assert kept.height < bars.height
    after = day + dt.timedelta(days=1)
    last = bars["date"].max()
    lake.overwrite_dates(
        tables.ADJUSTED_DAILY_BARS, kept.filter(pl.col("date") >= after), after, last
    )
    predictions = lake.read_dates(tables.GOLD_PREDICTIONS, after, last)
    lake.overwrite_dates(
        tables.GOLD_PREDICTIONS, predictions.filter(pl.col("instrument") != name), after, last
    )
    rerank(lake, after, last)
    metadata = run_backtest(lake)
    now = lake.read(tables.GOLD_BACKTEST).sort("date")
    still = lake.read(tables.GOLD_SIGNALS).filter(
        pl.col("date") == day, pl.col("instrument") == name
    )
    assert still["side"].to_list() == ["long"]  # still held on its last day
    row_before = before.filter(pl.col("date") == day)
    row_now = now.filter(pl.col("date") == day)
    assert row_now["missing_outcomes"].item() == row_before["missing_outcomes"].item() + 1
    assert metadata["positions_missing_next_bar"] >= 1
    # it earns nothing after its last price: the day loses exactly its weighted move
    sessions, close = closes_by_session(bars)
    next_day = sessions[sessions.index(day) + 1]
    move = close[(name, next_day)] / close[(name, day)] - 1
    assert move != 0
    drop = row_before["long_net"].item() - row_now["long_net"].item()
    assert drop == pytest.approx(weight * move, abs=1e-12)
    assert now["date"].to_list() == before["date"].to_list()  # no session dropped


def test_thin_sessions_produce_no_signals_and_no_backtest_day_and_are_flagged(delivered, tmp_path):
    lake = copy_lake(delivered, tmp_path)
    stored = lake.read(tables.GOLD_SIGNALS)
    day = sorted(stored["date"].unique().to_list())[5]
    predictions = lake.read_dates(tables.GOLD_PREDICTIONS, day, day)
    members = predictions.filter(pl.col("role") == "champion", pl.col("in_universe"))
    keep = members["instrument"].sort()[:10]
    thin = predictions.filter(pl.col("instrument").is_in(keep.implode()))
    lake.overwrite_dates(tables.GOLD_PREDICTIONS, thin, day, day)  # 10 names that day
    ranked = rerank(lake, day, day)
    assert ranked["thin_sessions"] == 1 and ranked["rows"] == 0
    assert ranked["thin_session_names"] == {day.isoformat(): 10}
    assert lake.read_dates(tables.GOLD_SIGNALS, day, day).is_empty()
    metadata = run_backtest(lake)
    daily = lake.read(tables.GOLD_BACKTEST)
    assert day not in daily["date"].to_list()
    assert metadata["thin_sessions_left_out"] == 1
    assert metadata["sessions"] == delivered.lake.read(tables.GOLD_BACKTEST).height - 1
    reader = Outputs(lake)
    assert reader.thin_sessions().rows() == [(day, 10)]
    assert reader.session_status(day) == {"date": day, "names": 10, "thin": True}
    assert Outputs.backtest_summary(daily)["days"] == daily.height
    # the floor: the same session with 10 names ranks once the floor allows 10
    assert rerank(lake, day, day, {"min_names": 10, "min_universe_share": 0.0})["rows"] == 10


def test_the_benchmark_across_a_hole_equals_buy_and_hold_on_adjusted_closes(delivered, tmp_path):
    lake = copy_lake(delivered, tmp_path)
    daily = lake.read(tables.GOLD_BACKTEST).sort("date")
    first = daily["date"][0]
    members = lake.read_dates(tables.GOLD_SIGNALS, first, first)["instrument"].sort()
    hole = daily["date"][10]
    name = members[0]
    bars = lake.read_dates(tables.ADJUSTED_DAILY_BARS, hole, hole)
    lake.overwrite_dates(
        tables.ADJUSTED_DAILY_BARS, bars.filter(pl.col("instrument") != name), hole, hole
    )
    predictions = lake.read_dates(tables.GOLD_PREDICTIONS, hole, hole)
    lake.overwrite_dates(
        tables.GOLD_PREDICTIONS, predictions.filter(pl.col("instrument") != name), hole, hole
    )
    rerank(lake, hole, hole)
    run_backtest(lake)
    now = lake.read(tables.GOLD_BACKTEST).sort("date")
    prices = lake.read(tables.ADJUSTED_DAILY_BARS).filter(
        pl.col("date") >= first, pl.col("instrument").is_in(members.implode())
    )
    assert prices.filter(pl.col("date") == hole, pl.col("instrument") == name).is_empty()
    wide = prices.pivot(on="instrument", index="date", values="adj_close").sort("date")
    filled = wide.select(pl.exclude("date").forward_fill()).to_numpy()
    value = (filled / filled[0]).mean(axis=1)  # equal weights at the first close
    sessions = wide["date"].to_list()
    for day, earned in zip(now["date"], now["benchmark"], strict=True):
        s = sessions.index(day)
        assert earned == pytest.approx(value[s + 1] / value[s] - 1, abs=1e-12)
    end = sessions.index(now["date"][-1]) + 1
    assert np.prod(1 + now["benchmark"].to_numpy()) == pytest.approx(value[end], rel=1e-12)
