"""Real data for the model-core tests, built once for the whole package.

The root conftest loads the S&P 500 year (`sp500`), its reviewed corporate actions (`events`)
and the adjusted bars (`adjusted`) once per session. On top of those, here: the point-in-time
index membership of the year (`universe`, `membership`), the forward-return labels at both
horizons (`labels`), the year's gold features with that universe (`features`) and the
horizon-5 training rows (`labelled`). Package scope: every models test module shares one copy,
and a module that does not ask for the features does not pay for them.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from stock_assets.gold.assemble import Context, assemble
from stock_assets.models.labels import HORIZONS, forward_returns, labelled_universe
from stock_assets.pit import members_on
from stock_assets.resources.sources import MembershipSource, today_utc
from stock_assets.silver.index_membership import parse_intervals

FIRST, LAST = dt.date(2009, 8, 21), dt.date(2010, 8, 20)
HORIZON = 5  # the horizon the training tests use


def year_features(bars: pl.DataFrame, universe: pl.DataFrame) -> pl.DataFrame:
    """Gold features of the year with the point-in-time universe (no other context)."""
    return assemble(bars, FIRST, LAST, Context(universe=universe))


@pytest.fixture(scope="package")
def universe(adjusted) -> pl.DataFrame:
    """silver/universe rows: the packaged S&P 500 membership on each session of the year."""
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    return members_on(intervals, sorted(adjusted["date"].unique().to_list()))


@pytest.fixture(scope="package")
def membership(universe) -> pl.DataFrame:
    """``date, ticker, in_universe`` (true) of each member, to left-join onto bars."""
    return universe.select("date", "ticker", in_universe=pl.lit(True))


@pytest.fixture(scope="package")
def labels(adjusted) -> dict[int, pl.DataFrame]:
    """`forward_returns` of the adjusted bars, by horizon (1 and 5 sessions)."""
    return {h: forward_returns(adjusted, h) for h in HORIZONS}


@pytest.fixture(scope="package")
def features(adjusted, universe) -> pl.DataFrame:
    return year_features(adjusted, universe)


@pytest.fixture(scope="package")
def labelled(features, labels) -> pl.DataFrame:
    """Members' feature rows with their normalised horizon-5 label (what training sees)."""
    return labelled_universe(features, labels[HORIZON])
