"""`make run`'s refit months: the member floor scales with the data set's tickers, on a real
Delta table of features holding each replayable set's real tickers and sessions."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from stock_assets import tables
from stock_assets.bronze.datasets import load_dataset
from stock_assets.lake import Lake
from stock_assets.models.first_champion import member_floors, months_to_refit


def _features(bars: pl.DataFrame) -> pl.DataFrame:
    """Feature rows of the set's (ticker, date) pairs, every one an index member; the feature
    values themselves are not what the floor reads (left null)."""
    schema = tables.GOLD_DAILY_FEATURES.schema
    keys = bars.select("ticker", "date", instrument="ticker", in_universe=pl.lit(True))
    return keys.select(
        *(
            pl.col(c).cast(t) if c in keys.columns else pl.lit(None, t).alias(c)
            for c, t in schema.items()
        )
    )


@pytest.mark.parametrize(
    ("name", "start", "floor", "months"),
    [
        ("sp500_2009", dt.date(2010, 1, 1), 100, ["2010-06", "2010-07", "2010-08"]),
        ("sp500_1990_adjclose", dt.date(2022, 6, 1), 10, ["2022-10", "2022-11", "2022-12"]),
        ("msft_1986", dt.date(2017, 6, 1), 2, []),  # one ticker: nothing to rank
    ],
)
def test_the_member_floor_is_100_capped_at_half_the_sets_tickers(
    tmp_path, name, start, floor, months
):
    bars = load_dataset(name).filter(pl.col("date") >= start)
    lake = Lake(str(tmp_path / "lake"))
    lake.overwrite_dates(tables.GOLD_DAILY_FEATURES, _features(bars), start, bars["date"].max())
    assert member_floors(lake)["floor"].max() == floor
    assert [f"{m:%Y-%m}" for m in months_to_refit(lake, 3)] == months


def test_a_ticker_first_seen_later_does_not_size_an_earlier_floor(tmp_path):
    start, joined = dt.date(2022, 6, 1), dt.date(2022, 9, 1)
    bars = load_dataset("sp500_1990_adjclose").filter(pl.col("date") >= start)
    early = (pl.col("date") < joined) & (pl.col("ticker") != bars["ticker"].min())
    lake = Lake(str(tmp_path / "lake"))
    lake.overwrite_dates(
        tables.GOLD_DAILY_FEATURES, _features(bars.filter(~early)), start, bars["date"].max()
    )
    floors = member_floors(lake)
    assert set(floors.filter(pl.col("date") < joined)["floor"]) == {2}  # one ticker so far
    assert set(floors.filter(pl.col("date") >= joined)["floor"]) == {10}
